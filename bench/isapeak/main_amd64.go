//go:build amd64

// Command isapeak measures the issue rate of the multiply-add instructions
// the kernels could use on this amd64 CPU: VFMADD231PS on YMM (what the
// float32 kernel runs) and on ZMM, VPDPWSSD (int16 pairs, the q16 kernel)
// and VPDPBUSD (uint8×int8 quadruples), each as 12 independent
// accumulator chains on one core, and prints instructions and
// multiply-accumulates per second. It needs AVX-512 F and VNNI for the ZMM
// rows and says so instead of running them without. bench/RESULTS.md
// quotes its output.
//
//	go run ./bench/isapeak
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/cpu"
)

func fma256(n int)
func fma512(n int)
func dpwssd(n int)
func dpbusd(n int)

func main() {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
		fmt.Fprintln(os.Stderr, "isapeak: the CPU has no AVX2+FMA")
		os.Exit(1)
	}
	type row struct {
		name   string
		f      func(int)
		macs   float64 // multiply-accumulates per instruction
		usable bool
	}
	zmm := cpu.X86.HasAVX512F && cpu.X86.HasAVX512VNNI
	rows := []row{
		{"VFMADD231PS ymm", fma256, 8, true},
		{"VFMADD231PS zmm", fma512, 16, zmm},
		{"VPDPWSSD zmm", dpwssd, 32, zmm},
		{"VPDPBUSD zmm", dpbusd, 64, zmm},
	}
	const iters = 200_000_000 / 12 // 12 instructions per iteration
	for _, r := range rows {
		if !r.usable {
			fmt.Printf("%-16s  (no AVX-512 F/VNNI on this CPU)\n", r.name)
			continue
		}
		r.f(iters / 10) // warm up: let the core reach its clock for the unit
		best := 0.0
		for range 3 {
			t := time.Now()
			r.f(iters)
			best = max(best, float64(iters*12)/time.Since(t).Seconds())
		}
		fmt.Printf("%-16s  %5.2f G instructions/s  %6.1f GMAC/s per core\n", r.name, best/1e9, best*r.macs/1e9)
	}
}
