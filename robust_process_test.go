package main

// Durability, concurrency and pickle safety of the built dalle2 binary:
// convert killed with SIGKILL mid-write leaves the old output intact and
// only a temporary file the next run removes; concurrent converts to one
// output leave a valid file; a hostile .bin is refused and nothing runs.

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
)

// robustBuild builds the dalle2 binary into dir.
func robustBuild(t *testing.T, dir string) string {
	bin := filepath.Join(dir, "dalle2")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		gotool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gotool, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// robustGolden is the golden tiny-unclip folder (skip without it, unless CI).
func robustGolden(t *testing.T) string {
	d := os.Getenv("DALLE2_GOLDEN")
	if d == "" {
		d = filepath.Join("..", "shared", "golden")
	}
	d = filepath.Join(d, "tiny-unclip")
	if _, err := os.Stat(d); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden folder %s missing: %v", d, err)
		}
		t.Skipf("golden folder %s missing: %v", d, err)
	}
	abs, err := filepath.Abs(d)
	require.NoError(t, err)
	return abs
}

// robustPipeline makes a pipeline folder under dir from tiny-unclip
// (symlinked), with an extra first component "big" of mb MiB of random F32
// weights (when mb > 0) so that converting it takes long enough to be
// interrupted, and with the files of replace written over tiny-unclip's
// (a nil value leaves the file out).
func robustPipeline(t *testing.T, dir string, mb int, replace map[string][]byte) string {
	src := robustGolden(t)
	p := filepath.Join(dir, "pipeline")
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(p, rel), 0o755)
		}
		if _, ok := replace[rel]; ok || rel == "model_index.json" {
			return nil
		}
		return os.Symlink(path, filepath.Join(p, rel))
	})
	require.NoError(t, err)
	for rel, b := range replace {
		if b != nil {
			require.NoError(t, os.WriteFile(filepath.Join(p, rel), b, 0o644))
		}
	}
	index, err := os.ReadFile(filepath.Join(src, "model_index.json"))
	require.NoError(t, err)
	if mb > 0 {
		index = bytes.Replace(index, []byte("{"), []byte(`{"big": ["diffusers", "UNet2DModel"],`), 1)
		require.NoError(t, os.MkdirAll(filepath.Join(p, "big"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(p, "big", "config.json"), []byte(`{"_class_name": "UNet2DModel"}`), 0o644))
		r := rand.NewChaCha8([32]byte{42})
		var ts []loader.Tensor
		for i := range mb {
			b := make([]byte, 1<<20)
			r.Read(b)
			ts = append(ts, loader.Tensor{Name: fmt.Sprintf("w%03d", i), DType: loader.F32, Shape: []int{256, 1024}, Data: b})
		}
		require.NoError(t, loader.WriteSafetensors(filepath.Join(p, "big", "diffusion_pytorch_model.safetensors"), ts, nil))
	}
	require.NoError(t, os.WriteFile(filepath.Join(p, "model_index.json"), index, 0o644))
	return p
}

// robustRun runs the binary and returns its exit code and stderr.
func robustRun(t *testing.T, bin string, args ...string) (int, string) {
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String()
	}
	require.NoError(t, err)
	return 0, stderr.String()
}

// robustDir lists a folder's names, sorted.
func robustDir(t *testing.T, dir string) []string {
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	slices.Sort(out)
	return out
}

// robustVerify opens and verifies a weight file.
func robustVerify(t *testing.T, path string) *loader.File {
	f, err := loader.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, f.Verify())
	return f
}

// robustPickleZip is a torch.save archive whose data.pkl is pkl.
func robustPickleZip(t *testing.T, pkl []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range []struct {
		name string
		data []byte
	}{{"archive/data.pkl", pkl}, {"archive/byteorder", []byte("little")}, {"archive/version", []byte("3\n")}} {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Store})
		require.NoError(t, err)
		w.Write(e.data)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// robustUnicode is a BINUNICODE opcode pushing s.
func robustUnicode(s string) []byte {
	return append(binary.LittleEndian.AppendUint32([]byte{'X'}, uint32(len(s))), s...)
}

func TestRobustProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the dalle2 binary: skipped with -short")
	}
	if runtime.GOOS == "windows" {
		t.Skip("uses SIGKILL and symlinks")
	}
	bin := robustBuild(t, t.TempDir())

	t.Run("KillMidWrite", func(t *testing.T) {
		tmp := t.TempDir()
		src := robustPipeline(t, tmp, 96, nil)
		outDir := filepath.Join(tmp, "out")
		require.NoError(t, os.Mkdir(outDir, 0o755))
		out := filepath.Join(outDir, "model.d2")
		old, err := os.ReadFile(filepath.Join("testdata", "builtin-tiny-unclip-f16.d2"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(out, old, 0o644))

		// Start convert and SIGKILL it once its temporary file holds 16
		// MiB (of ~110 MiB). Under heavy load convert might still finish
		// between two polls: try again a few times.
		var killed *os.ProcessState
		var tempName string
		for attempt := 0; attempt < 5 && killed == nil; attempt++ {
			cmd := exec.Command(bin, "convert", src, "-o", out, "-q")
			require.NoError(t, cmd.Start())
			deadline := time.Now().Add(2 * time.Minute)
			for time.Now().Before(deadline) {
				if tempName = robustBigTemp(outDir, "model.d2"+loader.TempInfix, 16<<20); tempName != "" {
					if cmd.Process.Signal(syscall.SIGKILL) == nil {
						st, _ := cmd.Process.Wait()
						if st != nil && !st.Exited() {
							killed = st
						}
					}
					break
				}
				time.Sleep(200 * time.Microsecond)
			}
			if killed == nil {
				cmd.Process.Kill()
				cmd.Wait()
				require.NoError(t, os.WriteFile(out, old, 0o644))
			}
		}
		require.NotNil(t, killed, "could not kill convert while it was writing")
		t.Logf("killed pid %d while it was writing %s", killed.Pid(), tempName)

		// The old output is untouched; the only other file is the killed
		// writer's temporary file, named after its pid.
		got, err := os.ReadFile(out)
		require.NoError(t, err)
		require.True(t, bytes.Equal(old, got), "the old output changed")
		robustVerify(t, out)
		left := robustDir(t, outDir)
		require.Len(t, left, 2, "%v", left)
		require.Equal(t, "model.d2", left[0])
		require.True(t, strings.HasPrefix(left[1], fmt.Sprintf("model.d2%s%d-", loader.TempInfix, killed.Pid())), left[1])
		_, err = loader.Open(filepath.Join(outDir, left[1]))
		require.Error(t, err, "the partial file is not a valid weight file")

		// A rerun succeeds and removes the stale temporary file.
		code, stderr := robustRun(t, bin, "convert", src, "-o", out, "-q")
		require.Zero(t, code, stderr)
		f := robustVerify(t, out)
		_, ok := f.Component("big")
		require.True(t, ok)
		require.Equal(t, []string{"model.d2"}, robustDir(t, outDir), "no temporary file may remain")
	})

	t.Run("ConcurrentConverts", func(t *testing.T) {
		tmp := t.TempDir()
		src := robustPipeline(t, tmp, 8, nil)
		outDir := filepath.Join(tmp, "out")
		require.NoError(t, os.Mkdir(outDir, 0o755))
		out := filepath.Join(outDir, "model.d2")
		for round := range 3 {
			var wg sync.WaitGroup
			codes := make([]int, 3)
			stderrs := make([]string, 3)
			for i := range codes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					args := []string{"convert", src, "-o", out, "-q"}
					if i == 1 {
						args = append(args, "--dtype", "f16")
					}
					cmd := exec.Command(bin, args...)
					var e bytes.Buffer
					cmd.Stderr = &e
					err := cmd.Run()
					if ee, ok := err.(*exec.ExitError); ok {
						codes[i] = ee.ExitCode()
					} else if err != nil {
						codes[i] = -1
					}
					stderrs[i] = e.String()
				}()
			}
			wg.Wait()
			for i, c := range codes {
				require.Zero(t, c, "round %d, convert %d: %s", round, i, stderrs[i])
			}
			f := robustVerify(t, out)
			require.Len(t, f.Components(), 11)
			require.Equal(t, []string{"model.d2"}, robustDir(t, outDir), "round %d: no temporary file may remain", round)
		}
	})

	t.Run("HostilePickle", func(t *testing.T) {
		for _, c := range []struct {
			name, want string
			pkl        func(cmd string) []byte
		}{
			{"os.system", `global "os.system" is not allowed`, func(cmd string) []byte {
				p := []byte("\x80\x02ccollections\nOrderedDict\n)R(")
				p = append(p, robustUnicode("evil")...)
				p = append(p, "cos\nsystem\n("...)
				p = append(p, robustUnicode(cmd)...)
				return append(p, "tRu."...)
			}},
			{"posix.system via STACK_GLOBAL", `global "posix.system" is not allowed`, func(cmd string) []byte {
				p := []byte("\x80\x04}(")
				p = append(p, robustUnicode("evil")...)
				p = append(p, robustUnicode("posix")...)
				p = append(p, robustUnicode("system")...)
				p = append(p, 0x93, '(')
				p = append(p, robustUnicode(cmd)...)
				return append(p, "tRu."...)
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				tmp := t.TempDir()
				marker := filepath.Join(tmp, "pwned")
				bin2 := filepath.Join("text_proj", "diffusion_pytorch_model.bin")
				src := robustPipeline(t, tmp, 0, map[string][]byte{
					filepath.Join("text_proj", "diffusion_pytorch_model.safetensors"): nil,
					bin2: robustPickleZip(t, c.pkl("touch "+marker)),
				})
				outDir := filepath.Join(tmp, "out")
				require.NoError(t, os.Mkdir(outDir, 0o755))
				code, stderr := robustRun(t, bin, "convert", src, "-o", filepath.Join(outDir, "model.d2"))
				require.Equal(t, 1, code, stderr)
				require.Contains(t, stderr, c.want)
				require.Contains(t, stderr, filepath.Join(src, bin2))
				require.Empty(t, robustDir(t, outDir), "no output or temporary file may remain")
				require.NoFileExists(t, marker, "the payload ran")
			})
		}
	})
}

// robustBigTemp returns the name of a file in dir starting with prefix
// that holds at least size bytes ("" if none).
func robustBigTemp(dir, prefix string, size int64) string {
	des, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), prefix) {
			continue
		}
		if fi, err := de.Info(); err == nil && fi.Size() >= size {
			return de.Name()
		}
	}
	return ""
}
