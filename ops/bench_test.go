package ops

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/dalle2/dalle2/ops/asm"
)

// Benchmarks of the ops at the shapes of the full-size Karlo modules
// (spec §12), on the active kernels (the fast path unless purego) at 1 and 2
// threads and at all cores. "impl=ref" sub-benchmarks run the plain-Go
// reference for comparison. Large shapes are skipped under -short.

// benchThreads runs f as sub-benchmarks at 1 and 2 threads and at all cores.
func benchThreads(b *testing.B, name string, f func(b *testing.B)) {
	for i, n := range []int{1, 2, runtime.NumCPU()} {
		if n > runtime.NumCPU() || (i == 2 && n <= 2) {
			continue
		}
		b.Run(fmt.Sprintf("%s/threads=%d", name, n), func(b *testing.B) {
			withThreads(b, n)
			f(b)
		})
	}
}

// reportGFLOPS reports the rate of flops floating-point operations per op.
func reportGFLOPS(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// withRef makes f run the reference implementations (asm.SetFast(false))
// when ref is set.
func withRef(b *testing.B, ref bool) {
	if ref {
		b.Cleanup(asm.SetFast(false))
	}
}

func implName(ref bool) string {
	if ref || !useFast() {
		return "impl=ref"
	}
	return "impl=fast"
}

func BenchmarkLinear(b *testing.B) {
	for _, s := range []struct {
		m, k, n   int
		big, ref  bool
		shapeNote string
	}{
		{2048, 2048, 2048, true, false, "square"},
		{2048, 2048, 2048, true, true, "square"},
		{154, 768, 3072, false, false, "text encoder MLP, batch 2"},
		{162, 2048, 8192, true, false, "prior MLP, batch 2"},
		{2048, 640, 640, false, false, "decoder attention projection at 32×32, batch 2"},
		{2, 1280, 2560, false, false, "time embedding projection (matrix-vector)"},
		{256, 1024, 1024, false, false, "mid-size"},
	} {
		if s.big && testing.Short() {
			continue
		}
		benchThreads(b, fmt.Sprintf("%s/m=%d/k=%d/n=%d", implName(s.ref), s.m, s.k, s.n), func(b *testing.B) {
			withRef(b, s.ref)
			r := newRand(1)
			x, w, bias, dst := randT(r, s.m, s.k), randT(r, s.n, s.k), randT(r, s.n), New(s.m, s.n)
			Linear(dst, x, w, bias)
			b.ResetTimer()
			for b.Loop() {
				Linear(dst, x, w, bias)
			}
			reportGFLOPS(b, 2*float64(s.m)*float64(s.k)*float64(s.n))
		})
	}
}

func BenchmarkConv2D(b *testing.B) {
	for _, s := range []struct {
		n, cin, cout, hw, k int
		big, ref            bool
	}{
		{2, 320, 320, 64, 3, true, false}, // decoder level 0, batch 2 (guidance)
		{2, 320, 320, 64, 3, true, true},
		{2, 640, 640, 32, 3, true, false},   // decoder level 1
		{2, 2560, 1280, 8, 3, true, false},  // decoder up block at 8×8 (concatenated skip)
		{1, 320, 320, 256, 3, true, false},  // super-res level 0
		{2, 960, 640, 32, 1, true, false},   // 1×1 shortcut
		{2, 64, 64, 32, 3, false, false},    // small
		{1, 3, 1024, 224, 14, false, false}, // CLIP ViT-L/14 patch embedding
	} {
		if s.big && testing.Short() {
			continue
		}
		name := fmt.Sprintf("%s/n=%d/cin=%d/cout=%d/hw=%d/k=%d", implName(s.ref), s.n, s.cin, s.cout, s.hw, s.k)
		benchThreads(b, name, func(b *testing.B) {
			withRef(b, s.ref)
			r := newRand(2)
			stride, pad := 1, s.k/2
			if s.k == 14 {
				stride, pad = 14, 0
			}
			x, w, bias := randT(r, s.n, s.cin, s.hw, s.hw), randT(r, s.cout, s.cin, s.k, s.k), randT(r, s.cout)
			ho := (s.hw+2*pad-s.k)/stride + 1
			dst := New(s.n, s.cout, ho, ho)
			Conv2D(dst, x, w, bias, stride, pad)
			b.ResetTimer()
			for b.Loop() {
				Conv2D(dst, x, w, bias, stride, pad)
			}
			reportGFLOPS(b, 2*float64(s.n*s.cout*s.cin*s.k*s.k)*float64(ho*ho))
		})
	}
}

func BenchmarkAttention(b *testing.B) {
	for _, s := range []struct {
		n, lq, lk, heads int
		causal, ref      bool
	}{
		{2, 1024, 1105, 10, false, false}, // decoder at 32×32: self tokens + 81 context tokens
		{2, 1024, 1105, 10, false, true},
		{2, 256, 337, 15, false, false}, // decoder at 16×16
		{2, 77, 77, 12, true, false},    // CLIP text encoder
		{2, 81, 81, 32, false, false},   // prior
	} {
		name := fmt.Sprintf("%s/n=%d/lq=%d/lk=%d/heads=%d/causal=%v", implName(s.ref), s.n, s.lq, s.lk, s.heads, s.causal)
		benchThreads(b, name, func(b *testing.B) {
			withRef(b, s.ref)
			r := newRand(3)
			hd := 64 * s.heads
			q, k, v := randT(r, s.n, s.lq, hd), randT(r, s.n, s.lk, hd), randT(r, s.n, s.lk, hd)
			bias := New(s.n, 1, s.lk)
			dst := New(s.n, s.lq, hd)
			Attention(dst, q, k, v, bias, s.heads, s.causal, 0.125)
			b.ResetTimer()
			for b.Loop() {
				Attention(dst, q, k, v, bias, s.heads, s.causal, 0.125)
			}
			reportGFLOPS(b, 4*float64(s.n*s.lq*s.lk*hd)) // q·k and p·v, 2 flops per multiply-add
		})
	}
}

func BenchmarkGroupNorm(b *testing.B) {
	benchThreads(b, "n=2/c=320/hw=64", func(b *testing.B) {
		r := newRand(4)
		x, w, bias := randT(r, 2, 320, 64, 64), randT(r, 320), randT(r, 320)
		dst := New(x.Shape...)
		b.SetBytes(int64(8 * len(x.Data)))
		for b.Loop() {
			GroupNorm(dst, x, 32, w, bias, 1e-5)
		}
	})
}

func BenchmarkSiLU(b *testing.B) {
	benchThreads(b, "n=2/c=320/hw=64", func(b *testing.B) {
		r := newRand(4)
		x := randT(r, 2, 320, 64, 64)
		dst := New(x.Shape...)
		b.SetBytes(int64(8 * len(x.Data)))
		for b.Loop() {
			SiLU(dst, x)
		}
	})
}

// BenchmarkSoftmaxRow is the softmax of one attention row of the decoder at
// 32×32 (reported per key).
func BenchmarkSoftmaxRow(b *testing.B) {
	r := newRand(5)
	s := randT(r, 1105).Data
	buf := make([]float32, len(s))
	for b.Loop() {
		copy(buf, s)
		softmaxRow(buf, nil, 0.125)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(s)), "ns/key")
}

// decoderBlock is one ResnetBlock2D (scale_shift) followed by one
// SpatialAttention with added context keys, as in Karlo's decoder, written
// with ops calls and random weights: a profiling target for the op mix of a
// decoder step without building a whole U-Net.
type decoderBlock struct {
	n, c, hw, ctx, heads   int
	gn1w, gn1b, gn2w, gn2b *Tensor // [C]
	conv1w, conv2w         *Tensor // [C, C, 3, 3]
	conv1b, conv2b         *Tensor // [C]
	embw, embb             *Tensor // [2C, 1280], [2C]
	gnaw, gnab             *Tensor // [C]
	qw, kw, vw, ow         *Tensor // [C, C]
	qb, kb, vb, ob         *Tensor // [C]
	akw, avw               *Tensor // [C, 1536]
	akb, avb               *Tensor // [C]
	x, emb, enc            *Tensor // [N, C, H, W], [N, 1280], [N, ctx, 1536]
	arena                  Arena
}

func newDecoderBlock(n, c, hw int) *decoderBlock {
	r := newRand(7)
	small := func(shape ...int) *Tensor {
		t := randT(r, shape...)
		for i := range t.Data {
			t.Data[i] *= 0.02
		}
		return t
	}
	return &decoderBlock{n: n, c: c, hw: hw, ctx: 81, heads: c / 64,
		gn1w: randT(r, c), gn1b: randT(r, c), gn2w: randT(r, c), gn2b: randT(r, c),
		conv1w: small(c, c, 3, 3), conv2w: small(c, c, 3, 3), conv1b: small(c), conv2b: small(c),
		embw: small(2*c, 1280), embb: small(2 * c), gnaw: randT(r, c), gnab: randT(r, c),
		qw: small(c, c), kw: small(c, c), vw: small(c, c), ow: small(c, c),
		qb: small(c), kb: small(c), vb: small(c), ob: small(c),
		akw: small(c, 1536), avw: small(c, 1536), akb: small(c), avb: small(c),
		x: randT(r, n, c, hw, hw), emb: randT(r, n, 1280), enc: randT(r, n, 81, 1536)}
}

func (d *decoderBlock) forward() *Tensor {
	a := &d.arena
	a.Reset()
	n, c, hw := d.n, d.c, d.hw*d.hw
	// ResnetBlock2D.
	h := a.New(d.x.Shape...)
	GroupNorm(h, d.x, 32, d.gn1w, d.gn1b, 1e-5)
	SiLU(h, h)
	h1 := a.New(d.x.Shape...)
	Conv2D(h1, h, d.conv1w, d.conv1b, 1, 1)
	ea := a.New(n, 1280)
	SiLU(ea, d.emb)
	e := a.New(n, 2*c)
	Linear(e, ea, d.embw, d.embb)
	GroupNorm(h1, h1, 32, d.gn2w, d.gn2b, 1e-5)
	ScaleShift(h1, h1, e)
	SiLU(h1, h1)
	h2 := a.New(d.x.Shape...)
	Conv2D(h2, h1, d.conv2w, d.conv2b, 1, 1)
	Add(h2, h2, d.x)
	// SpatialAttention with added KV.
	g := a.New(d.x.Shape...)
	GroupNorm(g, h2, 32, d.gnaw, d.gnab, 1e-5)
	seq := a.New(n, hw, c)
	Transpose(seq, g.Reshape(n, c, hw))
	q, k, v := a.New(n, hw, c), a.New(n, hw, c), a.New(n, hw, c)
	Linear(q, seq, d.qw, d.qb)
	Linear(k, seq, d.kw, d.kb)
	Linear(v, seq, d.vw, d.vb)
	kc, vc := a.New(n, d.ctx, c), a.New(n, d.ctx, c)
	Linear(kc, d.enc, d.akw, d.akb)
	Linear(vc, d.enc, d.avw, d.avb)
	kk, vv := a.New(n, d.ctx+hw, c), a.New(n, d.ctx+hw, c)
	Concat(kk, 1, kc, k)
	Concat(vv, 1, vc, v)
	o := a.New(n, hw, c)
	Attention(o, q, kk, vv, nil, d.heads, false, 0.125)
	p := a.New(n, hw, c)
	Linear(p, o, d.ow, d.ob)
	out := a.New(d.x.Shape...)
	Transpose(out.Reshape(n, c, hw), p)
	Add(out, out, h2)
	return out
}

// BenchmarkDecoderBlock runs a Karlo-shaped decoder block (ResnetBlock2D +
// SpatialAttention, 640 channels at 32×32, batch 2 as under guidance); run it
// with -cpuprofile to see where a decoder step's time goes.
func BenchmarkDecoderBlock(b *testing.B) {
	for _, s := range []struct {
		n, c, hw int
		ref      bool
	}{{2, 640, 32, false}, {2, 640, 32, true}, {2, 64, 16, false}} {
		if s.c > 64 && testing.Short() {
			continue
		}
		benchThreads(b, fmt.Sprintf("%s/n=%d/c=%d/hw=%d", implName(s.ref), s.n, s.c, s.hw), func(b *testing.B) {
			withRef(b, s.ref)
			d := newDecoderBlock(s.n, s.c, s.hw)
			d.forward()
			b.ResetTimer()
			for b.Loop() {
				d.forward()
			}
		})
	}
}
