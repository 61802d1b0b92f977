#!/usr/bin/env python3
"""Log in with Python's imaplib over implicit TLS using SASL XOAUTH2, fetch one message, and
write its exact bytes to a file.

usage: imaplib_xoauth2_fetch.py HOST PORT CAFILE USER SEQ OUTFILE   (token in $BG_TOKEN)

imaplib never sends an initial response: it waits for the server's "+ " and then sends the
callback's bytes base64-encoded, as Thunderbird-era scripts do. Exit status 0 only when the
login, SELECT and FETCH all succeeded; the server's replies go to stderr otherwise.
"""

import imaplib
import os
import ssl
import sys


def main() -> int:
    host, port, cafile, user, seq, outfile = sys.argv[1:7]
    token = os.environ["BG_TOKEN"]
    context = ssl.create_default_context(cafile=cafile)
    imap = imaplib.IMAP4_SSL(host, int(port), ssl_context=context, timeout=30)
    try:
        response = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
        typ, data = imap.authenticate("XOAUTH2", lambda _challenge: response)
        print(f"AUTHENTICATE {typ} {data!r}", file=sys.stderr)
        typ, data = imap.select("INBOX", readonly=True)
        if typ != "OK":
            print(f"SELECT {typ} {data!r}", file=sys.stderr)
            return 1
        typ, data = imap.fetch(seq, "(BODY.PEEK[])")
        if typ != "OK" or not data or not isinstance(data[0], tuple):
            print(f"FETCH {typ} {data!r}", file=sys.stderr)
            return 1
        with open(outfile, "wb") as out:
            out.write(data[0][1])
        imap.logout()
        return 0
    except imaplib.IMAP4.error as err:
        print(f"imaplib error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
