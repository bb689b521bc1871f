"""A throwaway SMTP server for kray-alerts' tests (aiosmtpd).

Usage: python3 smtp_server.py OUT_FILE USER PASSWORD [none|starttls|tls CERT_PEM KEY_PEM]

Listens on 127.0.0.1 on a free port and prints the port on the first line of stdout. Accepts AUTH
PLAIN/LOGIN for USER/PASSWORD only (with `starttls`, only after the required STARTTLS; with `tls`, over
implicit TLS). Appends one JSON line per received message to OUT_FILE:
{"mail_from", "rcpt_tos", "login", "tls", "subject", "to", "body", "data"}.
It stops when stdin closes (the test process ended), so it never outlives the test.
"""

import asyncio
import email
import email.policy
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main() -> None:
    out_file, user, password = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
    mode = sys.argv[4] if len(sys.argv) > 4 else "none"
    context = None
    if mode != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[5], sys.argv[6])

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (user, password)
        # handled=False: aiosmtpd itself answers 535 on a failure (the default leaves the client waiting).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            auth = session.auth_data
            record = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "login": auth.login.decode() if isinstance(auth, LoginPassword) else None,
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "subject": str(message["subject"]),
                "to": str(message["to"]),
                "body": body.get_content() if body is not None else "",
                "data": envelope.content.decode("utf-8", "replace"),
            }
            with open(out_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return "250 Message accepted for delivery"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = Handler()
        server = await loop.create_server(
            lambda: SMTP(
                handler,
                authenticator=authenticator,
                auth_required=True,
                # STARTTLS: AUTH only after the upgrade. Implicit TLS is encrypted from the start, which
                # aiosmtpd does not track, so it is told not to insist.
                auth_require_tls=mode == "starttls",
                tls_context=context if mode == "starttls" else None,
                require_starttls=mode == "starttls",
            ),
            host="127.0.0.1",
            port=0,
            ssl=context if mode == "tls" else None,
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        # Stop when the test closes our stdin (or dies).
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
