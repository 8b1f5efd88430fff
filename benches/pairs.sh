#!/usr/bin/env bash
# Before/after pairs for the rows of issue 15 (docs/BENCHMARKS.md, "Speed
# to the limit"): each row is run for an older `postern` binary (BEFORE),
# for this tree's, and for smtp-source -> smtp-sink, back to back, so that
# the ratios of one row come from the same minute of a noisy machine.
#
#   benches/pairs.sh /path/to/old/postern [ROUNDS]
#
# Build the old binary from an older commit, e.g.
#   git worktree add /tmp/old 62d4c33 && (cd /tmp/old && cargo build --release)
#   benches/pairs.sh /tmp/old/target/release/postern 2
#
# Rows: 20 KB at C = 50 with reused connections and with a new connection
# per message; the latency at a fixed rate (RATE, default 1000/s); one
# 20 MB message; ten 20 MB messages at C = 10; 1000 idle sessions; the
# sending API at 20 KB, C = 50. Everything is on 127.0.0.1 and bounded
# (--messages, --max-seconds). Output: target/load-bench/pairs-<time>/.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ ! -x "$1" ]; then
    sed -n '2,17p' "$0"
    exit 2
fi
before=$(realpath "$1")
rounds=${2:-2}
rate=${RATE:-1000}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
out=${OUT:-target/load-bench/pairs-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
wrap="$out/before.sh"
printf '#!/bin/sh\nshift\nexec %s "$@"\n' "$before" >"$wrap"
chmod +x "$wrap"
cargo bench --bench load --no-run >"$out/build.txt" 2>&1 || {
    cat "$out/build.txt"
    exit 1
}
echo "after: $(git rev-parse --short HEAD); before: $before; $(nproc) CPUs; loadavg $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/machine.txt"

run() {
    local name=$1
    shift
    cargo bench -q --bench load -- "$@" >"$out/$name.txt" 2>"$out/$name.err" || echo "   ($name: non-zero exit, see $out/$name.err)"
    grep -v '^{' "$out/$name.txt" | grep -v '^$' | cut -c1-300 | sed "s/^/$name: /"
}

pair() {
    local row=$1
    shift
    for r in $(seq 1 "$rounds"); do
        run "$row-$r-after" "$@"
        run "$row-$r-before" --server-wrap "$wrap" "$@"
        case "$row" in
        reused | newconn | api) ;;
        *) continue ;;
        esac
        local sink=(--sink)
        [ "$row" = newconn ] && sink+=(--new-connection)
        run "$row-$r-sink" "${sink[@]}" --size 20k --concurrency 50 --messages 6000
    done
}

pair reused --size 20k --concurrency 50 --messages 6000
pair newconn --size 20k --concurrency 50 --messages 6000 --new-connection
pair rate --size 20k --concurrency 50 --messages 6000 --rate "$rate"
pair 20m --size 20m --concurrency 1 --messages 1
pair 10x20m --size 20m --concurrency 10 --messages 10
pair idle --idle 1000
pair api --outbound --size 20k --concurrency 50 --messages 4000
echo "(all output in $out)"
