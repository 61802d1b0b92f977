#!/usr/bin/env python3
"""Manage Sieve scripts with sievelib (PyPI 1.6) over STARTTLS, logging in with OAUTHBEARER.

usage: sievelib_oauthbearer.py HOST PORT USER SCRIPTNAME SCRIPTFILE OUTFILE
       (token in $BG_TOKEN; the CA to trust in $SSL_CERT_FILE)

sievelib's STARTTLS builds its TLS context with ssl.create_default_context() and offers no CA
option; OpenSSL's default verify paths honour $SSL_CERT_FILE, so the caller points that at the
test CA and the server certificate is verified for HOST as usual.

Steps: connect(starttls=True, authmech="OAUTHBEARER") (sievelib sends the token base64 as one
quoted string, however long), PUTSCRIPT SCRIPTNAME with the file's text, SETACTIVE, LISTSCRIPTS
(must show it active), GETSCRIPT (written to OUTFILE as sievelib returns it: lines joined
with "\\n"), LOGOUT. Exit status 0 only when every step succeeded; details go to stderr.
"""

import os
import sys

from sievelib.managesieve import Client, Error


def fail(client: Client, what: str) -> int:
    print(f"{what} failed: {client.errcode!r} {client.errmsg!r}", file=sys.stderr)
    return 1


def main() -> int:
    host, port, user, name, scriptfile, outfile = sys.argv[1:7]
    token = os.environ["BG_TOKEN"]
    with open(scriptfile, "rb") as f:
        script = f.read().decode("utf-8")
    client = Client(host, int(port))
    try:
        if not client.connect(user, token, starttls=True, authmech="OAUTHBEARER"):
            return fail(client, "connect/AUTHENTICATE")
        print(f"SASL after STARTTLS: {client.get_sasl_mechanisms()!r}", file=sys.stderr)
        if not client.putscript(name, script):
            return fail(client, "PUTSCRIPT")
        if not client.setactive(name):
            return fail(client, "SETACTIVE")
        listing = client.listscripts()
        print(f"LISTSCRIPTS {listing!r}", file=sys.stderr)
        if listing is None or listing[0] != name:
            print(f"{name!r} is not the active script: {listing!r}", file=sys.stderr)
            return 1
        fetched = client.getscript(name)
        if fetched is None:
            return fail(client, "GETSCRIPT")
        with open(outfile, "wb") as out:
            out.write(fetched.encode("utf-8"))
        client.logout()
        return 0
    except Error as err:
        print(f"sievelib error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
