package model

import (
	"math"

	"github.com/dalle2/dalle2/ops"
)

// TorchRNG is PyTorch's CPU random generator (torch.Generator('cpu'), ATen's
// CPUGeneratorImpl): a 32-bit MT19937 engine seeded like manual_seed, plus the
// second Box-Muller value that torch's scalar normal sampler caches between
// calls. Randn reproduces torch.randn(shape, generator=g) on CPU: bit for bit
// as PyTorch's x86-64 AVX2 kernel computes it (1.13; tested on all 9567 stored
// reference values), and to ~1 ulp (<= 2.4e-7 abs, spec §10.3) for builds
// whose float32 log/sin/cos differ (no AVX2, other architectures).
//
// Draws consume the stream exactly as torch does, so a sequence of Randn
// calls on one generator matches the same sequence of torch.randn calls:
//
//   - numel >= 16 (float32): one 24-bit uniform per element, then an in-place
//     Box-Muller on each block of 16 (pairs j, j+8) in float32 with the Cephes
//     polynomial log and sincos of ATen's AVX2 kernel (including the fused
//     multiply-adds the compiler forms there); if numel % 16 != 0 the last 16
//     elements are drawn again and transformed again.
//   - numel < 16: torch's scalar path, normal_distribution<double>: two 53-bit
//     uniforms give two normals in float64; the first is returned (rounded to
//     float32) and the second is cached in the generator for the next scalar
//     draw, even across calls.
//
// A TorchRNG is not safe for concurrent use.
type TorchRNG struct {
	state [mtN]uint32
	left  int // words left before the next twist
	next  int // index of the next state word to temper

	haveNormal bool    // a cached normal from the scalar path is pending
	nextNormal float64 // that normal
}

const (
	mtN         = 624
	mtM         = 397
	mtMatrixA   = 0x9908b0df
	mtUpperMask = 0x80000000
	mtLowerMask = 0x7fffffff
)

// NewTorchRNG returns a generator in the state torch.Generator('cpu').manual_seed(seed)
// leaves it: MT19937 initialised from the low 32 bits of seed, no cached normal.
func NewTorchRNG(seed uint64) *TorchRNG {
	r := &TorchRNG{}
	r.state[0] = uint32(seed)
	for j := 1; j < mtN; j++ {
		p := r.state[j-1]
		r.state[j] = 1812433253*(p^(p>>30)) + uint32(j)
	}
	r.left, r.next = 1, 0
	return r
}

// random returns the next 32-bit output of the MT19937 engine (torch's
// generator->random()).
func (r *TorchRNG) random() uint32 {
	r.left--
	if r.left == 0 {
		r.twist()
	}
	y := r.state[r.next]
	r.next++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// twist regenerates the whole state (the standard MT19937 recurrence).
func (r *TorchRNG) twist() {
	s := &r.state
	mix := func(u, v uint32) uint32 {
		y := (u & mtUpperMask) | (v & mtLowerMask)
		return (y >> 1) ^ (-(v & 1) & mtMatrixA)
	}
	for j := 0; j < mtN-mtM; j++ {
		s[j] = s[j+mtM] ^ mix(s[j], s[j+1])
	}
	for j := mtN - mtM; j < mtN-1; j++ {
		s[j] = s[j+mtM-mtN] ^ mix(s[j], s[j+1])
	}
	s[mtN-1] = s[mtM-1] ^ mix(s[mtN-1], s[0])
	r.left, r.next = mtN, 0
}

// uniform32 is uniform_real_distribution<float>(0, 1): 24 random bits in [0, 1).
func (r *TorchRNG) uniform32() float32 {
	return float32(r.random()&(1<<24-1)) * (1.0 / (1 << 24))
}

// uniform64 is uniform_real_distribution<double>(0, 1): 53 bits of
// random64() = (first word << 32 | second word), in [0, 1).
func (r *TorchRNG) uniform64() float64 {
	hi := uint64(r.random())
	lo := uint64(r.random())
	return float64((hi<<32|lo)&(1<<53-1)) * (1.0 / (1 << 53))
}

// normal64 is at::normal_distribution<double>(0, 1): Box-Muller in float64
// that returns r·cos θ and caches r·sin θ for the next call.
func (r *TorchRNG) normal64() float64 {
	if r.haveNormal {
		r.haveNormal = false
		return r.nextNormal
	}
	u1 := r.uniform64()
	u2 := r.uniform64()
	rad := math.Sqrt(-2 * math.Log(1-u2))
	theta := 2 * math.Pi * u1
	r.nextNormal, r.haveNormal = rad*math.Sin(theta), true
	return rad * math.Cos(theta)
}

// Randn returns a float32 tensor of the given shape filled like
// torch.randn(shape, generator=g) on CPU (see the type's documentation).
func (r *TorchRNG) Randn(shape ...int) *ops.Tensor {
	t := ops.New(shape...)
	d := t.Data
	n := len(d)
	if n < 16 {
		for i := range d {
			d[i] = float32(r.normal64())
		}
		return t
	}
	for i := range d {
		d[i] = r.uniform32()
	}
	for i := 0; i+16 <= n; i += 16 {
		boxMuller16(d[i : i+16])
	}
	if n%16 != 0 {
		tail := d[n-16:]
		for i := range tail {
			tail[i] = r.uniform32()
		}
		boxMuller16(tail)
	}
	return t
}

// Randn64 returns n float64 normals like torch.randn(n, dtype=torch.float64,
// generator=g) on CPU: for n >= 16, 53-bit uniforms and a float64 Box-Muller
// per block of 16 (libm log/sin/cos; Go's may differ from glibc's by an ulp);
// below 16 the scalar path shared with Randn (and its cached value).
func (r *TorchRNG) Randn64(n int) []float64 {
	d := make([]float64, n)
	if n < 16 {
		for i := range d {
			d[i] = r.normal64()
		}
		return d
	}
	for i := range d {
		d[i] = r.uniform64()
	}
	for i := 0; i+16 <= n; i += 16 {
		boxMuller16x64(d[i : i+16])
	}
	if n%16 != 0 {
		tail := d[n-16:]
		for i := range tail {
			tail[i] = r.uniform64()
		}
		boxMuller16x64(tail)
	}
	return d
}

// boxMuller16x64 is ATen's normal_fill_16<double>.
func boxMuller16x64(d []float64) {
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		rad := math.Sqrt(-2 * math.Log(u1))
		theta := float64(float32(2.0)) * math.Pi * u2 // C: 2.0f * c10::pi<double> * u2
		d[j] = rad * math.Cos(theta)
		d[j+8] = rad * math.Sin(theta)
	}
}

// boxMuller16 is ATen's normal_fill_16_AVX2 written out per lane: for
// j = 0..7, u1 = 1 - d[j], u2 = d[j+8], ρ = sqrt(-2·log u1), θ = f32(2π)·u2,
// d[j] = ρ·cos θ, d[j+8] = ρ·sin θ, every operation in float32, log and sincos
// being the Cephes polynomials below (the kernel's final fmadd(n, std=1,
// mean=0) is exact and omitted).
//
// Rounding: PyTorch builds that kernel with GCC, which contracts a vector
// multiply whose only use is an add or subtract into one FMA
// (-ffp-contract=fast, the GNU C default). The Cephes code below is written
// with rngFMA32 exactly where that contraction happens and with an explicit
// float32(...) rounding everywhere else; this reproduces PyTorch 1.13's
// torch.randn bit for bit, where plain multiply-then-add differs in ~1% of
// values by 1 ulp.
func boxMuller16(d []float32) {
	const twoPi = float32(2 * math.Pi)
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j]
		u2 := d[j+8]
		rad := float32(math.Sqrt(float64(float32(-2 * cephesLog(u1)))))
		s, c := cephesSincos(float32(twoPi * u2))
		d[j] = float32(rad * c)
		d[j+8] = float32(rad * s)
	}
}

// Cephes single-precision coefficients (Moshier's logf, sinf, cosf), as used
// by the AVX2 vector math of PyTorch's normal kernel.
const (
	cephesSqrtHF = float32(0.707106781186547524)
	cephesLogP0  = float32(7.0376836292e-2)
	cephesLogP1  = float32(-1.1514610310e-1)
	cephesLogP2  = float32(1.1676998740e-1)
	cephesLogP3  = float32(-1.2420140846e-1)
	cephesLogP4  = float32(1.4249322787e-1)
	cephesLogP5  = float32(-1.6668057665e-1)
	cephesLogP6  = float32(2.0000714765e-1)
	cephesLogP7  = float32(-2.4999993993e-1)
	cephesLogP8  = float32(3.3333331174e-1)
	cephesLogQ1  = float32(-2.12194440e-4)
	cephesLogQ2  = float32(0.693359375)

	cephesFOPI = float32(1.27323954473516) // 4/π
	cephesDP1  = float32(-0.78515625)      // -π/4 split in three parts
	cephesDP2  = float32(-2.4187564849853515625e-4)
	cephesDP3  = float32(-3.77489497744594108e-8)
	sinCofP0   = float32(-1.9515295891e-4)
	sinCofP1   = float32(8.3321608736e-3)
	sinCofP2   = float32(-1.6666654611e-1)
	cosCofP0   = float32(2.443315711809948e-5)
	cosCofP1   = float32(-1.388731625493765e-3)
	cosCofP2   = float32(4.166664568298827e-2)
)

// cephesLog is the Cephes logf polynomial for x in (0, 1], the range
// Box-Muller feeds it (u1 >= 2^-24). Values below the smallest normal float32
// are raised to it (no NaN/Inf handling: x <= 0 never occurs here).
func cephesLog(x float32) float32 {
	const minNorm = float32(1.17549435e-38)
	if x < minNorm {
		x = minNorm
	}
	b := math.Float32bits(x)
	e := float32(int32(b>>23) - 0x7f)
	x = math.Float32frombits(b&^0x7f800000 | 0x3f000000) // mantissa in [0.5, 1)
	e += 1
	if x < cephesSqrtHF {
		e -= 1
		x = (x - 1) + x
	} else {
		x = x - 1
	}
	z := float32(x * x)
	y := rngFMA32(cephesLogP0, x, cephesLogP1)
	y = rngFMA32(y, x, cephesLogP2)
	y = rngFMA32(y, x, cephesLogP3)
	y = rngFMA32(y, x, cephesLogP4)
	y = rngFMA32(y, x, cephesLogP5)
	y = rngFMA32(y, x, cephesLogP6)
	y = rngFMA32(y, x, cephesLogP7)
	y = rngFMA32(y, x, cephesLogP8)
	y = float32(y * x)
	y = rngFMA32(y, z, float32(e*cephesLogQ1))
	y = y - float32(z*0.5)
	x = x + y
	return rngFMA32(e, cephesLogQ2, x)
}

// cephesSincos is the Cephes sinf/cosf pair for 0 <= x < 8192 (Box-Muller
// needs [0, 2π)): reduce by the octant j of x·4/π with π/4 split in three
// parts, evaluate both polynomials, pick and sign them by j.
func cephesSincos(x float32) (sin, cos float32) {
	j := int32(float32(x * cephesFOPI))
	j = (j + 1) &^ 1
	y := float32(j)
	x = rngFMA32(y, cephesDP1, x)
	x = rngFMA32(y, cephesDP2, x)
	x = rngFMA32(y, cephesDP3, x)
	z := float32(x * x)

	yc := rngFMA32(cosCofP0, z, cosCofP1)
	yc = rngFMA32(yc, z, cosCofP2)
	yc = float32(yc * z)
	yc = rngFMA32(yc, z, -float32(z*0.5))
	yc = yc + 1

	ys := rngFMA32(sinCofP0, z, sinCofP1)
	ys = rngFMA32(ys, z, sinCofP2)
	ys = float32(ys * z)
	ys = rngFMA32(ys, x, x)

	if j&2 == 0 {
		sin, cos = ys, yc
	} else {
		sin, cos = yc, ys
	}
	if j&4 != 0 {
		sin = -sin
	}
	if (j-2)&4 == 0 {
		cos = -cos
	}
	return sin, cos
}

// rngFMA32 returns a·b + c rounded once to float32, as an FMA instruction does.
// The product is exact in float64; the float64 sum is corrected when it lands
// exactly halfway between two float32 values but the exact sum does not.
func rngFMA32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 24+24 significant bits
	cc := float64(c)
	s := p + cc
	// Exact error of that addition (Knuth's TwoSum).
	bv := s - p
	e := (p - (s - bv)) + (cc - bv)
	r := float32(s)
	if e == 0 || float64(r) == s {
		return r
	}
	// Other float32 neighbour of s.
	o := math.Nextafter32(r, float32(math.Inf(1)))
	if float64(r) > s {
		o = math.Nextafter32(r, float32(math.Inf(-1)))
	}
	if s-float64(min(r, o)) != float64(max(r, o))-s {
		return r // not a tie: the float64 rounding did not matter
	}
	if e > 0 {
		return max(r, o)
	}
	return min(r, o)
}
