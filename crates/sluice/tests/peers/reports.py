"""Real report samples built with Python's email package (no one here wrote
its MIME code): a DSN (RFC 3464), an ARF complaint (RFC 5965) and a DMARC
aggregate report (RFC 7489, gzip-compressed XML). Writes dsn.eml, arf.eml
and dmarc.eml into DIR.

usage: reports.py DIR
"""
import gzip, sys
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email import encoders, policy

out = sys.argv[1]


def part(ctype, text):
    # A part whose body is given as text.
    main, sub = ctype.split("/")
    p = MIMEBase(main, sub)
    p.set_payload(text)
    return p


original = "Message-ID: <campaign-7@example.net>\r\nFrom: news@example.net\r\nTo: gone@example.org\r\nSubject: news\r\n"

dsn = MIMEMultipart("report", report_type="delivery-status")
dsn["From"] = "MAILER-DAEMON@mx.example.org"
dsn["To"] = "bounces@local.test"
dsn["Subject"] = "Undelivered Mail Returned to Sender"
dsn.attach(MIMEText("The mail could not be delivered.\n"))
def fields(pairs):
    block = Message()
    for k, v in pairs:
        block[k] = v
    return block


status = MIMEBase("message", "delivery-status")
status.set_payload([
    fields([("Reporting-MTA", "dns; mx.example.org"), ("Original-Envelope-Id", "env-7")]),
    fields([("Final-Recipient", "rfc822; gone@example.org"), ("Original-Recipient", "rfc822; Gone@example.org"),
            ("Action", "failed"), ("Status", "5.1.1"),
            ("Diagnostic-Code", "smtp; 550 5.1.1 <gone@example.org>: no such user")]),
])
dsn.attach(status)
dsn.attach(part("text/rfc822-headers", original))

arf = MIMEMultipart("report", report_type="feedback-report")
arf["From"] = "fbl@isp.example"
arf["To"] = "complaints@local.test"
arf["Subject"] = "complaint"
arf.attach(MIMEText("This is an abuse report.\n"))
arf.attach(part("message/feedback-report",
                "Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n"
                "Original-Mail-From: <news@example.net>\r\nOriginal-Rcpt-To: <reader@isp.example>\r\n"
                "Source-IP: 192.0.2.25\r\nReported-Domain: example.net\r\n"))
arf.attach(part("text/rfc822-headers", original.replace("gone@example.org", "reader@isp.example")))

xml = """<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>isp.example</org_name><email>dmarc@isp.example</email>
    <report_id>r-2026-12-01</report_id>
    <date_range><begin>1764547200</begin><end>1764633599</end></date_range>
  </report_metadata>
  <policy_published><domain>example.net</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>
  <record>
    <row><source_ip>192.0.2.25</source_ip><count>12</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>example.net</header_from></identifiers>
    <auth_results><dkim><domain>example.net</domain><result>pass</result></dkim><spf><domain>example.net</domain><result>pass</result></spf></auth_results>
  </record>
  <record>
    <row><source_ip>198.51.100.9</source_ip><count>3</count>
      <policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>example.net</header_from></identifiers>
    <auth_results><spf><domain>example.net</domain><result>fail</result></spf></auth_results>
  </record>
</feedback>
"""
dmarc = MIMEMultipart()
dmarc["From"] = "dmarc@isp.example"
dmarc["To"] = "dmarc@local.test"
dmarc["Subject"] = "Report Domain: example.net Submitter: isp.example Report-ID: r-2026-12-01"
dmarc.attach(MIMEText("DMARC aggregate report.\n"))
z = MIMEBase("application", "gzip")
z.set_payload(gzip.compress(xml.encode()))
encoders.encode_base64(z)
z.add_header("Content-Disposition", "attachment", filename="isp.example!example.net!1764547200!1764633599.xml.gz")
dmarc.attach(z)

for name, msg in (("dsn", dsn), ("arf", arf), ("dmarc", dmarc)):
    with open(f"{out}/{name}.eml", "wb") as f:
        f.write(msg.as_bytes(policy=policy.SMTP))
