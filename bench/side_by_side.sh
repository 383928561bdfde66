#!/bin/sh
# Side-by-side benchmark: dalle2 against PyTorch on the same machine, threads
# and shapes, in the same run.
#
#   bench/side_by_side.sh [THREADS [RUNS [MODULES]]]
#   bench/side_by_side.sh 2 3 text,prior,decoder,superres     # the defaults
#   DTYPES=f32,f16,q8 bench/side_by_side.sh 2 3                # dalle2 in three storage types
#
# For each module in turn it runs `dalle2 bench --json --dtype $DTYPES` (each
# dtype one after the other, same random weights) and then
# bench/torch_side_by_side.py (PyTorch f32; Debian's PyTorch, run with
# /usr/bin/python3: apt-get install python3-torch libopenblas0-openmp), each
# building the full-size Karlo module with random weights, one warm-up and
# RUNS timed forwards, and prints a markdown table of the medians, one row
# per module and dalle2 dtype: the dalle2/PyTorch time ratio (< 1: dalle2 is
# faster) and, when DTYPES has more than f32, the time ratio to dalle2's f32
# run (f16/f32, q8/f32) and the relative L2 error of the output against the
# f32 output (dalle2 bench --compare; if f32 is not in DTYPES, dalle2 builds
# and runs the f32 module once more, untimed, for it). Raw JSON lines are kept
# in $OUT (default: a new temporary folder).
# Environment: DTYPES (default f32), GO (default go), PYTHON (default
# /usr/bin/python3), OUT.
set -eu

THREADS=${1:-2}
RUNS=${2:-3}
MODULES=${3:-text,prior,decoder,superres}
DTYPES=${DTYPES:-f32}
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
	echo "threads: $THREADS, runs: $RUNS (median after 1 warm-up), dalle2 weight dtypes: $DTYPES"
} >"$OUT/machine.txt"

COMPARE=
if [ "$DTYPES" != f32 ]; then
	COMPARE=--compare
fi
for m in $(echo "$MODULES" | tr ',' ' '); do
	echo "side_by_side: $m: dalle2 ($DTYPES)..." >&2
	"$OUT/dalle2" bench --threads "$THREADS" --runs "$RUNS" --module "$m" --dtype "$DTYPES" $COMPARE --json -q \
		>>"$OUT/dalle2.jsonl"
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
        return [json.loads(l) for l in f if l.strip()]

d = load("dalle2.jsonl")  # one line per module and dtype
t = {r["module"]: r for r in load("torch.jsonl")}
f32 = {r["module"]: r for r in d if r["dtype"] == "f32"}
multi = len({r["dtype"] for r in d}) > 1 or any("rel_l2" in r for r in d)
with open(os.path.join(out, "machine.txt")) as f:
    for line in f:
        print("    " + line.rstrip())
print()
head = "| module | dtype | params | weights GB | GFLOP/fwd | dalle2 s/fwd | PyTorch f32 s/fwd | **dalle2/PyTorch** |"
rule = "|---|---|---:|---:|---:|---:|---:|---:|"
if multi:
    head += " dalle2 dtype/f32 time | rel L2 vs f32 |"
    rule += "---:|---:|"
head += " dalle2 GFLOP/s | PyTorch GFLOP/s | dalle2 % peak | PyTorch % peak |"
rule += "---:|---:|---:|---:|"
print(head)
print(rule)
nan = float("nan")
for a in d:
    m = a["module"]
    b = t.get(m)
    if b is None:
        continue
    peak = a.get("peak_gflops") or nan
    note = ""
    if a["params"] != b["params"] or abs(a["flops"] - b["flops"]) > 1e-9 * a["flops"]:
        note = f" (MISMATCH: PyTorch {b['params']:,} params, {b['flops'] / 1e9:.1f} GFLOP)"
    row = (f"| {m} | {a['dtype']} | {a['params']:,}{note} | {a.get('weight_bytes', 0) / 1e9:.3f} | "
           f"{a['flops'] / 1e9:.1f} | {a['seconds']:.3f} | {b['seconds']:.3f} | **{a['seconds'] / b['seconds']:.2f}** |")
    if multi:
        ref = f32.get(m)
        ratio = f"{a['seconds'] / ref['seconds']:.2f}" if ref else "-"
        rel = f"{a['rel_l2']:.2e}" if "rel_l2" in a else "-"
        row += f" {ratio} | {rel} |"
    row += (f" {a['gflops']:.1f} | {b['gflops']:.1f} | {100 * a['gflops'] / peak:.0f}% | "
            f"{100 * b['gflops'] / peak:.0f}% |")
    print(row)
print()
print(f"FMA peak (dalle2 bench, {d[0]['threads']} threads): "
      + ", ".join(f"{m} run {g:.1f}" for m, g in {r["module"]: r["peak_gflops"] for r in d}.items()) + " GFLOP/s")
print("dalle2/PyTorch: dalle2 seconds per forward (weights stored in that dtype; fp32 compute, except Q8_0 weights where the")
print("CPU has AVX-512 VNNI: int16 x int8, see dalle2 --version) over PyTorch's f32 seconds.")
if multi:
    print("dalle2 dtype/f32 time: that dtype's seconds over dalle2's f32 seconds (same run, same weights before storage);")
    print("rel L2 vs f32: ||y - y_f32|| / ||y_f32|| of the module output, same weights and inputs.")
print(f"raw results: {out}/dalle2.jsonl, {out}/torch.jsonl")
EOF
