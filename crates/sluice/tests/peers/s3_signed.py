"""A signature-checking front for moto's S3 server (moto checks no
presigned signatures): every request signed in its query string (AWS
Signature Version 4, as rusty-s3 signs) is checked against the one access
key this run hands out, then passed on to moto; a bad or expired signature
is S3's 403 SignatureDoesNotMatch / AccessDenied. Requests signed in the
Authorization header (the tests' own boto3 calls) are passed on as they are.

    s3_signed.py LISTEN_PORT MOTO_PORT ACCESS_KEY SECRET_KEY
"""
import datetime
import hashlib
import hmac
import http.client
import http.server
import sys
import urllib.parse

LISTEN, MOTO, KEY, SECRET = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]


def hmac256(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def quote(s):
    return urllib.parse.quote(s, safe="-_.~")


def refusal(query, method, path, headers):
    """Why a presigned request is refused, or None when it is signed right."""
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    given = dict(params)
    if given.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return "AccessDenied", "not AWS4-HMAC-SHA256"
    key, date, region, service, terminator = given.get("X-Amz-Credential", "").split("/")
    if key != KEY or service != "s3" or terminator != "aws4_request":
        return "InvalidAccessKeyId", "unknown access key"
    stamp = given["X-Amz-Date"]
    signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    if signed_at + datetime.timedelta(seconds=int(given["X-Amz-Expires"])) < datetime.datetime.now(datetime.timezone.utc):
        return "AccessDenied", "request has expired"
    signed = given["X-Amz-SignedHeaders"].split(";")
    lower = {k.lower(): v for k, v in headers.items()}
    for h in lower:
        if h.startswith("x-amz-") and h not in signed:
            return "AccessDenied", f"{h} is sent but not signed"
    if any(h not in lower for h in signed):
        return "AccessDenied", "a signed header is missing"
    canonical_query = "&".join(
        f"{quote(k)}={quote(v)}" for k, v in sorted(params) if k != "X-Amz-Signature"
    )
    canonical_headers = "".join(f"{h}:{' '.join(lower[h].split())}\n" for h in signed)
    request = "\n".join([method, path, canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"])
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    k = hmac256(("AWS4" + SECRET).encode(), date)
    for part in (region, "s3", "aws4_request"):
        k = hmac256(k, part)
    expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.get("X-Amz-Signature", "")):
        return "SignatureDoesNotMatch", "the signature does not match"
    return None


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if "X-Amz-Signature=" in query:
            why = refusal(query, self.command, path, self.headers)
            if why:
                xml = f"<?xml version=\"1.0\"?><Error><Code>{why[0]}</Code><Message>{why[1]}</Message></Error>".encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(xml)
                return
        upstream = http.client.HTTPConnection("127.0.0.1", MOTO, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
        upstream.request(self.command, self.path, body=body if length else None, headers=headers)
        r = upstream.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)) if self.command != "HEAD" else r.getheader("Content-Length", "0"))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = relay


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Front).serve_forever()
