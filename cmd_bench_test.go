package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// TestBenchPeak runs the cheapest module both ways: the JSON line carries
// the contract fields, the table its row.
func TestBenchPeak(t *testing.T) {
	code, out, _ := runApp(t, "bench", "--module", "peak", "--runs", "1", "--json", "--threads", "1")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 1)
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &r))
	require.Equal(t, "peak", r["module"])
	require.Equal(t, "f32", r["dtype"])
	require.Equal(t, 1.0, r["threads"])
	require.Positive(t, r["seconds"])
	require.Positive(t, r["gflops"])
	require.Equal(t, 1.0, r["peak_fraction"]) // the peak, measured against itself

	code, out, _ = runApp(t, "bench", "--module", "peak", "--runs", "1", "-q")
	require.Equal(t, 0, code)
	require.Contains(t, out, "FMA peak: ")
	require.Regexp(t, `\| peak +\| f32 +\| +- \| +- \|`, out)
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--module", "vae"},
		{"bench", "--module", "peak,"},
		{"bench", "--dtype", "f64"},
		{"bench", "--dtype", "f32,q8,f32"},
		{"bench", "--dtype", "f16,"},
		{"bench", "--runs", "0"},
		{"bench", "extra"},
	} {
		code, _, _ := runApp(t, args...)
		require.Equal(t, 2, code, "%q", args)
	}
}

// TestBenchDTypes: the peak is measured once whatever the dtypes (it has
// no weights), and has no relative error to report.
func TestBenchDTypes(t *testing.T) {
	code, out, _ := runApp(t, "bench", "--module", "peak", "--runs", "1", "--json", "--threads", "1",
		"--dtype", "f16,q8", "--compare")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 1)
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &r))
	require.Equal(t, "peak", r["module"])
	require.Equal(t, "f32", r["dtype"])
	require.NotContains(t, r, "rel_l2")
}

func TestBenchDTypeOrder(t *testing.T) {
	d, err := parseBenchDTypes("q8, f16,f32")
	require.NoError(t, err)
	require.Equal(t, []loader.DType{loader.Q8_0, loader.F16, loader.F32}, d)
	require.Equal(t, []loader.DType{loader.F32, loader.Q8_0, loader.F16}, f32First(d))
	require.Equal(t, []loader.DType{loader.Q8_0, loader.F16, loader.F32}, d, "input untouched")
	require.Equal(t, []loader.DType{loader.F16, loader.Q8_0}, f32First([]loader.DType{loader.F16, loader.Q8_0}))
	require.Equal(t, []loader.DType{loader.F32, loader.F16}, f32First([]loader.DType{loader.F32, loader.F16}))
}
