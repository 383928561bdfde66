package model

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/dalle2/dalle2/ops"
)

// SchedulerConfig is a diffusers scheduler_config.json of an UnCLIPScheduler
// (spec §9). Keys missing from the JSON take diffusers' defaults.
type SchedulerConfig struct {
	NumTrainTimesteps int     `json:"num_train_timesteps"` // T, default 1000
	VarianceType      string  `json:"variance_type"`       // "fixed_small_log" (default) or "learned_range"
	PredictionType    string  `json:"prediction_type"`     // "epsilon" (default) or "sample"
	ClipSample        bool    `json:"clip_sample"`         // clamp x̂₀, default true
	ClipSampleRange   float64 `json:"clip_sample_range"`   // to ±range, default 1.0
	BetaSchedule      string  `json:"beta_schedule"`       // only "squaredcos_cap_v2" (default)
}

// DefaultSchedulerConfig is UnCLIPScheduler's constructor defaults.
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{
		NumTrainTimesteps: 1000,
		VarianceType:      "fixed_small_log",
		PredictionType:    "epsilon",
		ClipSample:        true,
		ClipSampleRange:   1.0,
		BetaSchedule:      "squaredcos_cap_v2",
	}
}

// ParseSchedulerConfig decodes a scheduler_config.json. Missing keys keep the
// defaults, unknown keys (such as "_class_name") are ignored, and values this
// port does not implement are errors naming the value.
func ParseSchedulerConfig(raw []byte) (SchedulerConfig, error) {
	cfg := DefaultSchedulerConfig()
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return SchedulerConfig{}, fmt.Errorf("scheduler config: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return SchedulerConfig{}, err
	}
	return cfg, nil
}

func (c SchedulerConfig) validate() error {
	switch c.VarianceType {
	case "fixed_small_log", "learned_range":
	default:
		return fmt.Errorf("scheduler config: variance_type %q not supported (want fixed_small_log or learned_range)", c.VarianceType)
	}
	switch c.PredictionType {
	case "epsilon", "sample":
	default:
		return fmt.Errorf("scheduler config: prediction_type %q not supported (want epsilon or sample)", c.PredictionType)
	}
	if c.BetaSchedule != "squaredcos_cap_v2" {
		return fmt.Errorf("scheduler config: beta_schedule %q not supported (UnCLIPScheduler only has squaredcos_cap_v2)", c.BetaSchedule)
	}
	if c.NumTrainTimesteps > MaxConfigTimesteps {
		return fmt.Errorf("scheduler config: num_train_timesteps %d exceeds the limit of %d (corrupt or hostile config?)", c.NumTrainTimesteps, MaxConfigTimesteps)
	}
	if c.NumTrainTimesteps < 2 {
		return fmt.Errorf("scheduler config: num_train_timesteps %d, need at least 2", c.NumTrainTimesteps)
	}
	if c.ClipSample && !(c.ClipSampleRange > 0) {
		return fmt.Errorf("scheduler config: clip_sample_range %v, need > 0", c.ClipSampleRange)
	}
	return nil
}

// Scheduler is diffusers' UnCLIPScheduler (spec §9): the DDPM posterior step
// with a cosine (squaredcos_cap_v2) noise schedule, all arithmetic in float32
// in PyTorch's operation order. It is immutable after NewScheduler and safe
// for concurrent use.
type Scheduler struct {
	cfg           SchedulerConfig
	clip          float32   // clip_sample_range as the float32 torch.clamp uses
	betas         []float32 // β_i
	alphas        []float32 // α_i = 1 - β_i
	alphasCumprod []float32 // ᾱ_i = α_0·…·α_i
}

// NewScheduler builds the tables of §9.1 for cfg:
//
//	ᾱ(s) = cos(((s+0.008)/1.008)·π/2)²                (float64)
//	β_i  = f32(min(1 - ᾱ((i+1)/T)/ᾱ(i/T), 0.999))      (float64, one rounding)
//	α_i  = f32(1 - β_i)
//	ᾱ_i  = f32(P_i), P_i = P_{i-1}·α_i in float64     (torch.cumprod on CPU)
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := cfg.NumTrainTimesteps
	s := &Scheduler{
		cfg:           cfg,
		clip:          float32(cfg.ClipSampleRange),
		betas:         make([]float32, n),
		alphas:        make([]float32, n),
		alphasCumprod: make([]float32, n),
	}
	alphaBar := func(t float64) float64 {
		c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	prod := 1.0
	for i := 0; i < n; i++ {
		t1 := float64(i) / float64(n)
		t2 := float64(i+1) / float64(n)
		s.betas[i] = float32(min(1-alphaBar(t2)/alphaBar(t1), 0.999))
		s.alphas[i] = 1 - s.betas[i]
		prod *= float64(s.alphas[i])
		s.alphasCumprod[i] = float32(prod)
	}
	return s, nil
}

// Config returns the configuration the scheduler was built from.
func (s *Scheduler) Config() SchedulerConfig { return s.cfg }

// Betas returns β_0..β_{T-1} (shared; do not modify).
func (s *Scheduler) Betas() []float32 { return s.betas }

// Alphas returns α_i = 1 - β_i (shared; do not modify).
func (s *Scheduler) Alphas() []float32 { return s.alphas }

// AlphasCumprod returns ᾱ_i (shared; do not modify).
func (s *Scheduler) AlphasCumprod() []float32 { return s.alphasCumprod }

// Timesteps is set_timesteps(n) (spec §9.2): round_half_even(k·(T-1)/(n-1))
// for k = 0..n-1, in descending order (numpy's round, so n = 7 gives
// 999 832 666 500 333 166 0). n < 2 is an error (the reference divides by n-1).
func (s *Scheduler) Timesteps(n int) ([]int64, error) {
	if n < 2 {
		return nil, fmt.Errorf("scheduler: %d inference steps, need at least 2", n)
	}
	ratio := float64(s.cfg.NumTrainTimesteps-1) / float64(n-1)
	ts := make([]int64, n)
	for k := 0; k < n; k++ {
		ts[n-1-k] = int64(math.RoundToEven(float64(k) * ratio))
	}
	return ts, nil
}

// stepScalars are the float32 scalars of one step (spec §9.3 items 2 and 5).
type stepScalars struct {
	sqrtBt, sqrtAt float32 // sqrt(1-ᾱ_t), sqrt(ᾱ_t)
	c0, c1         float32 // coefficients of x̂₀ and x_t in the posterior mean
	beta, variance float32 // β, and the posterior variance b_p/b_t·β
}

// scalars computes the step constants for t and prevT (-1 = previous step t-1).
func (s *Scheduler) scalars(t, prevT int64) stepScalars {
	T := int64(len(s.alphasCumprod))
	if t < 0 || t >= T {
		panic(fmt.Sprintf("scheduler: timestep %d outside [0, %d)", t, T))
	}
	prev := prevT
	if prev < 0 {
		prev = t - 1
	}
	if prev >= T {
		panic(fmt.Sprintf("scheduler: previous timestep %d outside [-1, %d)", prev, T))
	}
	at := s.alphasCumprod[t]
	ap := float32(1)
	if prev >= 0 {
		ap = s.alphasCumprod[prev]
	}
	bt := 1 - at
	bp := 1 - ap
	var beta, alpha float32
	if prev == t-1 {
		beta, alpha = s.betas[t], s.alphas[t]
	} else {
		beta = 1 - at/ap
		alpha = 1 - beta
	}
	return stepScalars{
		sqrtBt:   schedSqrt32(bt),
		sqrtAt:   schedSqrt32(at),
		c0:       float32(schedSqrt32(ap)*beta) / bt,
		c1:       float32(schedSqrt32(alpha)*bp) / bt,
		beta:     beta,
		variance: float32(bp/bt) * beta,
	}
}

// Step is UnCLIPScheduler.step (spec §9.3): from the model output at timestep
// t and the current sample x_t it writes x̂₀ to predOriginal and x_{prevT} to
// prevSample (both the shape of sample). prevT = -1 (any negative) means
// "None": the previous step is t-1.
//
// modelOutput has the sample's shape, except for learned_range where dim 1
// holds 2C channels, [ε | v], and v sets the per-element variance. noise is
// the N(0,1) tensor of the sample's shape drawn for t > 0 (the caller draws
// it, in the reference order); it is ignored when t == 0 and may be nil then.
// prevSample may be the same tensor as sample. Shape mismatches, a nil noise
// for t > 0 and timesteps out of range are programming errors and panic.
//
// Per element, in float32 (f32 = rounding, no fused multiply-add):
//
//	x̂₀ = f32(f32(x - f32(sqrt(1-ᾱ_t)·ε)) / sqrt(ᾱ_t))   (epsilon; "sample": x̂₀ = output)
//	x̂₀ = clamp(x̂₀, ±clip_sample_range)                   (if clip_sample)
//	μ  = f32(f32(c₀·x̂₀) + f32(c₁·x))
//	x' = f32(μ + f32(σ·noise))                           (t > 0; x' = μ at t == 0)
func (s *Scheduler) Step(modelOutput, sample *ops.Tensor, t, prevT int64, noise *ops.Tensor, prevSample, predOriginal *ops.Tensor) {
	eps, v, inner := s.split(modelOutput, sample)
	if !prevSample.SameShape(sample) || !predOriginal.SameShape(sample) {
		panic(fmt.Sprintf("scheduler: step outputs %v and %v for sample %v", prevSample.Shape, predOriginal.Shape, sample.Shape))
	}
	if t > 0 {
		if noise == nil {
			panic(fmt.Sprintf("scheduler: step at t=%d needs noise", t))
		}
		if !noise.SameShape(sample) {
			panic(fmt.Sprintf("scheduler: noise %v for sample %v", noise.Shape, sample.Shape))
		}
	}
	k := s.scalars(t, prevT)
	var std float32 // fixed_small_log: one σ for all elements
	var loVar, loBeta float32
	if t > 0 {
		if s.cfg.VarianceType == "learned_range" {
			loVar, loBeta = schedLog32(k.variance), schedLog32(k.beta)
		} else {
			std = fixedSmallLogStd(k.variance)
		}
	}
	x := sample.Data
	x0 := predOriginal.Data
	out := prevSample.Data
	predictsEps := s.cfg.PredictionType == "epsilon"
	for i := range x {
		mi := schedOutIndex(i, inner)
		var p float32
		if predictsEps {
			p = float32(x[i]-float32(k.sqrtBt*eps[mi])) / k.sqrtAt
		} else {
			p = eps[mi]
		}
		if s.cfg.ClipSample {
			p = schedClamp32(p, s.clip)
		}
		mean := float32(k.c0*p) + float32(k.c1*x[i])
		x0[i] = p
		if t == 0 {
			out[i] = mean
			continue
		}
		sd := std
		if v != nil {
			sd = learnedRangeStd(v[mi], loBeta, loVar)
		}
		out[i] = mean + float32(sd*noise.Data[i])
	}
}

// NoiseStd returns the σ that Step multiplies the noise by at (t, prevT), as
// the reference traces store it in "<stage>.<i>.noise_std": a tensor of shape
// [] for fixed_small_log, and of the sample's shape for learned_range (from the
// v half of modelOutput). It returns nil for t == 0, where no noise is added.
func (s *Scheduler) NoiseStd(modelOutput, sample *ops.Tensor, t, prevT int64) *ops.Tensor {
	_, v, inner := s.split(modelOutput, sample)
	if t == 0 {
		return nil
	}
	k := s.scalars(t, prevT)
	if s.cfg.VarianceType != "learned_range" {
		return ops.FromData([]float32{fixedSmallLogStd(k.variance)})
	}
	loVar, loBeta := schedLog32(k.variance), schedLog32(k.beta)
	std := ops.New(sample.Shape...)
	for i := range std.Data {
		std.Data[i] = learnedRangeStd(v[schedOutIndex(i, inner)], loBeta, loVar)
	}
	return std
}

// split checks modelOutput against sample and returns its prediction (ε or
// x̂₀) and variance (v) parts. For learned_range with 2C channels, eps and v
// alias modelOutput.Data and element i of sample is element schedOutIndex(i,
// inner) of eps and of v (v = eps[inner:]); otherwise v is nil and inner is
// 0, making schedOutIndex the identity.
func (s *Scheduler) split(modelOutput, sample *ops.Tensor) (eps, v []float32, inner int) {
	if modelOutput.SameShape(sample) {
		if s.cfg.VarianceType == "learned_range" {
			panic(fmt.Sprintf("scheduler: learned_range needs the variance channels: model output %v for sample %v", modelOutput.Shape, sample.Shape))
		}
		return modelOutput.Data, nil, 0
	}
	ok := s.cfg.VarianceType == "learned_range" && len(sample.Shape) >= 2 && len(modelOutput.Shape) == len(sample.Shape) &&
		modelOutput.Shape[1] == 2*sample.Shape[1]
	for d := 0; ok && d < len(sample.Shape); d++ {
		ok = d == 1 || modelOutput.Shape[d] == sample.Shape[d]
	}
	if !ok {
		panic(fmt.Sprintf("scheduler (%s): model output %v does not fit sample %v", s.cfg.VarianceType, modelOutput.Shape, sample.Shape))
	}
	// inner = C·H·W: one batch item's share of sample.
	inner = sample.Numel() / sample.Shape[0]
	return modelOutput.Data, modelOutput.Data[inner:], inner
}

// schedOutIndex maps element i of the sample to its element in the first half of a
// [N, 2C, ...] model output whose batch items are 2·inner long (identity for
// inner == 0).
func schedOutIndex(i, inner int) int {
	if inner == 0 {
		return i
	}
	return i + (i/inner)*inner
}

// fixedSmallLogStd is σ = f32(exp(f32(0.5·f32(log(max(var, 1e-20)))))).
func fixedSmallLogStd(variance float32) float32 {
	return schedExp32(0.5 * schedLog32(max(variance, 1e-20)))
}

// learnedRangeStd is, for the model's v at one element,
// fr = f32(f32(v+1)/2), lv = f32(f32(fr·log β) + f32(f32(1-fr)·log var)),
// σ = f32(exp(f32(0.5·lv))).
func learnedRangeStd(v, logBeta, logVar float32) float32 {
	fr := (v + 1) / 2
	lv := float32(fr*logBeta) + float32((1-fr)*logVar)
	return schedExp32(0.5 * lv)
}

func schedSqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
func schedLog32(x float32) float32  { return float32(math.Log(float64(x))) }
func schedExp32(x float32) float32  { return float32(math.Exp(float64(x))) }

// schedClamp32 is torch.clamp(x, -r, r) (NaN stays NaN).
func schedClamp32(x, r float32) float32 {
	if x < -r {
		return -r
	}
	if x > r {
		return r
	}
	return x
}
