#!/usr/bin/env bash
# The shared store's cost (#12): 20 KB messages at C = 50, end to end, on the
# file spool, on a throwaway PostgreSQL on this machine (one replica, then
# two on the same database), and smtp-source -> smtp-sink when Postfix's
# tools are installed. Each round runs all four back to back (odd rounds in
# that order, even rounds the stores in reverse), so the ratios
# PG / file and 2 replicas / 1 replica are taken within one round; the
# summary gives every round and the medians. For the database runs it also
# reports commits (pg_stat_database.xact_commit) and WAL bytes per message.
#
# Usage: benches/store.sh [N [ROUNDS [load-tool options...]]]
#   N       messages per run (default 3000)
#   ROUNDS  rounds (default 3)
#   the rest goes to every Postern run, e.g. --env POSTERN_DATABASE_POOL=20
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-3000}"
ROUNDS="${2:-3}"
shift $(($# > 2 ? 2 : $#))
ARGS=(--size 20k --concurrency 50 --messages "$N" --max-seconds 90)
# shellcheck source=tests/pg_cluster.sh
. tests/pg_cluster.sh
PG_BIN="$(pg_bindir)" || { echo "no initdb/pg_ctl found" >&2; exit 1; }
trap stop_pg EXIT
start_pg "$PWD/target/store-bench"
OUT="$PWD/target/store-bench/out.$$"
mkdir -p "$OUT"
cargo bench --quiet --bench load --no-run

psql_q() { "$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$PG_PORT" -U postern -d postgres -c "$1"; }
# run NAME ARGS...: one load run; its JSON line goes to $OUT/NAME.json.
run() {
  local name="$1"
  shift
  echo "== $name" >&2
  cargo bench --quiet --bench load -- "${ARGS[@]}" "$@" | tee "$OUT/$name.txt" >&2 || true
  grep '^{' "$OUT/$name.txt" | tail -n 1 >"$OUT/$name.json" || true
}
# pgrun NAME DB ARGS...: a run on a fresh database DB, with its commits and
# the cluster's WAL written during the run in $OUT/NAME.pg.
pgrun() {
  local name="$1" db="$2"
  shift 2
  psql_q "CREATE DATABASE $db" >&2
  local wal0
  wal0="$(psql_q "SELECT pg_current_wal_lsn()")"
  run "$name" --database-url "postgres://postern@127.0.0.1:$PG_PORT/$db" "$@"
  psql_q "SELECT xact_commit, pg_current_wal_lsn() - '$wal0'::pg_lsn FROM pg_stat_database WHERE datname = '$db'" >"$OUT/$name.pg"
  psql_q "DROP DATABASE $db WITH (FORCE)" >&2 || true
}
# The machine slows down over a run (ext4 churn from the file spool's
# per-message files, checkpoints), so even rounds run in reverse order: no
# store always runs first.
for r in $(seq 1 "$ROUNDS"); do
  order=(file pg1 pg2)
  if [ $((r % 2)) = 0 ]; then order=(pg2 pg1 file); fi
  for what in "${order[@]}"; do
    case "$what" in
      file) run "file.$r" "$@" ;;
      pg1) pgrun "pg1.$r" "bench1_$r" "$@" ;;
      pg2) pgrun "pg2.$r" "bench2_$r" --replicas 2 "$@" ;;
    esac
  done
  if [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; then
    run "sink.$r" --sink
  fi
done

python3 - "$OUT" "$ROUNDS" "$N" <<'PY'
import json, os, statistics, sys
out, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    try:
        j = json.load(open(os.path.join(out, name + ".json")))
    except (OSError, ValueError):
        return None
    return j
def rate(name):
    j = load(name)
    if not j or not j.get("ok"):
        return None
    return j.get("e2e_msgs_per_s", j.get("msgs_per_s"))
def pg(name):
    try:
        commits, wal = open(os.path.join(out, name + ".pg")).read().split("|")
        return int(commits) / n, int(float(wal)) / n / 1024
    except (OSError, ValueError):
        return None, None
def f(x, d=0):
    return "-" if x is None else f"{x:.{d}f}"
def ratio(a, b):
    return None if not a or not b else a / b
print("\n| round | file msg/s | PG 1 replica | PG 2 replicas | smtp-sink | PG / file | 2 replicas / 1 | file / sink | PG commits/msg | PG WAL KB/msg |")
print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
cols = {k: [] for k in ("pf", "r2", "fs")}
for r in range(1, rounds + 1):
    fi, p1, p2, si = (rate(f"{k}.{r}") for k in ("file", "pg1", "pg2", "sink"))
    pf, r2, fs = ratio(p1, fi), ratio(p2, p1), ratio(fi, si)
    for k, v in (("pf", pf), ("r2", r2), ("fs", fs)):
        if v is not None:
            cols[k].append(v)
    c, w = pg(f"pg1.{r}")
    print(f"| {r} | {f(fi)} | {f(p1)} | {f(p2)} | {f(si)} | {f(pf, 2)} | {f(r2, 2)} | {f(fs, 3)} | {f(c, 1)} | {f(w, 1)} |")
med = {k: (statistics.median(v) if v else None) for k, v in cols.items()}
print(f"\nmedians over {rounds} rounds: PG / file {f(med['pf'], 2)} (target >= 0.5); "
      f"2 replicas / 1 replica {f(med['r2'], 2)} (target >= 1.0); file / sink {f(med['fs'], 3)}")
print("a '-' is a run that did not complete (see its .txt)")
PY
echo "output in $OUT" >&2
