"""Loopback SMTP server for Postern's relay tests, built on aiosmtpd.

Binds 127.0.0.1 on a free port (port 0), then prints "PORT <n>" on stdout, so
the caller never races another process for the port. Every event is appended
to --log as one JSON object per line:

  {"event": "connect"}                                  one per TCP connection
  {"event": "message", "mail_from", "rcpt_tos", "data_hex", "auth",
   "tls", "helo", "mail_options"}                       one per accepted DATA

Behaviour switches:
  --tls none|starttls|implicit   (cert/key needed for the last two)
  --auth USER:PASSWORD           AUTH PLAIN/LOGIN required (after TLS)
  --busy                         answer 421 to MAIL
  --smtputf8                     announce SMTPUTF8
  --login-only                   offer AUTH LOGIN but not PLAIN
Recipients whose local part starts with "bad" get 550, with "later" 451,
and "slow" makes DATA's final reply wait 3 s.
"""

import argparse
import asyncio
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--smtputf8", action="store_true")
    parser.add_argument("--login-only", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args))


def record(path, event):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


class Handler:
    def __init__(self, args):
        self.args = args
        self.queued = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.args.busy:
            return "421 4.3.2 Service busy, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("bad"):
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        if local.startswith("later"):
            return f"451 4.3.0 <{address}>: Try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@")[0].startswith("slow") for r in envelope.rcpt_tos):
            await asyncio.sleep(3)
        self.queued += 1
        record(self.args.log, {
            "event": "message",
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data_hex": envelope.original_content.hex(),
            "auth": session.auth_data if session.authenticated else None,
            "tls": server.implicit_tls or session.ssl is not None,
            "helo": session.host_name,
            "mail_options": envelope.mail_options,
        })
        return f"250 2.0.0 Ok: queued as Q{self.queued}"


class RecordingSMTP(SMTP):
    def __init__(self, *a, log, implicit_tls, **kw):
        super().__init__(*a, **kw)
        self.log = log
        self.implicit_tls = implicit_tls

    def connection_made(self, transport):
        # aiosmtpd calls this again after STARTTLS; count TCP connections only.
        if self._original_transport is None:
            record(self.log, {"event": "connect"})
        super().connection_made(transport)


async def serve(args):
    ctx = None
    if args.tls != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)

    authenticator = None
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            auth = {"user": user, "mechanism": mechanism}
            # handled=False: let aiosmtpd send the 535 itself.
            return AuthResult(success=ok, handled=False, auth_data=auth if ok else None)

    handler = Handler(args)
    implicit = args.tls == "implicit"

    def factory():
        return RecordingSMTP(
            handler,
            log=args.log,
            implicit_tls=implicit,
            hostname="test.smtp.local",
            enable_SMTPUTF8=args.smtputf8,
            tls_context=ctx if args.tls == "starttls" else None,
            require_starttls=args.tls == "starttls",
            authenticator=authenticator,
            auth_required=authenticator is not None,
            # With implicit TLS the whole connection is encrypted, but
            # aiosmtpd only knows about STARTTLS.
            auth_require_tls=not implicit,
            auth_exclude_mechanism=["PLAIN"] if args.login_only else None,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, host="127.0.0.1", port=0, ssl=ctx if implicit else None)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
