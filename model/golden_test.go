package model_test

// The golden harness: replays every pipeline case found in
// $DALLE2_GOLDEN/cases (default ../shared/golden) against our pipeline.
// Cases are discovered from the folder (every <case>.json with a
// "pipeline_class"), never from a list, because the harness also runs on
// case sets with other dimensions, prompts and step counts.
//
// Each case is checked twice:
//   - teacher-forced, step by step: every model call and scheduler step is
//     fed the reference's own inputs, so an error cannot hide behind (or be
//     blamed on) an earlier one;
//   - end to end, with the case's noise replayed, against the per-tensor
//     sensitivity the reference measured (fp64_check: max |fp64 − fp32| of
//     the reference run itself).

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dalle2/dalle2/convert"
	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/model"
	"github.com/dalle2/dalle2/ops"
	"github.com/dalle2/dalle2/quant"
)

func goldenRoot(t testing.TB) string {
	dir := os.Getenv("DALLE2_GOLDEN")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "golden")
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("golden folder %s missing under CI: %v", dir, err)
		}
		t.Skipf("golden folder %s missing: %v", dir, err)
	}
	return dir
}

// goldenCase is the part of <case>.json the harness reads.
type goldenCase struct {
	Case          string          `json:"case"`
	PipelineClass string          `json:"pipeline_class"`
	PipelineDir   string          `json:"pipeline_dir"`
	Call          json.RawMessage `json:"call"`
	CFG           bool            `json:"do_classifier_free_guidance"`
	Timesteps     map[string][]int64
	SuperResUNets []string          `json:"super_res_unet_per_step"`
	OutputPNG     []string          `json:"output_png"`
	FP64          fp64Check         `json:"fp64_check"`
	Aliases       map[string]string `json:"aliases"`
	TextEncCalls  []struct {
		Index      int  `json:"index"`
		MaskPassed bool `json:"attention_mask_passed"`
	} `json:"text_encoder_calls"`
	InterpolateKwargs map[string]any `json:"interpolate_kwargs"`
	TokenizerCalls    []struct {
		Index  int             `json:"index"`
		Text   json.RawMessage `json:"text"`
		Kwargs map[string]any  `json:"kwargs"`
	} `json:"tokenizer_calls"`

	dir string
	st  *loader.Safetensors
}

// fp64Check maps a tensor name to the reference's max |fp64 − fp32|; its
// non-numeric entries (a "note") are dropped.
type fp64Check map[string]float64

func (f *fp64Check) UnmarshalJSON(b []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*f = fp64Check{}
	for k, v := range raw {
		if x, ok := v.(float64); ok {
			(*f)[k] = x
		}
	}
	return nil
}

// caseCall is the pipeline call recorded in a case.
type caseCall struct {
	Prompt          json.RawMessage `json:"prompt"`
	PriorSteps      int             `json:"prior_num_inference_steps"`
	DecoderSteps    int             `json:"decoder_num_inference_steps"`
	SuperResSteps   int             `json:"super_res_num_inference_steps"`
	PriorGuidance   *float64        `json:"prior_guidance_scale"`
	DecoderGuidance *float64        `json:"decoder_guidance_scale"`
	ImagesPerPrompt int             `json:"num_images_per_prompt"`
}

func (c *goldenCase) call(t testing.TB) caseCall {
	var cc caseCall
	require.NoError(t, json.Unmarshal(c.Call, &cc))
	return cc
}

// prompts returns the call's prompt(s) as a list.
func (cc caseCall) prompts(t testing.TB) []string {
	var one string
	if json.Unmarshal(cc.Prompt, &one) == nil {
		return []string{one}
	}
	var many []string
	require.NoError(t, json.Unmarshal(cc.Prompt, &many))
	return many
}

// has reports whether the case stores name (after resolving aliases).
func (c *goldenCase) has(name string) bool {
	if a, ok := c.Aliases[name]; ok {
		name = a
	}
	_, err := c.st.Tensor(name)
	return err == nil
}

// get reads a stored tensor as float32 (integers and masks converted).
func (c *goldenCase) get(t testing.TB, name string) *ops.Tensor {
	t.Helper()
	stored := name
	if a, ok := c.Aliases[name]; ok {
		stored = a
	}
	lt, err := c.st.Tensor(stored)
	require.NoError(t, err, "case %s: tensor %s", c.Case, name)
	return toTensor(t, lt)
}

func toTensor(t testing.TB, lt loader.Tensor) *ops.Tensor {
	t.Helper()
	shape := lt.Shape
	n := lt.Numel()
	out := make([]float32, n)
	switch lt.DType {
	case loader.I64:
		for i := range out {
			v := int64(0)
			for k := 7; k >= 0; k-- {
				v = v<<8 | int64(lt.Data[8*i+k])
			}
			out[i] = float32(v)
		}
	case loader.U8:
		for i := range out {
			out[i] = float32(lt.Data[i])
		}
	default:
		d, err := quant.ToFloat32(lt.DType.String(), lt.Data)
		require.NoError(t, err)
		copy(out, d)
	}
	if len(shape) == 0 {
		shape = []int{1}
	}
	return ops.FromData(out, shape...)
}

func (c *goldenCase) scalar(t testing.TB, name string) int64 {
	return int64(c.get(t, name).Data[0])
}

func discoverCases(t *testing.T) []*goldenCase {
	root := goldenRoot(t)
	dir := filepath.Join(root, "cases")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	var cases []*goldenCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var c goldenCase
		if err := json.Unmarshal(b, &c); err != nil || c.PipelineClass == "" {
			if filepath.Base(f) != "index.json" {
				t.Logf("%s: not a pipeline case (%v)", f, err)
			}
			continue
		}
		c.dir = root
		st, err := loader.OpenSafetensors(strings.TrimSuffix(f, ".json") + ".safetensors")
		require.NoError(t, err, "case %s", c.Case)
		t.Cleanup(func() { st.Close() })
		c.st = st
		cases = append(cases, &c)
	}
	if len(cases) == 0 {
		t.Fatalf("no pipeline cases found in %s", dir)
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Case < cases[j].Case })
	return cases
}

// pipelines caches one converted pipeline per golden pipeline folder.
var (
	pipeMu sync.Mutex
	pipes  = map[string]*model.Pipeline{}
)

func loadPipeline(t *testing.T, root, dir string) *model.Pipeline {
	pipeMu.Lock()
	defer pipeMu.Unlock()
	src := filepath.Join(root, dir)
	if p, ok := pipes[src]; ok {
		return p
	}
	out := filepath.Join(os.TempDir(), fmt.Sprintf("dalle2-golden-%d-%s.d2", os.Getpid(), dir))
	_, err := convert.Convert(src, out, convert.Options{DType: "f32"})
	require.NoError(t, err, "converting %s", src)
	f, err := loader.Open(out)
	require.NoError(t, err)
	os.Remove(out) // the mapping stays valid on unix; the file is gone after the run
	p, err := model.LoadPipeline(f)
	require.NoError(t, err)
	pipes[src] = p
	return p
}

// within compares got and want elementwise: max|got − want| ≤ tol. It
// reports the worst element.
func within(t testing.TB, what string, got, want *ops.Tensor, tol float64) float64 {
	t.Helper()
	require.Equal(t, want.Numel(), got.Numel(), "%s: %v vs reference %v", what, got.Shape, want.Shape)
	worst, at := 0.0, 0
	for i := range want.Data {
		d := math.Abs(float64(got.Data[i]) - float64(want.Data[i]))
		if d > worst || math.IsNaN(d) {
			worst, at = d, i
			if math.IsNaN(d) {
				break
			}
		}
	}
	if !(worst <= tol) {
		t.Errorf("%s: max |Δ| = %.3g at %d (got %g, want %g), tolerance %.3g", what, worst, at, got.Data[at], want.Data[at], tol)
	}
	return worst
}

func maxAbs(x *ops.Tensor) float64 {
	m := 0.0
	for _, v := range x.Data {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}

// Tolerances. A model call of ours and PyTorch's, given identical inputs,
// differ only by fp32 summation order and by transcendental functions that
// are not correctly rounded in PyTorch (MANIFEST numerical notes 1 and 9:
// "expected agreement ~1e-5 relative for models"); the reference's own
// fp32-vs-fp64 deviation (fp64_check) is of the same order. So:
const (
	// modelTol: per model call, relative to max(1, |reference|max).
	// The MANIFEST's ~1e-5 with a 2x margin for the deeper U-Nets.
	modelTol = 2e-5
	// schedTol: per scheduler step, relative to max(1, |reference|max):
	// MANIFEST note 4 quotes prev_sample within 1e-5 (torch's fp32
	// log/exp are not correctly rounded); x0 is bit-exact.
	schedTol = 1e-5
)

func rel(tol float64, want *ops.Tensor) float64 { return tol * math.Max(1, maxAbs(want)) }

func TestGoldenPipelines(t *testing.T) {
	cases := discoverCases(t)
	for i, c := range cases {
		c := c
		t.Run(c.Case, func(t *testing.T) {
			if testing.Short() && i > 0 {
				// -short (the race-detector run, ~10x slower) replays one
				// case; the full run replays them all.
				t.Skip("-short: only the first case")
			}
			p := loadPipeline(t, c.dir, c.PipelineDir)
			t.Run("teacher_forced", func(t *testing.T) { teacherForced(t, p, c) })
			t.Run("end_to_end", func(t *testing.T) { endToEnd(t, p, c) })
		})
	}
}

func teacherForced(t *testing.T, p *model.Pipeline, c *goldenCase) {
	// Text encoder calls.
	for _, call := range c.TextEncCalls {
		name := fmt.Sprintf("text_encoder.call%d.", call.Index)
		if !c.has(name+"input_ids") || call.MaskPassed {
			t.Logf("%s: skipped (no ids stored, or called with a mask the pipeline never passes)", name)
			continue
		}
		ids := c.get(t, name+"input_ids")
		n := ids.Dim(0)
		intIDs := make([]int, ids.Numel())
		for i, v := range ids.Data {
			intIDs[i] = int(v)
		}
		emb, hid := p.TextEncoder.Forward(intIDs, n)
		want := c.get(t, name+"text_embeds")
		within(t, name+"text_embeds", emb, want, rel(modelTol, want))
		want = c.get(t, name+"last_hidden_state")
		within(t, name+"last_hidden_state", hid, want, rel(modelTol, want))
	}
	// Tokenizer calls that pad to max_length (the "longest" call only feeds a warning).
	for _, call := range c.TokenizerCalls {
		if call.Kwargs["padding"] != "max_length" {
			continue
		}
		var texts []string
		var one string
		if json.Unmarshal(call.Text, &one) == nil {
			texts = []string{one}
		} else {
			require.NoError(t, json.Unmarshal(call.Text, &texts))
		}
		ids := c.get(t, fmt.Sprintf("tokenizer.call%d.input_ids", call.Index))
		mask := c.get(t, fmt.Sprintf("tokenizer.call%d.attention_mask", call.Index))
		for r, s := range texts {
			gi, gm := p.Tokenizer.Encode(s)
			for j := range gi {
				if float32(gi[j]) != ids.Data[r*model.ContextLength+j] || float32(gm[j]) != mask.Data[r*model.ContextLength+j] {
					t.Errorf("tokenizer call %d row %d (%q): position %d: got id %d mask %d, want %v %v", call.Index, r, s, j, gi[j], gm[j], ids.Data[r*model.ContextLength+j], mask.Data[r*model.ContextLength+j])
					break
				}
			}
		}
	}

	// Prior steps.
	for i := 0; c.has(fmt.Sprintf("prior.%02d.model_output", i)); i++ {
		name := fmt.Sprintf("prior.%02d.", i)
		out := p.Prior.Forward(c.get(t, name+"model_input"), c.scalar(t, name+"timestep"),
			c.get(t, "prior.proj_embedding"), c.get(t, "prior.encoder_hidden_states"), c.get(t, "prior.attention_mask"))
		want := c.get(t, name+"model_output")
		within(t, name+"model_output", out, want, rel(modelTol, want))
		mo := c.get(t, name+"model_output")
		smo := mo
		if c.CFG {
			smo = ops.New(mo.Dim(0)/2, mo.Dim(1))
			model.GuidePrior(smo, mo, float32(guidance(t, c, "prior_guidance_scale")))
		}
		// Guidance is three fp32 elementwise ops in the reference's order: exact.
		within(t, name+"sched_model_output", smo, c.get(t, name+"sched_model_output"), 0)
		schedStep(t, c, p.PriorScheduler, name)
	}
	if c.has("prior.image_embeddings") {
		last := c.get(t, "prior.post_process_input")
		got := ops.New(last.Shape...)
		p.Prior.PostProcess(got, last)
		// x·std + mean in fp32, two rounded elementwise ops: exact.
		within(t, "prior.image_embeddings", got, c.get(t, "prior.image_embeddings"), 0)
	}

	// Image preprocessing and encoder (variation cases).
	if c.has("image_encoder.image_embeds") {
		imageEncoderForced(t, p, c)
	}

	// text_proj.
	if c.has("text_proj.out_encoder_hidden_states") {
		ctxs, add := p.TextProj.Forward(c.get(t, "text_proj.image_embeddings"), c.get(t, "text_proj.prompt_embeds"),
			c.get(t, "text_proj.text_encoder_hidden_states"), c.CFG)
		want := c.get(t, "text_proj.out_encoder_hidden_states")
		within(t, "text_proj.out_encoder_hidden_states", ctxs, want, rel(modelTol, want))
		want = c.get(t, "text_proj.out_additive_clip_time_embeddings")
		within(t, "text_proj.out_additive_clip_time_embeddings", add, want, rel(modelTol, want))
	}

	// Decoder steps.
	for i := 0; c.has(fmt.Sprintf("decoder.%02d.model_output", i)); i++ {
		name := fmt.Sprintf("decoder.%02d.", i)
		out := p.Decoder.Forward(c.get(t, name+"model_input"), c.scalar(t, name+"timestep"),
			c.get(t, "decoder.encoder_hidden_states"), c.get(t, "decoder.class_labels"), c.get(t, "decoder.attention_mask"))
		want := c.get(t, name+"model_output")
		within(t, name+"model_output", out, want, rel(modelTol, want))
		mo := c.get(t, name+"model_output")
		if c.CFG {
			mo = model.GuideDecoder(mo, c.get(t, name+"sched_sample").Dim(1), float32(guidance(t, c, "decoder_guidance_scale")))
		}
		within(t, name+"sched_model_output", mo, c.get(t, name+"sched_model_output"), 0)
		schedStep(t, c, p.DecoderScheduler, name)
	}

	// Upsampling, in the mode the case recorded.
	if c.has("super_res.image_upscaled") {
		small := c.get(t, "super_res.image_small")
		want := c.get(t, "super_res.image_upscaled")
		got := ops.New(want.Shape...)
		if c.antialias() {
			// The antialiased recipe is bit-exact for integer scales (MANIFEST note 5).
			ops.UpsampleBicubicAA(got, small)
			within(t, "super_res.image_upscaled", got, want, 0)
		} else {
			// Plain bicubic agrees with PyTorch's kernel to a few ulp, not
			// bit for bit (see ops.UpsampleBicubic): 1e-6 is 8 ulp at the
			// outputs' magnitude (< 2).
			ops.UpsampleBicubic(got, small)
			within(t, "super_res.image_upscaled", got, want, 1e-6)
		}
	}
	// Super-res steps.
	for i := 0; c.has(fmt.Sprintf("super_res.%02d.model_output", i)); i++ {
		name := fmt.Sprintf("super_res.%02d.", i)
		unet := p.SuperResFirst
		if i < len(c.SuperResUNets) && c.SuperResUNets[i] == "super_res_last" {
			unet = p.SuperResLast
		}
		out := unet.Forward(c.get(t, name+"model_input"), c.scalar(t, name+"timestep"), nil, nil, nil)
		want := c.get(t, name+"model_output")
		within(t, name+"model_output", out, want, rel(modelTol, want))
		schedStep(t, c, p.SuperResScheduler, name)
	}

	// Post-processing (exact, MANIFEST note 6).
	if c.has("output.image_float") {
		last := lastPrevSample(t, c)
		want := c.get(t, "output.image_float")
		img := ops.New(want.Shape...)
		ops.ImageFromSample(img, last)
		within(t, "output.image_float", img, want, 0)
		px := make([]uint8, want.Numel())
		ops.QuantizeU8(px, want)
		u8 := c.get(t, "output.image_uint8")
		for i := range px {
			if float32(px[i]) != u8.Data[i] {
				t.Fatalf("output.image_uint8[%d] = %d, want %v", i, px[i], u8.Data[i])
			}
		}
	}
}

// imageEncoderForced checks a variation case's preprocessing of its input
// image (bit-exact: integer resampling, then numpy's float32 arithmetic,
// see TestFeatureExtractorGolden) and the image encoder call on the
// reference's own pixel values.
func imageEncoderForced(t *testing.T, p *model.Pipeline, c *goldenCase) {
	if c.has("feature_extractor.pixel_values") {
		proc, err := p.ImageProcessor()
		require.NoError(t, err)
		px, err := proc.Preprocess([]image.Image{caseImage(t, c)})
		require.NoError(t, err)
		within(t, "feature_extractor.pixel_values", px, c.get(t, "feature_extractor.pixel_values"), 0)
	}
	emb, _ := p.ImageEncoder.Forward(c.get(t, "image_encoder.pixel_values"))
	want := c.get(t, "image_encoder.image_embeds")
	d := within(t, "image_encoder.image_embeds", emb, want, rel(modelTol, want))
	t.Logf("image_encoder.image_embeds max|Δ| %.3g", d)
}

// antialias reports whether the case's F.interpolate call asked for antialiasing.
func (c *goldenCase) antialias() bool {
	v, _ := c.InterpolateKwargs["antialias"].(bool)
	return v
}

func guidance(t testing.TB, c *goldenCase, key string) float64 {
	var m map[string]any
	require.NoError(t, json.Unmarshal(c.Call, &m))
	if v, ok := m[key].(float64); ok {
		return v
	}
	d := model.Defaults
	if key == "prior_guidance_scale" {
		return float64(d.PriorGuidance)
	}
	return float64(d.DecoderGuidance)
}

// lastPrevSample is the final super-res (or decoder) sample of a case.
func lastPrevSample(t testing.TB, c *goldenCase) *ops.Tensor {
	for _, stage := range []string{"super_res", "decoder"} {
		last := -1
		for i := 0; c.has(fmt.Sprintf("%s.%02d.prev_sample", stage, i)); i++ {
			last = i
		}
		if last >= 0 {
			return c.get(t, fmt.Sprintf("%s.%02d.prev_sample", stage, last))
		}
	}
	t.Fatal("no prev_sample in case")
	return nil
}

func schedStep(t *testing.T, c *goldenCase, s *model.Scheduler, name string) {
	t.Helper()
	sample := c.get(t, name+"sched_sample")
	var noise *ops.Tensor
	if c.has(name + "noise") {
		noise = c.get(t, name+"noise")
	}
	prev, pred := ops.New(sample.Shape...), ops.New(sample.Shape...)
	s.Step(c.get(t, name+"sched_model_output"), sample, c.scalar(t, name+"t"), c.scalar(t, name+"prev_t"), noise, prev, pred)
	want := c.get(t, name+"pred_original_sample")
	within(t, name+"pred_original_sample", pred, want, rel(schedTol, want))
	want = c.get(t, name+"prev_sample")
	within(t, name+"prev_sample", prev, want, rel(schedTol, want))
}

func endToEnd(t *testing.T, p *model.Pipeline, c *goldenCase) {
	cc := c.call(t)
	o := model.Defaults
	if cc.ImagesPerPrompt > 0 {
		o.ImagesPerPrompt = cc.ImagesPerPrompt
	}
	o.PriorSteps, o.DecoderSteps, o.SuperResSteps = cc.PriorSteps, cc.DecoderSteps, cc.SuperResSteps
	o.PriorGuidance = float32(guidance(t, c, "prior_guidance_scale"))
	o.DecoderGuidance = float32(guidance(t, c, "decoder_guidance_scale"))
	o.Noise = &model.ReplayNoise{Src: c.st, Name: c.Case}
	o.UpsampleAntialias = c.antialias()
	traced := map[string]*ops.Tensor{}
	o.Trace = func(name string, x *ops.Tensor) { traced[name] = x.Clone() }
	var res *model.Result
	var err error
	switch c.PipelineClass {
	case "UnCLIPPipeline":
		o.Prompts = cc.prompts(t)
		res, err = p.Generate(context.Background(), o)
	case "UnCLIPImageVariationPipeline":
		res, err = p.Vary(context.Background(), []image.Image{caseImage(t, c)}, o)
	default:
		t.Skipf("end-to-end %s: not implemented (teacher-forced steps above still ran)", c.PipelineClass)
	}
	require.NoError(t, err)
	checkEndToEnd(t, c, traced, res)
}

// caseImage decodes the input image a variation case's call names, e.g.
// "PIL.Image.open('variation_input_48x40.png') (mode RGB, size (48, 40))",
// from the cases folder.
func caseImage(t testing.TB, c *goldenCase) image.Image {
	t.Helper()
	var call struct {
		Image string `json:"image"`
	}
	require.NoError(t, json.Unmarshal(c.Call, &call))
	m := regexp.MustCompile(`open\('([^']+)'\)`).FindStringSubmatch(call.Image)
	require.NotNil(t, m, "case %s: no file name in the call's image %q", c.Case, call.Image)
	img, err := model.ReadImageFile(filepath.Join(c.dir, "cases", filepath.Base(m[1])))
	require.NoError(t, err)
	return img
}

// checkEndToEnd compares a run's traced tensors and pixels with a case.
func checkEndToEnd(t *testing.T, c *goldenCase, traced map[string]*ops.Tensor, res *model.Result) {
	// Every traced tensor the reference measured a sensitivity for must be
	// within that sensitivity: the reference's own fp32 run is itself off by
	// fp64_check[name] from the exact result, and ours by about as much, so
	// the two agree to 2·fp64_check, plus the per-call model tolerance for
	// tensors whose sensitivity is below fp32 summation noise.
	//
	// In a case that is not end-to-end stable (MANIFEST: the decoder output's
	// fp64_check ≥ 1e-4, e.g. t2i_b) a tensor downstream of the instability
	// (its own fp64_check ≥ 1e-4) depends on a handful of elements whose
	// errors the t=999 step multiplies by ~20000 (MANIFEST note 1); the
	// MANIFEST says such cases must be checked step by step, which
	// teacherForced does, so those tensors are reported, not enforced. Every
	// tensor of a stable case, and every stable tensor (e.g. the prior's) of
	// any case, is enforced.
	var names []string
	for name := range c.FP64 {
		if _, ok := traced[name]; ok && c.has(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		want := c.get(t, name)
		tol := 2*c.FP64[name] + rel(modelTol, want)
		if !stable(c) && c.FP64[name] >= stableLimit {
			d := maxDiff(traced[name], want)
			t.Logf("%-40s max|Δ| %.3g  (fp64_check %.3g; downstream of the instability: reported only)", name, d, c.FP64[name])
			continue
		}
		d := within(t, "end-to-end "+name, traced[name], want, tol)
		t.Logf("%-40s max|Δ| %.3g  (fp64_check %.3g)", name, d, c.FP64[name])
	}

	// Pixels, where the case is end-to-end stable (the decoder output moves
	// by < 1e-4 between fp32 and fp64). A byte can only differ where the
	// reference's float value lies closer to a rounding boundary than our
	// float image may deviate from it (the end-to-end tolerance above,
	// 2·fp64_check[output.image_float]); so at most that many bytes may
	// differ, or as many as differed between the reference's own fp32 and
	// fp64 runs if that is more, each by one level or by as many levels as
	// the reference's float image moved between fp32 and fp64.
	u8 := c.get(t, "output.image_uint8")
	require.Equal(t, u8.Numel(), len(res.Pixels))
	diff, worst := 0, 0.0
	for i, v := range res.Pixels {
		if d := math.Abs(float64(v) - float64(u8.Data[i])); d > 0 {
			diff++
			worst = math.Max(worst, d)
		}
	}
	fl := c.FP64["output.image_float"]
	allowed := max(int(c.FP64["output.image_uint8_num_mismatch"]), nearRoundingBoundary(c.get(t, "output.image_float").Data, 2*fl))
	levels := math.Max(1, math.Ceil(255*fl))
	if stable(c) {
		if diff > allowed || worst > levels {
			t.Errorf("output.image_uint8: %d bytes differ (max by %v); the case allows %d, by %v", diff, worst, allowed, levels)
		}
		t.Logf("output.image_uint8: %d bytes differ (max by %v); allowed %d, by %v", diff, worst, allowed, levels)
	} else {
		t.Logf("not end-to-end stable (image_small fp64_check %.3g): %d bytes differ (max %v), reference fp32-vs-fp64: %v",
			c.FP64["super_res.image_small"], diff, worst, c.FP64["output.image_uint8_num_mismatch"])
	}
}

// nearRoundingBoundary counts the values v in [0, 1] whose byte
// round(v·255) would change if v moved by at most tol.
func nearRoundingBoundary(img []float32, tol float64) int {
	n := 0
	for _, v := range img {
		x := float64(v) * 255
		frac := x - math.Floor(x)
		if math.Abs(frac-0.5) <= 255*tol {
			n++
		}
	}
	return n
}

// stable is the MANIFEST's criterion: the decoder output's fp64 sensitivity
// is below 1e-4.
func stable(c *goldenCase) bool {
	v, ok := c.FP64["super_res.image_small"]
	return ok && v < stableLimit
}

// stableLimit is the MANIFEST's threshold of end-to-end stability.
const stableLimit = 1e-4

// maxDiff is max |got − want| (NaN counts as infinite).
func maxDiff(got, want *ops.Tensor) float64 {
	m := 0.0
	for i := range want.Data {
		d := math.Abs(float64(got.Data[i]) - float64(want.Data[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		m = math.Max(m, d)
	}
	return m
}
