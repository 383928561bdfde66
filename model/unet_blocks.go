package model

// U-Net modules (spec §6): TimestepEmbedding, ResnetBlock2D, the spatial
// attention (plain or with added key/value projections of a context) and the
// down / mid / up blocks built from them.
//
// Memory: a module's output is allocated from the UNet's pass arena (valid
// for the whole Forward); its temporaries come from the scratch arena, which
// the enclosing block resets before each layer. Inputs may live in scratch
// (e.g. a concatenated skip connection): modules never reset it themselves.

import (
	"fmt"
	"math"

	"github.com/dalle2/dalle2/ops"
)

// TimestepEmbedding is diffusers' TimestepEmbedding with SiLU: linear_1,
// SiLU, linear_2 (spec §6.2).
type TimestepEmbedding struct {
	Linear1Weight, Linear1Bias *ops.Tensor // linear_1: [T, Cin], [T]
	Linear2Weight, Linear2Bias *ops.Tensor // linear_2: [T, T], [T]
}

func newTimestepEmbedding(b *binder, in, dim int) *TimestepEmbedding {
	return &TimestepEmbedding{
		Linear1Weight: b.weight("linear_1.weight", dim, in),
		Linear1Bias:   b.tensor("linear_1.bias", dim),
		Linear2Weight: b.weight("linear_2.weight", dim, dim),
		Linear2Bias:   b.tensor("linear_2.bias", dim),
	}
}

// forward: x [N, Cin] -> [N, T], allocated from a.
func (e *TimestepEmbedding) forward(a *ops.Arena, x *ops.Tensor) *ops.Tensor {
	n, dim := x.Dim(0), e.Linear1Weight.Dim(0)
	h := a.New(n, dim)
	ops.Linear(h, x, e.Linear1Weight, e.Linear1Bias)
	ops.SiLU(h, h)
	out := a.New(n, dim)
	ops.Linear(out, h, e.Linear2Weight, e.Linear2Bias)
	return out
}

// resnetConfig holds the settings shared by every ResnetBlock2D of a U-Net.
type resnetConfig struct {
	temb       int     // time embedding width T
	groups     int     // GroupNorm groups
	eps        float32 // GroupNorm eps
	scaleShift bool    // resnet_time_scale_shift "scale_shift" (else "default")
}

// ResnetBlock2D is diffusers' ResnetBlock2D (spec §6.3), optionally with
// nearest ×2 upsampling (Up) or 2×2 average pooling (Down) of both paths
// before conv1.
type ResnetBlock2D struct {
	Norm1Weight, Norm1Bias               *ops.Tensor // norm1: [Cin]
	Conv1Weight, Conv1Bias               *ops.Tensor // conv1: [Cout, Cin, 3, 3], [Cout]
	TimeEmbProjWeight, TimeEmbProjBias   *ops.Tensor // time_emb_proj: [Cout or 2·Cout (scale_shift), T], [same]
	Norm2Weight, Norm2Bias               *ops.Tensor // norm2: [Cout]
	Conv2Weight, Conv2Bias               *ops.Tensor // conv2: [Cout, Cout, 3, 3], [Cout]
	ConvShortcutWeight, ConvShortcutBias *ops.Tensor // conv_shortcut: [Cout, Cin, 1, 1], [Cout]; nil when Cin = Cout

	In, Out  int  // input and output channels
	Up, Down bool // nearest ×2 upsampling / 2×2 average pooling before conv1
	cfg      resnetConfig
	name     string // hook name, e.g. "down_blocks.0.resnets.0"
}

func newResnetBlock2D(b *binder, name string, in, out int, rc resnetConfig, up, down bool) *ResnetBlock2D {
	tout := out
	if rc.scaleShift {
		tout = 2 * out
	}
	r := &ResnetBlock2D{
		Norm1Weight:       b.tensor("norm1.weight", in),
		Norm1Bias:         b.tensor("norm1.bias", in),
		Conv1Weight:       b.weight("conv1.weight", out, in, 3, 3),
		Conv1Bias:         b.tensor("conv1.bias", out),
		TimeEmbProjWeight: b.weight("time_emb_proj.weight", tout, rc.temb),
		TimeEmbProjBias:   b.tensor("time_emb_proj.bias", tout),
		Norm2Weight:       b.tensor("norm2.weight", out),
		Norm2Bias:         b.tensor("norm2.bias", out),
		Conv2Weight:       b.weight("conv2.weight", out, out, 3, 3),
		Conv2Bias:         b.tensor("conv2.bias", out),
		In:                in, Out: out, Up: up, Down: down, cfg: rc, name: name,
	}
	if in != out {
		r.ConvShortcutWeight = b.weight("conv_shortcut.weight", out, in, 1, 1)
		r.ConvShortcutBias = b.tensor("conv_shortcut.bias", out)
	}
	return r
}

// forward: x [N, Cin, H, W] -> [N, Cout, H', W'] (H' = 2H up, H/2 down),
// allocated from dst. When consume is set, x is the caller's temporary,
// dead after this call: the first normalisation then runs in place over it.
//
// The shortcut (x, resampled, through conv_shortcut if there is one) is
// written to the output first, and conv2's result added to it at the end,
// the same sum x' + conv2(…) as in diffusers (hence the same bits). Doing
// the shortcut first lets every temporary die early: at 256×256 a resnet
// needs at most three feature maps of scratch.
func (r *ResnetBlock2D) forward(c *unetContext, x *ops.Tensor, dst *ops.Arena, consume bool) *ops.Tensor {
	s := &c.u.scratch
	n, hh, ww := x.Dim(0), x.Dim(2), x.Dim(3)
	oh, ow := hh, ww
	switch {
	case r.Up:
		oh, ow = 2*hh, 2*ww
	case r.Down:
		oh, ow = hh/2, ww/2
	}
	out := dst.New(n, r.Out, oh, ow)
	resample := func(dst, src *ops.Tensor) {
		if r.Up {
			ops.UpsampleNearest2x(dst, src)
		} else {
			ops.AvgPool2x(dst, src)
		}
	}
	switch {
	case r.ConvShortcutWeight == nil && (r.Up || r.Down):
		resample(out, x)
	case r.ConvShortcutWeight == nil:
		copy(out.Data, x.Data)
	case r.Up || r.Down:
		xs := s.New(n, r.In, oh, ow)
		resample(xs, x)
		ops.Conv2D(out, xs, r.ConvShortcutWeight, r.ConvShortcutBias, 1, 0)
	default:
		ops.Conv2D(out, x, r.ConvShortcutWeight, r.ConvShortcutBias, 1, 0)
	}

	h := x
	if !consume {
		h = s.New(n, r.In, hh, ww)
	}
	ops.GroupNorm(h, x, r.cfg.groups, r.Norm1Weight, r.Norm1Bias, r.cfg.eps)
	ops.SiLU(h, h)
	if r.Up || r.Down {
		hr := s.New(n, r.In, oh, ow)
		resample(hr, h)
		h = hr
	}
	h1 := s.New(n, r.Out, oh, ow)
	ops.Conv2D(h1, h, r.Conv1Weight, r.Conv1Bias, 1, 1)
	e := s.New(n, r.TimeEmbProjWeight.Dim(0))
	ops.Linear(e, c.embAct, r.TimeEmbProjWeight, r.TimeEmbProjBias)
	// h is dead after conv1: the second normalisation writes into its
	// buffer when it is large enough; conv2 then writes into h1's, dead
	// after that normalisation.
	h2 := c.u.views.reuse(h, n, r.Out, oh, ow)
	if h2 == nil {
		h2 = s.New(n, r.Out, oh, ow)
	}
	if r.cfg.scaleShift {
		ops.GroupNorm(h2, h1, r.cfg.groups, r.Norm2Weight, r.Norm2Bias, r.cfg.eps)
		ops.ScaleShift(h2, h2, e)
	} else {
		ops.AddChannel(h1, h1, e)
		ops.GroupNorm(h2, h1, r.cfg.groups, r.Norm2Weight, r.Norm2Bias, r.cfg.eps)
	}
	ops.SiLU(h2, h2)
	ops.Conv2D(h1, h2, r.Conv2Weight, r.Conv2Bias, 1, 1)
	ops.Add(out, out, h1) // shortcut + h (output_scale_factor 1)
	c.u.hook(r.name, out)
	return out
}

// attnConfig holds the settings of a block's attention layers.
type attnConfig struct {
	groups int     // GroupNorm groups
	eps    float32 // GroupNorm eps
	ctx    int     // added_kv_proj_dim (context width); 0: plain self-attention
	heads  int
}

func (a attnConfig) withHeads(h int) attnConfig { a.heads = h; return a }

// SpatialAttention is diffusers' Attention over the H·W positions of a
// feature map with a GroupNorm in front and a residual connection. With
// added KV projections (SimpleCrossAttn blocks, AttnAddedKVProcessor, spec
// §6.4) the keys and values are [context ; self], context first, and the
// mask bias is right-padded with zeros over the self keys. Without them
// (UNetMidBlock2D, AttnProcessor) it is plain self-attention.
type SpatialAttention struct {
	GroupNormWeight, GroupNormBias *ops.Tensor // group_norm: [C]
	ToQWeight, ToQBias             *ops.Tensor // to_q: [C, C], [C]
	ToKWeight, ToKBias             *ops.Tensor // to_k: [C, C], [C]
	ToVWeight, ToVBias             *ops.Tensor // to_v: [C, C], [C]
	AddKProjWeight, AddKProjBias   *ops.Tensor // add_k_proj: [C, X], [C]; nil without added KV
	AddVProjWeight, AddVProjBias   *ops.Tensor // add_v_proj: [C, X], [C]; nil without added KV
	ToOutWeight, ToOutBias         *ops.Tensor // to_out.0: [C, C], [C]

	Channels, Heads int // C, and heads of C/Heads channels each
	cfg             attnConfig
	scale           float32 // head_dim^−½
	name            string
}

func newSpatialAttention(b *binder, name string, ch int, ac attnConfig) *SpatialAttention {
	a := &SpatialAttention{
		GroupNormWeight: b.tensor("group_norm.weight", ch),
		GroupNormBias:   b.tensor("group_norm.bias", ch),
		ToQWeight:       b.weight("to_q.weight", ch, ch),
		ToQBias:         b.tensor("to_q.bias", ch),
		ToKWeight:       b.weight("to_k.weight", ch, ch),
		ToKBias:         b.tensor("to_k.bias", ch),
		ToVWeight:       b.weight("to_v.weight", ch, ch),
		ToVBias:         b.tensor("to_v.bias", ch),
		ToOutWeight:     b.weight("to_out.0.weight", ch, ch),
		ToOutBias:       b.tensor("to_out.0.bias", ch),
		Channels:        ch, Heads: ac.heads, cfg: ac, name: name,
		scale: float32(1 / math.Sqrt(float64(ch/ac.heads))),
	}
	if ac.ctx > 0 {
		a.AddKProjWeight = b.weight("add_k_proj.weight", ch, ac.ctx)
		a.AddKProjBias = b.tensor("add_k_proj.bias", ch)
		a.AddVProjWeight = b.weight("add_v_proj.weight", ch, ac.ctx)
		a.AddVProjBias = b.tensor("add_v_proj.bias", ch)
	}
	return a
}

// forward: x [N, C, H, W] -> [N, C, H, W]; uses c.enc [N, L, X] and
// c.maskBias [N, L] (or nil) when it has added KV projections.
func (a *SpatialAttention) forward(c *unetContext, x *ops.Tensor, dst *ops.Arena) *ops.Tensor {
	s, v := &c.u.scratch, &c.u.views
	n, ch, hw := x.Dim(0), x.Dim(1), x.Dim(2)*x.Dim(3)
	g := s.New(x.Shape...)
	ops.GroupNorm(g, x, a.cfg.groups, a.GroupNormWeight, a.GroupNormBias, a.cfg.eps)
	seq := s.New(n, hw, ch) // position p = y·W + x
	ops.Transpose(seq, v.view(g, n, ch, hw))
	q, k, val := s.New(n, hw, ch), s.New(n, hw, ch), s.New(n, hw, ch)
	ops.Linear(q, seq, a.ToQWeight, a.ToQBias)
	ops.Linear(k, seq, a.ToKWeight, a.ToKBias)
	ops.Linear(val, seq, a.ToVWeight, a.ToVBias)
	var bias *ops.Tensor
	if a.AddKProjWeight != nil {
		l := c.enc.Dim(1)
		kc, vc := s.New(n, l, ch), s.New(n, l, ch)
		ops.Linear(kc, c.enc, a.AddKProjWeight, a.AddKProjBias)
		ops.Linear(vc, c.enc, a.AddVProjWeight, a.AddVProjBias)
		kk, vv := s.New(n, l+hw, ch), s.New(n, l+hw, ch)
		ops.Concat(kk, 1, kc, k) // context keys first
		ops.Concat(vv, 1, vc, val)
		k, val = kk, vv
		if c.maskBias != nil {
			lk := l + hw
			bias = s.New(n, 1, lk)
			for i := 0; i < n; i++ {
				row := bias.Data[i*lk : (i+1)*lk]
				copy(row, c.maskBias.Data[i*l:(i+1)*l])
				clear(row[l:]) // self keys are never masked
			}
		}
	}
	o := s.New(n, hw, ch)
	ops.Attention(o, q, k, val, bias, a.Heads, false, a.scale)
	p := s.New(n, hw, ch)
	ops.Linear(p, o, a.ToOutWeight, a.ToOutBias)
	out := dst.New(x.Shape...)
	ops.Transpose(v.view(out, n, ch, hw), p)
	ops.Add(out, out, x) // residual (rescale_output_factor 1)
	c.u.hook(a.name, out)
	return out
}

// DownBlock2D is a ResnetDownsampleBlock2D (resnets only) or a
// SimpleCrossAttnDownBlock2D (each resnet followed by an added-KV
// attention), with a downsampling ResnetBlock2D unless it is the last block.
// Every layer output is pushed as a skip connection.
type DownBlock2D struct {
	Type         string              // ResnetDownsampleBlock2D or SimpleCrossAttnDownBlock2D
	Resnets      []*ResnetBlock2D    // resnets.{j}
	Attentions   []*SpatialAttention // attentions.{j}; empty for ResnetDownsampleBlock2D
	Downsamplers []*ResnetBlock2D    // downsamplers.0 (down = true); empty for the last block
	name         string
}

func newDownBlock2D(b *binder, name, typ string, in, out, layers int, downsample bool, rc resnetConfig, ac attnConfig) *DownBlock2D {
	d := &DownBlock2D{Type: typ, name: name}
	for j := 0; j < layers; j++ {
		cin := out
		if j == 0 {
			cin = in
		}
		rn := fmt.Sprintf("resnets.%d", j)
		d.Resnets = append(d.Resnets, newResnetBlock2D(b.sub(rn), name+"."+rn, cin, out, rc, false, false))
		if typ == blockCrossAttnDown {
			an := fmt.Sprintf("attentions.%d", j)
			d.Attentions = append(d.Attentions, newSpatialAttention(b.sub(an), name+"."+an, out, ac))
		}
	}
	if downsample {
		d.Downsamplers = append(d.Downsamplers,
			newResnetBlock2D(b.sub("downsamplers.0"), name+".downsamplers.0", out, out, rc, false, true))
	}
	return d
}

func (d *DownBlock2D) forward(c *unetContext, h *ops.Tensor, skips []*ops.Tensor) (*ops.Tensor, []*ops.Tensor) {
	for j, r := range d.Resnets {
		c.newLayer()
		if d.Attentions != nil {
			h = r.forward(c, h, c.relay(), false)
			c.newLayer()
			h = d.Attentions[j].forward(c, h, c.keep())
		} else {
			h = r.forward(c, h, c.keep(), false)
		}
		skips = append(skips, h)
	}
	for _, r := range d.Downsamplers {
		c.newLayer()
		h = r.forward(c, h, c.keep(), false)
		skips = append(skips, h)
	}
	c.u.hook(d.name, h)
	return h, skips
}

// MidBlock2D is UNetMidBlock2DSimpleCrossAttn (resnet, added-KV attention,
// resnet) or UNetMidBlock2D (resnet, optional self-attention, resnet).
type MidBlock2D struct {
	Type       string              // UNetMidBlock2DSimpleCrossAttn or UNetMidBlock2D
	Resnets    []*ResnetBlock2D    // resnets.0, resnets.1
	Attentions []*SpatialAttention // attentions.0; empty for UNetMidBlock2D with add_attention false
}

func newMidBlock2D(b *binder, typ string, ch int, attention bool, rc resnetConfig, ac attnConfig) *MidBlock2D {
	m := &MidBlock2D{Type: typ}
	m.Resnets = append(m.Resnets, newResnetBlock2D(b.sub("resnets.0"), "mid_block.resnets.0", ch, ch, rc, false, false))
	if attention {
		m.Attentions = append(m.Attentions, newSpatialAttention(b.sub("attentions.0"), "mid_block.attentions.0", ch, ac))
	}
	m.Resnets = append(m.Resnets, newResnetBlock2D(b.sub("resnets.1"), "mid_block.resnets.1", ch, ch, rc, false, false))
	return m
}

func (m *MidBlock2D) forward(c *unetContext, h *ops.Tensor) *ops.Tensor {
	c.newLayer()
	h = m.Resnets[0].forward(c, h, c.relay(), false)
	for _, a := range m.Attentions {
		c.newLayer()
		h = a.forward(c, h, c.relay())
	}
	c.newLayer()
	return m.Resnets[1].forward(c, h, c.relay(), false)
}

// UpBlock2D is a ResnetUpsampleBlock2D or a SimpleCrossAttnUpBlock2D: each
// layer concatenates the popped skip connection after the current features
// (cat([h, skip])) before its resnet, and the block ends with an upsampling
// ResnetBlock2D unless it is the last block.
type UpBlock2D struct {
	Type       string              // ResnetUpsampleBlock2D or SimpleCrossAttnUpBlock2D
	Resnets    []*ResnetBlock2D    // resnets.{j}
	Attentions []*SpatialAttention // attentions.{j}; empty for ResnetUpsampleBlock2D
	Upsamplers []*ResnetBlock2D    // upsamplers.0 (up = true); empty for the last block
	name       string
}

// newUpBlock2D: prev = channels coming from below, in = channels of the
// matching down block's input (its last skip), out = this block's channels.
func newUpBlock2D(b *binder, name, typ string, prev, in, out, layers int, upsample bool, rc resnetConfig, ac attnConfig) *UpBlock2D {
	u := &UpBlock2D{Type: typ, name: name}
	for j := 0; j < layers; j++ {
		skip := out
		if j == layers-1 {
			skip = in
		}
		cin := out
		if j == 0 {
			cin = prev
		}
		rn := fmt.Sprintf("resnets.%d", j)
		u.Resnets = append(u.Resnets, newResnetBlock2D(b.sub(rn), name+"."+rn, cin+skip, out, rc, false, false))
		if typ == blockCrossAttnUp {
			an := fmt.Sprintf("attentions.%d", j)
			u.Attentions = append(u.Attentions, newSpatialAttention(b.sub(an), name+"."+an, out, ac))
		}
	}
	if upsample {
		u.Upsamplers = append(u.Upsamplers,
			newResnetBlock2D(b.sub("upsamplers.0"), name+".upsamplers.0", out, out, rc, true, false))
	}
	return u
}

func (u *UpBlock2D) forward(c *unetContext, h *ops.Tensor, skips []*ops.Tensor) (*ops.Tensor, []*ops.Tensor) {
	for j, r := range u.Resnets {
		skip := skips[len(skips)-1]
		skips = skips[:len(skips)-1]
		c.newLayer()
		cat := c.u.scratch.New(h.Dim(0), h.Dim(1)+skip.Dim(1), h.Dim(2), h.Dim(3))
		ops.Concat(cat, 1, h, skip) // current features first
		h = r.forward(c, cat, c.relay(), true)
		if u.Attentions != nil {
			c.newLayer()
			h = u.Attentions[j].forward(c, h, c.relay())
		}
	}
	for _, r := range u.Upsamplers {
		c.newLayer()
		h = r.forward(c, h, c.relay(), false)
	}
	c.u.hook(u.name, h)
	return h, skips
}
