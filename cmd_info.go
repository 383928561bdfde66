package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/dalle2/dalle2/loader"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "describe a dalle2 weight file",
		ArgsUsage: "FILE",
		Description: `Prints the format version, the provenance metadata and, per component, its class,
tensor and parameter counts, dtypes, bytes on disk and in memory (decoded, and as f32
for the float weights, Q8_0 included) and the compression ratio (in memory / on disk);
then the blobs. A file converted with --dtype q8 shows Q8_0 and F16 tensors; its
IN MEMORY / AS F32 is the saving over f32.
--verify also checks every tensor's and blob's checksum.

--tensors prints instead one line per tensor, sorted by name: name, dtype, shape and the
first 16 hex digits of the SHA-256 of its decoded little-endian bytes, so that two files
(e.g. one converted from a diffusers folder, one from the original Karlo release) can be
compared with diff.

Examples:
   dalle2 info karlo-f16.d2 --verify
   diff <(dalle2 info --tensors a.d2) <(dalle2 info --tensors b.d2)`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verify", Usage: "check every checksum (reads the whole file)"},
			&cli.BoolFlag{Name: "tensors", Usage: "list every tensor (name, dtype, shape, value hash), sorted, for diff"},
		},
		Action: runInfo,
	}
}

func runInfo(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("info: want one FILE, got %d arguments", c.NArg())
	}
	path := c.Args().First()
	if isPNGFile(path) {
		return pngInfo(path, c.App.Writer)
	}
	f, err := loader.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := c.App.Writer
	if c.Bool("tensors") {
		return writeTensorList(w, f)
	}
	writeInfo(w, path, f)
	if !c.Bool("verify") {
		return nil
	}
	if err := f.Verify(); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var n int
	var b int64
	for _, t := range f.Index() {
		n++
		b += t.RawSize
	}
	for _, bl := range f.Blobs() {
		b += bl.RawSize
	}
	fmt.Fprintf(w, "\nverify: OK (%d tensors, %s bytes)\n", n, groupDigits(b))
	return nil
}

// writeTensorList prints "name dtype [d0,d1,...] hash" per tensor, sorted by
// name; hash is the first 16 hex digits of the SHA-256 of the decoded
// little-endian bytes (every checksum is verified on the way).
func writeTensorList(w io.Writer, f *loader.File) error {
	names := f.Names()
	slices.Sort(names)
	bw := bufio.NewWriter(w)
	for _, n := range names {
		t, err := f.Tensor(n)
		if err != nil {
			return err
		}
		dims := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = strconv.Itoa(d)
		}
		sum := sha256.Sum256(t.Data)
		fmt.Fprintf(bw, "%s %s [%s] %s\n", n, t.DType, strings.Join(dims, ","), hex.EncodeToString(sum[:8]))
	}
	return bw.Flush()
}

// componentStats sums one component's tensors.
type componentStats struct {
	name, class      string
	tensors          int
	params           int64 // elements of float tensors
	dtypes           map[loader.DType]int
	disk, mem, asF32 int64
}

// isFloatDType reports whether d holds floating-point values (Q8_0, whose
// blocks decode to them, included).
func isFloatDType(d loader.DType) bool {
	return d == loader.F32 || d == loader.F16 || d == loader.BF16 || d == loader.F64 || d == loader.Q8_0
}

func (s *componentStats) add(t loader.TensorInfo) {
	s.tensors++
	s.dtypes[t.DType]++
	s.disk += t.Size
	s.mem += t.RawSize
	if isFloatDType(t.DType) {
		// The element count of the shape (Open checked that it fits and
		// matches RawSize): Q8_0 has no whole bytes per element.
		n := int64(1)
		for _, d := range t.Shape {
			n *= int64(d)
		}
		s.params += n
		s.asF32 += 4 * n
	} else {
		s.asF32 += t.RawSize
	}
}

func (s *componentStats) row() []string {
	if s.tensors == 0 {
		return []string{s.name, s.class, "-", "-", "-", "-", "-", "-", "-"}
	}
	var dts []string
	for _, d := range slices.Sorted(maps.Keys(s.dtypes)) {
		dts = append(dts, fmt.Sprintf("%s:%d", d, s.dtypes[d]))
	}
	return []string{s.name, s.class, fmt.Sprint(s.tensors), groupDigits(s.params), strings.Join(dts, " "),
		humanBytes(s.disk), humanBytes(s.mem), humanBytes(s.asF32), ratio(s.mem, s.disk)}
}

// writeInfo prints the description of an opened weight file.
func writeInfo(w io.Writer, path string, f *loader.File) {
	fmt.Fprintf(w, "file     %s\n", path)
	fmt.Fprintf(w, "format   dalle2 weight file, version %d\n", f.Version())
	fmt.Fprintf(w, "size     %s (%s bytes)\n", humanBytes(f.Size()), groupDigits(f.Size()))

	meta := f.Meta()
	if len(meta) > 0 {
		keys := make([]string, 0, len(meta))
		width := 0
		for k := range meta {
			keys = append(keys, k)
			width = max(width, utf8.RuneCountInString(k))
		}
		slices.Sort(keys)
		fmt.Fprintf(w, "\nmetadata\n")
		for _, k := range keys {
			fmt.Fprintf(w, "  %s%s  %s\n", k, strings.Repeat(" ", width-utf8.RuneCountInString(k)), meta[k])
		}
	}

	// Components in file order; tensors of an unlisted component (not
	// written by dalle2 convert, but allowed) are shown after them.
	var order []*componentStats
	byName := map[string]*componentStats{}
	get := func(name, class string) *componentStats {
		if s, ok := byName[name]; ok {
			return s
		}
		s := &componentStats{name: name, class: class, dtypes: map[loader.DType]int{}}
		byName[name] = s
		order = append(order, s)
		return s
	}
	for _, c := range f.Components() {
		get(c.Name, c.Class)
	}
	total := &componentStats{name: "TOTAL", dtypes: map[loader.DType]int{}}
	for _, t := range f.Index() {
		comp, _, ok := strings.Cut(t.Name, "/")
		if !ok {
			comp = ""
		}
		get(comp, "?").add(t)
		total.add(t)
	}

	tab := table{
		header: []string{"COMPONENT", "CLASS", "TENSORS", "PARAMS", "DTYPES", "ON DISK", "IN MEMORY", "AS F32", "RATIO"},
		right:  []bool{false, false, true, true, false, true, true, true, true},
	}
	for _, s := range order {
		tab.rows = append(tab.rows, s.row())
	}
	tab.rows = append(tab.rows, total.row())
	fmt.Fprintln(w)
	tab.write(w)

	if blobs := f.Blobs(); len(blobs) > 0 {
		bt := table{header: []string{"BLOB", "ON DISK", "IN MEMORY", "RATIO"}, right: []bool{false, true, true, true}}
		for _, b := range blobs {
			bt.rows = append(bt.rows, []string{b.Name, humanBytes(b.Size), humanBytes(b.RawSize), ratio(b.RawSize, b.Size)})
		}
		fmt.Fprintln(w)
		bt.write(w)
	}
}

// ratio is the compression ratio mem/disk ("-" when nothing is stored).
func ratio(mem, disk int64) string {
	if disk <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(mem)/float64(disk))
}

// table prints aligned columns, two spaces apart, like `docker images`.
type table struct {
	header []string
	right  []bool // right-align this column (numbers)
	rows   [][]string
}

func (t *table) write(w io.Writer) {
	widths := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, cell := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	for _, r := range append([][]string{t.header}, t.rows...) {
		var b strings.Builder
		for i, cell := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				b.WriteString("  ")
			}
			if t.right[i] {
				b.WriteString(pad + cell)
			} else {
				b.WriteString(cell + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// groupDigits writes n with thousands separators: 123,650,304.
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// humanBytes formats a byte count with a decimal unit: 495.0 MB.
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB"} {
		f /= 1000
		if f < 999.95 {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f TB", f/1000)
}
