#!/usr/bin/env python3
"""Log in with Python's smtplib using SASL XOAUTH2 and submit one message.

usage: smtplib_xoauth2_send.py HOST PORT CAFILE implicit|starttls USER FROM TO MSGFILE
       (token in $BG_TOKEN)

The login is the usual smtplib idiom for XOAUTH2: EHLO, then
smtp.auth("XOAUTH2", callback, initial_response_ok=True), which sends the response as the AUTH
command's initial response. The message file's bytes are submitted as they are (CRLF line
ends; smtplib dot-stuffs them). Exit status 0 only when AUTH returned 235 and the message was
accepted for the recipient; the server's replies go to stderr.
"""

import smtplib
import ssl
import sys
import os


def main() -> int:
    host, port, cafile, mode, user, sender, rcpt, msgfile = sys.argv[1:9]
    token = os.environ["BG_TOKEN"]
    context = ssl.create_default_context(cafile=cafile)
    with open(msgfile, "rb") as f:
        message = f.read()
    if mode == "implicit":
        smtp = smtplib.SMTP_SSL(host, int(port), context=context, timeout=30)
    else:
        smtp = smtplib.SMTP(host, int(port), timeout=30)
        code, reply = smtp.ehlo()
        print(f"EHLO before TLS {code} {reply!r}", file=sys.stderr)
        code, reply = smtp.starttls(context=context)
        print(f"STARTTLS {code} {reply!r}", file=sys.stderr)
    try:
        code, reply = smtp.ehlo()
        print(f"EHLO {code} {reply!r}", file=sys.stderr)
        code, reply = smtp.auth(
            "XOAUTH2",
            lambda x=None: f"user={user}\x01auth=Bearer {token}\x01\x01",
            initial_response_ok=True,
        )
        print(f"AUTH {code} {reply!r}", file=sys.stderr)
        if code != 235:
            return 1
        refused = smtp.sendmail(sender, [rcpt], message)
        if refused:
            print(f"refused recipients {refused!r}", file=sys.stderr)
            return 1
        smtp.quit()
        return 0
    except smtplib.SMTPException as err:
        print(f"smtplib error: {err!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
