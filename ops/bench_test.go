package ops

import (
	"fmt"
	"runtime"
	"testing"
)

// benchThreads runs f as sub-benchmarks at 1 thread and at all cores.
func benchThreads(b *testing.B, name string, f func(b *testing.B)) {
	for _, n := range []int{1, runtime.NumCPU()} {
		b.Run(fmt.Sprintf("%s,threads=%d", name, n), func(b *testing.B) {
			withThreads(b, n)
			f(b)
		})
		if runtime.NumCPU() == 1 {
			break
		}
	}
}

// reportGFLOPS reports the rate of flops floating-point operations per op.
func reportGFLOPS(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkLinear(b *testing.B) {
	for _, s := range [][3]int{{256, 1024, 1024}, {2, 320, 1280}} {
		m, k, n := s[0], s[1], s[2]
		benchThreads(b, fmt.Sprintf("m=%d,k=%d,n=%d", m, k, n), func(b *testing.B) {
			r := newRand(1)
			x, w, bias, dst := randT(r, m, k), randT(r, n, k), randT(r, n), New(m, n)
			b.SetBytes(int64(4 * (m*k + n*k + m*n)))
			for b.Loop() {
				Linear(dst, x, w, bias)
			}
			reportGFLOPS(b, 2*float64(m*k*n))
		})
	}
}

func BenchmarkConv2D(b *testing.B) {
	for _, s := range [][4]int{{64, 64, 64, 3}, {320, 320, 16, 3}, {64, 64, 64, 1}} {
		cin, cout, hw, kk := s[0], s[1], s[2], s[3]
		benchThreads(b, fmt.Sprintf("cin=%d,cout=%d,hw=%d,k=%d", cin, cout, hw, kk), func(b *testing.B) {
			r := newRand(2)
			x, w, bias := randT(r, 1, cin, hw, hw), randT(r, cout, cin, kk, kk), randT(r, cout)
			dst := New(1, cout, hw, hw)
			for b.Loop() {
				Conv2D(dst, x, w, bias, 1, kk/2)
			}
			reportGFLOPS(b, 2*float64(cout*cin*kk*kk*hw*hw))
		})
	}
}

func BenchmarkAttention(b *testing.B) {
	// Decoder shapes: 32×32 self tokens + 81 context tokens, 64-dim heads;
	// and the 77-token causal text encoder.
	for _, s := range []struct {
		lq, lk, heads int
		causal        bool
	}{{1024, 1105, 4, false}, {77, 77, 12, true}} {
		benchThreads(b, fmt.Sprintf("lq=%d,lk=%d,heads=%d,causal=%v", s.lq, s.lk, s.heads, s.causal), func(b *testing.B) {
			r := newRand(3)
			hd := 64 * s.heads
			q, k, v := randT(r, 1, s.lq, hd), randT(r, 1, s.lk, hd), randT(r, 1, s.lk, hd)
			bias := New(1, 1, s.lk)
			dst := New(1, s.lq, hd)
			for b.Loop() {
				Attention(dst, q, k, v, bias, s.heads, s.causal, 0.125)
			}
			reportGFLOPS(b, 4*float64(s.lq*s.lk*hd)) // q·k and p·v, 2 flops per multiply-add
		})
	}
}

func BenchmarkGroupNorm(b *testing.B) {
	r := newRand(4)
	x, w, bias := randT(r, 2, 320, 64, 64), randT(r, 320), randT(r, 320)
	dst := New(x.Shape...)
	b.SetBytes(int64(8 * len(x.Data)))
	for b.Loop() {
		GroupNorm(dst, x, 32, w, bias, 1e-5)
	}
}
