// Package model implements the unCLIP (DALL-E 2 / Karlo) pipeline in Go: the
// CLIP tokenizer and text encoder, the diffusion prior, the text projection,
// the decoder and super-resolution U-Nets, the UnCLIP scheduler and the
// sampling loops. Each Go type mirrors one PyTorch module and binds its
// weights by state-dict key.
package model
