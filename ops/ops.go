package ops

// This file declares every operation the models use. Each one writes into a
// caller-provided dst of the right shape (from an Arena) and panics on shape
// mismatches, which are programming errors: model code checks weight shapes
// at load time. Unless stated, dst may alias x (in-place) for elementwise ops.
//
// Determinism rule for every implementation: work is split across threads by
// output elements only; a reduction is never split across threads, so the
// result is bit-identical for any thread count.

// Linear computes dst = x·wᵀ + b.
//
//	x: [..., K] (all leading dims flattened to M rows), w: [N, K], b: [N] or nil -> dst: [..., N]
//
// The reference path accumulates each dot product in float32 in ascending k
// order (rounded products); the fast path (assembly GEMM, whenever
// asm.Name() != "purego") computes it as one fused multiply-add chain in
// ascending k, then adds the bias. Either way the result is bit-identical for
// any thread count (see linear.go). dst must not alias x or w. w may be
// compact (fp16 or Q8_0, see NewCompact): it is then decoded a strip at a
// time while the GEMM packs it, and the result is bit-identical to Linear
// with the decoded weight.
func Linear(dst, x, w, b *Tensor) { linear(dst, x, w, b) }

// Conv2D is a cross-correlation with zero padding.
//
//	x: [N, Cin, H, W], w: [Cout, Cin, KH, KW], b: [Cout] or nil
//	-> dst: [N, Cout, (H+2·pad−KH)/stride+1, (W+2·pad−KW)/stride+1]
//
// Each output sums its taps in (cin, ky, kx) order, then adds the bias: in
// float32 with rounded products on the reference path, as one fused
// multiply-add chain on the fast path (an implicit GEMM, see conv_fast.go).
// dst must not alias x or w. w may be compact, as for Linear.
func Conv2D(dst, x, w, b *Tensor, stride, pad int) { conv2d(dst, x, w, b, stride, pad) }

// GroupNorm normalises x: [N, C, ...] over each group of C/groups channels and
// all trailing positions (biased variance, statistics in float64), then applies
// the per-channel affine w, b: [C].
func GroupNorm(dst, x *Tensor, groups int, w, b *Tensor, eps float32) {
	groupNorm(dst, x, groups, w, b, eps)
}

// LayerNorm normalises over the last dimension (biased variance, statistics in
// float64) and applies w, b: [D].
func LayerNorm(dst, x, w, b *Tensor, eps float32) { layerNorm(dst, x, w, b, eps) }

// SiLU is x·σ(x).
func SiLU(dst, x *Tensor) { silu(dst, x) }

// GELU is the exact erf form 0.5·x·(1+erf(x/√2)).
func GELU(dst, x *Tensor) { gelu(dst, x) }

// QuickGELU is x·σ(1.702·x) (CLIP).
func QuickGELU(dst, x *Tensor) { quickGELU(dst, x) }

// Add is dst = a + b elementwise (same element count).
func Add(dst, a, b *Tensor) { add(dst, a, b) }

// AddRows adds y to every consecutive block of y.Numel() elements of x
// (broadcast over leading dimensions, e.g. a [1, L, D] positional embedding
// onto [N, L, D]).
func AddRows(dst, x, y *Tensor) { addRows(dst, x, y) }

// AddChannel adds e[n, c] to every spatial position of x[n, c].
//
//	x: [N, C, H, W] (or [N, C, ...]), e: [N, C] -> dst like x
func AddChannel(dst, x, e *Tensor) { addChannel(dst, x, e) }

// ScaleShift is the scale_shift time conditioning of a ResnetBlock2D:
// dst = f32(f32(x·f32(1+scale)) + shift), scale = e[:, :C], shift = e[:, C:].
//
//	x: [N, C, H, W], e: [N, 2C] -> dst like x
func ScaleShift(dst, x, e *Tensor) { scaleShift(dst, x, e) }

// Scale is dst = x·s.
func Scale(dst, x *Tensor, s float32) { scale(dst, x, s) }

// Clamp limits every element to [lo, hi].
func Clamp(dst, x *Tensor, lo, hi float32) { clamp(dst, x, lo, hi) }

// Guidance is classifier-free guidance: dst = f32(u + f32(g·f32(c − u))).
func Guidance(dst, u, c *Tensor, g float32) { guidance(dst, u, c, g) }

// Copy copies src into dst (same element count).
func Copy(dst, src *Tensor) { copy(dst.Data, src.Data) }

// UpsampleNearest2x: x [N, C, H, W] -> dst [N, C, 2H, 2W], out[y][x] = in[y/2][x/2].
func UpsampleNearest2x(dst, x *Tensor) { upsampleNearest2x(dst, x) }

// AvgPool2x: x [N, C, H, W] -> dst [N, C, H/2, W/2], mean of each 2×2 window.
func AvgPool2x(dst, x *Tensor) { avgPool2x(dst, x) }

// UpsampleBicubicAA is PyTorch's F.interpolate(mode="bicubic",
// align_corners=False, antialias=True) (spec §8: Keys a=−0.5, renormalised
// edge taps, width pass then height pass). Any sizes work; when shrinking an
// axis the kernel widens by the scale factor, as in PyTorch.
//
//	x: [N, C, H, W] -> dst: [N, C, Ho, Wo]
func UpsampleBicubicAA(dst, x *Tensor) { upsampleBicubicAA(dst, x) }

// Concat joins xs along axis; all other dimensions must match.
func Concat(dst *Tensor, axis int, xs ...*Tensor) { concat(dst, axis, xs...) }

// Transpose swaps the last two dimensions of a 3-D tensor: x [N, A, B] -> dst [N, B, A].
// dst must not alias x.
func Transpose(dst, x *Tensor) { transpose(dst, x) }

// Embedding gathers rows: table [V, D], ids (each in [0, V)) -> dst [len(ids), D].
func Embedding(dst, table *Tensor, ids []int) { embedding(dst, table, ids) }

// Timesteps is the sinusoidal timestep projection of spec §6.1 for one
// timestep t repeated over dst's rows: dst [N, D];
// e_i = f32(f32(−ln 10000·i)/(D/2 − shift)), ω_i = exp(e_i), a_i = f32(t·ω_i),
// row = [cos a | sin a] if flipSinToCos else [sin a | cos a].
func Timesteps(dst *Tensor, t int64, flipSinToCos bool, shift float32) {
	timesteps(dst, t, flipSinToCos, shift)
}

// Attention is multi-head scaled dot-product attention:
//
//	q: [N, Lq, H·D], k, v: [N, Lk, H·D] (channel c belongs to head c/D)
//	bias: nil, [N, Lq, Lk] or [N, 1, Lk] (broadcast over queries); same for every head
//	causal: key j > query i gets no weight (exactly 0; it does not enter the max or the sum)
//	dst[n, i, h·D+d] = Σ_j softmax_j(scale·q_i·k_j + bias_ij) · v[n, j, h·D+d]
//
// Softmax subtracts the row maximum. The reference sums in float32 in
// ascending j; the fast path computes both products as FMA chains on the
// assembly GEMM and normalises after the weighted sum (see
// attention_fast.go). dst must not alias q, k or v.
func Attention(dst, q, k, v, bias *Tensor, heads int, causal bool, scale float32) {
	attention(dst, q, k, v, bias, heads, causal, scale)
}

// SetThreads sets the number of worker threads used by every op (n ≤ 0: all
// cores). It must not be called while an op is running.
func SetThreads(n int) { setThreads(n) }

// Threads reports the current number of worker threads.
func Threads() int { return threads() }

// Narrow copies the slice [start, start+dst.Dim(axis)) of x along axis into dst
// (all other dimensions equal), e.g. the first 3 of 6 channels of [N, 6, H, W].
func Narrow(dst, x *Tensor, axis, start int) { narrow(dst, x, axis, start) }

// ImageFromSample turns a sample in [−1, 1] into an image in [0, 1] and NCHW
// into NHWC: dst[n, y, x, c] = clamp(f32(x[n, c, y, x]·0.5) + 0.5, 0, 1).
//
//	x: [N, C, H, W] -> dst: [N, H, W, C]
func ImageFromSample(dst, x *Tensor) { imageFromSample(dst, x) }

// QuantizeU8 maps [0, 1] floats to bytes as numpy's (v*255).round() does:
// round half to even of f32(v·255).
func QuantizeU8(dst []uint8, x *Tensor) { quantizeU8(dst, x) }

// UpsampleBicubic is PyTorch's F.interpolate(mode="bicubic",
// align_corners=False) without antialiasing: Keys cubic with a = −0.75,
// source index (i+0.5)·in/out − 0.5, taps clamped to the border, computed
// per output as Σ_i w_y[i]·(Σ_j w_x[j]·x[y_i, x_j]) in float32 with fused
// multiply-adds (x·w first, then fma per tap). This agrees with PyTorch 1.13's
// CPU kernel to a few ulp (3.6e-7 on the golden cases), not bit for bit: its
// compiler's contraction pattern was not identified.
//
//	x: [N, C, H, W] -> dst: [N, C, Ho, Wo]
func UpsampleBicubic(dst, x *Tensor) { upsampleBicubic(dst, x) }
