#!/usr/bin/env bash
# The whole test suite. Sets up what the tests need besides Rust (a Python
# virtualenv with the Standard Webhooks reference library, used to verify
# our signatures with unchanged third-party code, and aiosmtpd, a real SMTP
# server playing the relay; a throwaway PostgreSQL for the database store
# unless POSTERN_TEST_DATABASE_URL points at one; Playwright's core library
# for the browser test), then runs `cargo test`.
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

# --- Throwaway PostgreSQL -------------------------------------------------
# The tests that need their own cluster (TLS) find the binaries and the
# user through POSTERN_TEST_PG_BINDIR / POSTERN_TEST_PG_USER.
# shellcheck source=tests/pg_cluster.sh
. tests/pg_cluster.sh
if [ -z "${POSTERN_TEST_DATABASE_URL:-}" ] && PG_BIN="$(pg_bindir)" && [ -n "$PG_BIN" ]; then
  export POSTERN_TEST_PG_BINDIR="$PG_BIN"
  if [ "$(id -u)" = 0 ]; then export POSTERN_TEST_PG_USER=postgres; fi
  trap stop_pg EXIT
  start_pg "$PWD/target/pg-test" || exit 1
  export POSTERN_TEST_DATABASE_URL="$PG_URL"
fi

# --- The browser test's driver ---------------------------------------------
# tests/it/console.rs drives headless Chromium (/usr/bin/chromium, Debian's
# package; .ci/run installs it) with Playwright's core library, installed
# here into target/browser at the version tests/browser/package.json names
# (no lockfile, so no registry address is written into the repository).
PW_VERSION="$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' tests/browser/package.json)"
PW_DIR="$PWD/target/browser"
if command -v npm >/dev/null 2>&1 \
  && ! grep -qs "\"version\": \"$PW_VERSION\"" "$PW_DIR/node_modules/playwright-core/package.json"; then
  mkdir -p "$PW_DIR"
  npm install --prefix "$PW_DIR" --no-save --no-package-lock --no-audit --no-fund \
    "playwright-core@$PW_VERSION" >/dev/null || echo "warning: playwright-core not installed; the browser test will say so" >&2
fi

# Not `exec`: the trap above must stop the server when the tests end.
cargo test --locked "$@"
