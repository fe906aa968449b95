"""An SMTP receiver (aiosmtpd) that records, for every message, when it
arrived, on which connection, from which address, after which EHLO name, and
how many connections were open then, and the message's first 64 KiB: one
JSON line per message in OUT.
A recipient domain listed in REFUSE gets REPLY for its first COUNT messages;
REPLY `stall` answers nothing at all after their final dot (a receiver that
hangs), recorded with "stalled": true.

usage: recorder.py PORT OUT [REFUSE_DOMAIN COUNT REPLY]
"""
import asyncio, json, sys, threading, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

port, out = int(sys.argv[1]), sys.argv[2]
refuse = sys.argv[3].lower() if len(sys.argv) > 3 else None
refusals = [int(sys.argv[4]) if len(sys.argv) > 4 else 0]
reply = sys.argv[5] if len(sys.argv) > 5 else "421 4.7.0 Try again later"
lock = threading.Lock()
state = {"open": 0, "next": 0}


class Counting(SMTP):
    def connection_made(self, transport):
        with lock:
            state["open"] += 1
            state["next"] += 1
            self.number = state["next"]
        super().connection_made(transport)

    def connection_lost(self, exc):
        with lock:
            state["open"] -= 1
        super().connection_lost(exc)


class Record:
    async def handle_DATA(self, server, session, envelope):
        domains = {r.rsplit("@", 1)[-1].lower() for r in envelope.rcpt_tos}
        refused = False
        with lock:
            if refuse in domains and refusals[0] > 0:
                refusals[0] -= 1
                refused = True
            line = {
                "t": time.time(),
                "connection": server.number,
                "open": state["open"],
                "peer": session.peer[0],
                "ehlo": session.host_name,
                "to": envelope.rcpt_tos,
                # The start of what was sent, for tests that read the message.
                "data": envelope.content[:65536].decode("utf-8", "replace"),
                "refused": refused,
                "stalled": refused and reply == "stall",
            }
            with open(out, "a") as f:
                f.write(json.dumps(line) + "\n")
        if refused and reply == "stall":
            await asyncio.sleep(3600)
        return reply if refused else "250 2.0.0 recorded"


class Factory(Controller):
    def factory(self):
        return Counting(self.handler, **self.SMTP_kwargs)


controller = Factory(Record(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
time.sleep(3600)  # the controller serves from its own thread; the test kills this process
