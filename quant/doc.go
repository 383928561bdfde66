// Package quant defines dalle2's weight number formats and their scalar
// reference codecs: the definition every fast kernel (ops/asm's decoders) is
// tested against, bit for bit. It imports only the standard library.
//
// # Formats
//
// All multi-byte fields are little-endian. A tensor's bytes are its values
// in row-major order of its logical (float) shape.
//
// F16 — IEEE 754 binary16, 2 bytes per value: sign bit 15, exponent bits
// 14–10 (bias 15), mantissa bits 9–0. F16ToF32 is exact (subnormals, ±Inf
// and NaN payloads kept); F32ToF16 rounds to nearest, ties to even, as
// numpy's and PyTorch's .half() do (overflow to ±Inf, NaN stays a quiet NaN).
// BF16 (the top 16 bits of a float32) is read with BF16ToF32, exactly.
//
// Q8_0 — 8-bit blocks of Q8Block = 32 values, Q8BlockBytes = 34 bytes each
// (8.5 bits per value; ggml's q8_0 layout):
//
//	offset 0   uint16  d     block scale, binary16
//	offset 2   int8    q[0]
//	…
//	offset 33  int8    q[31]
//
// value i = F16ToF32(d) · q[i], exact in float32 (an 11-bit scale times a
// 7-bit integer). Blocks run along the tensor's rows (all indices but the
// first), so a row's length must be a multiple of 32 and rows start on block
// boundaries; a tensor of n values takes Q8Bytes(n) = n/32·34 bytes. The
// encoder (QuantizeQ8) picks d as the smallest binary16 with 127·d ≥ the
// block's largest magnitude (Q8Scale; 0 for an all-zero block), then
// q[i] = round-half-even(x[i]/d) in −127…127 (−128 is never written). So
// |x − x̂| ≤ d/2 and d ≤ amax/127·(1+2⁻¹⁰) + 2⁻²⁴. It rejects NaN, ±Inf and
// blocks with a magnitude above 127·65504, naming the value's index; −0
// decodes as +0, and magnitudes up to d/2 decode as 0.
//
// A 4-bit block format (Q4, e.g. ggml's q4_0/q4_K-style layouts with an
// f16 scale per block of packed nibbles) is planned: it will get its own
// block constants and codec pair here, and its own decoder in ops/asm.
package quant
