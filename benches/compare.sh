#!/usr/bin/env bash
# The whole benchmark of docs/BENCHMARKS.md in one go (about 5 minutes):
#
#   1. `--matrix full`: Postern end to end against Postfix's smtp-source ->
#      smtp-sink, pair by pair (C 1/10/50/200 x 2k/20k/1m, 20m at C 1 and
#      10), the 20k C=50 cell again at half its rate, and the sending API
#      (POST /v1/messages) with smtp-sink as the relay;
#   2. RSS with 1000 and 5000 idle SMTP sessions;
#   3. peak RSS for one 20 MB message, three times.
#
# Needs /usr/sbin/smtp-sink and /usr/sbin/smtp-source (`apt-get install
# postfix`; the Postfix daemon itself is not used and need not run).
# Everything listens on 127.0.0.1 only; every run is bounded in messages and
# time (--max-seconds). Output goes to target/load-bench/compare-<time>/
# (or $OUT), one file per run, and a summary at the end.
set -uo pipefail
cd "$(dirname "$0")/.."

for tool in smtp-sink smtp-source; do
    if [ ! -x "/usr/sbin/$tool" ]; then
        echo "/usr/sbin/$tool is missing: apt-get install postfix" >&2
        exit 2
    fi
done

# 5000 idle sessions need ~10000 descriptors (both ends are on this host).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

out=${OUT:-target/load-bench/compare-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
{
    echo "date: $(date -Is)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | grep -q . && echo '(working tree has changes)')"
    echo "nproc: $(nproc)"
    grep -m1 'model name' /proc/cpuinfo
    free -m | sed -n 2p
    echo "kernel: $(uname -r)"
    echo "spool fs: $(findmnt -no SOURCE,FSTYPE,OPTIONS -T target 2>/dev/null)"
    echo "ulimit -n: $(ulimit -n)"
    echo "loadavg: $(cat /proc/loadavg)"
    rustc --version
} | tee "$out/machine.txt"

cargo bench --bench load --no-run >"$out/build.txt" 2>&1 || {
    cat "$out/build.txt"
    exit 1
}

status=0
run() {
    local name=$1
    shift
    echo
    echo "== $name: cargo bench --bench load -- $*"
    if ! cargo bench -q --bench load -- "$@" >"$out/$name.txt" 2>"$out/$name.err"; then
        echo "   (exit status non-zero: see $out/$name.err)"
        status=1
    fi
    grep -v '^{' "$out/$name.txt" | grep -v '^$' | grep -v '^|' | cut -c1-240
}

t0=$(date +%s)
run full --matrix full
run idle-1000 --idle 1000
run idle-5000 --idle 5000
for i in 1 2 3; do
    run "20m-$i" --size 20m --messages 1 --concurrency 1
done

echo
echo "================ summary ($(($(date +%s) - t0)) s) ================"
grep '^|' "$out/full.txt"
grep -E '^(target|total)' "$out/full.txt"
grep -h '^idle:' "$out"/idle-*.txt
grep -h 'peak - start' "$out"/20m-*.txt
echo "(all output in $out)"
exit $status
