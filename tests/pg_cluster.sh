# shellcheck shell=bash
# A throwaway PostgreSQL cluster, sourced by tests/run.sh and
# benches/store.sh: a fresh cluster per run under target/ (never reused: a
# half-migrated database from an earlier run would hide bugs), on a free
# loopback port, trust auth for the `postern` role (loopback only,
# throwaway data). initdb refuses to run as root, so as root the server
# runs as `postgres`.
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
# start_pg PARENT: a cluster in a new directory under PARENT (stopped and
# removed by stop_pg, which the caller traps). Sets PG_DIR, PG_PORT and
# PG_URL. Needs PG_BIN.
start_pg() {
  mkdir -p "$1"
  PG_DIR="$(mktemp -d "$1/run.XXXXXX")"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; fi
  PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postern -A trust -E UTF8 --no-instructions \
    >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  # -w waits until the server accepts connections (or fails after 60 s).
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DIR -c max_connections=200" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
  PG_URL="postgres://postern@127.0.0.1:$PG_PORT/postgres"
}
