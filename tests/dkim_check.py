"""Verifies the DKIM signatures of messages with dkimpy (an independent
implementation), looking keys up with dnspython in the DNS server on
loopback given by --dns-port (tests/dns_server/server.py). Prints, per
message file, {"signatures": [{"d", "s", "a", "h", "c", "pass", "error"}]}, as one
JSON list.
"""

import argparse
import json
import re

import dkim
import dns.resolver


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dns-port", type=int, required=True)
    ap.add_argument("messages", nargs="+")
    args = ap.parse_args()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = args.dns_port
    resolver.lifetime = 5

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        try:
            answer = resolver.resolve(name, "TXT", tcp=False)
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(b"".join(r.strings) for r in answer)

    out = []
    for path in args.messages:
        data = open(path, "rb").read()
        d = dkim.DKIM(data)
        sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
        results = []
        for i, sig in enumerate(sigs):
            tags = dict(
                (m.group(1).decode(), re.sub(rb"\s+", b"", m.group(2)).decode())
                for m in re.finditer(rb"\s*([a-z]+)\s*=\s*([^;]*);?", sig)
            )
            # dkimpy answers False for a bad signature, but raises for
            # some failures (a body hash mismatch): both are a fail.
            try:
                ok, error = bool(dkim.DKIM(data).verify(idx=i, dnsfunc=dnsfunc)), None
            except dkim.DKIMException as e:
                ok, error = False, str(e)
            result = {k: tags.get(k) for k in ("d", "s", "a", "h", "c")}
            results.append(result | {"pass": ok, "error": error})
        out.append({"signatures": results})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
