package model_test

// The q8 policy ablation: convert's q8 files keep some tensors in F16
// (convert/policy.go: the U-Nets' first and last convolutions, embeddings,
// norms, biases). This test writes alternatives that quantize more, from
// the f32 file's tensors, and measures them against the f32 run exactly as
// TestQuality/dtypes measures the default q8 file (it runs as
// TestQuality/policy). It is a measurement (the numbers justify the
// policy), not an assertion: it fails only when a file cannot be written,
// loaded or run, or when an alternative changes nothing.

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/quant"
)

// qualityAlt is an alternative q8 policy: quantize reports whether a
// tensor (component, key, shape) that convert's policy stores F16 should be
// Q8_0 instead (where its row length permits).
type qualityAlt struct {
	name     string
	quantize func(comp, key string, shape []int) bool
}

var qualityAlts = []qualityAlt{
	// The policy's first exception: the U-Nets' first and last
	// convolutions. conv_in's rows (Cin·9 = 27 or 54 taps) are not a
	// multiple of 32 and cannot be Q8_0 at all, so this is conv_out.
	{"q8 + conv_in/out", func(_, key string, _ []int) bool {
		return strings.HasSuffix(key, "conv_in.weight") || strings.HasSuffix(key, "conv_out.weight")
	}},
	// Everything with rows: also embedding tables, the prior's bare
	// parameters (positional_embedding, clip_mean, ...), and the weights
	// below the policy's 32·32-element minimum.
	{"q8 all rank≥2", func(_, _ string, shape []int) bool { return len(shape) >= 2 }},
}

// q8RowOK reports whether a tensor of this shape can be stored as Q8_0:
// rank ≥ 1 and a row length (all dimensions but the first; a vector's only
// one) that is a multiple of the block size.
func q8RowOK(shape []int) bool {
	if len(shape) == 0 {
		return false
	}
	row := shape[len(shape)-1]
	if len(shape) >= 2 {
		row = 1
		for _, d := range shape[1:] {
			row *= d
		}
	}
	return row%quant.Q8Block == 0
}

// writeVariant writes dst: a copy of the weight file base (metadata,
// components, blobs, tensors) in which every float tensor is stored as
// pick(component, key, shape, its dtype in base). A tensor whose dtype
// changes is re-encoded from the f32 file's values (one rounding only, not
// a second one of base's). It returns the tensors it changed.
func writeVariant(t *testing.T, dst, basePath, f32Path string, pick func(comp, key string, shape []int, was loader.DType) loader.DType) (changed []string) {
	base, err := loader.Open(basePath)
	require.NoError(t, err)
	defer base.Close()
	f32, err := loader.Open(f32Path)
	require.NoError(t, err)
	defer f32.Close()

	w, err := loader.Create(dst)
	require.NoError(t, err)
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()
	meta := base.Meta()
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.SetMeta(k, meta[k])
	}
	for _, c := range base.Components() {
		require.NoError(t, w.AddComponent(c))
	}
	for _, b := range base.Blobs() {
		data, err := base.Blob(b.Name)
		require.NoError(t, err)
		require.NoError(t, w.AddBlob(b.Name, data))
	}
	for _, name := range base.Names() {
		tn, err := base.Tensor(name)
		require.NoError(t, err)
		comp, key, ok := strings.Cut(name, "/")
		require.True(t, ok, "tensor %q has no component", name)
		out := tn
		out.Name = key
		if tn.DType == loader.F32 || tn.DType == loader.F16 || tn.DType == loader.Q8_0 {
			if want := pick(comp, key, tn.Shape, tn.DType); want != tn.DType {
				src, err := f32.Tensor(name)
				require.NoError(t, err)
				vals, err := quant.ToFloat32(src.DType.String(), src.Data)
				require.NoError(t, err)
				out = loader.Tensor{Name: key, DType: want, Shape: tn.Shape}
				switch want {
				case loader.Q8_0:
					require.True(t, q8RowOK(tn.Shape), "%s: shape %v cannot be Q8_0", name, tn.Shape)
					out.Data = make([]byte, quant.Q8Bytes(len(vals)))
					require.NoError(t, quant.QuantizeQ8(out.Data, vals), "%s", name)
				case loader.F16:
					out.Data = make([]byte, 2*len(vals))
					for i, v := range vals {
						binary.LittleEndian.PutUint16(out.Data[2*i:], quant.F32ToF16(v))
					}
				case loader.F32:
					out = src
					out.Name = key
				default:
					t.Fatalf("%s: cannot write %s", name, want)
				}
				changed = append(changed, name)
			}
		}
		require.NoError(t, w.AddTensor(comp, out), "%s", name)
	}
	require.NoError(t, w.Commit())
	committed = true
	return changed
}

// qualityPolicy measures the alternatives against the f32 run, next to
// convert's policy, on every case.
func qualityPolicy(t *testing.T, q *qualityFixture) {
	var rows []qualityRow
	alts := map[string]string{} // pipeline dir + alternative -> file
	for _, c := range q.cases {
		f32, def := q.file(c, "f32"), q.file(c, "q8")
		ref := q.run(t, c, f32)
		r := compareRuns(c.Case, "q8", q.run(t, c, def), ref)
		r.Bytes, r.Unstable, r.Note = fileSize(t, def), !stable(c), "convert's policy"
		rows = append(rows, r)
		for i, alt := range qualityAlts {
			key := c.PipelineDir + "|" + alt.name
			path, ok := alts[key]
			if !ok {
				path = filepath.Join(q.dir, fmt.Sprintf("%s-alt%d.d2", strings.ReplaceAll(c.PipelineDir, "/", "_"), i))
				var kept []string
				changed := writeVariant(t, path, def, f32, func(comp, key string, shape []int, was loader.DType) loader.DType {
					if was != loader.F16 || !alt.quantize(comp, key, shape) {
						return was
					}
					if !q8RowOK(shape) {
						kept = append(kept, comp+"/"+key)
						return was
					}
					return loader.Q8_0
				})
				t.Logf("%s, %s: %d more tensors in Q8_0 %v; kept F16 (rows not a multiple of %d): %v",
					c.PipelineDir, alt.name, len(changed), changed, quant.Q8Block, kept)
				require.NotEmpty(t, changed, "alternative %q changes nothing", alt.name)
				alts[key] = path
			}
			r := compareRuns(c.Case, alt.name, q.run(t, c, path), ref)
			r.Bytes, r.Unstable = fileSize(t, path), !stable(c)
			rows = append(rows, r)
		}
	}
	qualityReport(t, "q8 policy ablation vs f32 (same cases and noise; measured, not asserted)", qualityTable(rows))
}
