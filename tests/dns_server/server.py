"""A DNS server on loopback for the tests (dnslib), serving the records of
a JSON zone file: {"name.": {"TXT": ["text", ...]}, ...}. Records are read
again on every query, so a test may change the file while it runs.

A TXT text longer than 255 characters goes out as several strings of one
record (RFC 1035 section 3.3.14), as a real zone would publish it. Names
not in the file get NXDOMAIN. Listens on UDP and TCP 127.0.0.1 on a free
port (or --port) and prints "PORT <n>" once it does. With --log, each
query's name and type is appended to that file (a test counts them).
"""

import argparse
import json
import socket
import sys
import time

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, path, log=None):
        self.path = path
        self.log = log

    def resolve(self, request, handler):
        reply = request.reply()
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(f"{request.q.qname} {QTYPE[request.q.qtype]}\n")
        with open(self.path, encoding="utf-8") as f:
            zone = {k.lower().rstrip(".") + ".": v for k, v in json.load(f).items()}
        qname = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        records = zone.get(qname)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for text in records.get(qtype, []) if qtype == "TXT" else []:
            data = text.encode()
            chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
        return reply


def free_port():
    # The same number must be free for UDP and TCP.
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        return port
    raise SystemExit("no free port")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zone", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    args = ap.parse_args()
    port = args.port or free_port()
    resolver = ZoneResolver(args.zone, args.log)
    servers = [
        DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=Quiet())
        for tcp in (False, True)
    ]
    for s in servers:
        s.start_thread()
    print(f"PORT {port}", flush=True)
    while all(s.isAlive() for s in servers):
        time.sleep(0.2)
    sys.exit(1)


class Quiet:
    def __getattr__(self, name):
        return lambda *a, **k: None


if __name__ == "__main__":
    main()
