"""The inline text parts of messages, as Python's `email` package reads them.

    inline_texts.py FILE...

Prints one JSON list per run: for each FILE (a raw RFC 5322 message), the
list of its body text parts as {"content_type", "body"}, chosen by the rules
README ("Body text") documents, applied to Python's parse tree:
text/plain and text/html leaves, not inside a nested message, not
`Content-Disposition: attachment`, not a later part of multipart/related,
not a later part with a `name` and no disposition. The body is
`get_content()` (transfer encoding and charset undone, errors replaced).

The test suite compares this with Postern's `parts` (tests/it/fidelity.rs),
so the two parsers check each other's structure and decoding.
"""
import email
import email.policy
import json
import sys


def texts(message):
    out = []
    # (part, parent, index among the parent's children); iterative like Postern.
    stack = [(message, None, 0)]
    while stack:
        part, parent, index = stack.pop()
        if part.get_content_maintype() == "message":
            continue  # nested messages are attachments, their insides too
        if part.is_multipart():
            children = list(part.iter_parts())
            stack.extend((c, part, i) for i, c in reversed(list(enumerate(children))))
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        disposition = part.get_content_disposition()
        later = parent is not None and index > 0
        if disposition == "attachment":
            continue
        if disposition is None and later and part.get_param("name") is not None:
            continue
        if later and parent.get_content_type() == "multipart/related":
            continue
        out.append({"content_type": ctype, "body": part.get_content()})
    return out


def main():
    result = []
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            message = email.message_from_binary_file(f, policy=email.policy.default)
        result.append(texts(message))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
