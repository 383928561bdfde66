package ops

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func TestSetThreads(t *testing.T) {
	withThreads(t, 3)
	if Threads() != 3 {
		t.Fatalf("Threads() = %d after SetThreads(3)", Threads())
	}
	SetThreads(0)
	if Threads() < 1 {
		t.Fatalf("Threads() = %d after SetThreads(0)", Threads())
	}
}

func TestParallelForCoverage(t *testing.T) {
	for _, nt := range []int{1, 2, 3, 7} {
		withThreads(t, nt)
		for _, n := range []int{0, 1, 2, 5, 63, 64, 1000, 4097} {
			for _, cost := range []int{1, 1000, 1 << 20} {
				hits := make([]int32, n)
				var calls atomic.Int32
				parallelFor(n, cost, func(lo, hi int) {
					calls.Add(1)
					if lo >= hi || lo < 0 || hi > n {
						panic(fmt.Sprintf("bad chunk [%d, %d) of %d", lo, hi, n))
					}
					for i := lo; i < hi; i++ {
						atomic.AddInt32(&hits[i], 1)
					}
				})
				for i, h := range hits {
					if h != 1 {
						t.Fatalf("threads %d, n %d, cost %d: item %d run %d times", nt, n, cost, i, h)
					}
				}
				if n > 0 && nt == 1 && calls.Load() != 1 {
					t.Fatalf("one thread: %d calls, want 1 (inline)", calls.Load())
				}
			}
		}
	}
}

func TestParallelForSmallRunsInline(t *testing.T) {
	withThreads(t, 4)
	before := dispatched.Load()
	var calls int
	parallelFor(100, 1, func(lo, hi int) { calls++ }) // not atomic: must be the caller alone
	if calls != 1 || dispatched.Load() != before {
		t.Fatalf("small job: %d calls, dispatched %d", calls, dispatched.Load()-before)
	}
	parallelFor(100, 1<<20, func(lo, hi int) {})
	if dispatched.Load() != before+1 {
		t.Fatalf("large job was not dispatched")
	}
}

func TestParallelForPanic(t *testing.T) {
	withThreads(t, 3)
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want boom", r)
		}
	}()
	parallelFor(64, 1<<20, func(lo, hi int) {
		if lo <= 40 && 40 < hi {
			panic("boom")
		}
	})
	t.Fatal("no panic")
}

// Ops may be called from several goroutines at once and from inside another
// op's work function; the caller always works on its own job, so this must
// neither deadlock nor mix results.
func TestParallelForConcurrentAndNested(t *testing.T) {
	withThreads(t, 3)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]int64, 50)
			parallelFor(50, 1<<20, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					var s atomic.Int64
					parallelFor(100, 1<<20, func(a, b int) {
						for k := a; k < b; k++ {
							s.Add(int64(k))
						}
					})
					out[i] = s.Load()
				}
			})
			for i, v := range out {
				if v != 4950 {
					panic(fmt.Sprintf("item %d: %d", i, v))
				}
			}
		}()
	}
	wg.Wait()
}

// After parallelFor returns, the pool must not keep the work function (and
// so whatever it captured, typically arena slabs) alive, even when a copy of
// the job still waits in the workers' channel: here a pool whose workers
// never take anything, so that the caller runs every chunk itself.
func TestParallelForDropsClosure(t *testing.T) {
	old := pool
	p := &workerPool{n: 3, jobs: make(chan *job, 2)} // no workers
	pool = p
	defer func() { pool = old }()
	sum := 0
	parallelFor(1<<10, 1<<12, func(lo, hi int) { sum += hi - lo })
	if sum != 1<<10 {
		t.Fatalf("covered %d items, want %d", sum, 1<<10)
	}
	if len(p.jobs) == 0 {
		t.Fatal("no job was left in the channel; the test does not exercise the case")
	}
	for len(p.jobs) > 0 {
		if j := <-p.jobs; j.fn != nil {
			t.Fatal("a finished job still holds its work function")
		}
	}
}
