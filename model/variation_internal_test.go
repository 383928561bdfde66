package model

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSlerp(t *testing.T) {
	dst := make([]float32, 2)
	a, b := []float32{3, 0}, []float32{0, 3}
	slerp(dst, a, b, 0)
	require.Equal(t, a, dst)
	slerp(dst, a, b, 1)
	require.Equal(t, b, dst)
	// Equal norms: the arc's midpoint keeps the norm (3/√2 each); 1e-6 is
	// a few float32 ulps at 2.1.
	slerp(dst, a, b, 0.5)
	require.InDelta(t, 3/math.Sqrt2, dst[0], 1e-6)
	require.InDelta(t, 3/math.Sqrt2, dst[1], 1e-6)
	// The weights apply to the raw vectors: |a| = 1, |b| = 4, 90°, t = 1/3
	// gives sin(60°)·a + sin(30°)·b = (0.866, 2).
	slerp(dst, []float32{1, 0}, []float32{0, 4}, 1.0/3)
	require.InDelta(t, math.Sqrt(3)/2, dst[0], 1e-6)
	require.InDelta(t, 2, dst[1], 1e-6)
	// Equal vectors are copied bit for bit, whatever t.
	c := []float32{0.1, -0.7}
	slerp(dst, c, c, 0.3)
	require.Equal(t, c, dst)
	// Parallel and zero vectors fall back to linear interpolation.
	slerp(dst, []float32{1, 1}, []float32{2, 2}, 0.5)
	require.Equal(t, []float32{1.5, 1.5}, dst)
	slerp(dst, []float32{0, 0}, []float32{2, -2}, 0.25)
	require.Equal(t, []float32{0.5, -0.5}, dst)
	slerp(dst, []float32{1, 0}, []float32{-1, 0}, 0.25)
	require.Equal(t, []float32{0.5, 0}, dst)
}
