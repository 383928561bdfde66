package ops_test

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/stretchr/testify/require"
)

// goldenDir is the reference data folder (env DALLE2_GOLDEN, else the shared
// folder next to the repository). It skips the test when the folder is
// missing, unless CI is set.
func goldenDir(t testing.TB) string {
	d := os.Getenv("DALLE2_GOLDEN")
	if d == "" {
		d = filepath.Join("..", "..", "shared", "golden")
	}
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden data folder %s: %v", d, err)
		}
		t.Skipf("golden data folder %s missing (set DALLE2_GOLDEN)", d)
	}
	return d
}

// goldenF32 reads an F32 tensor from a safetensors file.
func goldenF32(t *testing.T, f *loader.Safetensors, name string) *ops.Tensor {
	t.Helper()
	lt, err := f.Tensor(name)
	require.NoError(t, err)
	require.Equal(t, loader.F32, lt.DType, "tensor %s", name)
	vals := make([]float32, len(lt.Data)/4)
	for i := range vals {
		vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(lt.Data[4*i:]))
	}
	return ops.FromData(vals, lt.Shape...)
}

func TestUpsampleBicubicAAGolden(t *testing.T) {
	f, err := loader.OpenSafetensors(filepath.Join(goldenDir(t), "cases", "interpolate.safetensors"))
	require.NoError(t, err)
	defer f.Close()
	for _, tc := range []struct {
		name string
		// tol is the max abs difference from PyTorch. The manifest (note 5)
		// reports this recipe bit-exact for integer scales (A) and 7.15e-07
		// off for the non-integer scale of B; that is exactly 3·2⁻²², i.e.
		// 6 ulp of an output in [1, 2) (PyTorch's weights for the non-dyadic
		// centres differ from ours by a few ulp; no variant of the recipe
		// we tried matches them better).
		tol float64
	}{
		{"interp.A", 0},
		{"interp.B", 3 * 0x1p-22},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := goldenF32(t, f, tc.name+".input")
			want := goldenF32(t, f, tc.name+".bicubic_aa")
			got := ops.New(want.Shape...)
			ops.UpsampleBicubicAA(got, in)
			var maxd float64
			nd := 0
			for i := range got.Data {
				d := math.Abs(float64(got.Data[i]) - float64(want.Data[i]))
				if d != 0 {
					nd++
				}
				maxd = max(maxd, d)
			}
			t.Logf("%s: max |diff| %.3g, %d of %d elements differ", tc.name, maxd, nd, len(got.Data))
			require.LessOrEqual(t, maxd, tc.tol)
		})
	}
}
