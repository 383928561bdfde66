package asm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// packBImpl is one block transposer of PackB's transposed path.
type packBImpl struct {
	name string
	t8   packBT8Func
}

// packBImpls lists the Go block transposer, then the assembly one when the
// build and CPU have it.
func packBImpls() []packBImpl {
	ims := []packBImpl{{"go", packBT8Go}}
	if packBArchName != "" && packBArchOK() {
		ims = append(ims, packBImpl{packBArchName, packBT8Arch})
	}
	return ims
}

// pbGuard is the pattern written around PackB's destination: slots outside
// the panels must keep it.
const pbGuard = 0x7fb5a5a5

const pbGuardLen = 16 // floats of guard band on each side (two 32-byte vectors)

// randomBits fills x with random float32 bit patterns (NaNs of every payload
// included): a copy must keep every bit.
func randomBits(r *rand.Rand, x []float32) {
	for i := range x {
		x[i] = math.Float32frombits(r.Uint32())
	}
}

// packBCase is one transposed PackB call: op(B) rows [k0, k0+kc) (inputs of
// the stored rows), columns [j0, j0+nr) (stored rows), stored rows ldb apart
// from offset off of their backing array.
type packBCase struct {
	kc, nr, k0, j0, ldb, off int
}

// check runs the case through packBGo and through packBTrans with t8 (or
// PackB itself when t8 is nil) and fails unless the panels are bit-identical
// and the guard bands around them untouched.
func (c packBCase) check(t testing.TB, r *rand.Rand, name string, t8 packBT8Func) {
	t.Helper()
	rows := c.j0 + c.nr
	need := 0 // floats of b the rows reach
	if rows > 0 {
		need = (rows-1)*c.ldb + c.k0 + c.kc
	}
	backing := make([]float32, c.off+need+3)
	randomBits(r, backing)
	b := backing[c.off:]
	n := roundUp(c.nr, NR) * c.kc
	want := make([]float32, n)
	randomBits(r, want) // stale contents: the zero fill must overwrite them
	got := make([]float32, pbGuardLen+n+pbGuardLen)
	for i := range got {
		got[i] = math.Float32frombits(pbGuard)
	}
	copy(got[pbGuardLen:], want)
	dst := got[pbGuardLen : pbGuardLen+n : pbGuardLen+n]
	packBGo(want, b, c.ldb, c.k0, c.kc, c.j0, c.nr, true)
	if t8 == nil {
		PackB(dst, b, c.ldb, c.k0, c.kc, c.j0, c.nr, true)
	} else {
		packBTrans(dst, b, c.ldb, c.k0, c.kc, c.j0, c.nr, t8)
	}
	for i, v := range got {
		if i >= pbGuardLen && i < pbGuardLen+n {
			if w := want[i-pbGuardLen]; math.Float32bits(v) != math.Float32bits(w) {
				e := i - pbGuardLen
				q, p, j := e/(NR*c.kc), e%(NR*c.kc)/NR, e%NR
				t.Fatalf("%s %+v: panel %d p=%d j=%d is %#08x, want %#08x", name, c, q, p, j, math.Float32bits(v), math.Float32bits(w))
			}
		} else if math.Float32bits(v) != pbGuard {
			t.Fatalf("%s %+v: guard slot %d overwritten with %#08x", name, c, i-pbGuardLen, math.Float32bits(v))
		}
	}
}

// TestPackBTransParity compares the tiled transposed path, with every block
// transposer and through PackB with SetFast on and off, with packBGo over
// awkward sizes: depths around multiples of 8 and kcBlock, panel widths
// around 8 and NR, offsets, leading dimensions past the row and unaligned
// starts.
func TestPackBTransParity(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	type variant struct {
		name string
		t8   packBT8Func
		fast bool
	}
	var vs []variant
	for _, im := range packBImpls() {
		vs = append(vs, variant{"tiled/" + im.name, im.t8, false})
	}
	vs = append(vs, variant{"PackB/fast", nil, true}, variant{"PackB/go", nil, false})
	for _, v := range vs {
		restore := SetFast(v.fast)
		for _, kc := range []int{0, 1, 7, 8, 9, 255, 256} {
			for _, nr := range []int{0, 1, 7, 8, 15, 16, 17, 33} {
				for _, k0 := range []int{0, 3} {
					for _, j0 := range []int{0, 5} {
						for _, extra := range []int{0, 1, 13} {
							for _, off := range []int{0, 1} {
								c := packBCase{kc: kc, nr: nr, k0: k0, j0: j0, ldb: k0 + kc + extra, off: off}
								c.check(t, r, v.name, v.t8)
							}
						}
					}
				}
			}
		}
		restore()
	}
}

// TestPackBTransOverlap: rows closer than their length (ldb < k0+kc) are
// still plain reads, and the one-row case of the smallest ldb.
func TestPackBTransOverlap(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, im := range packBImpls() {
		for _, c := range []packBCase{
			{kc: 24, nr: 16, k0: 2, j0: 1, ldb: 5},
			{kc: 17, nr: 9, k0: 0, j0: 0, ldb: 1},
			{kc: 8, nr: 8, k0: 0, j0: 0, ldb: 0},
		} {
			c.check(t, r, im.name, im.t8)
		}
	}
}

// FuzzPackB compares the tiled transposed path, with every block transposer,
// with packBGo on fuzzed shapes.
func FuzzPackB(f *testing.F) {
	f.Add(uint16(256), uint8(33), uint8(3), uint8(5), uint8(7), uint8(1), uint64(1))
	f.Add(uint16(9), uint8(17), uint8(0), uint8(0), uint8(0), uint8(0), uint64(2))
	f.Fuzz(func(t *testing.T, kc uint16, nr, k0, j0, extra, off uint8, seed uint64) {
		c := packBCase{kc: int(kc % 600), nr: int(nr % 70), k0: int(k0 % 20), j0: int(j0 % 20), off: int(off % 8)}
		c.ldb = c.k0 + c.kc + int(extra%40)
		r := rand.New(rand.NewPCG(seed, 7))
		for _, im := range packBImpls() {
			c.check(t, r, im.name, im.t8)
		}
	})
}

// BenchmarkPackBTrans packs a 2048×2048 Linear weight W[N, K] transposed the
// way GemmX does (one PackB of all N columns per kcBlock-deep block, into
// one reused buffer), per implementation; GB/s counts the weight's bytes.
func BenchmarkPackBTrans(b *testing.B) {
	const n, k = 2048, 2048
	w := make([]float32, n*k)
	randomBits(rand.New(rand.NewPCG(1, 1)), w)
	dst := make([]float32, roundUp(n, NR)*kcBlock)
	run := func(b *testing.B, pack func(k0 int)) {
		for b.Loop() {
			for k0 := 0; k0 < k; k0 += kcBlock {
				pack(k0)
			}
		}
		b.ReportMetric(float64(n*k*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	}
	b.Run("impl=go-ref", func(b *testing.B) {
		run(b, func(k0 int) { packBGo(dst, w, k, k0, kcBlock, 0, n, true) })
	})
	for _, im := range packBImpls() {
		b.Run(fmt.Sprintf("impl=%s", im.name), func(b *testing.B) {
			run(b, func(k0 int) { packBTrans(dst, w, k, k0, kcBlock, 0, n, im.t8) })
		})
	}
}

// funcPacker is a BPacker that packs a Linear weight with a given PackB.
type funcPacker struct {
	w    []float32
	k    int
	pack func(dst, b []float32, ldb, k0, kc, j0, nr int)
}

func (p *funcPacker) PackB(dst []float32, k0, kc, j0, nc int) {
	p.pack(dst, p.w, p.k, k0, kc, j0, nc)
}

// BenchmarkLinearPackB is one single-threaded Linear of the prior's shape
// (162 rows of activations, a 2048×2048 weight W[N, K]) with the weight
// packed by packBGo or by the tiled path, with the assembly kernel: the
// share of packing in a GEMM with few rows.
func BenchmarkLinearPackB(b *testing.B) {
	const m, n, k = 162, 2048, 2048
	r := rand.New(rand.NewPCG(2, 2))
	x, w, c := make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
	fillRand(r, x, false)
	fillRand(r, w, false)
	packers := []struct {
		name string
		pack func(dst, b []float32, ldb, k0, kc, j0, nr int)
	}{{"go-ref", func(dst, b []float32, ldb, k0, kc, j0, nr int) { packBGo(dst, b, ldb, k0, kc, j0, nr, true) }}}
	for _, im := range packBImpls()[1:] {
		packers = append(packers, struct {
			name string
			pack func(dst, b []float32, ldb, k0, kc, j0, nr int)
		}{im.name, func(dst, b []float32, ldb, k0, kc, j0, nr int) { packBTrans(dst, b, ldb, k0, kc, j0, nr, im.t8) }})
	}
	for _, pk := range packers {
		b.Run("pack="+pk.name, func(b *testing.B) {
			var s Scratch
			p := &funcPacker{w: w, k: k, pack: pk.pack}
			for b.Loop() {
				GemmX(m, n, k, OperandA{Data: x, LD: k}, OperandB{Packer: p}, c, n, false, &s)
			}
			b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
