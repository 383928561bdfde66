#!/bin/sh
# Sums a CPU profile's flat time by Go package (plus the GEMM share):
#
#   bench/pprof_packages.sh /tmp/bench.test /tmp/decoder.prof
#
# The first lines are per package (percent of all samples, seconds); the last
# line sums the functions of the GEMM (ops/asm micro-kernels, Gemm, packing,
# and the ops convolution packer).
set -eu
[ $# -eq 2 ] || { echo "usage: $0 BINARY PROFILE" >&2; exit 2; }
go tool pprof -top -nodecount=100000 "$1" "$2" 2>/dev/null | awk '
function secs(v) {
	if (v ~ /ms$/) { sub(/ms$/, "", v); return v / 1000 }
	if (v ~ /us$/ || v ~ /µs$/) { sub(/(us|µs)$/, "", v); return v / 1e6 }
	sub(/s$/, "", v); return v + 0
}
$1 ~ /^[0-9.]+(m|u|µ)?s$/ && NF >= 6 {
	v = secs($1); n = $6
	i = match(n, /[^\/]*$/); pre = substr(n, 1, i - 1); rest = substr(n, i)
	split(rest, a, "."); pkg = pre a[1]
	t[pkg] += v; tot += v
	if (n ~ /ops\/asm\.(kernel|Kernel|Gemm|Pack|pack|\(\*Scratch\))/ || n ~ /convPacker/) gemm += v
}
END {
	for (p in t) printf "%6.1f%%  %9.2fs  %s\n", 100 * t[p] / tot, t[p], p | "sort -rn"
	close("sort -rn")
	printf "\nGEMM (ops/asm micro-kernels, Gemm, packing; ops convPacker): %.1f%% of %.2fs\n", 100 * gemm / tot, tot
}'
