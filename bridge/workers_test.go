package bridge

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goroutineID reads the calling goroutine's id from its stack header
// ("goroutine 18 [running]:").
func goroutineID(t *testing.T) int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	fields := bytes.Fields(buf)
	if len(fields) < 2 {
		t.Fatalf("stack header %q", buf)
	}
	id, err := strconv.Atoi(string(fields[1]))
	if err != nil {
		t.Fatalf("stack header %q: %v", buf, err)
	}
	return id
}

// Every task runs, and none waits for another: with all workers busy a new
// one starts.
func TestWorkersRunEveryTaskAtOnce(t *testing.T) {
	w := newWorkers()
	defer w.stop()
	const n = 50
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var done sync.WaitGroup
	for range n {
		done.Add(1)
		w.Go(func() {
			defer done.Done()
			started.Done()
			<-release // blocks until all n have started: no cap on workers
		})
	}
	waitOrFail(t, started.Wait, "all tasks running at once")
	close(release)
	waitOrFail(t, done.Wait, "all tasks done")
}

// A worker that finished a task takes the next one, keeping its goroutine
// (and its grown stack).
func TestWorkersReuseAnIdleWorker(t *testing.T) {
	w := newWorkers()
	defer w.stop()
	seen := map[int]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for tasks := 0; ; tasks++ {
		ids := make(chan int, 1)
		w.Go(func() { ids <- goroutineID(t) })
		id := <-ids
		if seen[id] {
			t.Logf("task %d ran on a worker that ran an earlier task", tasks)
			return
		}
		seen[id] = true
		if time.Now().After(deadline) {
			t.Fatalf("%d tasks run one after another ran on %d goroutines: no worker was reused", tasks+1, len(seen))
		}
	}
}

func waitOrFail(t *testing.T, wait func(), what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// deepStack uses about n KiB of stack.
//
//go:noinline
func deepStack(n int) byte {
	var b [1024]byte
	b[n%len(b)] = byte(n)
	if n <= 0 {
		return b[0]
	}
	return deepStack(n-1) + b[n%len(b)]
}

// Idle workers keep the stacks their tasks grew: a garbage collection does
// not halve them (the next task would grow them again, copying).
func TestIdleWorkersKeepTheirStacks(t *testing.T) {
	for range 5 { // the idle goroutines of earlier tests shrink now, not below
		runtime.GC()
	}
	w := newWorkers()
	defer w.stop()
	const n = 64
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	release := make(chan struct{})
	for range n { // each on its own worker: they all wait for release
		w.Go(func() {
			defer done.Done()
			deepStack(20) // grows the worker's stack to 32 KiB or more
			started.Done()
			<-release
		})
	}
	started.Wait()
	close(release)
	done.Wait()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&after)
	// Halving 64 stacks of 32 KiB would free 1 MiB.
	if freed := int64(before.StackInuse) - int64(after.StackInuse); freed > 256<<10 {
		t.Errorf("garbage collection freed %d KiB of stack (in use %d → %d KiB): idle workers' stacks were shrunk",
			freed>>10, before.StackInuse>>10, after.StackInuse>>10)
	}
}
