#!/usr/bin/env bash
# The shared store's cost (#12): 20 KB messages at C = 50, end to end, on the
# file spool, on a throwaway PostgreSQL on this machine (one replica, then
# two on the same database), and smtp-source -> smtp-sink when Postfix's
# tools are installed. One table with the rates and the ratios PG / file
# and 2 replicas / 1 replica. Usage: benches/store.sh [N] (default 3000).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-3000}"
ARGS=(--size 20k --concurrency 50 --messages "$N" --max-seconds 60)
# shellcheck source=tests/pg_cluster.sh
. tests/pg_cluster.sh
PG_BIN="$(pg_bindir)" || { echo "no initdb/pg_ctl found" >&2; exit 1; }
trap stop_pg EXIT
start_pg "$PWD/target/store-bench"
OUT="$PWD/target/store-bench/out.$$"
mkdir -p "$OUT"
cargo bench --quiet --bench load --no-run

# run NAME ARGS...: one load run; its JSON line goes to $OUT/NAME.json.
run() {
  local name="$1"
  shift
  echo "== $name" >&2
  cargo bench --quiet --bench load -- "${ARGS[@]}" "$@" | tee "$OUT/$name.txt" >&2 || true
  grep '^{' "$OUT/$name.txt" | tail -n 1 >"$OUT/$name.json" || true
}
# A fresh database per PostgreSQL run: nothing left over from the one before.
db() {
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postern -d postgres -c "CREATE DATABASE $1" >&2
  echo "postgres://postern@127.0.0.1:$PG_PORT/$1"
}
run file
run pg1 --database-url "$(db bench1)"
run pg2 --database-url "$(db bench2)" --replicas 2
if [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; then
  run sink --sink
fi

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def rate(name):
    try:
        j = json.load(open(os.path.join(out, name + ".json")))
    except (OSError, ValueError):
        return None, False
    r = j.get("e2e_msgs_per_s", j.get("msgs_per_s"))
    return r, bool(j.get("ok"))
rows = [("file spool, 1 process", "file"), ("PostgreSQL, 1 replica", "pg1"),
        ("PostgreSQL, 2 replicas", "pg2"), ("smtp-source -> smtp-sink", "sink")]
print("\n| store (20k, C = 50) | end-to-end msg/s | ok |\n|---|--:|---|")
got = {}
for label, name in rows:
    r, ok = rate(name)
    got[name] = r
    print(f"| {label} | {'-' if r is None else f'{r:.0f}'} | {'yes' if ok else ('-' if r is None else 'NO')} |")
def ratio(a, b):
    return "-" if not got.get(a) or not got.get(b) else f"{got[a] / got[b]:.2f}"
print(f"\nPG / file: {ratio('pg1', 'file')} (target >= 0.5); "
      f"2 replicas / 1 replica: {ratio('pg2', 'pg1')} (target >= 1.0)")
PY
echo "output in $OUT" >&2
