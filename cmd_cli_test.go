package main

// Process-level tests: they build the dalle2 binary once per test binary
// and drive it with os/exec, as users and scripts do. They are skipped
// with -short (each runs the pipeline; CI runs -race -short).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// dalle2Bin builds the dalle2 binary (once per test binary) and returns
// its path. The folder is removed by TestMain.
func dalle2Bin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the dalle2 binary: skipped with -short")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dalle2-bin-")
		if err != nil {
			binErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "dalle2")
		if runtime.GOOS == "windows" {
			binPath += ".exe"
		}
		gotool, err := exec.LookPath("go")
		if err != nil {
			gotool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		args := []string{"build", "-o", binPath}
		if asm.Name() == "purego" {
			// Build the binary the way this test binary was built.
			args = append(args, "-tags", "purego")
		}
		cmd := exec.Command(gotool, append(args, ".")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// binDir holds the built binary; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cliResult is what one run of the binary did.
type cliResult struct {
	code           int
	stdout, stderr []byte
}

// cleanEnv is the test's environment without the variables dalle2 reads.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "DALLE2_MODEL=") || strings.HasPrefix(kv, "DALLE2_THREADS=")
	})
}

// runBin runs the binary in dir with stdin and args.
func runBin(t *testing.T, dir string, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(dalle2Bin(t), args...)
	cmd.Dir, cmd.Stdin, cmd.Env = dir, stdin, cleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "running %q", args)
		code = ee.ExitCode()
	}
	return cliResult{code, o.Bytes(), e.Bytes()}
}

// fast are the flags of a quick generation on the built-in model: two
// prior and decoder steps, stopping after its 32-pixel decoder.
var fast = []string{"--prior-steps", "2", "--decoder-steps", "2", "--size", "32"}

func withFast(args ...string) []string { return append(args, fast...) }

// dirFiles lists the names in dir (hidden temporaries included).
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestCLIFlagsAfterArguments: every command takes its flags (and the
// global ones) after its positional arguments.
func TestCLIFlagsAfterArguments(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, withFast("gen", "a cat", "-o", "cat.png", "--seed", "3", "--threads", "1", "-q")...)
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.Empty(t, r.stderr, "-q: nothing on stderr")
	img, err := png.Decode(bytes.NewReader(mustRead(t, filepath.Join(dir, "cat.png"))))
	require.NoError(t, err)
	require.Equal(t, 32, img.Bounds().Dx())

	src, err := filepath.Abs(filepath.Join(goldenRoot(t), "tiny-unclip"))
	require.NoError(t, err)
	r = runBin(t, dir, nil, "convert", src, "-o", "tiny.d2", "--dtype", "f16", "-q")
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.Empty(t, r.stderr)
	r = runBin(t, dir, nil, "info", "tiny.d2", "--verify", "-v")
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.Contains(t, string(r.stdout), "verify: OK")
	r = runBin(t, dir, nil, "info", "cat.png", "--threads", "2")
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.Contains(t, string(r.stdout), "  prompt             a cat\n")
	r = runBin(t, dir, nil, "completion", "zsh", "-q")
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.Contains(t, string(r.stdout), "compdef _dalle2_zsh_autocomplete dalle2")

	// The image commands, on a model with an image encoder (cmd_vary_test.go).
	mdl := comboModel(t)
	input, err := filepath.Abs(filepath.Join(goldenRoot(t), "cases", "variation_input_48x40.png"))
	require.NoError(t, err)
	for _, args := range [][]string{
		{"vary", input, "-o", "vary.png"},
		{"edit", input, "a red horse", "-o", "edit.png", "--alpha", "0.5"},
		{"interp", input, "a red horse", "-o", "walk.png", "--frames", "2"},
	} {
		if args[0] != "vary" { // vary has no prior
			args = append(args, "--prior-steps", "2")
		}
		args = append(args, "--decoder-steps", "2", "--size", "32", "--model", mdl, "--seed", "2", "--threads", "1", "-q")
		r = runBin(t, dir, nil, args...)
		require.Equal(t, 0, r.code, "%q: %s", args, r.stderr)
		require.Empty(t, r.stderr)
	}
	for _, f := range []string{"vary.png", "edit.png", "walk-0.png", "walk-1.png"} {
		require.FileExists(t, filepath.Join(dir, f))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// TestCLIStdinToStdout: a prompt piped on stdin, the PNG on stdout.
func TestCLIStdinToStdout(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, strings.NewReader("a lighthouse at dawn\n"), withFast("gen", "-", "-o", "-", "--seed", "11")...)
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.True(t, bytes.HasPrefix(r.stdout, []byte(pngSignature)), "stdout starts with the PNG signature")
	img, err := png.Decode(bytes.NewReader(r.stdout))
	require.NoError(t, err)
	require.Equal(t, 32, img.Bounds().Dx())
	_, texts, err := readPNGChunks(bytes.NewReader(r.stdout), "stdout")
	require.NoError(t, err)
	var params genParams
	for _, tc := range texts {
		if tc.Keyword == paramsKeyword {
			require.NoError(t, json.Unmarshal([]byte(tc.Text), &params))
		}
	}
	require.Equal(t, "a lighthouse at dawn", params.Prompt)
	require.Equal(t, uint64(11), *params.Seed)
	require.Contains(t, string(r.stderr), "decoder ", "progress on stderr")
	require.Empty(t, dirFiles(t, dir), "nothing written to the folder")
}

// TestCLIPromptsTemplateJSON: three prompt lines make three generations
// (seeds S, S+1, S+2), named by the template, reported as JSON lines.
func TestCLIPromptsTemplateJSON(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "out"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prompts.txt"), []byte("a red horse\n\n  Blue CAT!\r\nthe moon\n"), 0o644))
	r := runBin(t, dir, nil, withFast("gen", "--prompts", "prompts.txt", "--seed", "10", "--json", "-o", "out/{index:02}-{slug}-{seed}.png")...)
	require.Equal(t, 0, r.code, "%s", r.stderr)
	want := []string{"00-a-red-horse-10.png", "01-blue-cat-11.png", "02-the-moon-12.png"}
	require.Equal(t, want, dirFiles(t, filepath.Join(dir, "out")), "exactly these files, no temporaries")
	require.Contains(t, string(r.stderr), "[2/3] decoder ", "progress labels the generation")

	lines := strings.Split(strings.TrimSuffix(string(r.stdout), "\n"), "\n")
	require.Len(t, lines, 3, "one JSON line per image:\n%s", r.stdout)
	prompts := []string{"a red horse", "Blue CAT!", "the moon"}
	for k, line := range lines {
		var rec genRecord
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		require.Equal(t, "out/"+want[k], rec.Path)
		require.Equal(t, prompts[k], rec.Prompt)
		require.Equal(t, k, rec.Index)
		require.Equal(t, k, rec.PromptIndex)
		require.Equal(t, 0, rec.ImageIndex)
		require.Equal(t, uint64(10+k), *rec.Seed)
		require.Equal(t, 32, rec.Width)
		for _, stage := range []string{"text", "prior", "decoder"} {
			require.Contains(t, rec.Timings, stage)
		}
		require.Greater(t, rec.Seconds, 0.0)

		// Line k alone with seed 10+k makes the same image: lines are
		// independent generations.
		if k == 2 {
			single := filepath.Join(dir, "single.png")
			r := runBin(t, dir, nil, withFast("gen", prompts[k], "--seed", fmt.Sprint(10+k), "-o", single, "-q")...)
			require.Equal(t, 0, r.code, "%s", r.stderr)
			a, err := png.Decode(bytes.NewReader(mustRead(t, single)))
			require.NoError(t, err)
			b, err := png.Decode(bytes.NewReader(mustRead(t, filepath.Join(dir, rec.Path))))
			require.NoError(t, err)
			require.Equal(t, a, b)
		}
	}
}

// TestCLIFromPNG: the parameters chunk round-trips through "dalle2 info",
// and --from-png makes the same bytes again, also for the second image of
// a two-prompt batch (which needs the whole batch's noise).
func TestCLIFromPNG(t *testing.T) {
	dir := t.TempDir()
	r := runBin(t, dir, nil, withFast("gen", "a cat", "a dog", "--seed", "4", "--prior-guidance", "3.5", "-o", "b.png", "-q")...)
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.Equal(t, []string{"b-0.png", "b-1.png"}, dirFiles(t, dir))

	r = runBin(t, dir, nil, "info", "b-1.png")
	require.Equal(t, 0, r.code, "%s", r.stderr)
	out := string(r.stdout)
	for _, want := range []string{
		"image    PNG 32x32, 8-bit RGB\n",
		"  Description  a dog\n",
		"  prompt             a dog\n",
		"  batch prompt 0     a cat\n",
		"  batch prompt 1     a dog\n",
		"  batch index        1\n",
		"  seed               4\n",
		"  prior steps        2\n",
		"  decoder steps      2\n",
		"  prior guidance     3.5\n",
		"  decoder guidance   8\n",
		"  size               32\n",
		"  model              builtin\n",
		"  model source       tiny-unclip\n",
		"  dalle2 version     " + version + "\n",
		"dalle2 gen 'a cat' 'a dog' --seed 4 --prior-steps 2 --decoder-steps 2",
	} {
		require.Contains(t, out, want)
	}

	r = runBin(t, dir, nil, "gen", "--from-png", "b-1.png", "-o", "again.png", "-q")
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.True(t, bytes.Equal(mustRead(t, filepath.Join(dir, "b-1.png")), mustRead(t, filepath.Join(dir, "again.png"))),
		"--from-png must reproduce the same bytes")

	// A flag given with --from-png overrides the recorded value.
	r = runBin(t, dir, nil, "gen", "--from-png", "b-1.png", "--seed", "5", "-o", "other.png", "-q")
	require.Equal(t, 0, r.code, "%s", r.stderr)
	g, err := readGenParams(filepath.Join(dir, "other.png"))
	require.NoError(t, err)
	require.Equal(t, uint64(5), *g.Seed)
	require.Equal(t, "a dog", g.Prompt)
	require.Equal(t, 2, g.DecoderSteps)
	require.False(t, bytes.Equal(mustRead(t, filepath.Join(dir, "b-1.png")), mustRead(t, filepath.Join(dir, "other.png"))))
}

// TestCLIUsageErrors: exit code 2 and exactly two lines on stderr: the
// error, then a hint naming the help to read.
func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"gen"}, "dalle2 gen: no prompt given"},
		{[]string{"gen", "x", "--sed", "3"}, "dalle2 gen: flag provided but not defined: -sed (did you mean --seed?)"},
		{[]string{"gen", "x", "-n", "0"}, "dalle2 gen: -n must be at least 1"},
		{[]string{"gen", "x", "--seed", "abc"}, "dalle2 gen: invalid value \"abc\" for flag -seed"},
		{[]string{"gen", "x", "--json", "-o", "-"}, "dalle2 gen: --json prints JSON"},
		{[]string{"gen", "x", "y", "-o", "-"}, "dalle2 gen: -o - writes one image; this run makes 2"},
		{[]string{"gen", "x", "-o", "{nope}.png"}, "dalle2 gen: -o \"{nope}.png\": unknown placeholder {nope}"},
		{[]string{"gen", "x", "-n", "2", "-o", "{slug}.png"}, "names images 0 and 1 both \"x.png\""},
		{[]string{"gen", "x", "-"}, "give one or the other"},
		{[]string{"gen", "--from-png", "a.png", "x"}, "--from-png takes the prompt from the PNG"},
		{[]string{"gen", "x", "--size", "17"}, "--size 17: this model makes 32 (decoder) or 64 (super-res) pixel images"},
		{[]string{"gen", "x", "--threads", "-2"}, "--threads must be 0 (all cores) or more"},
		{[]string{"info"}, "dalle2 info: want one FILE"},
		{[]string{"convert", "src"}, "dalle2 convert: -o FILE is required"},
		{[]string{"completion", "tcsh"}, "dalle2 completion: unknown shell \"tcsh\""},
		{[]string{"gne", "x"}, "dalle2: unknown command \"gne\" (did you mean \"gen\"?)"},
		{[]string{"--nope", "gen"}, "dalle2: flag provided but not defined: -nope"},
	} {
		r := runBin(t, dir, nil, c.args...)
		require.Equal(t, 2, r.code, "%q: %s", c.args, r.stderr)
		lines := strings.Split(strings.TrimSuffix(string(r.stderr), "\n"), "\n")
		require.Len(t, lines, 2, "%q: error and hint, one line each:\n%s", c.args, r.stderr)
		require.Contains(t, lines[0], c.msg, c.args)
		require.Regexp(t, `^Try 'dalle2( [a-z]+)? --help' for more information\.$`, lines[1])
		require.Empty(t, r.stdout, c.args)
	}
	require.Empty(t, dirFiles(t, dir))

	// No command at all: the help, on stderr, and exit 2.
	r := runBin(t, dir, nil)
	require.Equal(t, 2, r.code)
	require.Contains(t, string(r.stderr), "COMMANDS:")
	require.Empty(t, r.stdout)
}

// TestCLIMissingModel: a missing weight file is a failure (1) naming it.
func TestCLIMissingModel(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-model.d2")
	r := runBin(t, dir, nil, "gen", "a cat", "--model", missing, "-o", "x.png")
	require.Equal(t, 1, r.code, "%s", r.stderr)
	require.Contains(t, string(r.stderr), missing)
	require.Equal(t, 1, strings.Count(string(r.stderr), "\n"), "one line:\n%s", r.stderr)

	// The same through the environment variable, and --from-png of a
	// missing PNG.
	cmd := exec.Command(dalle2Bin(t), "gen", "a cat", "-o", "x.png")
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), "DALLE2_MODEL="+missing)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.ExitCode())
	require.Contains(t, string(out), missing)

	r = runBin(t, dir, nil, "gen", "--from-png", "gone.png")
	require.Equal(t, 1, r.code)
	require.Contains(t, string(r.stderr), "gone.png")
	r = runBin(t, dir, nil, "gen", "x", "-o", "no/such/dir/x.png")
	require.Equal(t, 1, r.code)
	require.Contains(t, string(r.stderr), "output folder no/such/dir does not exist")
	require.Empty(t, dirFiles(t, dir))
}

// progressLine matches a progress line: "prior       1/200 ...".
var progressLine = regexp.MustCompile(`^(\[\d+/\d+\] )?[a-z_]+ +\d+/\d+ `)

// TestCLIInterrupt: a signal during a long run stops it between steps;
// the exit status is 128+signal and no file (partial or temporary) is
// left.
func TestCLIInterrupt(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send on Windows")
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(dalle2Bin(t), "gen", "a red horse", "--prior-steps", "300", "--decoder-steps", "300",
				"-n", "2", "-o", "x.png", "--seed", "1")
			cmd.Dir, cmd.Env = dir, cleanEnv()
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			done := make(chan struct{})
			defer func() {
				select {
				case <-done:
				default:
					_ = cmd.Process.Kill()
				}
			}()
			var log strings.Builder
			seen := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stderr)
				once := sync.Once{}
				for sc.Scan() {
					log.WriteString(sc.Text() + "\n")
					if progressLine.MatchString(sc.Text()) {
						once.Do(func() { close(seen) })
					}
				}
				close(done)
			}()
			select {
			case <-seen:
			case <-time.After(2 * time.Minute):
				t.Fatalf("no progress line within 2 minutes")
			}
			require.NoError(t, cmd.Process.Signal(sig))
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("still running a minute after %v", sig)
			}
			err = cmd.Wait()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "must exit non-zero")
			require.Equal(t, 128+int(sig), ee.ExitCode(), "%s", log.String())
			require.Contains(t, log.String(), "interrupted")
			require.Empty(t, dirFiles(t, dir), "no output, no temporaries")
		})
	}
}

// TestCLIVersion: --version names the version, weight format and kernels.
func TestCLIVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-V"}, {"gen", "--version"}} {
		r := runBin(t, t.TempDir(), nil, args...)
		require.Equal(t, 0, r.code, "%q: %s", args, r.stderr)
		out := string(r.stdout)
		require.Contains(t, out, "dalle2 "+version+"\n")
		require.Contains(t, out, fmt.Sprintf("weight format  %d\n", loader.Version))
		require.Contains(t, out, "kernels        "+asm.Name()+"\n")
		require.Contains(t, out, "q8 weights     "+ops.Q8Path()+"\n")
	}
}
