// Package model implements the unCLIP (DALL-E 2 / Karlo) pipeline in Go: the
// CLIP tokenizer and text encoder, the diffusion prior, the text projection,
// the decoder and super-resolution U-Nets, the UnCLIP scheduler and the
// sampling loops. Each Go type mirrors one PyTorch module and binds its
// weights by state-dict key.
//
// Weights the models only hand to ops.Linear and ops.Conv2D stay in their
// stored form when that is fp16 or Q8_0 (compact tensors, see
// ops.NewCompact), aliasing the weight file's memory map: loading such a
// file makes no float32 copy of them. Every other tensor (norms, biases,
// embeddings) is float32, decoded at load. LoadPipelineWith with
// LoadOptions.LowMemory builds one model at a time, for the stage that
// runs it.
package model
