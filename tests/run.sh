#!/usr/bin/env bash
# The whole test suite. Sets up what the tests need besides Rust (a Python
# virtualenv with the Standard Webhooks reference library, used to verify
# our signatures with unchanged third-party code), then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${POSTERN_TEST_VENV:-$PWD/target/test-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import standardwebhooks' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
export POSTERN_TEST_PYTHON="$VENV/bin/python"
cargo test --locked "$@"
