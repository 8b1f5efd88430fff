#!/usr/bin/env bash
# The whole test suite. Sets up what the tests need besides Rust (a Python
# virtualenv with the Standard Webhooks reference library, used to verify
# our signatures with unchanged third-party code, and aiosmtpd, a real SMTP
# server playing the relay), then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${POSTERN_TEST_VENV:-$PWD/target/test-venv}"
MARKER="$VENV/.requirements"
if [ ! -x "$VENV/bin/python" ] || ! cmp -s tests/requirements.txt "$MARKER"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$MARKER"
fi
export POSTERN_TEST_PYTHON="$VENV/bin/python"
cargo test --locked "$@"
