package ops

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// The worker pool. Every op splits its OUTPUT into items and calls
// parallelFor; each item is computed entirely by one goroutine, so results do
// not depend on the number of threads or on scheduling.
//
// A call to parallelFor publishes a job to the idle workers and then works on
// it itself: chunks are claimed through an atomic counter, so the caller can
// finish a job alone if every worker is busy (no deadlock when ops are called
// from several goroutines, or from inside another op's work function).

// minParallelWork is the estimated work (roughly floating-point operations)
// below which a call runs inline: dispatching to the pool costs a few
// microseconds.
const minParallelWork = 1 << 15

// chunksPerThread over-splits a job for load balancing.
const chunksPerThread = 4

type workerPool struct {
	n    int       // threads, including the caller
	jobs chan *job // idle workers wait here; nil when n == 1
}

var pool = newPool(runtime.NumCPU())

// dispatched counts the calls of parallelFor that used the pool (for tests).
var dispatched atomic.Int64

func newPool(n int) *workerPool {
	p := &workerPool{n: n}
	if n > 1 {
		p.jobs = make(chan *job, n-1)
		for i := 0; i < n-1; i++ {
			go worker(p.jobs)
		}
	}
	return p
}

func worker(jobs <-chan *job) {
	for j := range jobs {
		j.run()
	}
}

func setThreads(n int) {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	if n == pool.n {
		return
	}
	old := pool
	pool = newPool(n)
	if old.jobs != nil {
		close(old.jobs) // idle workers exit; a busy one exits after its chunk
	}
}

func threads() int { return pool.n }

type job struct {
	fn       func(lo, hi int)
	n, chunk int64
	nchunks  int64
	next     atomic.Int64
	wg       sync.WaitGroup
	panicked atomic.Pointer[any]
}

// run claims and runs chunks until none is left.
func (j *job) run() {
	for {
		c := j.next.Add(1) - 1
		if c >= j.nchunks {
			return
		}
		lo := c * j.chunk
		hi := min(lo+j.chunk, j.n)
		j.runChunk(int(lo), int(hi))
	}
}

func (j *job) runChunk(lo, hi int) {
	defer j.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			j.panicked.CompareAndSwap(nil, &r)
		}
	}()
	j.fn(lo, hi)
}

// parallelFor calls fn on contiguous chunks [lo, hi) covering [0, n) and waits
// for all of them. cost is the estimated work per item (about the number of
// floating-point operations); small jobs run inline on the caller. fn must
// only write output belonging to its own items. A panic in fn is re-raised on
// the caller.
func parallelFor(n, cost int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	p := pool
	work := int64(n) * int64(max(cost, 1))
	if p.n == 1 || n == 1 || work < 2*minParallelWork {
		fn(0, n)
		return
	}
	nchunks := min(int64(n), int64(p.n*chunksPerThread), work/minParallelWork)
	chunk := (int64(n) + nchunks - 1) / nchunks
	nchunks = (int64(n) + chunk - 1) / chunk
	dispatched.Add(1)
	j := &job{fn: fn, n: int64(n), chunk: chunk, nchunks: nchunks}
	j.wg.Add(int(nchunks))
	for i := int64(0); i < min(int64(p.n-1), nchunks-1); i++ {
		select {
		case p.jobs <- j:
		default: // every worker already has a job queued; run more here
		}
	}
	j.run()
	j.wg.Wait()
	// A copy of j may wait in the channel until a worker next takes it (it
	// then finds no chunk left and never reads fn): drop fn, so that it
	// does not keep what the closure captured (often whole arena slabs)
	// alive. Every read of fn happened before its chunk's Done.
	j.fn = nil
	if r := j.panicked.Load(); r != nil {
		panic(*r)
	}
}
