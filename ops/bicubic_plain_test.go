package ops

import (
	"math"
	"testing"
)

// refBicubic is an independent float64 evaluation of align_corners=False
// bicubic (a = −0.75, clamped taps).
func refBicubic(x []float64, n, out int) []float64 {
	cub := func(t float64) float64 {
		const a = -0.75
		t = math.Abs(t)
		switch {
		case t <= 1:
			return ((a+2)*t-(a+3))*t*t + 1
		case t < 2:
			return ((a*t-5*a)*t+8*a)*t - 4*a
		}
		return 0
	}
	r := make([]float64, out)
	for i := range r {
		s := (float64(i)+0.5)*float64(n)/float64(out) - 0.5
		f := math.Floor(s)
		for k := -1; k < 3; k++ {
			idx := int(math.Min(math.Max(f+float64(k), 0), float64(n-1)))
			r[i] += x[idx] * cub(s-f-float64(k))
		}
	}
	return r
}

func TestUpsampleBicubicPlain(t *testing.T) {
	for _, sz := range [][4]int{{5, 7, 10, 14}, {32, 32, 64, 64}, {3, 4, 12, 16}, {1, 1, 4, 4}, {6, 6, 24, 24}} {
		h, w, ho, wo := sz[0], sz[1], sz[2], sz[3]
		x := New(1, 2, h, w)
		for i := range x.Data {
			x.Data[i] = float32(math.Sin(float64(i)*0.7)) * 1.3
		}
		got := New(1, 2, ho, wo)
		UpsampleBicubic(got, x)
		for p := 0; p < 2; p++ {
			// Separable reference: rows along W, then columns along H.
			rows := make([][]float64, h)
			for y := 0; y < h; y++ {
				row := make([]float64, w)
				for xx := range row {
					row[xx] = float64(x.Data[(p*h+y)*w+xx])
				}
				rows[y] = refBicubic(row, w, wo)
			}
			for ox := 0; ox < wo; ox++ {
				col := make([]float64, h)
				for y := range col {
					col[y] = rows[y][ox]
				}
				want := refBicubic(col, h, ho)
				for oy := range want {
					g := float64(got.Data[(p*ho+oy)*wo+ox])
					// Eight float32 roundings of terms ≤ 2 in magnitude:
					// a few ulp of 2 (2.4e-7 each) at most.
					if d := math.Abs(g - want[oy]); d > 1e-6 {
						t.Fatalf("size %v plane %d (%d,%d): got %v want %v", sz, p, oy, ox, g, want[oy])
					}
				}
			}
		}
	}
}
