//go:build unix

package loader

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRobustStaleTempFiles: a writer removes the temporary files that
// killed writers of the same destination left behind (their process is
// gone), and nothing else: not those of live processes, not other
// destinations', not files that merely look similar.
func TestRobustStaleTempFiles(t *testing.T) {
	// A pid that certainly belonged to a process that has exited (and been
	// reaped): pids are not reused this quickly.
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	dead := cmd.ProcessState.Pid()
	require.True(t, processGone(dead))
	require.False(t, processGone(os.Getpid()))
	require.False(t, processGone(1), "init exists (EPERM or not, it is not gone)")

	dir := t.TempDir()
	out := filepath.Join(dir, "model.d2")
	names := map[string]bool{ // name -> must survive
		fmt.Sprintf("model.d2.tmp-%d-123456", dead):        false,
		fmt.Sprintf("model.d2.tmp-%d-9", dead):             false,
		fmt.Sprintf("model.d2.tmp-%d-1", os.Getpid()):      true, // this process: maybe another writer
		fmt.Sprintf("model.d2.tmp-%d-1", os.Getppid()):     true, // alive
		fmt.Sprintf("other.d2.tmp-%d-1", dead):             true, // another destination
		fmt.Sprintf("model.d2.tmp-%d", dead):               true, // not our pattern
		"model.d2.tmp-12345678":                            true, // old-style name, no pid
		"model.d2.tmp-x-1":                                 true,
		"model.d2.tmp-0-1":                                 true,
		"model.d2.tmp--1-1":                                true,
		fmt.Sprintf("model.d2.tmp-%d-1.keep/", dead):       true, // a directory
		fmt.Sprintf("model.d2.tmp-%d-7-partial.bin", dead): false,
	}
	for n := range names {
		if filepath.Base(n) != n {
			require.NoError(t, os.Mkdir(filepath.Join(dir, filepath.Clean(n)), 0o755))
			continue
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("partial"), 0o644))
	}
	w, err := Create(out)
	require.NoError(t, err)
	require.NoError(t, w.AddTensor("c", Tensor{Name: "x", DType: U8, Shape: []int{1}, Data: []byte{7}}))
	require.NoError(t, w.Commit())
	for n, keep := range names {
		_, err := os.Stat(filepath.Join(dir, filepath.Clean(n)))
		if keep {
			require.NoError(t, err, "%s must be kept", n)
		} else {
			require.True(t, os.IsNotExist(err), "%s must be removed", n)
		}
	}
	// WriteSafetensors cleans up the same way.
	stale := filepath.Join(dir, fmt.Sprintf("w.safetensors.tmp-%d-5", dead))
	require.NoError(t, os.WriteFile(stale, nil, 0o644))
	require.NoError(t, WriteSafetensors(filepath.Join(dir, "w.safetensors"), nil, nil))
	require.NoFileExists(t, stale)
}
