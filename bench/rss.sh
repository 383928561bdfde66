#!/bin/sh
# Peak memory of full-size text-to-image runs: the maximum resident set size
# (/usr/bin/time -v, "Maximum resident set size") of `dalle2 gen` on a
# Karlo-shaped weight file with random weights (go run ./bench/mkkarlo), per
# storage dtype, at default settings and with --low-memory, and the file
# sizes.
#
#   bench/rss.sh [THREADS]                     # THREADS default: all cores
#   DTYPES=q8 MODES=default bench/rss.sh 2     # one quick run
#
# Steps are reduced to STEPS per stage (default 2, the fewest the schedulers
# take): the peak RSS does not depend on the step count, because every step
# reuses the same weights and the same scratch arenas (checked on the
# built-in tiny model, 2 threads: 79-88 MB at 2/2/2 steps and 81-83 MB at
# the default 25/25/7, three runs each). It does depend on the image size
# and count (one image here, 256x256).
#
# Time: each run does one text encoder pass, STEPS prior and decoder steps
# and two 256x256 super-res passes (STEPS=2: super_res_first once and
# super_res_last once): 3 minutes for q8 on 2 busy cores (super-res 152 s of
# it), so the default 3 dtypes x 2 modes take 15-20 minutes, plus about a
# minute to write each file. SIZE=64 stops after the decoder (--size 64, no
# super-res: under a minute per run) for a quick look that leaves out the
# super-res stage.
#
# Environment:
#   DTYPES  storage dtypes of the files, comma-separated (default f32,f16,q8)
#   MODES   "default" and/or "low-memory" (default both; low-memory is
#           skipped if this dalle2 gen has no --low-memory flag)
#   STEPS   prior, decoder and super-res steps (default 2)
#   SIZE    gen --size (default: the super-res size, 256)
#   DIR     folder for the weight files (default: $OUT); needs 13.7 GB free
#           for f32, 6.9 GB for f16, 3.7 GB for q8 (one file at a time)
#   KEEP    1: keep the weight files (an existing DIR/karlo-DTYPE.d2 is
#           reused, not rewritten); default: each is removed after its runs
#   OUT     results folder (default: a new temporary folder)
#   GO      go command (default go)
set -eu

THREADS=${1:-0}
DTYPES=${DTYPES:-f32,f16,q8}
MODES=${MODES:-default low-memory}
STEPS=${STEPS:-2}
SIZE=${SIZE:-}
KEEP=${KEEP:-0}
GO=${GO:-go}

cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/dalle2-rss.XXXXXX)}
DIR=${DIR:-$OUT}
mkdir -p "$OUT" "$DIR"
"$GO" build -o "$OUT/dalle2" .
"$GO" build -o "$OUT/mkkarlo" ./bench/mkkarlo
[ -x /usr/bin/time ] || {
	echo "rss: /usr/bin/time is missing (apt-get install time)" >&2
	exit 1
}
LOWMEM=yes
"$OUT/dalle2" gen --help | grep -q -- --low-memory || LOWMEM=no

SIZEFLAG=
SIZENOTE="256x256 (the super-res size)"
if [ -n "$SIZE" ]; then
	SIZEFLAG="--size $SIZE"
	SIZENOTE="${SIZE}x$SIZE (--size $SIZE; the decoder's size skips super-res)"
fi

{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs"
	echo "memory: $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2-)"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "dalle2: $("$OUT/dalle2" --version | tr -s ' ' | paste -sd ';' -)"
	echo "gen: one prompt, one image, $SIZENOTE, $STEPS prior / $STEPS decoder / $STEPS super-res steps, --threads $THREADS"
	echo "peak RSS does not depend on the step count (same weights and arenas every step; see bench/rss.sh)"
} >"$OUT/machine.txt"

printf '| dtype | file GB | mode | peak RSS GB | wall s |\n|---|---:|---|---:|---:|\n' >"$OUT/table.md"
for d in $(echo "$DTYPES" | tr ',' ' '); do
	f="$DIR/karlo-$d.d2"
	if [ "$KEEP" = 1 ] && [ -f "$f" ]; then
		echo "rss: reusing $f" >&2
	else
		echo "rss: writing $f..." >&2
		"$OUT/mkkarlo" -o "$f" --dtype "$d"
	fi
	bytes=$(wc -c <"$f" | tr -d ' ')
	for mode in $MODES; do
		flag=
		case "$mode" in
		default) ;;
		low-memory)
			if [ "$LOWMEM" = no ]; then
				echo "rss: this dalle2 gen has no --low-memory; skipped" >&2
				continue
			fi
			flag=--low-memory
			;;
		*)
			echo "rss: unknown mode $mode (want default, low-memory)" >&2
			exit 2
			;;
		esac
		echo "rss: $d $mode: dalle2 gen..." >&2
		# shellcheck disable=SC2086 # $flag and $SIZEFLAG are empty or words
		if ! /usr/bin/time -v "$OUT/dalle2" --threads "$THREADS" gen --model "$f" "a red horse" --seed 7 \
			--prior-steps "$STEPS" --decoder-steps "$STEPS" --sr-steps "$STEPS" $SIZEFLAG $flag \
			-o "$OUT/$d-$mode.png" -q 2>"$OUT/$d-$mode.time"; then
			echo "rss: $d $mode: dalle2 gen failed:" >&2
			head -n 20 "$OUT/$d-$mode.time" >&2
			exit 1
		fi
		kb=$(sed -n 's/^.*Maximum resident set size (kbytes): *//p' "$OUT/$d-$mode.time")
		wall=$(sed -n 's/^.*Elapsed (wall clock) time (h:mm:ss or m:ss): *//p' "$OUT/$d-$mode.time")
		secs=$(echo "$wall" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s }')
		echo "$d $bytes $mode $kb $secs" | awk '{ printf "| %s | %.3f | %s | %.3f | %s |\n", $1, $2 / 1e9, $3, $4 * 1024 / 1e9, $5 }' \
			>>"$OUT/table.md"
	done
	if [ "$KEEP" != 1 ]; then
		rm -f "$f"
	fi
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

sed 's/^/    /' "$OUT/machine.txt"
echo
cat "$OUT/table.md"
echo
echo "file GB: the weight file (go run ./bench/mkkarlo --dtype DTYPE); peak RSS: /usr/bin/time -v \"Maximum resident set size\""
echo "(GB = 10^9 bytes). Raw /usr/bin/time output: $OUT/*.time"
