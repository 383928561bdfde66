package bench

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/quant"
)

// TestRelL2 checks the error measure on values worked out by hand.
func TestRelL2(t *testing.T) {
	// got − want = (0, 3, −4): norm 5; ‖want‖ = ‖(1, 2, 2)‖ = 3.
	rel, err := RelL2([]float32{1, 5, -2}, []float32{1, 2, 2})
	require.NoError(t, err)
	require.Equal(t, 5.0/3.0, rel)
	rel, err = RelL2([]float32{1, 2, 2}, []float32{1, 2, 2})
	require.NoError(t, err)
	require.Zero(t, rel)
	// Accumulated in float64: squares of 1e30 overflow float32.
	rel, err = RelL2([]float32{2e30, 1e30}, []float32{1e30, 1e30})
	require.NoError(t, err)
	require.InDelta(t, 1/math.Sqrt2, rel, 1e-7) // 1e30 is not exact in float32: relative 1e-8 or so
	rel, err = RelL2([]float32{1}, []float32{0})
	require.NoError(t, err)
	require.True(t, math.IsInf(rel, 1))
	rel, err = RelL2([]float32{float32(math.NaN())}, []float32{1})
	require.NoError(t, err)
	require.True(t, math.IsNaN(rel))
	_, err = RelL2([]float32{1}, []float32{1, 2})
	require.ErrorContains(t, err, "1 values against 2")

	a, b := ops.FromData([]float32{1, 5, -2}, 3), ops.FromData([]float32{1, 2, 2}, 3)
	rel, err = CompareOutputs(a, b)
	require.NoError(t, err)
	require.Equal(t, 5.0/3.0, rel)
	_, err = CompareOutputs(a, ops.FromData([]float32{1, 2, 2}, 1, 3))
	require.ErrorContains(t, err, "shape [3] against [1 3]")
	_, err = CompareOutputs(a, nil)
	require.Error(t, err)
}

func TestParseDType(t *testing.T) {
	for s, want := range map[string]loader.DType{"f32": loader.F32, "f16": loader.F16, "q8": loader.Q8_0} {
		d, err := ParseDType(s)
		require.NoError(t, err, s)
		require.Equal(t, want, d)
		require.Equal(t, s, DTypeName(d))
	}
	for _, bad := range []string{"f64", "", "bf16"} {
		_, err := ParseDType(bad)
		require.Error(t, err, bad)
	}
}

// TestStoredSource: tensors come out in the dtype the policy gives them,
// their values are the F32 ones rounded to that storage, and StoredBytes
// adds up the converted sizes.
func TestStoredSource(t *testing.T) {
	shapes := map[string][]int{
		"lin.weight": {32, 64}, "lin.bias": {32}, // Linear: rows of 64, 2048 elements (Q8_0-able)
		"odd.weight":  {4, 37}, // rows of 37: not Q8_0-able
		"norm.weight": {64}, "emb": {10, 32},
	}
	rs := NewRandomSource(shapes, 4)
	require.Equal(t, loader.Q8_0, convert.NewPolicy("decoder", rs.Names(), loader.Q8_0).DType("lin.weight", shapes["lin.weight"]),
		"the test covers a Q8_0 tensor")
	for _, target := range []loader.DType{loader.F32, loader.F16, loader.Q8_0} {
		s := NewStoredSource(rs, "decoder", target)
		require.Equal(t, rs.Names(), s.Names())
		var bytes int64
		for _, name := range s.Names() {
			got, err := s.Tensor(name)
			require.NoError(t, err)
			d := convert.NewPolicy("decoder", rs.Names(), target).DType(name, shapes[name])
			require.Equal(t, d, got.DType, "%s %s", target, name)
			require.Equal(t, shapes[name], got.Shape)
			bytes += int64(len(got.Data))
			f32, err := rs.Tensor(name)
			require.NoError(t, err)
			want := mustF32(t, f32.Data)
			dec := decode(t, got)
			require.Len(t, dec, len(want))
			var amax float64
			for _, v := range want {
				amax = math.Max(amax, math.Abs(float64(v)))
			}
			for i := range want {
				switch d {
				case loader.F32:
					require.Equal(t, want[i], dec[i])
				case loader.F16:
					require.Equal(t, quant.F16ToF32(quant.F32ToF16(want[i])), dec[i])
				case loader.Q8_0:
					// Q8_0's bound (quant/q8.go): within half a block scale,
					// the scale ≤ the block's max magnitude/127 · (1 + 2⁻¹⁰)
					// (+2⁻²⁴ for binary16 subnormal steps); amax is the
					// tensor's, at least the block's.
					require.InDelta(t, want[i], dec[i], (amax/127*(1+1.0/1024)+1.0/(1<<24))/2)
				}
			}
		}
		require.Equal(t, bytes, StoredBytes("decoder", shapes, target), target)
	}
	_, err := NewStoredSource(rs, "decoder", loader.F16).Tensor("missing")
	require.ErrorContains(t, err, `no tensor "missing"`)
}

// decode returns a stored tensor's values as float32.
func decode(t *testing.T, lt loader.Tensor) []float32 {
	if lt.DType == loader.Q8_0 {
		out := make([]float32, lt.Numel())
		quant.DequantizeQ8(out, lt.Data)
		return out
	}
	out, err := quant.ToFloat32(lt.DType.String(), lt.Data)
	require.NoError(t, err)
	return out
}

// TestStoredModules builds the small modules with F16 and Q8_0 weights
// and compares their outputs with the F32 module of the same seed and
// inputs: the error is not zero (the weights did change) and stays small.
func TestStoredModules(t *testing.T) {
	for _, name := range KarloModules {
		t.Run(name, func(t *testing.T) {
			ref := buildSmall(t, name, 5)
			ref.Forward()
			want := ref.Output().Clone()
			var prev float64
			for _, target := range []loader.DType{loader.F16, loader.Q8_0} {
				m := buildSmall(t, name, 5, WithDType(target))
				require.Equal(t, DTypeName(target), m.DType)
				require.Equal(t, ref.Params, m.Params)
				require.Less(t, m.WeightBytes, ref.WeightBytes)
				m.Forward()
				rel, err := CompareOutputs(m.Output(), want)
				require.NoError(t, err)
				t.Logf("%s %s: rel L2 %.3e", name, DTypeName(target), rel)
				require.Positive(t, rel)
				require.Less(t, rel, relBound[target])
				require.Greater(t, rel, prev, "q8 changes the weights more than f16")
				prev = rel
			}
		})
	}
}

// relBound is the largest relative L2 output error of the small modules
// accepted per storage type. One matrix product with weights perturbed by
// relative RMS ε has output error ≈ ε; the small modules chain at most ~10
// products, whose errors add (independent), so ≈ 3ε to 10ε. F16 rounds to
// 11 significant bits: ε ≈ 2⁻¹¹/√3 ≈ 2.8e-4 → bound 3e-3. Q8_0 rounds
// uniform weights on ±b to a grid of b/127: ε ≈ (b/127/√12)/(b/√3) ≈ 3.9e-3
// → bound 4e-2.
var relBound = map[loader.DType]float64{loader.F16: 3e-3, loader.Q8_0: 4e-2}
