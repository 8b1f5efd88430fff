"""Signs a message with dkimpy (an independent DKIM signer) and prints the
signed message, base64, as JSON: {"signed": "..."}.

usage: dkim_sign.py MESSAGE_FILE DOMAIN SELECTOR KEY ALGORITHM [arc]
KEY is a PKCS#1 PEM file for rsa-sha256, or a file holding the base64
32-byte seed for ed25519-sha256. With "arc", the message is ARC-sealed
instead (RFC 8617, one set, as a forwarder DOMAIN would add it after its
own Authentication-Results: DOMAIN; ...), rsa-sha256 only.
"""

import base64
import json
import sys

import dkim


def main():
    path, domain, selector, key, algorithm = sys.argv[1:6]
    message = open(path, "rb").read()
    if sys.argv[6:] == ["arc"]:
        message = b"Authentication-Results: " + domain.encode() + b"; spf=pass\r\n" + message
        fields = dkim.arc_sign(
            message, selector.encode(), domain.encode(), open(key, "rb").read(), domain.encode()
        )
        sealed = b"".join(fields) + message
        print(json.dumps({"signed": base64.b64encode(sealed).decode()}))
        return
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        open(key, "rb").read(),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        signature_algorithm=algorithm.encode(),
    )
    print(json.dumps({"signed": base64.b64encode(signature + message).decode()}))


if __name__ == "__main__":
    main()
