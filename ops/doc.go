// Package ops holds dalle2's tensor type and every computation the models
// need (linear layers, convolutions, norms, attention, resampling), as plain-Go
// reference implementations run on a worker pool, with fast kernels from
// ops/asm slotted in underneath.
package ops
