package model

// The decoder and super-resolution U-Nets (spec §6–§8): one UNet type serves
// diffusers' UNet2DConditionModel (the decoder) and UNet2DModel (both
// super-resolution nets); its blocks are built from the config's block-type
// lists. Module types live in unet_blocks.go.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/dalle2/dalle2/loader"
	"github.com/dalle2/dalle2/ops"
)

// The U-Net classes and block types this port implements (those unCLIP uses).
const (
	classUNet2DCondition = "UNet2DConditionModel"
	classUNet2D          = "UNet2DModel"

	blockResnetDown    = "ResnetDownsampleBlock2D"
	blockCrossAttnDown = "SimpleCrossAttnDownBlock2D"
	blockResnetUp      = "ResnetUpsampleBlock2D"
	blockCrossAttnUp   = "SimpleCrossAttnUpBlock2D"
	blockMidCrossAttn  = "UNetMidBlock2DSimpleCrossAttn"
	blockMid           = "UNetMidBlock2D"
)

// UNetConfig is the part of a diffusers UNet2DConditionModel / UNet2DModel
// config.json that the unCLIP U-Nets use (spec §7, §8, §12).
type UNetConfig struct {
	ClassName            string   // "UNet2DConditionModel" (decoder) or "UNet2DModel" (super-res)
	SampleSize           int      // sample_size; 0 when null
	InChannels           int      // in_channels
	OutChannels          int      // out_channels
	DownBlockTypes       []string // down_block_types
	UpBlockTypes         []string // up_block_types
	MidBlockType         string   // mid_block_type (UNet2DModel: always "UNetMidBlock2D")
	BlockOutChannels     []int    // block_out_channels
	LayersPerBlock       int      // layers_per_block
	NormNumGroups        int      // norm_num_groups
	NormEps              float32  // norm_eps
	CrossAttentionDim    int      // cross_attention_dim (context width); 0 for UNet2DModel
	AttentionHeadDim     int      // attention_head_dim = channels per head; 0 (null): one head per block
	ClassEmbedType       string   // class_embed_type: "identity" or "" (none)
	ResnetTimeScaleShift string   // resnet_time_scale_shift: "default" or "scale_shift"
	FlipSinToCos         bool     // flip_sin_to_cos
	FreqShift            float32  // freq_shift
	AddAttention         bool     // add_attention (UNetMidBlock2D only)
	TimeEmbedDim         int      // time_embedding_dim, or 4·block_out_channels[0] when null
}

// unetJSON reads config keys, distinguishing missing keys (library default)
// from explicit nulls, and collects every problem.
type unetJSON struct {
	m    map[string]json.RawMessage
	errs []string
}

// get decodes key into dst; it reports false (leaving dst alone) if the key
// is missing or null.
func (j *unetJSON) get(key string, dst any) bool {
	raw, ok := j.m[key]
	if !ok || string(raw) == "null" {
		return false
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		j.errs = append(j.errs, fmt.Sprintf("%s: cannot read %s as %T", key, raw, dst))
		return false
	}
	return true
}

// explicitNull reports whether key is present with the value null.
func (j *unetJSON) explicitNull(key string) bool {
	raw, ok := j.m[key]
	return ok && string(raw) == "null"
}

// isNull reports whether key is missing or null.
func (j *unetJSON) isNull(key string) bool {
	raw, ok := j.m[key]
	return !ok || string(raw) == "null"
}

func (j *unetJSON) reject(key string, raw json.RawMessage, why string) {
	j.errs = append(j.errs, fmt.Sprintf("%s = %s: %s", key, raw, why))
}

// wantNull rejects a key that must be missing or null.
func (j *unetJSON) wantNull(key string) {
	if !j.isNull(key) {
		j.reject(key, j.m[key], "not supported (unCLIP U-Nets leave it null)")
	}
}

// wantValue rejects a key whose value, if present, differs from want
// (compared as decoded JSON, so 1 and 1.0 are equal).
func (j *unetJSON) wantValue(key string, want any) {
	raw, ok := j.m[key]
	if !ok {
		return
	}
	var got any
	if json.Unmarshal(raw, &got) != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		j.reject(key, raw, fmt.Sprintf("only %v is supported", want))
	}
}

// ParseUNetConfig reads a diffusers UNet2DConditionModel or UNet2DModel
// config.json. Missing keys take diffusers' (0.25) defaults, which agree with
// spec §12 for every key the Karlo hub files omit; unknown keys are ignored.
// Settings the unCLIP U-Nets do not use (other block types, activations,
// time embeddings, class embeddings, …) are rejected with an error naming
// the key and value; all problems are listed together.
func ParseUNetConfig(raw []byte) (UNetConfig, error) {
	j := &unetJSON{}
	if err := json.Unmarshal(raw, &j.m); err != nil {
		return UNetConfig{}, fmt.Errorf("U-Net config: %w", err)
	}
	var c UNetConfig
	if !j.get("_class_name", &c.ClassName) {
		return UNetConfig{}, fmt.Errorf("U-Net config: missing _class_name")
	}
	cond := c.ClassName == classUNet2DCondition
	if !cond && c.ClassName != classUNet2D {
		return UNetConfig{}, fmt.Errorf("U-Net config: _class_name %q not supported (want %s or %s)",
			c.ClassName, classUNet2DCondition, classUNet2D)
	}

	// Library defaults (diffusers 0.25).
	c.InChannels, c.OutChannels = 3, 3
	c.BlockOutChannels = []int{224, 448, 672, 896}
	c.AttentionHeadDim = 8
	c.AddAttention = !cond // UNet2DModel only
	c.MidBlockType = blockMid
	if cond {
		c.InChannels, c.OutChannels = 4, 4
		c.BlockOutChannels = []int{320, 640, 1280, 1280}
		c.CrossAttentionDim = 1280
		c.MidBlockType = "UNetMidBlock2DCrossAttn"
	}
	c.LayersPerBlock = 2
	c.NormNumGroups = 32
	c.NormEps = 1e-5
	c.ResnetTimeScaleShift = "default"
	c.FlipSinToCos = true

	j.get("sample_size", &c.SampleSize)
	j.get("in_channels", &c.InChannels)
	j.get("out_channels", &c.OutChannels)
	j.get("block_out_channels", &c.BlockOutChannels)
	j.get("layers_per_block", &c.LayersPerBlock)
	j.get("norm_eps", &c.NormEps)
	j.get("resnet_time_scale_shift", &c.ResnetTimeScaleShift)
	j.get("flip_sin_to_cos", &c.FlipSinToCos)
	j.get("freq_shift", &c.FreqShift)
	if !j.get("down_block_types", &c.DownBlockTypes) {
		j.errs = append(j.errs, "down_block_types: missing (the diffusers default uses block types unCLIP does not)")
	}
	if !j.get("up_block_types", &c.UpBlockTypes) {
		j.errs = append(j.errs, "up_block_types: missing (the diffusers default uses block types unCLIP does not)")
	}
	if j.explicitNull("norm_num_groups") {
		j.reject("norm_num_groups", j.m["norm_num_groups"], "null (no GroupNorm) is not supported")
	} else {
		j.get("norm_num_groups", &c.NormNumGroups)
	}
	if j.explicitNull("attention_head_dim") {
		c.AttentionHeadDim = 0 // one head per block (head dim = channels)
	} else {
		j.get("attention_head_dim", &c.AttentionHeadDim)
	}

	// Keys that must keep the value the unCLIP U-Nets use.
	j.wantValue("act_fn", "silu")
	j.wantValue("time_embedding_type", "positional")
	j.wantValue("center_input_sample", false)
	j.wantValue("mid_block_scale_factor", 1)
	j.wantNull("num_class_embeds")
	if cond {
		j.get("mid_block_type", &c.MidBlockType)
		if j.explicitNull("mid_block_type") {
			j.reject("mid_block_type", j.m["mid_block_type"], "a U-Net without a mid block is not supported")
		}
		j.get("cross_attention_dim", &c.CrossAttentionDim)
		j.get("class_embed_type", &c.ClassEmbedType)
		if c.ClassEmbedType != "" && c.ClassEmbedType != "identity" {
			j.reject("class_embed_type", j.m["class_embed_type"], "only identity or null is supported")
		}
		j.get("time_embedding_dim", &c.TimeEmbedDim)
		j.wantValue("conv_in_kernel", 3)
		j.wantValue("conv_out_kernel", 3)
		j.wantValue("only_cross_attention", false)
		j.wantValue("dual_cross_attention", false)
		j.wantValue("resnet_skip_time_act", false)
		j.wantValue("resnet_out_scale_factor", 1)
		j.wantValue("class_embeddings_concat", false)
		for _, k := range []string{"addition_embed_type", "encoder_hid_dim", "encoder_hid_dim_type",
			"time_cond_proj_dim", "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm",
			"num_attention_heads"} {
			j.wantNull(k)
		}
		if !j.isNull("mid_block_only_cross_attention") {
			j.wantValue("mid_block_only_cross_attention", false)
		}
	} else {
		j.get("add_attention", &c.AddAttention)
		j.wantNull("class_embed_type")
		j.wantNull("attn_norm_num_groups")
	}
	if c.TimeEmbedDim == 0 && len(c.BlockOutChannels) > 0 {
		c.TimeEmbedDim = 4 * c.BlockOutChannels[0]
	}
	j.errs = append(j.errs, c.validate()...)
	if len(j.errs) > 0 {
		return UNetConfig{}, fmt.Errorf("U-Net config (%s): %d problem(s):\n  %s", c.ClassName, len(j.errs), strings.Join(j.errs, "\n  "))
	}
	return c, nil
}

// validate checks the structure: block types, channel counts and their
// divisibility. It returns one message per problem.
func (c *UNetConfig) validate() []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	cond := c.ClassName == classUNet2DCondition
	nb := len(c.BlockOutChannels)
	var l limitCheck
	l.max("number of blocks", max(nb, len(c.DownBlockTypes), len(c.UpBlockTypes)), MaxConfigBlocks)
	l.max("sample_size", c.SampleSize, MaxConfigImageSize)
	l.max("in_channels", c.InChannels, MaxConfigWidth)
	l.max("out_channels", c.OutChannels, MaxConfigWidth)
	l.max("layers_per_block", c.LayersPerBlock, MaxConfigLayersPerBlock)
	l.max("norm_num_groups", c.NormNumGroups, MaxConfigWidth)
	l.max("cross_attention_dim", c.CrossAttentionDim, MaxConfigWidth)
	l.max("attention_head_dim", c.AttentionHeadDim, MaxConfigWidth)
	l.max("time_embedding_dim", c.TimeEmbedDim, MaxConfigWidth)
	for i, ch := range c.BlockOutChannels {
		l.max(fmt.Sprintf("block_out_channels[%d]", i), ch, MaxConfigWidth)
	}
	if len(l) > 0 {
		// Sizes beyond the limits make the checks below meaningless (and
		// 1<<(blocks-1) overflow): report only the limits.
		return []string{strings.TrimPrefix(l.err("U-Net").Error(), "U-Net config: ")}
	}
	if nb == 0 {
		bad("block_out_channels: empty")
	}
	if len(c.DownBlockTypes) != nb || len(c.UpBlockTypes) != nb {
		bad("down_block_types (%d), up_block_types (%d) and block_out_channels (%d) must have the same length",
			len(c.DownBlockTypes), len(c.UpBlockTypes), nb)
	}
	for _, t := range c.DownBlockTypes {
		if t != blockResnetDown && !(cond && t == blockCrossAttnDown) {
			bad("down_block_types: %q not supported for %s", t, c.ClassName)
		}
	}
	for _, t := range c.UpBlockTypes {
		if t != blockResnetUp && !(cond && t == blockCrossAttnUp) {
			bad("up_block_types: %q not supported for %s", t, c.ClassName)
		}
	}
	if cond && c.MidBlockType != blockMidCrossAttn || !cond && c.MidBlockType != blockMid {
		bad("mid_block_type: %q not supported for %s", c.MidBlockType, c.ClassName)
	}
	if c.ResnetTimeScaleShift != "default" && c.ResnetTimeScaleShift != "scale_shift" {
		bad("resnet_time_scale_shift: %q not supported (want default or scale_shift)", c.ResnetTimeScaleShift)
	}
	if !cond && c.AddAttention && c.ResnetTimeScaleShift != "default" {
		bad("add_attention with resnet_time_scale_shift %q (mid attention without GroupNorm) is not supported", c.ResnetTimeScaleShift)
	}
	if c.InChannels <= 0 || c.OutChannels <= 0 || c.LayersPerBlock <= 0 || c.NormNumGroups <= 0 || c.TimeEmbedDim <= 0 {
		bad("in_channels %d, out_channels %d, layers_per_block %d, norm_num_groups %d, time embedding dim %d must be positive",
			c.InChannels, c.OutChannels, c.LayersPerBlock, c.NormNumGroups, c.TimeEmbedDim)
	}
	if c.SampleSize < 0 || c.AttentionHeadDim < 0 || c.NormEps <= 0 {
		bad("sample_size %d, attention_head_dim %d, norm_eps %g out of range", c.SampleSize, c.AttentionHeadDim, c.NormEps)
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || c.NormNumGroups > 0 && ch%c.NormNumGroups != 0 {
			bad("block_out_channels[%d] = %d: must be a positive multiple of norm_num_groups %d", i, ch, c.NormNumGroups)
		}
	}
	for i, ch := range c.BlockOutChannels {
		// Attention layers sit in cross-attention blocks (decoder) or in the
		// mid block (UNet2DModel, at the last block's width).
		attn := c.usesCrossAttention() || c.usesAttention() && i == nb-1
		if attn && c.AttentionHeadDim > 0 && ch%c.AttentionHeadDim != 0 {
			bad("block_out_channels[%d] = %d: not a multiple of attention_head_dim %d", i, ch, c.AttentionHeadDim)
		}
	}
	if c.usesCrossAttention() && c.CrossAttentionDim <= 0 {
		bad("cross_attention_dim %d: must be positive for %s blocks", c.CrossAttentionDim, blockCrossAttnDown)
	}
	return errs
}

// usesCrossAttention reports whether any block attends to encoder states.
func (c *UNetConfig) usesCrossAttention() bool {
	if c.ClassName != classUNet2DCondition {
		return false
	}
	for _, t := range append(append([]string{c.MidBlockType}, c.DownBlockTypes...), c.UpBlockTypes...) {
		if t == blockCrossAttnDown || t == blockCrossAttnUp || t == blockMidCrossAttn {
			return true
		}
	}
	return false
}

// usesAttention reports whether any block has an attention layer.
func (c *UNetConfig) usesAttention() bool {
	return c.usesCrossAttention() || c.ClassName == classUNet2D && c.AddAttention
}

// heads is the number of attention heads of a block with ch channels.
func (c *UNetConfig) heads(ch int) int {
	if c.AttentionHeadDim == 0 {
		return 1
	}
	return ch / c.AttentionHeadDim
}

// UNet is the decoder (UNet2DConditionModel) or a super-resolution
// (UNet2DModel) U-Net. Forward is not safe for concurrent use: activations
// live in arenas owned by the UNet and reused by every call.
type UNet struct {
	Config                             UNetConfig
	ConvInWeight, ConvInBias           *ops.Tensor        // conv_in: [C0, Cin, 3, 3], [C0]
	TimeEmbedding                      *TimestepEmbedding // time_embedding: C0 → T
	DownBlocks                         []*DownBlock2D     // down_blocks.{b}
	MidBlock                           *MidBlock2D        // mid_block
	UpBlocks                           []*UpBlock2D       // up_blocks.{b}
	ConvNormOutWeight, ConvNormOutBias *ops.Tensor        // conv_norm_out: [C0]
	ConvOutWeight, ConvOutBias         *ops.Tensor        // conv_out: [Cout, C0, 3, 3], [Cout]

	// Hook, when non-nil, is called during Forward with submodule outputs
	// named like the golden files' hook names: "time_proj",
	// "time_embedding" (before the class embedding is added), "conv_in",
	// every resnet, attention, downsampler and upsampler under its full key
	// prefix (e.g. "down_blocks.0.resnets.0", "mid_block.attentions.0",
	// "up_blocks.1.upsamplers.0"), each block ("down_blocks.{b}",
	// "mid_block", "up_blocks.{b}"), "conv_norm_out" (before the SiLU) and
	// "conv_out"; and with the inputs of down_blocks.0.resnets.0 as
	// "pre:down_blocks.0.resnets.0.arg0" (features) and
	// "pre:down_blocks.0.resnets.0.arg1" (time + class embedding).
	// The tensor is valid only during the call.
	Hook func(name string, t *ops.Tensor)

	arena   ops.Arena     // outputs that live for the whole pass (skips, result)
	relay   [2]ops.Arena  // outputs only the next layer reads (mid and up blocks), alternating
	scratch ops.Arena     // temporaries of one layer, reset before each layer
	views   unetViews     // reshaped headers, reused across passes
	skips   []*ops.Tensor // skip-connection stack (capacity reused)
	release releaser      // low-memory mode: drops each block's weight pages after it runs
	groups  int
	eps     float32
}

// NewUNet builds the U-Net described by cfg and binds its weights from src
// (diffusers state-dict keys). Every missing, mis-shaped or unexpected
// tensor is reported in one error.
func NewUNet(cfg UNetConfig, src loader.Source) (*UNet, error) {
	if errs := cfg.validate(); len(errs) > 0 {
		return nil, fmt.Errorf("U-Net config (%s): %s", cfg.ClassName, strings.Join(errs, "; "))
	}
	b := newBinder(cfg.ClassName, src)
	boc := cfg.BlockOutChannels
	nb := len(boc)
	u := &UNet{Config: cfg, groups: cfg.NormNumGroups, eps: cfg.NormEps}
	rc := resnetConfig{temb: cfg.TimeEmbedDim, groups: cfg.NormNumGroups, eps: cfg.NormEps,
		scaleShift: cfg.ResnetTimeScaleShift == "scale_shift"}
	ac := attnConfig{groups: cfg.NormNumGroups, eps: cfg.NormEps, ctx: cfg.CrossAttentionDim}

	u.ConvInWeight = b.weight("conv_in.weight", boc[0], cfg.InChannels, 3, 3)
	u.ConvInBias = b.tensor("conv_in.bias", boc[0])
	u.TimeEmbedding = newTimestepEmbedding(b.sub("time_embedding"), boc[0], cfg.TimeEmbedDim)

	nskips := 1
	out := boc[0]
	for i, t := range cfg.DownBlockTypes {
		in := out
		out = boc[i]
		name := fmt.Sprintf("down_blocks.%d", i)
		blk := newDownBlock2D(b.sub(name), name, t, in, out, cfg.LayersPerBlock, i < nb-1, rc, ac.withHeads(cfg.heads(out)))
		nskips += len(blk.Resnets) + len(blk.Downsamplers)
		u.DownBlocks = append(u.DownBlocks, blk)
	}
	mac := ac.withHeads(cfg.heads(boc[nb-1]))
	if cfg.MidBlockType == blockMid {
		mac.ctx = 0 // plain self-attention (AttnProcessor)
	}
	u.MidBlock = newMidBlock2D(b.sub("mid_block"), cfg.MidBlockType, boc[nb-1], cfg.MidBlockType == blockMidCrossAttn || cfg.AddAttention, rc, mac)

	prev := boc[nb-1]
	for i, t := range cfg.UpBlockTypes {
		out := boc[nb-1-i]
		in := boc[max(nb-2-i, 0)]
		name := fmt.Sprintf("up_blocks.%d", i)
		blk := newUpBlock2D(b.sub(name), name, t, prev, in, out, cfg.LayersPerBlock+1, i < nb-1, rc, ac.withHeads(cfg.heads(out)))
		u.UpBlocks = append(u.UpBlocks, blk)
		prev = out
	}
	u.ConvNormOutWeight = b.tensor("conv_norm_out.weight", boc[0])
	u.ConvNormOutBias = b.tensor("conv_norm_out.bias", boc[0])
	u.ConvOutWeight = b.weight("conv_out.weight", cfg.OutChannels, boc[0], 3, 3)
	u.ConvOutBias = b.tensor("conv_out.bias", cfg.OutChannels)
	if err := b.err(); err != nil {
		return nil, err
	}
	u.skips = make([]*ops.Tensor, 0, nskips)
	return u, nil
}

func (u *UNet) hook(name string, t *ops.Tensor) {
	if u.Hook != nil {
		u.Hook(name, t)
	}
}

// Forward predicts the model output for sample x at integer timestep t.
//
//	x: [N, Cin, H, W] (H, W divisible by 2^(blocks−1))
//	encoderHidden: [N, L, cross_attention_dim] (decoder; nil for super-res)
//	classLabels: [N, T] additive embedding (decoder, class_embed_type identity; else nil)
//	mask: [N, L] of 0/1 (1 = attend) or nil (decoder only)
//	-> [N, Cout, H, W]
//
// The result lives in the UNet's arena: it is valid until the next Forward.
// Inputs are only read. Wrong input shapes are programming errors and panic.
func (u *UNet) Forward(x *ops.Tensor, t int64, encoderHidden, classLabels, mask *ops.Tensor) *ops.Tensor {
	u.checkInputs(x, encoderHidden, classLabels, mask)
	u.arena.Reset()
	u.scratch.Reset()
	u.views.reset()
	a := &u.arena
	c := &u.Config
	n, h, w := x.Dim(0), x.Dim(2), x.Dim(3)
	if !c.usesCrossAttention() {
		encoderHidden, mask = nil, nil // diffusers ignores them without cross-attention
	}

	// Time embedding (spec §6.1, §6.2, §7.2 step 2).
	tp := a.New(n, c.BlockOutChannels[0])
	ops.Timesteps(tp, t, c.FlipSinToCos, c.FreqShift)
	u.hook("time_proj", tp)
	emb := u.TimeEmbedding.forward(a, tp)
	u.hook("time_embedding", emb)
	if c.ClassEmbedType == "identity" {
		ops.Add(emb, emb, classLabels)
	}
	// Every resnet applies SiLU to the embedding before time_emb_proj.
	embAct := a.New(n, c.TimeEmbedDim)
	ops.SiLU(embAct, emb)

	// Mask bias (1 − mask)·(−10000) (spec §7.2 step 1).
	var maskBias *ops.Tensor
	if mask != nil {
		maskBias = a.New(mask.Shape...)
		for i, m := range mask.Data {
			maskBias.Data[i] = (1 - m) * -10000
		}
	}
	ctx := unetContext{u: u, embAct: embAct, enc: encoderHidden, maskBias: maskBias}

	hs := a.New(n, c.BlockOutChannels[0], h, w)
	ops.Conv2D(hs, x, u.ConvInWeight, u.ConvInBias, 1, 1)
	u.hook("conv_in", hs)
	skips := append(u.skips[:0], hs)
	for bi, blk := range u.DownBlocks {
		if bi == 0 && u.Hook != nil {
			u.hook("pre:down_blocks.0.resnets.0.arg0", hs)
			u.hook("pre:down_blocks.0.resnets.0.arg1", emb)
		}
		hs, skips = blk.forward(&ctx, hs, skips)
		u.release.done("down_blocks." + strconv.Itoa(bi))
	}
	hs = u.MidBlock.forward(&ctx, hs)
	u.hook("mid_block", hs)
	u.release.done("mid_block")
	for bi, blk := range u.UpBlocks {
		hs, skips = blk.forward(&ctx, hs, skips)
		u.release.done("up_blocks." + strconv.Itoa(bi))
	}
	u.skips = skips[:0]

	ctx.newLayer()
	no := u.scratch.New(hs.Shape...)
	ops.GroupNorm(no, hs, u.groups, u.ConvNormOutWeight, u.ConvNormOutBias, u.eps)
	u.hook("conv_norm_out", no)
	ops.SiLU(no, no)
	out := a.New(n, c.OutChannels, h, w)
	ops.Conv2D(out, no, u.ConvOutWeight, u.ConvOutBias, 1, 1)
	u.hook("conv_out", out)
	return out
}

// checkInputs panics with a clear message on inputs that do not fit the model.
func (u *UNet) checkInputs(x, enc, classLabels, mask *ops.Tensor) {
	c := &u.Config
	fail := func(format string, args ...any) {
		panic(fmt.Sprintf("model.UNet.Forward (%s): ", c.ClassName) + fmt.Sprintf(format, args...))
	}
	if x == nil || len(x.Shape) != 4 || x.Shape[1] != c.InChannels {
		fail("x %v: want [N, %d, H, W]", x, c.InChannels)
	}
	n, h, w := x.Shape[0], x.Shape[2], x.Shape[3]
	if f := 1 << (len(c.BlockOutChannels) - 1); h == 0 || w == 0 || h%f != 0 || w%f != 0 {
		fail("x %v: H and W must be positive multiples of %d", x.Shape, f)
	}
	if c.ClassEmbedType == "identity" {
		if classLabels == nil || len(classLabels.Shape) != 2 || classLabels.Shape[0] != n || classLabels.Shape[1] != c.TimeEmbedDim {
			fail("class_labels %v: want [%d, %d] (class_embed_type identity requires them)", classLabels, n, c.TimeEmbedDim)
		}
	}
	if !c.usesCrossAttention() {
		return
	}
	if enc == nil || len(enc.Shape) != 3 || enc.Shape[0] != n || enc.Shape[2] != c.CrossAttentionDim {
		fail("encoder_hidden_states %v: want [%d, L, %d]", enc, n, c.CrossAttentionDim)
	}
	if mask != nil && (len(mask.Shape) != 2 || mask.Shape[0] != n || mask.Shape[1] != enc.Shape[1]) {
		fail("attention_mask %v: want [%d, %d]", mask, n, enc.Shape[1])
	}
}

// unetContext is what every block of one Forward pass shares.
type unetContext struct {
	u        *UNet
	embAct   *ops.Tensor // SiLU(time embedding): [N, T]
	enc      *ops.Tensor // encoder hidden states [N, L, X] or nil
	maskBias *ops.Tensor // additive mask [N, L] or nil
	relayIdx int         // the relay arena the next short-lived output takes
}

// Where layer outputs live. A down block's outputs are skip connections,
// read again by the up blocks, so they stay in the pass arena. Every other
// output (a down-block resnet followed by its attention, the mid block, the
// up blocks) is read only by the next layer: those alternate between two
// relay arenas, each reset just before it takes a new output, whose
// previous tenant (two layers back) is dead by then. At 256×256 with 320
// channels one output is 84 MB, so this keeps super-resolution's
// activations near the skips plus two outputs, instead of every output of
// the pass.

// newLayer starts a layer: the scratch arena and the reshaped views (all
// of them made and used within one layer) are released. Clearing the views
// matters on a first pass, while the arenas still grow: a view left over
// from an earlier layer would keep a replaced slab alive.
func (c *unetContext) newLayer() {
	c.u.scratch.Reset()
	c.u.views.reset()
}

// keep returns the arena of an output that must live for the whole pass.
func (c *unetContext) keep() *ops.Arena { return &c.u.arena }

// relay returns a freshly reset arena for an output that only the next
// layer reads.
func (c *unetContext) relay() *ops.Arena {
	a := &c.u.relay[c.relayIdx]
	c.relayIdx ^= 1
	a.Reset()
	return a
}

// freeBuffers drops the U-Net's activation buffers (the next Forward
// rebuilds them) and reports whether it held any.
func (u *UNet) freeBuffers() bool {
	freed := u.arena.Free()
	freed = u.scratch.Free() || freed
	freed = u.relay[0].Free() || freed
	freed = u.relay[1].Free() || freed
	u.views = unetViews{} // its headers point into the arenas
	clear(u.skips[:cap(u.skips)])
	return freed
}

// unetViews hands out reshaped views whose headers are reused from pass to
// pass, so that reshaping allocates nothing after the first pass.
type unetViews struct {
	ts []*ops.Tensor
	n  int
}

func (v *unetViews) reset() {
	for _, t := range v.ts[:v.n] {
		t.Data = nil
	}
	v.n = 0
}

// reuse returns the first elements of dead tensor t's buffer as a tensor
// of the given shape, or nil when t is too small.
func (v *unetViews) reuse(t *ops.Tensor, shape ...int) *ops.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n > len(t.Data) {
		return nil
	}
	tmp := ops.Tensor{Data: t.Data[:n:n]}
	return v.view(&tmp, shape...)
}

// view returns t's data with a new shape of the same element count.
func (v *unetViews) view(t *ops.Tensor, shape ...int) *ops.Tensor {
	if v.n == len(v.ts) {
		v.ts = append(v.ts, &ops.Tensor{})
	}
	r := v.ts[v.n]
	v.n++
	r.Shape = append(r.Shape[:0], shape...)
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(t.Data) {
		panic(fmt.Sprintf("model: view of %v as %v", t.Shape, shape))
	}
	r.Data = t.Data
	return r
}
