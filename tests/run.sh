#!/usr/bin/env bash
# The whole test suite. Sets up what the tests need besides Rust (a Python
# virtualenv with the Standard Webhooks reference library, used to verify
# our signatures with unchanged third-party code, and aiosmtpd, a real SMTP
# server playing the relay; a throwaway PostgreSQL for the database store
# unless POSTERN_TEST_DATABASE_URL points at one), then runs `cargo test`.
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
# A fresh cluster per run under target/ (never reused: a half-migrated
# database from an earlier run would hide bugs), on a free loopback port,
# trust auth for the `postern` role (loopback only, throwaway data). initdb
# refuses to run as root, so as root the server runs as `postgres`.
# The tests that need their own cluster (TLS) find the binaries and the
# user through POSTERN_TEST_PG_BINDIR / POSTERN_TEST_PG_USER.
pg_bindir() {
  local d
  for d in "${POSTERN_TEST_PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)" \
      /usr/lib/postgresql/*/bin; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(readlink -f "$(command -v initdb)")"
}
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
PG_DIR=""
stop_pg() {
  if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -n "$PG_DIR" ]; then rm -rf "$PG_DIR"; fi
}
if [ -z "${POSTERN_TEST_DATABASE_URL:-}" ] && PG_BIN="$(pg_bindir)" && [ -n "$PG_BIN" ]; then
  export POSTERN_TEST_PG_BINDIR="$PG_BIN"
  if [ "$(id -u)" = 0 ]; then export POSTERN_TEST_PG_USER=postgres; fi
  mkdir -p target/pg-test
  PG_DIR="$(mktemp -d "$PWD/target/pg-test/run.XXXXXX")"
  trap stop_pg EXIT
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; fi
  PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postern -A trust -E UTF8 --no-instructions \
    >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  # -w waits until the server accepts connections (or fails after 60 s).
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DIR -c max_connections=200" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
  export POSTERN_TEST_DATABASE_URL="postgres://postern@127.0.0.1:$PG_PORT/postgres"
fi

# Not `exec`: the trap above must stop the server when the tests end.
cargo test --locked "$@"
