// Command dalle2 runs DALL-E 2 style text-to-image models (unCLIP, e.g.
// Kakao Brain's Karlo) on the CPU: one static Go binary, no Python.
//
//	dalle2 gen "a red horse" -o horse.png
//	dalle2 convert ./karlo-v1-alpha -o karlo.d2 --dtype f16
//	dalle2 info karlo.d2 --verify
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/ops"
)

// version is the program version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args))
}

// run executes the command line and returns the exit code: 0 success,
// 1 failure, 2 usage error.
func run(args []string) int {
	app := newApp()
	err := app.Run(reorderArgs(app, args))
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "dalle2:", msg)
		}
		return ec.ExitCode()
	}
	if isUsageError(err) {
		fmt.Fprintf(os.Stderr, "dalle2: %v\nRun 'dalle2 --help' for usage.\n", err)
		return 2
	}
	fmt.Fprintln(os.Stderr, "dalle2:", err)
	return 1
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "dalle2",
		Usage:   "DALL-E 2 style (unCLIP) text-to-image on the CPU",
		Version: version,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "worker threads (0: all cores)", EnvVars: []string{"DALLE2_THREADS"}},
		},
		Before: func(c *cli.Context) error {
			ops.SetThreads(c.Int("threads"))
			return nil
		},
		Commands: []*cli.Command{
			genCommand(),
			convertCommand(),
			infoCommand(),
		},
		// Usage errors are reported by run with exit code 2.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		HideHelpCommand: true,
	}
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

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

// reorderArgs moves a subcommand's flags in front of its positional
// arguments, so "dalle2 gen "a cat" -o cat.png --seed 3" works as users type
// it (urfave/cli v2 stops reading flags at the first positional argument).
// Everything after "--" stays positional. A lone "-" is positional (stdin).
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	i := 1
	// Global flags before the command name.
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" {
		out = append(out, args[i])
		if takesValue(app.Flags, args[i]) && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
		i++
	}
	if i >= len(args) {
		return out
	}
	cmd := app.Command(args[i])
	out = append(out, args[i])
	i++
	if cmd == nil {
		return append(out, args[i:]...)
	}
	var flags, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			if (takesValue(cmd.Flags, a) || takesValue(app.Flags, a)) && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
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
