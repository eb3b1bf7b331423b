"""A small SMTP server for tests: stores what it receives, one file per message.

    python tests/smtp_server.py --port 0 --maildir DIR [--user U --password P]
                                [--reject RCPT ...] [--tls-cert CERT --tls-key KEY]

Prints the port it listens on as the first line of stdout, then serves until terminated (or
until its parent process exits). Each message is stored as DIR/<n>.eml (the bytes received after
DATA, dot-unstuffed) and DIR/<n>.json, written after the .eml, with the envelope and the message
as Python's email package reads it (decoded subject and body). Recipients given with --reject
are refused with 550. With --user, AUTH (LOGIN or PLAIN, allowed without TLS) is required before
MAIL. With --tls-cert, STARTTLS is offered.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import email
import email.policy
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import warnings
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    """Accepts or refuses recipients and writes every accepted message to the maildir."""

    def __init__(self, maildir: Path, reject: set[str]) -> None:
        self.maildir = maildir
        self.reject = {r.lower() for r in reject}
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        raw: bytes = envelope.original_content or envelope.content
        n = next(self.counter)
        stem = f"{os.getpid()}-{n:06d}"
        (self.maildir / f"{stem}.eml").write_bytes(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_content() if not msg.is_multipart() else ""
        body = body.replace("\r\n", "\n")  # the line ending on the wire is checked in the .eml
        # A multipart message as the parser sees it: each part's type, charset, encoding and
        # decoded text, and every defect the parser found in the structure.
        parts = [
            {"type": p.get_content_type(), "charset": p.get_content_charset(),
             "encoding": p.get("content-transfer-encoding"), "body": p.get_content().replace("\r\n", "\n")}
            for p in (msg.iter_parts() if msg.is_multipart() else ())
        ]
        defects = [type(d).__name__ for part in msg.walk() for d in part.defects]
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "login": (session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "raw_headers": [[k, v] for k, v in msg.raw_items()],
            "subject": str(msg["subject"]) if msg["subject"] is not None else None,
            "from": str(msg["from"]) if msg["from"] is not None else None,
            "to": str(msg["to"]) if msg["to"] is not None else None,
            "body": body,
            "content_type": msg.get_content_type(),
            "parts": parts,
            "defects": defects,
            "size": len(raw),
        }
        tmp = self.maildir / f"{stem}.json.tmp"
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        tmp.rename(self.maildir / f"{stem}.json")  # whole or absent: readers poll for *.json
        return f"250 2.0.0 OK queued as {stem}"


def make_authenticator(user: str, password: str):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd then answers 235 or 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


def die_with_parent() -> None:
    """End with the process that started us (a test that crashed cannot kill us): the kernel sends
    SIGTERM when the parent goes (Linux prctl PR_SET_PDEATHSIG), no polling."""
    parent = os.getppid()
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # gone before the request took effect
        os._exit(0)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--reject", action="append", default=[])
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    die_with_parent()
    if (args.user is None) != (args.password is None):
        ap.error("--user and --password go together")
    if (args.tls_cert is None) != (args.tls_key is None):
        ap.error("--tls-cert and --tls-key go together")

    # Quiet by default: tests provoke failed TLS handshakes and run AUTH without TLS on purpose.
    warnings.filterwarnings("ignore", module="aiosmtpd")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)

    maildir = Path(args.maildir)
    maildir.mkdir(parents=True, exist_ok=True)
    handler = Handler(maildir, set(args.reject))
    tls_context = None
    if args.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)

    def factory() -> SMTP:
        kwargs = {
            "hostname": "herald-test-smtp",
            "tls_context": tls_context,
            "timeout": 60,
        }
        if args.user is not None:
            kwargs.update(
                authenticator=make_authenticator(args.user, args.password),
                auth_required=True,
                auth_require_tls=False,
            )
        return SMTP(handler, **kwargs)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host=args.host, port=args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
