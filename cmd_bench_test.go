package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
	require.Regexp(t, `\| peak +\| +- \|`, out)
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--module", "vae"},
		{"bench", "--module", "peak,"},
		{"bench", "--dtype", "f16"},
		{"bench", "--runs", "0"},
		{"bench", "extra"},
	} {
		code, _, _ := runApp(t, args...)
		require.Equal(t, 2, code, "%q", args)
	}
}
