"""Verifies every DKIM-Signature of a message with dkimpy (a verifier no one
here wrote), answering its DNS queries from the test's public keys.

usage: dkim_verify.py MESSAGE RSA_PUBLIC_DER ED25519_PUBLIC_DER
prints one line per signature: "<selector> <d=domain> pass|fail"
"""
import base64, re, sys
import dkim

message = open(sys.argv[1], "rb").read()
rsa = open(sys.argv[2], "rb").read()
ed = open(sys.argv[3], "rb").read()[-32:]  # the raw key at the end of the SubjectPublicKeyInfo
records = {
    b"rsa._domainkey.sign.test.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(rsa),
    b"ed._domainkey.sign.test.": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed),
}


def dns(name, timeout=5):
    return records.get(name if name.endswith(b".") else name + b".")


d = dkim.DKIM(message)
count = len(re.findall(rb"(?im)^DKIM-Signature:", message.split(b"\r\n\r\n", 1)[0]))
for i in range(count):
    ok = d.verify(idx=i, dnsfunc=dns)
    print(d.selector.decode(), "d=" + d.domain.decode(), "pass" if ok else "fail")
