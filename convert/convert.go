package convert

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
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
	// default, also when empty) or "f16". Integer and bool tensors are
	// stored as they are.
	DType string
	// Progress receives one line per component as it is converted; nil
	// means silent.
	Progress io.Writer
	// ConverterVersion is recorded in the file's "converter" metadata as
	// "dalle2 <version>".
	ConverterVersion string
}

// ParseDType maps a --dtype value ("f32", "f16", case-insensitive) to the
// storage DType of floating-point weights; "" means F32.
func ParseDType(s string) (loader.DType, error) {
	switch strings.ToLower(s) {
	case "", "f32", "fp32", "float32":
		return loader.F32, nil
	case "f16", "fp16", "float16":
		return loader.F16, nil
	}
	return loader.Invalid, fmt.Errorf("unknown dtype %q (want f32 or f16)", s)
}

// Report summarises a conversion.
type Report struct {
	Source     string // the pipeline folder
	Output     string // the file written
	Pipeline   string // pipeline class
	DType      loader.DType
	Components []ComponentReport
	Tensors    int   // total tensors
	Params     int64 // total floating-point parameters
	Bytes      int64 // total tensor bytes written (decoded, before compression)
	FileSize   int64 // size of the output file
}

// ComponentReport summarises one converted component.
type ComponentReport struct {
	Name    string
	Class   string
	Kind    ComponentKind
	Files   []string // source weight files (KindModel) or tokenizer files
	Tensors int
	Params  int64 // elements of floating-point tensors (buffers such as int64 position_ids excluded)
	Bytes   int64 // tensor bytes written (decoded, before compression)
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
		rep.Components = append(rep.Components, *cr)
		rep.Tensors += cr.Tensors
		rep.Params += cr.Params
		rep.Bytes += cr.Bytes
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

// writeTensors converts every tensor of src (in src.Names() order) to
// target and adds it to component comp, counting into cr; fileOf names the
// file a tensor comes from, for errors.
func writeTensors(w *loader.Writer, comp string, src loader.Source, fileOf func(string) string, target loader.DType, cr *ComponentReport) error {
	for _, name := range src.Names() {
		t, err := src.Tensor(name)
		if err != nil {
			return fmt.Errorf("convert: component %q: %w", comp, err)
		}
		out, err := ConvertTensor(t, target)
		if err != nil {
			return fmt.Errorf("convert: %s: tensor %q: %w", fileOf(name), name, err)
		}
		if err := w.AddTensor(comp, out); err != nil {
			return fmt.Errorf("convert: %s: tensor %q: %w", fileOf(name), name, err)
		}
		cr.Tensors++
		cr.Bytes += int64(len(out.Data))
		if isFloat(out.DType) {
			cr.Params += int64(out.Numel())
		}
	}
	return nil
}

func isFloat(d loader.DType) bool {
	return d == loader.F32 || d == loader.F16 || d == loader.BF16 || d == loader.F64
}

// ConvertTensor stores a floating-point tensor (F32, F16, BF16, F64) as
// target (F32 or F16); other dtypes are returned unchanged. Upcasting is
// exact; narrowing rounds to nearest even (quant.F32ToF16 for F32, a single
// correct rounding for F64). The result may alias t.Data.
func ConvertTensor(t loader.Tensor, target loader.DType) (loader.Tensor, error) {
	if target != loader.F32 && target != loader.F16 {
		return loader.Tensor{}, fmt.Errorf("cannot store tensors as %s", target)
	}
	n, err := checkedNumel(t.Shape)
	if err != nil {
		return loader.Tensor{}, err
	}
	es := t.DType.Size()
	if es == 0 {
		return loader.Tensor{}, fmt.Errorf("invalid dtype %s", t.DType)
	}
	if n > math.MaxInt/es || len(t.Data) != n*es {
		return loader.Tensor{}, fmt.Errorf("%d bytes for shape %v of %s", len(t.Data), t.Shape, t.DType)
	}
	if !isFloat(t.DType) || t.DType == target {
		return t, nil
	}
	out := t
	out.DType = target
	src := t.Data
	if target == loader.F32 {
		dst := make([]byte, 4*n)
		for i := range n {
			var f float32
			switch t.DType {
			case loader.F16:
				f = quant.F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
			case loader.BF16:
				f = quant.BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
			case loader.F64:
				f = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
			}
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
		}
		out.Data = dst
		return out, nil
	}
	dst := make([]byte, 2*n)
	for i := range n {
		var h uint16
		switch t.DType {
		case loader.F32:
			h = quant.F32ToF16(math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:])))
		case loader.BF16:
			h = quant.F32ToF16(quant.BF16ToF32(binary.LittleEndian.Uint16(src[2*i:])))
		case loader.F64:
			h = f64ToF16(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
		binary.LittleEndian.PutUint16(dst[2*i:], h)
	}
	out.Data = dst
	return out, nil
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

func checkedNumel(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, fmt.Errorf("shape %v overflows", shape)
		}
		n *= d
	}
	return n, nil
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
