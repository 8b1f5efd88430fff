"""Inclusive share of one stage in a call-graph profile, and what it calls.

    perf script -i target/load-bench/profile-*/perf.data | python3 benches/stages.py STAGE [DEPTH]

STAGE is a substring of a function name (e.g. `webhook::build`,
`archive_sync`, `lettre`). Prints the share of all samples whose stack
holds STAGE, then those samples split by the DEPTH frames STAGE calls
(0: none). Needs a profile with call graphs (`PERF_CG="--call-graph
dwarf,16384" benches/profile.sh perf ...`, see docs/BENCHMARKS.md).
"""
import collections
import re
import sys


def stacks(lines):
    """Yields each sample's stack (leaf first) from `perf script` output."""
    stack = []
    for line in lines:
        if not line.strip():
            if stack:
                yield stack
            stack = []
        elif line.startswith((" ", "\t")):
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                name = parts[1].rsplit(" (", 1)[0]
                # Offsets and generic arguments would split one function.
                name = re.sub(r"\+0x[0-9a-f]+$", "", name)
                stack.append(re.sub(r"<.*?>", "<>", name)[:110])
        else:
            # A sample's first line (comm, pid, time, event).
            if stack:
                yield stack
            stack = []
    if stack:
        yield stack


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    stage = sys.argv[1]
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    total = hit = 0
    callees = collections.Counter()
    for names in stacks(sys.stdin):
        total += 1
        for i, name in enumerate(names):
            if stage in name:
                hit += 1
                below = names[max(0, i - depth) : i]
                callees[" <- ".join(reversed(below)) if below else "(self)"] += 1
                break
    print(f"total {total}, with {stage}: {hit} ({100 * hit / max(total, 1):.1f}%)")
    for name, n in callees.most_common(40):
        print(f"{100 * n / max(total, 1):6.2f}%  {name}")


if __name__ == "__main__":
    main()
