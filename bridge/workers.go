package bridge

import (
	"sync"
	"time"
)

// workerIdle is how long a worker waits for its next task before it exits.
// It is longer than the usual poll interval, so a steady schedule keeps its
// workers.
const workerIdle = 30 * time.Second

// workers runs polls and deliveries on goroutines that outlive one task.
//
// A poll or a delivery goes deep (cron, the poller, the HTTP client, the
// store's client) and needs a goroutine stack of 16 to 32 KiB. A fresh
// goroutine starts with a few KiB and grows it by copying, two or three times
// per task: at 500 polls a second that copying was about a sixth of
// pollbridge's CPU. A worker keeps its grown stack for the next task.
//
// There is no cap: a task never waits for a worker, a new one starts when
// all are busy (the callers bound their own concurrency), and a worker left
// idle for workerIdle exits.
type workers struct {
	tasks chan func() // unbuffered: a send succeeds only to an idle worker
	quit  chan struct{}
	once  sync.Once
}

func newWorkers() *workers {
	return &workers{tasks: make(chan func()), quit: make(chan struct{})}
}

// Go runs f on an idle worker, or on a new one.
func (w *workers) Go(f func()) {
	select {
	case w.tasks <- f:
	default:
		go w.work(f)
	}
}

// stop lets the workers exit once their current tasks are done. Go still
// works after stop: each later task runs on a goroutine of its own.
func (w *workers) stop() {
	w.once.Do(func() { close(w.quit) })
}

// stackBallast is the frame a worker keeps under its tasks. The garbage
// collector halves the stack of a goroutine that uses less than a quarter
// of it, as an idle worker does; under frequent collections (the fleet
// scenario) the workers' stacks were halved and grown again all the time,
// 4% of pollbridge's CPU. With the ballast on it, a parked worker uses a
// quarter of a stack of up to 4 × stackBallast, so such a stack stays.
const stackBallast = 8 << 10

func (w *workers) work(f func()) {
	var ballast [stackBallast]byte
	w.loop(f, ballast[:])
}

// loop runs tasks until the worker exits. ballast only holds its frame on
// the stack.
//
//go:noinline
func (w *workers) loop(f func(), ballast []byte) {
	ballast[0] = 0
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // the task's closure is garbage while this worker waits
		idle.Reset(workerIdle)
		select {
		case f = <-w.tasks:
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}
