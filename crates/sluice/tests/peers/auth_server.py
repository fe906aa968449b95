"""An SMTP relay that requires STARTTLS and then AUTH (aiosmtpd), for the
delivery tests. Every accepted message is written to OUT_DIR as JSON.

usage: auth_server.py PORT CERT KEY USER PASSWORD OUT_DIR
"""
import json, os, ssl, sys, time, uuid
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, password, out = sys.argv[1:7]


class Save:
    async def handle_DATA(self, server, session, envelope):
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
            "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
        }
        with open(os.path.join(out, uuid.uuid4().hex + ".json"), "w") as f:
            json.dump(record, f)
        return "250 2.0.0 saved"


def check(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password:
        return AuthResult(success=True, auth_data=auth_data.login)
    return AuthResult(success=False, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Save(),
    hostname="127.0.0.1",
    port=int(port),
    server_hostname="relay.test",
    tls_context=context,
    require_starttls=True,
    auth_required=True,
    auth_require_tls=True,
    authenticator=check,
)
controller.start()
print("ready", flush=True)
time.sleep(3600)  # the controller serves from its own thread; the test kills this process
