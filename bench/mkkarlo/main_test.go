package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUsage: argument errors are reported before anything is written (the
// full-size file itself is for manual runs; bench.TestWritePipelineTiny
// tests the writer).
func TestUsage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.d2")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "-o FILE is required"},
		{[]string{"-o", out, "--dtype", "bf16"}, `unknown dtype "bf16"`},
		{[]string{"-o", out, "--dtype", ""}, "empty dtype"},
		{[]string{"-o", out, "extra"}, `unexpected argument "extra"`},
		{[]string{"--seed", "x"}, "invalid value"},
	} {
		var stderr bytes.Buffer
		err := run(c.args, &stderr)
		require.Error(t, err, "%q", c.args)
		require.Contains(t, err.Error()+stderr.String(), c.want, "%q", c.args)
	}
	require.NoFileExists(t, out)
}
