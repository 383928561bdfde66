// Package bench holds dalle2's benchmarks: kernels and full-size Karlo
// modules with random weights, and the side-by-side comparison with PyTorch.
// Results are recorded in RESULTS.md.
package bench
