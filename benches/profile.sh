#!/usr/bin/env bash
# Profiles the server during one load run, the way docs/BENCHMARKS.md did:
#
#   benches/profile.sh perf   SECONDS [load options]   # perf record, cpu-clock
#   benches/profile.sh strace SECONDS [load options]   # strace -c -f (counts)
#   benches/profile.sh files  SECONDS [load options]   # strace: file syscalls
#
# e.g. benches/profile.sh perf 2 --size 20k --concurrency 50 --messages 12000
#      benches/profile.sh files 2 --outbound --concurrency 50 --messages 3000
#
# It starts the load tool, waits for the server's pid ("postern pid N" on
# its stderr), attaches to that pid only, detaches after SECONDS (pick N so
# that the run lasts longer), and waits for the run to finish. perf uses the
# software cpu-clock event because this VM exposes no hardware counters
# (`perf stat -e instructions true` says <not supported>); user-space
# instruction counts come from `--server-wrap "valgrind --tool=callgrind"`
# instead (see docs/BENCHMARKS.md). PERF_CG="--call-graph dwarf,16384"
# records call graphs that unwind (the binary has no frame pointers), for
# benches/stages.py. Output: target/load-bench/profile-<time>/.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ]; then
    sed -n '2,18p' "$0"
    exit 2
fi
mode=$1 secs=$2
shift 2
out=${OUT:-target/load-bench/profile-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
cargo bench --bench load --no-run >/dev/null 2>&1 || exit 1
cargo bench -q --bench load -- "$@" >"$out/load.txt" 2>"$out/load.err" &
bench=$!
pid=
for _ in $(seq 300); do
    pid=$(grep -o 'postern pid [0-9]*' "$out/load.err" 2>/dev/null | awk '{print $3}' | head -1)
    [ -n "$pid" ] && break
    sleep 0.1
done
if [ -z "$pid" ]; then
    echo "no server pid seen" >&2
    wait $bench
    exit 1
fi
sleep 0.3
case $mode in
perf)
    timeout 60 perf record -F 999 -e cpu-clock ${PERF_CG:--g} -p "$pid" -o "$out/perf.data" -- sleep "$secs" 2>"$out/perf.err"
    ;;
strace)
    timeout -s INT "$secs" strace -c -f -p "$pid" -o "$out/strace.txt" 2>/dev/null
    ;;
files)
    timeout -s INT "$secs" strace -f -p "$pid" -e trace=openat,rename,unlink,fsync \
        -o "$out/strace-files.txt" 2>/dev/null
    ;;
*)
    echo "mode: perf | strace | files" >&2
    ;;
esac
wait $bench
grep -E '^(load|outbound)' "$out/load.txt" | cut -c1-240
case $mode in
perf)
    perf report -i "$out/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
        grep '%' | head -30
    echo "-- by caller (inclusive):"
    perf report -i "$out/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
        grep '%' | grep -v '\[k\]' | head -30
    ;;
strace) head -25 "$out/strace.txt" ;;
files)
    # One line per call (the "resumed" halves dropped), ids and fds elided.
    grep -v 'resumed>' "$out/strace-files.txt" |
        sed -E 's/^[0-9]+ +//; s/ <unfinished \.\.\.>$//; s/[0-9a-f]{32}/ID/g;
                s/\(([0-9]+)/(FD/; s#[^" ]*/spool/#SPOOL/#g;
                s/\) += -1 (E[A-Z]+).*/ -> \1/; s/\) += [0-9]+$//; s/\)$//' |
        sort | uniq -c | sort -rn | head -20
    ;;
esac
echo "(output in $out)"
