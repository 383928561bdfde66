package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/convert"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "convert a diffusers pipeline folder into one dalle2 weight file",
		ArgsUsage: "SRC",
		Description: `Reads SRC, a diffusers pipeline folder (model_index.json and one folder per component,
weights as .safetensors or PyTorch .bin, sharded or not), and writes every component,
config and tokenizer file into FILE. Float weights are stored as --dtype; integer buffers
as they are. PyTorch .bin files are parsed, never executed: a pickle naming anything but
the tensor-rebuilding globals is refused. FILE appears only when everything succeeded.

Examples:
   dalle2 convert ./karlo-v1-alpha -o karlo.d2
   dalle2 convert ./karlo-v1-alpha -o karlo-f16.d2 --dtype f16`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "weight file to write (required)"},
			&cli.StringFlag{Name: "dtype", Value: "f32", Usage: "storage type of float weights: f32 or f16"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress on stderr"},
		},
		Action: runConvert,
	}
}

func runConvert(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("convert: want one SRC pipeline folder, got %d arguments", c.NArg())
	}
	src := c.Args().First()
	out := c.String("output")
	if out == "" {
		return usagef("convert: -o FILE is required")
	}
	if _, err := convert.ParseDType(c.String("dtype")); err != nil {
		return usagef("convert: --dtype: %v", err)
	}
	var progress io.Writer = stderrOf(c)
	if c.Bool("quiet") {
		progress = nil
	}
	rep, err := convert.Convert(src, out, convert.Options{
		DType:            c.String("dtype"),
		Progress:         progress,
		ConverterVersion: version,
	})
	if err != nil {
		return err
	}
	if progress != nil {
		fmt.Fprintf(progress, "wrote %s: %d components, %d tensors, %s parameters, %s\n",
			rep.Output, len(rep.Components), rep.Tensors, groupDigits(rep.Params), humanBytes(rep.FileSize))
	}
	return nil
}

// stderrOf is where a command writes progress: the app's ErrWriter (tests
// set it), else standard error.
func stderrOf(c *cli.Context) io.Writer {
	if c.App != nil && c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}
