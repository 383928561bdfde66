#!/usr/bin/python3
"""PyTorch half of the dalle2 side-by-side benchmark.

Builds each full-size Karlo module of bench/torch_modules.py (own torch.nn
definitions, random weights, the spec §12 configs and the shapes of
bench/karlo.go), sets torch.set_num_threads(N), runs one warm-up forward (with
FLOP-counting hooks) and R timed forwards, and prints per module the median
seconds and GFLOP/s, as a table or, with --json, one JSON object per line with
the fields of `dalle2 bench --json` (module, dtype, threads, seconds, gflops,
...).

Use Debian's PyTorch with an optimised BLAS (apt-get install python3-torch
libopenblas0-openmp; with only the netlib reference BLAS, torch's matrix
products are about ten times slower):
    /usr/bin/python3 bench/torch_side_by_side.py --threads 2
"""

import argparse
import gc
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_modules as tm  # noqa: E402

MODULES = ["text", "prior", "decoder", "superres"]


def capability():
    """The "CPU capability usage" line of torch's build configuration."""
    for line in torch.__config__.show().splitlines():
        if "CPU capability" in line:
            return line.strip().lstrip("- ")
    return "CPU capability unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", default="all", help="comma-separated list of text, prior, decoder, superres, or all")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--runs", type=int, default=3, help="timed forwards after one warm-up (default 3)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--count", action="store_true",
                    help="only count parameters and FLOPs (meta tensors: no weights, no timing)")
    args = ap.parse_args()
    names = MODULES if args.module == "all" else args.module.split(",")
    for n in names:
        if n not in MODULES:
            ap.error(f"unknown module {n!r} (want {', '.join(MODULES)} or all)")
    if args.runs < 1 or args.threads < 1:
        ap.error("--runs and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.count:
        for name in names:
            with torch.no_grad():
                m, run = tm.build(name, "meta")
                tensors, params = tm.param_count(m)
                flops = tm.count_flops(m, run)
            rec = dict(module=name, tensors=tensors, params=params, spec_tensors=tm.SPEC_TENSORS[name],
                       spec_params=tm.SPEC_PARAMS[name], flops=flops)
            print(json.dumps(rec), flush=True)
            del m, run
            gc.collect()
        return
    if not args.json:
        print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, {capability()}")
        print("| module | params | GFLOP/fwd | runs | s/fwd (median) | GFLOP/s |")
        print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        with torch.no_grad():
            t0 = time.perf_counter()
            m, run = tm.build(name)
            build_s = time.perf_counter() - t0
            tensors, params = tm.param_count(m)
            t0 = time.perf_counter()
            flops = tm.count_flops(m, run)
            warm_s = time.perf_counter() - t0
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rec = dict(module=name, dtype="f32", threads=args.threads, seconds=med, gflops=flops / med / 1e9,
                   engine="torch " + torch.__version__, runs=args.runs, run_seconds=times,
                   warmup_seconds=warm_s, build_seconds=build_s, params=params, tensors=tensors,
                   spec_params=tm.SPEC_PARAMS[name], flops=flops)
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            ok = "" if params == tm.SPEC_PARAMS[name] else f" (spec: {tm.SPEC_PARAMS[name]:,}!)"
            print(f"| {name} | {params:,}{ok} | {flops / 1e9:.1f} | {args.runs} | {med:.3f} | "
                  f"{flops / med / 1e9:.1f} |", flush=True)
        del m, run
        gc.collect()


if __name__ == "__main__":
    main()
