// Package quant defines dalle2's weight number formats (f16, bf16, and the
// block-quantized formats to come) and their scalar reference codecs: the
// definition every fast kernel is tested against.
package quant
