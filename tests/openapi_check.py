#!/usr/bin/env python3
"""Checks docs/openapi.yaml against a running Postern.

    openapi_check.py SPEC [BASE_URL API_KEY] [--webhook-bodies FILE]

1. The spec is validated with openapi-spec-validator (OpenAPI 3.1).
2. With BASE_URL and API_KEY, every path + method in the spec is called
   for real: each request body example (with the API key), and for every
   operation the error cases it documents: no / wrong / non-Bearer key,
   malformed JSON, an empty object, a Content-Length over any limit,
   missing required headers, an Idempotency-Key replay and reuse. Each
   answer's status must be documented for that operation, its body must
   validate (JSON Schema 2020-12, formats checked) against the schema
   documented for that status, and documented response headers must be
   present (when required) and valid. A path answered with `404
   not_found` and `field: null` (the server's "no such endpoint") or with
   `405` counts as missing. Ids returned by a `202` are followed through the
   response's `links` until the message settles (sent/failed). Every path
   is also called with each method it does not document: `405` as
   `#/components/responses/MethodNotAllowed` says, `Allow` matching the
   spec. With the `/v1/deliveries` operations, the listing's query errors
   and pages are checked and the first dead delivery is walked: get, retry
   (200), retry while pending (409), dead again, delete (204), then 404
   (the server must hold a dead delivery whose endpoint refuses it again;
   tests/it/openapi.rs sets that up).
3. With --webhook-bodies FILE (a JSON list of {"headers": {...}, "body":
   {...}}; headers optional), each body is validated against the webhook
   named by its `type`, its headers against the documented header
   parameters, and every documented webhook must have at least one body.

Prints one line per check and a summary; exits 1 on any mismatch.
"""

import argparse
import copy
import http.client
import json
import select
import sys
import time
import urllib.parse
import uuid

import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:postern:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# A declared body length no limit accepts (1 TiB); at most STREAM_CAP bytes
# of it are sent.
HUGE_LENGTH = 1 << 40
STREAM_CAP = 256 << 20
SETTLE_STATUSES = {"queued", "sending", "deferred"}


def pointer(*parts):
    """A JSON pointer from unescaped parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Checker:
    def __init__(self, spec, base_url=None, api_key=None, verbose=True):
        self.spec = spec
        self.failures = []
        self.checks = 0
        self.verbose = verbose
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(SPEC_URI, resource)
        self.observed = {}  # (METHOD, path) -> set of statuses
        self.accepted_ids = []
        if base_url:
            u = urllib.parse.urlsplit(base_url)
            self.host, self.port = u.hostname, u.port or 80
            self.prefix = u.path.rstrip("/")
        self.api_key = api_key

    # -- reporting ---------------------------------------------------------

    def ok(self, what):
        self.checks += 1
        if self.verbose:
            print(f"ok   {what}")

    def fail(self, what, why):
        self.checks += 1
        self.failures.append(f"{what}: {why}")
        print(f"FAIL {what}: {why}")

    # -- spec helpers ------------------------------------------------------

    def resolve(self, obj, ptr):
        """Follows a (non-schema) `$ref`; returns the target and its pointer."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local $refs are supported: {ref}")
            ptr = ref[1:]
            obj = self.spec
            for part in ptr.split("/")[1:]:
                obj = obj[part.replace("~1", "/").replace("~0", "~")]
            seen += 1
            if seen > 20:
                raise ValueError(f"$ref loop at {ref}")
        return obj, ptr

    def schema_errors(self, schema_ptr, instance):
        """Validation errors of `instance` against the schema at `schema_ptr`."""
        fragment = urllib.parse.quote(schema_ptr, safe="/~")
        validator = Draft202012Validator(
            {"$ref": f"{SPEC_URI}#{fragment}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        out = []
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            detail = e.message
            if e.context:
                detail += " [" + "; ".join(c.message for c in e.context[:4]) + "]"
            out.append(f"{where}: {detail[:400]}")
        return out

    def parameters(self, path_item, op, path_ptr, op_ptr):
        """The operation's parameters (path-level merged), resolved, with pointers."""
        params = {}
        for base, ptr in ((path_item, path_ptr), (op, op_ptr)):
            for i, p in enumerate(base.get("parameters", [])):
                p, pptr = self.resolve(p, ptr + pointer("parameters", i))
                params[(p["in"], p["name"].lower())] = (p, pptr)
        return list(params.values())

    def secured(self, op):
        req = op.get("security", self.spec.get("security", []))
        return any(r for r in req)

    def response_for(self, op, op_ptr, status):
        responses = op.get("responses", {})
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                return self.resolve(responses[key], op_ptr + pointer("responses", key))
        return None, None

    # -- HTTP --------------------------------------------------------------

    def request(self, method, path, headers=None, body=None, declared_length=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            if declared_length is not None:
                # Declares a huge body and streams filler until the server
                # answers (at once when it checks Content-Length, after its
                # limit when it counts), at most STREAM_CAP bytes.
                conn.putrequest(method, self.prefix + path)
                for k, v in (headers or {}).items():
                    conn.putheader(k, v)
                conn.putheader("Content-Length", str(declared_length))
                conn.endheaders()
                chunk, sent = b" " * 65536, 0
                try:
                    while sent < STREAM_CAP:
                        readable, _, _ = select.select([conn.sock], [], [], 0)
                        if readable:
                            break
                        conn.send(chunk)
                        sent += len(chunk)
                except OSError:
                    pass  # the server answered and closed; read the answer
            else:
                conn.request(method, self.prefix + path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, hdrs, data
        finally:
            conn.close()

    # -- one call, checked -------------------------------------------------

    def call(self, ctx, label, headers=None, body=None, declared_length=None,
             path=None, expect=None):
        """Makes a request and checks the answer against the spec.

        `expect`: a set of statuses this case must get (a subset of the
        documented ones), or None for "2xx", or "4xx" for any documented 4xx.
        Returns (status, headers, parsed JSON or text or None).
        """
        method, tpath, op, op_ptr = ctx["method"], ctx["path"], ctx["op"], ctx["ptr"]
        real_path = path or ctx["url"]
        what = f"{method.upper()} {tpath} [{label}]"
        try:
            status, rh, raw = self.request(method.upper(), real_path, headers, body, declared_length)
        except (OSError, http.client.HTTPException) as e:
            self.fail(what, f"request failed: {e!r}")
            return None, {}, None
        self.observed.setdefault((method.upper(), tpath), set()).add(status)
        what = f"{what} -> {status}"
        ctype = rh.get("content-type", "").split(";")[0].strip().lower()
        parsed = None
        if ctype == "application/json" and raw:
            try:
                parsed = json.loads(raw)
            except ValueError as e:
                self.fail(what, f"content-type is JSON but the body is not: {e}")
                return status, rh, None
        elif raw:
            parsed = raw.decode("utf-8", "replace")

        problems = []
        # A path or method the server does not have at all.
        if status == 405:
            problems.append("405: the server has no such method on this path")
        if (status == 404 and isinstance(parsed, dict)
                and isinstance(parsed.get("error"), dict)
                and parsed["error"].get("code") == "not_found"
                and parsed["error"].get("field") is None):
            problems.append("404 not_found for the path itself: the route does not exist")

        if expect is None and not 200 <= status < 300:
            problems.append(f"expected a 2xx, got {status}: {raw[:300]!r}")
        elif expect == "4xx" and not 400 <= status < 500:
            problems.append(f"expected a 4xx, got {status}")
        elif isinstance(expect, set) and status not in expect:
            problems.append(f"expected {sorted(expect)}, got {status}: {raw[:300]!r}")

        resp, resp_ptr = self.response_for(op, op_ptr, status)
        if resp is None:
            problems.append(f"status {status} is not documented for this operation")
        else:
            content = resp.get("content")
            if content:
                if ctype not in content:
                    problems.append(
                        f"content-type {ctype or '(none)'} not documented (documented: {sorted(content)})")
                else:
                    media = content[ctype]
                    if "schema" in media:
                        sptr = resp_ptr + pointer("content", ctype, "schema")
                        instance = parsed if parsed is not None else ""
                        for err in self.schema_errors(sptr, instance):
                            problems.append(f"body does not match the documented schema: {err}")
            elif raw:
                problems.append(f"no body documented, got {raw[:200]!r}")
            for name, h in (resp.get("headers") or {}).items():
                h, hptr = self.resolve(h, resp_ptr + pointer("headers", name))
                value = rh.get(name.lower())
                if value is None:
                    if h.get("required"):
                        problems.append(f"documented header {name} is missing")
                    continue
                if "schema" in h:
                    for err in self.schema_errors(hptr + "/schema", value):
                        problems.append(f"header {name}: {err}")
        if problems:
            for p in problems:
                self.fail(what, p)
        else:
            self.ok(what)
        return status, rh, parsed

    # -- the live run ------------------------------------------------------

    def operations(self):
        for path, item in self.spec.get("paths", {}).items():
            path_ptr = pointer("paths", path)
            item, path_ptr = self.resolve(item, path_ptr)
            for method in METHODS:
                if method in item:
                    yield path, method, item, item[method], path_ptr, path_ptr + pointer(method)

    def build_url(self, path, params, overrides=None):
        url = path
        query = []
        for p, _ in params:
            value = (overrides or {}).get(p["name"], p.get("example"))
            if p["in"] == "path":
                url = url.replace("{" + p["name"] + "}", urllib.parse.quote(str(value), safe=""))
            elif p["in"] == "query" and p.get("required"):
                query.append((p["name"], str(value)))
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def run_live(self):
        ops = list(self.operations())
        if not ops:
            self.fail("spec", "no paths")
        contexts = []
        for path, method, item, op, path_ptr, op_ptr in ops:
            params = self.parameters(item, op, path_ptr, op_ptr)
            contexts.append({
                "path": path, "method": method, "op": op, "ptr": op_ptr,
                "params": params, "url": self.build_url(path, params),
            })
        by_op_id = {c["op"].get("operationId"): c for c in contexts if c["op"].get("operationId")}
        links = []  # (target context, parameter overrides)
        # Writes first (they create what reads then look at), then reads.
        order = sorted(contexts, key=lambda c: c["method"] in ("get", "head"))
        reads_started = False
        for ctx in order:
            if ctx["method"] in ("get", "head") and not reads_started:
                reads_started = True
                self.follow_links(links, by_op_id)
            self.exercise(ctx, links)
        if not reads_started:
            self.follow_links(links, by_op_id)
        self.check_method_not_allowed()
        self.walk_deliveries(by_op_id)

    def auth_headers(self, ctx):
        return {"Authorization": f"Bearer {self.api_key}"} if self.secured(ctx["op"]) else {}

    def required_headers(self, ctx):
        out = {}
        for p, _ in ctx["params"]:
            if p["in"] == "header" and p.get("required"):
                out[p["name"]] = str(p.get("example", ""))
        return out

    def exercise(self, ctx, links):
        op, op_ptr = ctx["op"], ctx["ptr"]
        documented = {int(k) for k in op.get("responses", {}) if k.isdigit()}
        base = {**self.auth_headers(ctx), **self.required_headers(ctx)}
        body_spec = None
        if "requestBody" in op:
            body_spec, _ = self.resolve(op["requestBody"], op_ptr + "/requestBody")
        json_body = body_spec is not None and "application/json" in body_spec.get("content", {})
        headers = {**base, "Content-Type": "application/json"} if json_body else dict(base)

        # The documented examples.
        examples = []
        if json_body:
            media = body_spec["content"]["application/json"]
            for name, ex in (media.get("examples") or {}).items():
                ex, _ = self.resolve(ex, "")
                examples.append((name, ex.get("value"), ex.get("x-expected-status")))
            if not examples and "example" in media:
                examples.append(("example", media["example"], None))
            if not examples:
                self.fail(f"{ctx['method'].upper()} {ctx['path']}", "request body has no example")
        accepted = []
        if examples:
            for name, value, expected in examples:
                status, rh, parsed = self.call(
                    ctx, f"example {name}", headers, json.dumps(value).encode(),
                    expect=None if expected is None else {int(expected)})
                if status is not None and 200 <= status < 300:
                    accepted.append((name, value, parsed))
                    self.collect_links(ctx, status, parsed, links)
        elif not any(p["in"] == "path" for p, _ in ctx["params"]):
            # (Operations with path parameters get their 2xx through links.)
            status, rh, parsed = self.call(ctx, "documented call", headers)
            if status is not None and 200 <= status < 300:
                self.collect_links(ctx, status, parsed, links)
                # A listing of what the writes produced (the development
                # inbox): wait until it shows every accepted message.
                if isinstance(parsed, dict) and isinstance(parsed.get("count"), int):
                    self.await_listing(ctx, headers, parsed["count"])

        # Authentication.
        if self.secured(op):
            no_auth = {k: v for k, v in headers.items() if k != "Authorization"}
            body = json.dumps(examples[0][1]).encode() if examples else None
            self.call(ctx, "no Authorization", no_auth, body, expect={401})
            self.call(ctx, "wrong API key", {**no_auth, "Authorization": "Bearer wrong-key"},
                      body, expect={401})
            self.call(ctx, "Basic instead of Bearer",
                      {**no_auth, "Authorization": "Basic ZGV2OmRldg=="}, body, expect={401})

        if json_body:
            self.call(ctx, "malformed JSON", headers, b'{"to": ',
                      expect={400} if 400 in documented and not self.required_headers(ctx) else "4xx")
            self.call(ctx, "empty object", headers, b"{}", expect="4xx")
            self.call(ctx, "unknown field", headers, b'{"no_such_field": 1}', expect="4xx")
            if 413 in documented:
                self.call(ctx, "Content-Length over any limit", headers,
                          declared_length=HUGE_LENGTH, expect={413})

        req = self.required_headers(ctx)
        if req:
            without = {k: v for k, v in headers.items() if k not in req}
            body = json.dumps(examples[0][1]).encode() if examples else None
            self.call(ctx, "without the required headers", without, body,
                      expect={400} if 400 in documented else "4xx")

        # Idempotency-Key: replay and reuse.
        names = {p["name"].lower() for p, _ in ctx["params"] if p["in"] == "header"}
        if "idempotency-key" in names and len(examples) >= 2:
            key = f"openapi-check-{uuid.uuid4()}"
            first = json.dumps(examples[0][1]).encode()
            h = {**headers, "Idempotency-Key": key}
            s1, _, b1 = self.call(ctx, "Idempotency-Key, first", h, first)
            if s1 is not None and 200 <= s1 < 300:
                self.collect_links(ctx, s1, b1, links)
            s2, h2, b2 = self.call(ctx, "Idempotency-Key, replay", h, first,
                                   expect={s1} if s1 else None)
            what = f"{ctx['method'].upper()} {ctx['path']} [Idempotency-Key, replay]"
            if s2 is not None and (h2.get("idempotent-replayed") != "true" or b2 != b1):
                self.fail(what, f"replay must repeat the first answer with idempotent-replayed: "
                                f"true; got {h2.get('idempotent-replayed')!r}, {b2!r} vs {b1!r}")
            else:
                self.ok(what + " repeats the first answer")
            other = json.dumps(examples[1][1]).encode()
            s3, _, b3 = self.call(ctx, "Idempotency-Key, other body", h, other, expect={422})
            code = (b3 or {}).get("error", {}).get("code") if isinstance(b3, dict) else None
            if s3 == 422 and code != "idempotency_key_reused":
                self.fail(what, f"reuse with another body: code {code!r}")
            self.call(ctx, "Idempotency-Key too long", {**headers, "Idempotency-Key": "k" * 256},
                      first, expect={422})

        # Path parameters: the documented example (usually unknown: 404).
        if any(p["in"] == "path" for p, _ in ctx["params"]) and ctx["method"] in ("get", "head"):
            self.call(ctx, "path parameter example", headers, expect="4xx")
            self.call(ctx, "path parameter not an id", headers,
                      path=self.build_url(ctx["path"], ctx["params"],
                                          {p["name"]: "not-an-id.." for p, _ in ctx["params"]
                                           if p["in"] == "path"}),
                      expect="4xx")


    def collect_links(self, ctx, status, body, links):
        resp, _ = self.response_for(ctx["op"], ctx["ptr"], status)
        if resp is None:
            return
        for name, link in (resp.get("links") or {}).items():
            params = {}
            for pname, expr in (link.get("parameters") or {}).items():
                if isinstance(expr, str) and expr.startswith("$response.body#"):
                    value = body
                    for part in expr.split("#", 1)[1].split("/")[1:]:
                        value = value.get(part) if isinstance(value, dict) else None
                    params[pname] = value
                else:
                    params[pname] = expr
            if all(v is not None for v in params.values()):
                links.append((link.get("operationId"), params))
                if "id" in params and params["id"] not in self.accepted_ids:
                    self.accepted_ids.append(params["id"])

    def follow_links(self, links, by_op_id, timeout=30.0):
        """Calls each link target until its `status` settles."""
        for op_id, params in links:
            ctx = by_op_id.get(op_id)
            if ctx is None:
                self.fail(f"link to {op_id}", "no operation with this operationId")
                continue
            url = self.build_url(ctx["path"], ctx["params"], params)
            headers = {**self.auth_headers(ctx), **self.required_headers(ctx)}
            deadline = time.monotonic() + timeout
            seen = []
            while True:
                status, _, body = self.call(ctx, f"link {params}", headers, path=url,
                                            expect={200})
                st = body.get("status") if isinstance(body, dict) else None
                if not seen or seen[-1] != st:
                    seen.append(st)
                if st not in SETTLE_STATUSES or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            print(f"info {ctx['method'].upper()} {url}: status {' -> '.join(map(str, seen))}")
            if seen and seen[-1] in SETTLE_STATUSES:
                print(f"warn {url} did not settle within {timeout:.0f}s")

    def await_listing(self, ctx, headers, count, timeout=15.0):
        deadline = time.monotonic() + timeout
        while count < len(self.accepted_ids):
            time.sleep(0.2)
            status, _, body = self.call(ctx, "listing", headers)
            count = body.get("count") if isinstance(body, dict) else None
            if not isinstance(count, int):
                break
            if time.monotonic() > deadline:
                self.fail(f"GET {ctx['path']}",
                          f"{count} entries after {timeout:.0f}s, expected at least "
                          f"{len(self.accepted_ids)} (one per accepted message)")
                break
        if isinstance(count, int):
            print(f"info GET {ctx['path']}: {count} entries")

    # -- 405 ---------------------------------------------------------------

    def check_method_not_allowed(self):
        """Every documented path, called with each method it does not
        document, must answer `#/components/responses/MethodNotAllowed`,
        with `Allow` naming exactly the documented methods (+ HEAD for GET)."""
        name = "MethodNotAllowed"
        resp = self.spec.get("components", {}).get("responses", {}).get(name)
        if resp is None:
            self.fail("405", f"#/components/responses/{name} is not documented")
            return
        resp, resp_ptr = self.resolve(resp, pointer("components", "responses", name))
        for path, item in self.spec.get("paths", {}).items():
            item, _ = self.resolve(item, pointer("paths", path))
            documented = {m.upper() for m in METHODS if m in item}
            if "GET" in documented:
                documented.add("HEAD")
            path_ptr = pointer("paths", path)
            params = []
            for m in METHODS:
                if m in item:
                    params += self.parameters(item, item[m], path_ptr, path_ptr + pointer(m))
            url = self.build_url(path, params)
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                if method in documented:
                    continue
                what = f"{method} {path} [undocumented method]"
                try:
                    status, rh, raw = self.request(method, url)
                except (OSError, http.client.HTTPException) as e:
                    self.fail(what, f"request failed: {e!r}")
                    continue
                what += f" -> {status}"
                problems = []
                if status != 405:
                    problems.append(f"expected 405, got {status}: {raw[:200]!r}")
                ctype = rh.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in resp.get("content", {}):
                    problems.append(f"content-type {ctype or '(none)'} not documented")
                else:
                    try:
                        body = json.loads(raw)
                    except ValueError as e:
                        body = None
                        problems.append(f"body is not JSON: {e}")
                    if body is not None:
                        sptr = resp_ptr + pointer("content", ctype, "schema")
                        problems += [f"body does not match the documented schema: {e}"
                                     for e in self.schema_errors(sptr, body)]
                for hname, h in (resp.get("headers") or {}).items():
                    h, hptr = self.resolve(h, resp_ptr + pointer("headers", hname))
                    value = rh.get(hname.lower())
                    if value is None:
                        if h.get("required"):
                            problems.append(f"documented header {hname} is missing")
                        continue
                    problems += [f"header {hname}: {e}"
                                 for e in self.schema_errors(hptr + "/schema", value)]
                allow = rh.get("allow")
                if allow is not None:
                    allowed = {m.strip() for m in allow.split(",") if m.strip()}
                    if allowed != documented:
                        problems.append(f"Allow: {allow} but the path documents "
                                        f"{','.join(sorted(documented))}")
                if problems:
                    for p in problems:
                        self.fail(what, p)
                else:
                    self.ok(what)

    # -- deliveries --------------------------------------------------------

    def walk_deliveries(self, by_op_id, timeout=30.0):
        """The dead-delivery workflow, live: the listing's query errors and
        pages; then on the first dead delivery: get, retry (200), retry
        while pending again (409), wait until it is dead again, delete
        (204), then get / retry / delete answer 404.

        The server must hold dead deliveries whose endpoint refuses them
        again after a retry (tests/it/openapi.rs makes two, with an events
        endpoint that answers 410, then 503, then 410)."""
        names = ("listDeliveries", "getDelivery", "retryDelivery", "deleteDelivery")
        ctxs = [by_op_id.get(n) for n in names]
        if not any(ctxs):
            return
        if not all(ctxs):
            missing = [n for n, c in zip(names, ctxs) if c is None]
            self.fail("deliveries", f"operations missing: {', '.join(missing)}")
            return
        lst, get, retry, delete = ctxs
        auth = self.auth_headers(lst)

        def listing(label, expect=None, **query):
            url = lst["path"] + ("?" + urllib.parse.urlencode(query) if query else "")
            return self.call(lst, label, auth, path=url, expect=expect)

        def one(ctx, label, did, expect):
            url = self.build_url(ctx["path"], ctx["params"], {"id": did})
            return self.call(ctx, label, auth, path=url, expect=expect)

        def code_is(what, body, code, field=None):
            err = body.get("error") if isinstance(body, dict) else None
            got = (err.get("code"), err.get("field")) if isinstance(err, dict) else None
            if got != (code, field):
                self.fail(what, f"expected error {code!r} (field {field!r}), got {got!r}")
            else:
                self.ok(f"{what}: {code}")

        # The query parameters' documented bounds, and what lies outside.
        limit = next((p["schema"] for p, _ in lst["params"] if p["name"] == "limit"), {})
        lo, hi = limit.get("minimum", 1), limit.get("maximum", 500)
        for query, code, field in (
            ({"state": "gone"}, "invalid_state", "state"),
            ({"state": "delivered"}, "invalid_state", "state"),
            ({"limit": lo - 1}, "invalid_limit", "limit"),
            ({"limit": hi + 1}, "invalid_limit", "limit"),
            ({"limit": "ten"}, "invalid_limit", "limit"),
            ({"cursor": "../../etc"}, "invalid_cursor", "cursor"),
            ({"status": "dead"}, "invalid_parameter", "status"),
        ):
            label = "query " + urllib.parse.urlencode(query)
            status, _, body = listing(label, expect={400}, **query)
            if status == 400:
                code_is(f"GET {lst['path']} [{label}]", body, code, field)

        # Pages of one item each must add up to the one-page listing (dead
        # ones only: pending ones may come and go meanwhile), in id order.
        def order(i):
            msg, _, n = str(i.get("id")).partition(".")
            return msg, int(n) if n.isdigit() else -1

        for state in ("pending", "dead"):
            status, _, full = listing(f"state={state}, limit={hi}", state=state, limit=hi)
            if status != 200:
                continue
            items, cursor, pages = [], None, 0
            while pages <= len(full["items"]):
                query = {"state": state, "limit": lo}
                if cursor:
                    query["cursor"] = cursor
                _, _, page = listing(f"state={state}, page {pages + 1}", **query)
                if not isinstance(page, dict):
                    break
                items += page.get("items", [])
                pages += 1
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            what = f"GET {lst['path']} [state={state} in pages of {lo}]"
            ids = [i.get("id") for i in items]
            keys = [order(i) for i in items]
            if state == "dead" and ids != [i["id"] for i in full["items"]]:
                self.fail(what, f"pages list {ids}, one page {[i['id'] for i in full['items']]}")
            elif keys != sorted(set(keys)):
                self.fail(what, f"not in id order, or repeated: {ids}")
            elif any(i.get("state") != state for i in items):
                self.fail(what, f"an item not {state}: {items}")
            else:
                self.ok(f"{what}: {len(ids)} items in {pages} pages")
        status, _, dead = listing("state=dead", state="dead")
        if status != 200 or not dead.get("items"):
            self.fail(f"GET {lst['path']}?state=dead",
                      "no dead delivery to walk: the server under test must hold one "
                      "(see tests/it/openapi.rs)")
            return
        item = dead["items"][0]
        did = item["id"]
        print(f"info walking dead delivery {did} ({item.get('kind')})")

        status, _, body = one(get, "the dead delivery", did, {200})
        if status == 200 and body != item:
            self.fail(f"GET {get['path']}", f"{body} differs from the listing's {item}")

        status, _, body = one(retry, "the dead delivery", did, {200})
        what = f"POST {retry['path']} [the dead delivery]"
        if status != 200:
            return
        if (body.get("state"), body.get("attempts"), body.get("last_error")) != ("pending", 0, None):
            self.fail(what, f"expected pending with no attempts and no error, got {body}")
        else:
            self.ok(f"{what}: pending again")

        # Pending until tried; once tried and refused again it is dead. A
        # retryable answer in between leaves it pending: retrying is 409.
        deadline = time.monotonic() + timeout
        seen, conflict = [], False
        while True:
            status, _, body = one(get, "after the retry", did, {200})
            if status != 200:
                return
            st = (body.get("state"), body.get("attempts"))
            if not seen or seen[-1] != st:
                seen.append(st)
            if st[0] == "pending" and st[1] >= 1 and not conflict:
                conflict = True
                status, _, b = one(retry, "while pending", did, {409})
                if status == 409:
                    code_is(f"POST {retry['path']} [while pending]", b, "not_dead", "id")
            if st[0] != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        print(f"info {did} after the retry: " + " -> ".join(f"{s} ({n} attempts)" for s, n in seen))
        if seen[-1][0] != "dead":
            self.fail(f"GET {get['path']} [after the retry]",
                      f"expected it to die again within {timeout:.0f}s, saw {seen}")
            return
        if not conflict:
            print(f"warn {did} was not seen pending after an attempt: 409 not exercised")

        status, _, _ = one(delete, "the dead delivery", did, {204})
        if status != 204:
            return
        for ctx, label in ((get, "deleted"), (retry, "deleted"), (delete, "deleted again")):
            status, _, body = one(ctx, label, did, {404})
            if status == 404:
                code_is(f"{ctx['method'].upper()} {ctx['path']} [{label}]", body, "not_found", "id")
        _, _, after = listing("state=dead, after the delete", state="dead", limit=hi)
        if isinstance(after, dict) and did in [i.get("id") for i in after.get("items", [])]:
            self.fail(f"GET {lst['path']}?state=dead", f"{did} still listed after its delete")

    # -- webhooks ----------------------------------------------------------

    def run_webhooks(self, items):
        hooks = self.spec.get("webhooks", {})
        seen = {name: 0 for name in hooks}
        for i, item in enumerate(items):
            body = item.get("body")
            kind = body.get("type") if isinstance(body, dict) else None
            what = f"webhook body #{i} ({kind})"
            if kind not in hooks:
                self.fail(what, f"no webhook documented for type {kind!r}")
                continue
            item_ptr = pointer("webhooks", kind)
            path_item, item_ptr = self.resolve(hooks[kind], item_ptr)
            op = path_item.get("post")
            if op is None:
                self.fail(what, "webhook has no post operation")
                continue
            op_ptr = item_ptr + "/post"
            rb, rb_ptr = self.resolve(op.get("requestBody", {}), op_ptr + "/requestBody")
            problems = [f"body does not match the documented schema: {e}" for e in
                        self.schema_errors(rb_ptr + pointer("content", "application/json",
                                                            "schema"), body)]
            headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
            if item.get("headers") is not None:
                for p, pptr in self.parameters(path_item, op, item_ptr, op_ptr):
                    if p["in"] != "header":
                        continue
                    value = headers.get(p["name"].lower())
                    if value is None:
                        if p.get("required"):
                            problems.append(f"header {p['name']} is missing")
                        continue
                    problems += [f"header {p['name']}: {e}"
                                 for e in self.schema_errors(pptr + "/schema", value)]
            if problems:
                for p in problems:
                    self.fail(what, p)
            else:
                seen[kind] += 1
                self.ok(what)
        for name, n in seen.items():
            if n == 0:
                self.fail(f"webhook {name}", "documented, but no body of this type was checked")
            else:
                print(f"info webhook {name}: {n} bodies valid")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec")
    ap.add_argument("base_url", nargs="?")
    ap.add_argument("api_key", nargs="?")
    ap.add_argument("--webhook-bodies", metavar="FILE")
    ap.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    args = ap.parse_args(argv)
    if bool(args.base_url) != bool(args.api_key):
        ap.error("BASE_URL and API_KEY go together")

    with open(args.spec, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    checker = Checker(spec, args.base_url, args.api_key, verbose=not args.quiet)
    try:
        validate_spec(copy.deepcopy(spec))
        checker.ok(f"{args.spec} is a valid OpenAPI {spec.get('openapi')} document")
    except Exception as e:  # openapi-spec-validator raises several types
        checker.fail(args.spec, f"invalid OpenAPI document: {str(e)[:2000]}")

    if args.base_url:
        checker.run_live()
        print("summary of statuses (documented / observed):")
        for path, method, _, op, _, _ in checker.operations():
            documented = sorted(op.get("responses", {}))
            observed = sorted(checker.observed.get((method.upper(), path), set()))
            unseen = [d for d in documented if d.isdigit() and int(d) not in observed]
            print(f"  {method.upper():6} {path:26} documented {','.join(documented):28} "
                  f"observed {','.join(map(str, observed)):24}"
                  + (f" not exercised {','.join(unseen)}" if unseen else ""))
    if args.webhook_bodies:
        with open(args.webhook_bodies, encoding="utf-8") as f:
            checker.run_webhooks(json.load(f))

    n_fail = len(checker.failures)
    print(f"openapi_check: {checker.checks - n_fail} passed, {n_fail} failed")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
