// Command dalle2 runs DALL-E 2 style text-to-image models (unCLIP, e.g.
// Kakao Brain's Karlo) on the CPU: one static Go binary, no Python.
//
//	dalle2 gen "a red horse" -o horse.png
//	dalle2 convert ./karlo-v1-alpha -o karlo.d2 --dtype f16
//	dalle2 info karlo.d2 --verify
//	dalle2 info horse.png
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/ops/asm"
)

// version is the program version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// An interrupted run exits with 128 + the signal number (130 for
	// SIGINT, 143 for SIGTERM), like a shell reports a killed command.
	exitSignalBase = 128
)

const appDescription = `dalle2 turns text into images with an unCLIP model (DALL-E 2 architecture, e.g. Kakao
Brain's Karlo): CLIP text encoder -> prior -> decoder -> super-resolution, in pure Go.
Without --model, gen uses a built-in tiny model with RANDOM weights (it draws noise);
convert Karlo once (see 'dalle2 convert --help') for real images.

Global options may stand before or after the command. Run 'dalle2 COMMAND --help' for a
command's options.

EXAMPLES:
   dalle2 gen "a red horse" --seed 7 -o horse.png
   dalle2 gen --prompts prompts.txt -o "out/{index:03}-{slug}.png" --model karlo.d2
   echo "a lighthouse at dawn" | dalle2 gen - -o - > lighthouse.png
   dalle2 info horse.png
   dalle2 gen --from-png horse.png -o again.png
   dalle2 convert ./karlo-v1-alpha -o karlo-f16.d2 --dtype f16
   source <(dalle2 completion bash)

ENVIRONMENT:
   DALLE2_MODEL    weight file used when --model is not given
   DALLE2_THREADS  worker threads when --threads is not given (0: all cores)

EXIT STATUS:
   0 success, 1 failure, 2 usage error, 130 interrupted (SIGINT; 143 for SIGTERM)`

func main() {
	os.Exit(run(os.Args))
}

// run executes the command line and returns the exit code: 0 success,
// 1 failure, 2 usage error, 128+N when signal N interrupted the run.
// SIGINT and SIGTERM cancel the context the commands run under; a second
// signal kills the process the default way.
func run(args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	got := make(chan os.Signal, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs) // a second Ctrl-C kills at once
			got <- s
			cancel()
		case <-done:
		}
	}()

	app := newApp()
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return exitOK
	}
	stderr := app.ErrWriter
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		code := exitSignalBase + int(syscall.SIGINT)
		select {
		case s := <-got:
			if n, ok := s.(syscall.Signal); ok {
				code = exitSignalBase + int(n)
			}
		default:
		}
		fmt.Fprintln(stderr, "dalle2: interrupted; no partial output written")
		return code
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(stderr, "dalle2:", msg)
		}
		return ec.ExitCode()
	}
	if isUsageError(err) {
		name, msg := "dalle2", oneLine(err.Error())
		var u usageError
		global := errors.As(err, &u) && u.global
		if cmd := commandName(app, args); cmd != "" && !global {
			name += " " + cmd
			msg = strings.TrimPrefix(msg, cmd+": ")
		}
		fmt.Fprintf(stderr, "%s: %s\nTry '%s --help' for more information.\n", name, msg, name)
		return exitUsage
	}
	fmt.Fprintln(stderr, "dalle2:", err)
	return exitFailure
}

// oneLine joins a multi-line message (urfave/cli's "Did you mean" hint)
// into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// Global flags. They may also follow the command name (reorderArgs moves
// them in front of it).
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "`N` worker threads (0: all cores)", EnvVars: []string{"DALLE2_THREADS"}},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing on stderr but errors"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print details: model metadata, kernels, threads, per-stage timings"},
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:        "dalle2",
		Usage:       "DALL-E 2 style (unCLIP) text-to-image on the CPU",
		Description: appDescription,
		Version:     version,
		Flags:       globalFlags(),
		Before: func(c *cli.Context) error {
			if n := c.Int("threads"); n < 0 {
				return usagef("--threads must be 0 (all cores) or more, got %d", n)
			}
			ops.SetThreads(c.Int("threads"))
			return nil
		},
		Action: func(c *cli.Context) error {
			if c.Args().First() == "help" {
				// "dalle2 help [COMMAND]", as "dalle2 [COMMAND] --help".
				if name := c.Args().Get(1); name != "" {
					if c.App.Command(name) == nil {
						return usageError{err: fmt.Errorf("no help for unknown command %q", name), global: true}
					}
					return cli.ShowCommandHelp(c, name)
				}
				return cli.ShowAppHelp(c)
			}
			if c.NArg() > 0 {
				msg := fmt.Sprintf("unknown command %q", c.Args().First())
				if s := suggestCommand(c.App.Commands, c.Args().First()); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return usageError{err: errors.New(msg), global: true}
			}
			// No command: the help, on stderr, and a usage error.
			w := c.App.Writer
			c.App.Writer = c.App.ErrWriter
			_ = cli.ShowAppHelp(c)
			c.App.Writer = w
			return cli.Exit("", exitUsage)
		},
		Commands: []*cli.Command{
			genCommand(),
			varyCommand(),
			editCommand(),
			interpCommand(),
			convertCommand(),
			infoCommand(),
			benchCommand(),
			completionCommand(),
		},
		Writer:               os.Stdout,
		ErrWriter:            os.Stderr,
		EnableBashCompletion: true,
		Suggest:              true,
		// Errors are reported by run (exit codes 1, 2, 128+N).
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError{err: err, global: true}
		},
		HideHelpCommand: true,
	}
	for _, cmd := range app.Commands {
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = commandUsageError(cmd)
		}
	}
	setupHelp(app)
	return app
}

// suggestCommand is the visible command closest to name, within an edit
// distance of 2 ("" when none is that close).
func suggestCommand(cmds []*cli.Command, name string) string {
	best, dist := "", 3
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		if d := editDistance(c.Name, name); d < dist {
			best, dist = c.Name, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance of a and b:
// insertions, deletions, substitutions and swaps of neighbours.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

// commandUsageError turns a command's flag-parsing error into a usage error
// (exit code 2) with urfave/cli's "did you mean" suggestion.
func commandUsageError(cmd *cli.Command) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok && cli.SuggestFlag != nil {
			if s := cli.SuggestFlag(cmd.Flags, strings.TrimLeft(name, "-"), true); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
		}
		return usageError{err: errors.New(msg)}
	}
}

// baseCommandHelp is urfave/cli's command help template before setupHelp
// appends the global options.
var baseCommandHelp = cli.CommandHelpTemplate

// setupHelp sets the version flag (--version, -V; -v is --verbose), the
// version printer and a command help that also lists the global options.
func setupHelp(app *cli.App) {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Aliases: []string{"V"}, Usage: "print the version, the weight format version and the kernels in use"}
	cli.VersionPrinter = func(c *cli.Context) { printVersion(c.App.Writer) }
	var b strings.Builder
	b.WriteString("\nGLOBAL OPTIONS (before or after the command):")
	for _, f := range app.Flags {
		fmt.Fprintf(&b, "\n   %s", f)
	}
	b.WriteString("\n")
	cli.CommandHelpTemplate = baseCommandHelp + b.String()
}

// printVersion writes what --version prints.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "dalle2 %s\n", version)
	fmt.Fprintf(w, "weight format  %d\n", loader.Version)
	fmt.Fprintf(w, "kernels        %s\n", asm.Name())
	fmt.Fprintf(w, "q8 weights     %s\n", ops.Q8Path())
	fmt.Fprintf(w, "go             %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// usageError marks a command-line mistake (exit code 2). global marks a
// mistake in the global flags (the hint points to dalle2 --help).
type usageError struct {
	err    error
	global bool
}

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{err: fmt.Errorf(format, args...)} }

func isUsageError(err error) bool {
	var u usageError
	if errors.As(err, &u) {
		return true
	}
	// urfave/cli reports unknown flags and bad flag values as plain errors.
	msg := err.Error()
	return strings.HasPrefix(msg, "flag provided but not defined") ||
		strings.HasPrefix(msg, "invalid value") ||
		strings.Contains(msg, "flag needs an argument")
}

// commandName is the command named in args ("" when none): the first
// argument after the global flags.
func commandName(app *cli.App, args []string) string {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return ""
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			if takesValue(app.Flags, a) {
				i++
			}
			continue
		}
		if cmd := app.Command(a); cmd != nil {
			return cmd.Name
		}
		return ""
	}
	return ""
}

// reorderArgs moves a command's flags in front of its positional arguments,
// so "dalle2 gen "a cat" -o cat.png --seed 3" works as users type it
// (urfave/cli v2 stops reading flags at the first positional argument), and
// moves global flags that follow the command name (and are not the
// command's own) in front of it. Everything after "--" stays positional. A
// lone "-" is positional (stdin). A shell-completion request (last argument
// --generate-bash-completion) is left as it is.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args
	}
	global := []string{args[0]}
	i := 1
	// Global flags before the command name.
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" && args[i] != "--" {
		global = append(global, args[i])
		if takesValue(app.Flags, args[i]) && i+1 < len(args) {
			global = append(global, args[i+1])
			i++
		}
		i++
	}
	if i >= len(args) {
		return global
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return append(global, args[i:]...)
	}
	name := args[i]
	i++
	var flags, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		switch {
		case hasFlag(cmd.Flags, a):
			flags = append(flags, a)
			if takesValue(cmd.Flags, a) && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		case hasFlag(app.Flags, a) || isVersionOrHelp(a):
			global = append(global, a)
			if takesValue(app.Flags, a) && i+1 < len(args) {
				global = append(global, args[i+1])
				i++
			}
		default:
			// Unknown: left for the command to report.
			flags = append(flags, a)
		}
	}
	out := append(global, name)
	for _, f := range flags {
		if f == "-h" || f == "--help" {
			// urfave/cli would read the arguments as help topics.
			return append(out, f)
		}
	}
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

// isVersionOrHelp reports whether arg is --version/-V (a global flag that
// urfave/cli adds itself). Help flags stay with the command.
func isVersionOrHelp(arg string) bool {
	return arg == "--version" || arg == "-V"
}

// flagName is the name in "-o", "--seed" or "--seed=3".
func flagName(arg string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name
}

// hasFlag reports whether arg names one of flags (or the help flag).
func hasFlag(flags []cli.Flag, arg string) bool {
	name := flagName(arg)
	if name == "help" || name == "h" {
		return true
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// takesValue reports whether arg ("-o", "--seed", not "--x=y") names a
// non-boolean flag among flags, i.e. the next argument is its value.
func takesValue(flags []cli.Flag, arg string) bool {
	if strings.Contains(arg, "=") {
		return false
	}
	name := strings.TrimLeft(arg, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, ok := f.(*cli.BoolFlag); ok {
				return false
			}
			return true
		}
	}
	return false
}

// anyBool reports whether the boolean flag name is set on the command or on
// any level above it (gen -q and dalle2 -q gen are the same).
func anyBool(c *cli.Context, name string) bool {
	for _, x := range c.Lineage() {
		if x.Bool(name) {
			return true
		}
	}
	return false
}
