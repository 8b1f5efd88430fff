"""Schemathesis hooks for the run in tests/it/openapi.rs.

`POST /v1/messages` checks more than a JSON Schema can say: that an
address is an address, a header name allowed, an `Idempotency-Key` not
reused with another body. Those answers are `422` with a code that names
the rule, so the built-in positive_data_acceptance check is told (in
config.toml) that a `422` is a possible answer there. This check puts the
strictness back: a request generated as schema-valid must never be refused
for its *shape* — the rules docs/openapi.yaml does encode (which fields go
together, which are required, base64 syntax, the key's characters). Such a
refusal means spec and server disagree.
"""

import schemathesis
from schemathesis.generation.meta import REQUEST_SHAPE_PROBES, coverage_scenario

# 422 codes for rules the schema encodes (see SendRequest, Base64 and the
# IdempotencyKey parameter in docs/openapi.yaml).
SHAPE_CODES = frozenset({
    "invalid_field",
    "missing_field",
    "no_recipients",
    "missing_body",
    "conflicting_fields",
    "invalid_base64",
    "invalid_idempotency_key",
})


@schemathesis.check
def shape_rules_are_in_the_schema(ctx, response, case):
    """A schema-valid request is never refused for a rule the schema encodes."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    # Coverage probes that break the request on purpose (no Content-Type,
    # an undocumented method) are not schema-valid requests.
    if coverage_scenario(case) in REQUEST_SHAPE_PROBES:
        return None
    if response.status_code != 422:
        return None
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return None
    code = error.get("code")
    if code in SHAPE_CODES:
        raise AssertionError(
            f"a schema-valid request was refused with 422 {code} (field "
            f"{error.get('field')!r}): {error.get('message')}. The schema in "
            f"docs/openapi.yaml does not encode this rule, or the server "
            f"enforces one the schema does not have."
        )
    return None
