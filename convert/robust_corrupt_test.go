package convert

// Corruption of a real converted file: any single changed byte and any
// truncation is detected by Open (preamble, trailer, index checksum) or
// Verify (region checksums, zero padding).

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

var converted struct {
	once sync.Once
	data []byte
	err  error
}

// convertedTiny converts the golden tiny-unclip pipeline (as F16, to halve
// the bytes every Verify below checksums) once per test binary and returns
// the file's bytes (the temporary folder is removed).
func convertedTiny(t *testing.T) []byte {
	src := filepath.Join(goldenDir(t), "tiny-unclip")
	converted.once.Do(func() {
		dir, err := os.MkdirTemp("", "dalle2-robust-")
		if err != nil {
			converted.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "tiny.d2")
		if _, err := Convert(src, out, Options{DType: "f16"}); err != nil {
			converted.err = err
			return
		}
		converted.data, converted.err = os.ReadFile(out)
	})
	require.NoError(t, converted.err)
	return converted.data
}

// openAndVerify is what a careful reader does: Open, then Verify.
func openAndVerify(data []byte, name string) error {
	f, err := loader.OpenBytes(data, name)
	if err != nil {
		return err
	}
	return f.Verify()
}

// fileLayout lists where a file's parts lie.
type fileLayout struct {
	index, trailer   [2]int   // [start, end)
	zstd, raw, gaps  [][2]int // regions by codec, padding
	zstdN, rawN, gap int      // byte counts
}

func layoutOf(t *testing.T, data []byte) fileLayout {
	f, err := loader.OpenBytes(data, "x")
	require.NoError(t, err)
	var l fileLayout
	idxOff := int(binary.LittleEndian.Uint64(data[len(data)-loader.TrailerSize:]))
	l.index = [2]int{idxOff, len(data) - loader.TrailerSize}
	l.trailer = [2]int{len(data) - loader.TrailerSize, len(data)}
	var spans [][2]int
	add := func(codec string, off, size int64) {
		s := [2]int{int(off), int(off + size)}
		spans = append(spans, s)
		if codec == loader.CodecZstd {
			l.zstd = append(l.zstd, s)
			l.zstdN += int(size)
		} else {
			l.raw = append(l.raw, s)
			l.rawN += int(size)
		}
	}
	for _, i := range f.Index() {
		add(i.Codec, i.Offset, i.Size)
	}
	for _, b := range f.Blobs() {
		add(b.Codec, b.Offset, b.Size)
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	pos := loader.PreambleSize
	for _, s := range append(spans, [2]int{idxOff, idxOff}) {
		if s[0] > pos {
			l.gaps = append(l.gaps, [2]int{pos, s[0]})
			l.gap += s[0] - pos
		}
		pos = max(pos, s[1])
	}
	return l
}

// pick returns a uniformly random byte offset inside spans (total n bytes).
func pick(r *rand.Rand, spans [][2]int, n int) int {
	k := r.IntN(n)
	for _, s := range spans {
		if k < s[1]-s[0] {
			return s[0] + k
		}
		k -= s[1] - s[0]
	}
	panic("unreachable")
}

// TestRobustFlipConverted changes one byte at a time of a converted
// tiny-unclip file (to a random different value) at 300 random positions
// and at positions drawn from every part of the file: preamble, trailer,
// index, raw and zstd regions, padding. Each change must make Open or
// Verify fail with a message naming the file.
func TestRobustFlipConverted(t *testing.T) {
	good := convertedTiny(t)
	l := layoutOf(t, good)
	require.Positive(t, l.zstdN, "the tokenizer blobs are stored compressed")
	require.Positive(t, l.gap, "regions are 64-byte aligned: there is padding")
	r := rand.New(rand.NewPCG(8, 2024))
	var positions []int
	for range 300 {
		positions = append(positions, r.IntN(len(good)))
	}
	for i := range loader.PreambleSize {
		positions = append(positions, i)
	}
	for i := l.trailer[0]; i < l.trailer[1]; i++ {
		positions = append(positions, i)
	}
	for range 40 {
		positions = append(positions,
			l.index[0]+r.IntN(l.index[1]-l.index[0]),
			pick(r, l.zstd, l.zstdN),
			pick(r, l.raw, l.rawN),
			pick(r, l.gaps, l.gap))
	}
	// The first bytes of every zstd frame (header fields zstd may ignore).
	for _, z := range l.zstd {
		for i := z[0]; i < min(z[0]+8, z[1]); i++ {
			positions = append(positions, i)
		}
	}

	buf := slices.Clone(good)
	caughtByOpen := 0
	for _, pos := range positions {
		old := buf[pos]
		buf[pos] ^= byte(1 + r.IntN(255))
		f, err := loader.OpenBytes(buf, "tiny.d2")
		if err != nil {
			caughtByOpen++
		} else {
			err = f.Verify()
		}
		require.Error(t, err, "byte %d changed from %#02x to %#02x went unnoticed", pos, old, buf[pos])
		require.True(t, strings.HasPrefix(err.Error(), "loader: tiny.d2: "), err.Error())
		if pos >= loader.PreambleSize && pos < l.trailer[0] {
			// Data area and index: caught by a checksum (or, for the index,
			// possibly by its length no longer matching the trailer).
			require.Regexp(t, "corrupt|checksum|index", err.Error(), "byte %d", pos)
		}
		buf[pos] = old
	}
	t.Logf("%d single-byte changes detected (%d by Open, the rest by Verify)", len(positions), caughtByOpen)
	require.NoError(t, openAndVerify(buf, "tiny.d2"), "the file is restored")
}

// TestRobustTruncConverted cuts a converted tiny-unclip file at every
// length within 64 KiB of either end, at every region boundary and at
// 2000 random lengths: Open refuses each (on disk too).
func TestRobustTruncConverted(t *testing.T) {
	good := convertedTiny(t)
	l := layoutOf(t, good)
	r := rand.New(rand.NewPCG(7, 7))
	var lengths []int
	for n := range min(64<<10, len(good)) {
		lengths = append(lengths, n, len(good)-1-n)
	}
	for _, s := range append(append(l.raw, l.zstd...), l.index) {
		lengths = append(lengths, s[0], s[1], s[1]-1)
	}
	for range 2000 {
		lengths = append(lengths, r.IntN(len(good)))
	}
	for _, n := range lengths {
		_, err := loader.OpenBytes(good[:n], "cut.d2")
		require.Error(t, err, "truncated to %d of %d bytes", n, len(good))
		if n < loader.PreambleSize+loader.TrailerSize {
			require.ErrorContains(t, err, "too short")
		} else {
			require.ErrorContains(t, err, "loader: cut.d2: trailer magic missing: file truncated or not completely written")
		}
	}
	// Through the memory map, as the commands open files.
	path := filepath.Join(t.TempDir(), "cut.d2")
	for range 10 {
		n := r.IntN(len(good))
		require.NoError(t, os.WriteFile(path, good[:n], 0o644))
		_, err := loader.Open(path)
		require.ErrorContains(t, err, path)
	}
}
