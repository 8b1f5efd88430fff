"""Reads messages with Python's `email` package (policy=default), a strict
and independent MIME parser, and reports what it sees: every defect it
registers (message, parts, header fields, decoded bodies) and the decoded
subject, display names and attachment names.

Used by the compose unit tests (every composed message of their fixtures)
and by the integration tests (the messages that reach aiosmtpd).

stdin: a JSON list of base64 messages. stdout: a JSON list of reports.
"""

import base64
import json
import sys
from email import message_from_bytes, message_from_string
from email.policy import default

ADDRESS_HEADERS = ("from", "to", "cc", "reply-to")


def header_defects(part):
    found = []
    for name in part.keys():
        for value in part.get_all(name, []):
            for defect in getattr(value, "defects", ()):
                found.append(f"{name}: {defect!r}")
    return found


def param(part, header, name):
    # The header object decodes RFC 2231 (`name*=`), get_param would not,
    # and unlike get_filename it does not strip the value.
    value = part.get(header)
    return None if value is None else value.params.get(name)


def parse(raw):
    # RFC 6532 (SMTPUTF8) header fields are UTF-8; the bytes parser would
    # read them as undecodable. Such a message is read as UTF-8 text.
    head = raw.split(b"\r\n\r\n", 1)[0]
    if not head.isascii():
        try:
            return message_from_string(raw.decode("utf-8"), policy=default)
        except UnicodeDecodeError:
            pass
    return message_from_bytes(raw, policy=default)


def report(raw):
    msg = parse(raw)
    defects = [repr(d) for d in msg.defects] + header_defects(msg)
    parts = []
    for part in msg.walk():
        if part is not msg:
            defects += [repr(d) for d in part.defects] + header_defects(part)
        if not part.is_multipart():
            # Decoding registers its own defects (bad base64, ...).
            part.get_payload(decode=True)
            defects += [repr(d) for d in part.defects if repr(d) not in defects]
        parts.append(
            {
                "content_type": part.get_content_type(),
                "cte": part.get("content-transfer-encoding"),
                "filename": param(part, "content-disposition", "filename"),
                "name": param(part, "content-type", "name"),
            }
        )
    subject = msg.get("subject")
    addresses = {}
    for name in ADDRESS_HEADERS:
        value = msg.get(name)
        if value is not None:
            addresses[name] = [a.display_name for a in value.addresses]
    return {
        "defects": defects,
        "subject": None if subject is None else str(subject),
        "addresses": addresses,
        "parts": parts,
    }


def main():
    messages = json.load(sys.stdin)
    json.dump([report(base64.b64decode(m)) for m in messages], sys.stdout)


if __name__ == "__main__":
    main()
