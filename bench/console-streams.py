"""What an open console asks of Sluice, without a browser: the /v1/live and
/v1/results/live streams read continuously, and /v1/destinations and
/v1/pauses every 2 s (the Destinations page), until killed. Separates
Sluice's cost of serving a console from the browser's own CPU.

usage: console-streams.py URL   (e.g. http://127.0.0.1:11027; no credentials)
"""
import http.client, signal, sys, threading, time
from urllib.parse import urlparse

u = urlparse(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
counts = {"/v1/live": 0, "/v1/results/live": 0}


def read(path):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    while True:
        line = r.fp.readline()
        if not line:
            return
        if line.startswith(b"event:"):
            counts[path] += 1


for p in counts:
    threading.Thread(target=read, args=(p,), daemon=True).start()
print("console open", flush=True)
try:
    while True:
        for path in ("/v1/destinations", "/v1/pauses"):
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
        time.sleep(2)
finally:
    print("events read:", counts, flush=True)
