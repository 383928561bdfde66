package convert

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/quant"
)

// MetaPipeline is the metadata key recording the source pipeline class
// (model_index.json "_class_name", e.g. "UnCLIPPipeline"). The other keys
// Convert sets are loader.MetaSource, MetaConverter, MetaDType and
// MetaCreated.
const MetaPipeline = "pipeline"

// Options configures Convert.
type Options struct {
	// DType is the storage type of floating-point weights: "f32" (the
	// default, also when empty), "f16", or "q8" (Q8_0 for the weights
	// Policy.DType picks, F16 for the others). Integer and bool tensors are
	// stored as they are.
	DType string
	// Progress receives one line per component as it is converted; nil
	// means silent.
	Progress io.Writer
	// ConverterVersion is recorded in the file's "converter" metadata as
	// "dalle2 <version>".
	ConverterVersion string
}

// ParseDType maps a --dtype value ("f32", "f16", "q8", case-insensitive;
// also "fp32", "float32", "fp16", "float16", "q8_0", "int8") to the storage
// target of floating-point weights; "" means F32. For Q8_0, Policy.DType
// decides which tensors are quantized.
func ParseDType(s string) (loader.DType, error) {
	switch strings.ToLower(s) {
	case "", "f32", "fp32", "float32":
		return loader.F32, nil
	case "f16", "fp16", "float16":
		return loader.F16, nil
	case "q8", "q8_0", "int8":
		return loader.Q8_0, nil
	}
	return loader.Invalid, fmt.Errorf("unknown dtype %q (want f32|f16|q8)", s)
}

// Report summarises a conversion.
type Report struct {
	Source     string       // the pipeline folder
	Output     string       // the file written
	Pipeline   string       // pipeline class
	DType      loader.DType // the storage target (--dtype)
	Components []ComponentReport
	Tensors    int          // total tensors
	Params     int64        // total floating-point parameters
	Bytes      int64        // total tensor bytes written (decoded, before compression)
	Stored     int64        // total tensor bytes on disk (after compression)
	DTypes     []DTypeStats // totals per stored dtype, in DType order
	FileSize   int64        // size of the output file
}

// ComponentReport summarises one converted component.
type ComponentReport struct {
	Name    string
	Class   string
	Kind    ComponentKind
	Files   []string // source weight files (KindModel) or tokenizer files
	Tensors int
	Params  int64        // elements of floating-point tensors (buffers such as int64 position_ids excluded)
	Bytes   int64        // tensor bytes written (decoded, before compression)
	Stored  int64        // tensor bytes on disk (after compression)
	DTypes  []DTypeStats // totals per stored dtype, in DType order
}

// DTypeStats totals the tensors stored with one dtype.
type DTypeStats struct {
	DType   loader.DType
	Tensors int
	Params  int64 // elements (the logical element count for Q8_0)
	Bytes   int64 // bytes before compression (numel · size; numel/32 · 34 for Q8_0)
	Stored  int64 // bytes on disk: the weight file stores a tensor zstd-compressed where that saves at least 20%
}

// Ratio is the compression ratio Bytes/Stored (1 when nothing was
// compressed, 0 when nothing is stored).
func (s DTypeStats) Ratio() float64 {
	if s.Stored <= 0 {
		return 0
	}
	return float64(s.Bytes) / float64(s.Stored)
}

// mergeDType adds the totals of add into list (kept in DType order).
func mergeDType(list []DTypeStats, add DTypeStats) []DTypeStats {
	i, found := slices.BinarySearchFunc(list, add.DType, func(s DTypeStats, d loader.DType) int { return cmp.Compare(s.DType, d) })
	if !found {
		list = slices.Insert(list, i, DTypeStats{DType: add.DType})
	}
	s := &list[i]
	s.Tensors += add.Tensors
	s.Params += add.Params
	s.Bytes += add.Bytes
	s.Stored += add.Stored
	return list
}

// add appends a converted component to the report and to its totals.
func (r *Report) add(cr *ComponentReport) {
	r.Components = append(r.Components, *cr)
	r.Tensors += cr.Tensors
	r.Params += cr.Params
	r.Bytes += cr.Bytes
	r.Stored += cr.Stored
	for _, d := range cr.DTypes {
		r.DTypes = mergeDType(r.DTypes, d)
	}
}

// Convert reads the diffusers pipeline folder src and writes every
// component to the weight file dst: model weights (F32, F16 and BF16
// tensors stored as opt.DType; integer tensors as they are), configurations
// verbatim, tokenizer files as blobs "<component>/<file>", and provenance
// metadata. The file appears at dst only if everything succeeded.
func Convert(src, dst string, opt Options) (*Report, error) {
	target, err := ParseDType(opt.DType)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	p, err := OpenPipeline(src)
	if err != nil {
		return nil, err
	}
	w, err := loader.Create(dst)
	if err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	rep, err := convertPipeline(p, w, target, opt)
	if err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Commit(); err != nil {
		return nil, fmt.Errorf("convert: %s: %w", dst, err)
	}
	rep.Output = dst
	if fi, err := os.Stat(dst); err == nil {
		rep.FileSize = fi.Size()
	}
	return rep, nil
}

func convertPipeline(p *Pipeline, w *loader.Writer, target loader.DType, opt Options) (*Report, error) {
	abs, err := filepath.Abs(p.Dir)
	if err != nil {
		abs = p.Dir
	}
	converter := "dalle2"
	if opt.ConverterVersion != "" {
		converter += " " + opt.ConverterVersion
	}
	w.SetMeta(loader.MetaSource, filepath.Base(abs))
	w.SetMeta(loader.MetaConverter, converter)
	w.SetMeta(loader.MetaDType, target.String())
	w.SetMeta(loader.MetaCreated, time.Now().UTC().Format(time.RFC3339))
	if p.Class != "" {
		w.SetMeta(MetaPipeline, p.Class)
	}
	rep := &Report{Source: p.Dir, Pipeline: p.Class, DType: target}
	progress(opt.Progress, "converting %s (%s) to %s\n", p.Dir, p.Class, target)
	for i := range p.Components {
		c := &p.Components[i]
		cr, err := convertComponent(c, w, target)
		if err != nil {
			return nil, err
		}
		rep.add(cr)
		switch c.Kind {
		case KindModel:
			progress(opt.Progress, "  %-20s %-32s %5d tensors %14s params %10s\n",
				c.Name, c.Class, cr.Tensors, groupDigits(cr.Params), humanBytes(cr.Bytes))
		default:
			progress(opt.Progress, "  %-20s %-32s %s\n", c.Name, c.Class, c.Kind)
		}
	}
	return rep, nil
}

func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}

func convertComponent(c *PipelineComponent, w *loader.Writer, target loader.DType) (*ComponentReport, error) {
	cr := &ComponentReport{Name: c.Name, Class: c.Class, Kind: c.Kind}
	if err := w.AddComponent(loader.Component{Name: c.Name, Class: c.Class, Config: c.Config}); err != nil {
		return nil, fmt.Errorf("convert: component %q (%s): %w", c.Name, c.ConfigFile, err)
	}
	switch c.Kind {
	case KindTokenizer:
		for _, f := range c.Files {
			b, err := readSmall(f)
			if err != nil {
				return nil, fmt.Errorf("convert: component %q: %w", c.Name, err)
			}
			if err := w.AddBlob(c.Name+"/"+filepath.Base(f), b); err != nil {
				return nil, fmt.Errorf("convert: %s: %w", f, err)
			}
			cr.Files = append(cr.Files, f)
		}
		return cr, nil
	case KindConfig:
		return cr, nil
	}
	ws, err := c.OpenWeights()
	if err != nil {
		return nil, err
	}
	defer ws.Close()
	cr.Files = ws.Files()
	if err := writeTensors(w, c.Name, ws, ws.File, target, cr); err != nil {
		return nil, err
	}
	return cr, nil
}

// writeTensors converts every tensor of src (in src.Names() order) to the
// dtype the storage policy (NewPolicy) gives it for target and adds it to
// component comp, counting into cr; fileOf names the file a tensor comes
// from, for errors.
func writeTensors(w *loader.Writer, comp string, src loader.Source, fileOf func(string) string, target loader.DType, cr *ComponentReport) error {
	names := src.Names()
	policy := NewPolicy(comp, names, target)
	for _, name := range names {
		t, err := src.Tensor(name)
		if err != nil {
			return fmt.Errorf("convert: component %q: %w", comp, err)
		}
		dt := t.DType
		if isFloat(dt) {
			dt = policy.DType(name, t.Shape)
		}
		out, err := ConvertTensor(t, dt)
		if err != nil {
			return fmt.Errorf("convert: %s: tensor %q: %w", fileOf(name), name, err)
		}
		if err := w.AddTensor(comp, out); err != nil {
			return fmt.Errorf("convert: %s: tensor %q: %w", fileOf(name), name, err)
		}
		info, ok := w.Stored(comp + "/" + out.Name)
		if !ok {
			return fmt.Errorf("convert: %s: tensor %q: not in the index after writing", fileOf(name), name)
		}
		var params int64
		if isFloat(out.DType) {
			params = int64(out.Numel())
		}
		cr.Tensors++
		cr.Params += params
		cr.Bytes += info.RawSize
		cr.Stored += info.Size
		cr.DTypes = mergeDType(cr.DTypes, DTypeStats{DType: out.DType, Tensors: 1, Params: int64(out.Numel()), Bytes: info.RawSize, Stored: info.Size})
	}
	return nil
}

// isFloat reports whether d holds floating-point values (Q8_0 included).
func isFloat(d loader.DType) bool {
	return d == loader.F32 || d == loader.F16 || d == loader.BF16 || d == loader.F64 || d == loader.Q8_0
}

// ConvertTensor stores a floating-point tensor (F32, F16, BF16, F64, Q8_0)
// as target (F32, F16 or Q8_0); other dtypes are returned unchanged.
// Upcasting is exact; narrowing to F16 rounds to nearest even
// (quant.F32ToF16 for F32, a single correct rounding for F64); Q8_0 is
// quant.QuantizeQ8 of the values as float32, which needs a row length (the
// product of the dimensions after the first) that is a multiple of 32 and
// finite values of magnitude at most 127·65504. The result may alias
// t.Data.
func ConvertTensor(t loader.Tensor, target loader.DType) (loader.Tensor, error) {
	if target != loader.F32 && target != loader.F16 && target != loader.Q8_0 {
		return loader.Tensor{}, fmt.Errorf("cannot store tensors as %s", target)
	}
	size, err := t.DType.Bytes(t.Shape)
	if err != nil {
		return loader.Tensor{}, err
	}
	if len(t.Data) != size {
		return loader.Tensor{}, fmt.Errorf("%d bytes for shape %v of %s", len(t.Data), t.Shape, t.DType)
	}
	if !isFloat(t.DType) || t.DType == target {
		return t, nil
	}
	n := t.Numel() // fits: Bytes checked it
	out := t
	out.DType = target
	src := t.Data
	switch {
	case target == loader.Q8_0:
		q, err := loader.Q8_0.Bytes(t.Shape)
		if err != nil {
			return loader.Tensor{}, fmt.Errorf("cannot store as Q8_0: %w", err)
		}
		dst := make([]byte, q)
		if err := quant.QuantizeQ8(dst, toF32(t, n)); err != nil {
			return loader.Tensor{}, fmt.Errorf("cannot store %v as Q8_0: %w", t.Shape, err)
		}
		out.Data = dst
	case target == loader.F32:
		dst := make([]byte, 4*n)
		for i, f := range toF32(t, n) {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
		}
		out.Data = dst
	case t.DType == loader.F64:
		dst := make([]byte, 2*n)
		for i := range n {
			binary.LittleEndian.PutUint16(dst[2*i:], f64ToF16(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:]))))
		}
		out.Data = dst
	default: // F16 from F32, BF16 or Q8_0: through float32, which holds them exactly
		dst := make([]byte, 2*n)
		for i, f := range toF32(t, n) {
			binary.LittleEndian.PutUint16(dst[2*i:], quant.F32ToF16(f))
		}
		out.Data = dst
	}
	return out, nil
}

// toF32 decodes the n values of a float tensor whose size has been checked
// (F64 rounds to nearest; the others are exact).
func toF32(t loader.Tensor, n int) []float32 {
	out := make([]float32, n)
	src := t.Data
	switch t.DType {
	case loader.F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case loader.F16:
		for i := range out {
			out[i] = quant.F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case loader.BF16:
		for i := range out {
			out[i] = quant.BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case loader.F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case loader.Q8_0:
		quant.DequantizeQ8(out, src)
	default:
		panic("convert: toF32 of " + t.DType.String()) // callers pass float tensors only
	}
	return out
}

// f64ToF16 rounds a float64 to binary16 once, to nearest even. It narrows
// to float32 with round-to-odd first: float32 has 13 more significand bits
// than binary16, so the second rounding (quant.F32ToF16) then gives the
// correctly rounded result, with no double-rounding error.
func f64ToF16(x float64) uint16 {
	if math.IsNaN(x) {
		return quant.F32ToF16(float32(x))
	}
	f := float32(x) // round to nearest
	if float64(f) != x {
		if math.Abs(float64(f)) > math.Abs(x) { // rounded away from zero: step back
			f = math.Nextafter32(f, 0)
		}
		f = math.Float32frombits(math.Float32bits(f) | 1) // sticky bit: round to odd
	}
	return quant.F32ToF16(f)
}

// groupDigits writes n with thousands separators: 123,650,304.
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
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
