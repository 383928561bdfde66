#!/bin/sh
# Side-by-side benchmark: dalle2 against PyTorch on the same machine, threads
# and shapes, in the same run.
#
#   bench/side_by_side.sh [THREADS [RUNS [MODULES]]]
#   bench/side_by_side.sh 2 3 text,prior,decoder,superres     # the defaults
#
# For each module in turn it runs `dalle2 bench --json` and then
# bench/torch_side_by_side.py (Debian's PyTorch, run with /usr/bin/python3:
# apt-get install python3-torch libopenblas0-openmp), each building the
# full-size Karlo module with random weights, one warm-up and RUNS timed
# forwards, and prints a markdown table of the medians and the dalle2/PyTorch
# time ratio (< 1: dalle2 is faster). Raw JSON lines are kept in $OUT
# (default: a new temporary folder).
# Environment: GO (default go), PYTHON (default /usr/bin/python3), OUT.
set -eu

THREADS=${1:-2}
RUNS=${2:-3}
MODULES=${3:-text,prior,decoder,superres}
GO=${GO:-go}
PYTHON=${PYTHON:-/usr/bin/python3}

cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/dalle2-side-by-side.XXXXXX)}
mkdir -p "$OUT"
"$GO" build -o "$OUT/dalle2" .

# Debian's torch calls whichever libblas.so.3 the alternatives system picks;
# with only the netlib reference BLAS installed its matrix products run about
# ten times slower. Install libopenblas0-openmp (OpenMP: it follows
# torch.set_num_threads) for a fair comparison.
BLAS=$("$PYTHON" -c '
import os, torch
for line in open("/proc/self/maps"):
    p = line.split()[-1]
    if "libblas" in p or "openblas" in p or "libmkl" in p or "blis" in p:
        print(os.path.realpath(p)); break
else:
    print("none loaded")')
case "$BLAS" in
*openblas* | *mkl* | *blis*) ;;
*) echo "side_by_side: WARNING: torch uses $BLAS (reference BLAS?); apt-get install libopenblas0-openmp" >&2 ;;
esac
: >"$OUT/dalle2.jsonl"
: >"$OUT/torch.jsonl"
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "dalle2: $("$OUT/dalle2" --version | tr -s ' ' | paste -sd ';' -)"
	echo "torch: $("$PYTHON" -c 'import torch; print(torch.__version__)')"
	echo "torch BLAS: $BLAS"
	echo "threads: $THREADS, runs: $RUNS (median after 1 warm-up)"
} >"$OUT/machine.txt"

for m in $(echo "$MODULES" | tr ',' ' '); do
	echo "side_by_side: $m: dalle2..." >&2
	"$OUT/dalle2" bench --threads "$THREADS" --runs "$RUNS" --module "$m" --json -q >>"$OUT/dalle2.jsonl"
	echo "side_by_side: $m: PyTorch..." >&2
	OMP_NUM_THREADS="$THREADS" "$PYTHON" bench/torch_side_by_side.py --threads "$THREADS" --runs "$RUNS" \
		--module "$m" --json >>"$OUT/torch.jsonl"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys

out = sys.argv[1]
def load(name):
    with open(os.path.join(out, name)) as f:
        return {r["module"]: r for r in map(json.loads, filter(str.strip, f))}

d, t = load("dalle2.jsonl"), load("torch.jsonl")
with open(os.path.join(out, "machine.txt")) as f:
    for line in f:
        print("    " + line.rstrip())
print()
print("| module | params | GFLOP/fwd | dalle2 s/fwd | PyTorch s/fwd | **dalle2/PyTorch** | dalle2 GFLOP/s | PyTorch GFLOP/s | dalle2 % peak | PyTorch % peak |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in d:
    a, b = d[m], t.get(m)
    if b is None:
        continue
    peak = a.get("peak_gflops") or float("nan")
    note = ""
    if a["params"] != b["params"] or abs(a["flops"] - b["flops"]) > 1e-9 * a["flops"]:
        note = f" (MISMATCH: PyTorch {b['params']:,} params, {b['flops'] / 1e9:.1f} GFLOP)"
    print(f"| {m} | {a['params']:,}{note} | {a['flops'] / 1e9:.1f} | {a['seconds']:.3f} | {b['seconds']:.3f} | "
          f"**{a['seconds'] / b['seconds']:.2f}** | {a['gflops']:.1f} | {b['gflops']:.1f} | "
          f"{100 * a['gflops'] / peak:.0f}% | {100 * b['gflops'] / peak:.0f}% |")
print()
print(f"FMA peak (dalle2 bench, {next(iter(d.values()))['threads']} threads): "
      + ", ".join(f"{m} run {r['peak_gflops']:.1f}" for m, r in d.items()) + " GFLOP/s")
print(f"raw results: {out}/dalle2.jsonl, {out}/torch.jsonl")
EOF
