package redisstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

// slowHook delays every round trip while on, as a distant Redis would.
type slowHook struct {
	d  time.Duration
	on atomic.Bool
}

func (h *slowHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *slowHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.on.Load() {
			time.Sleep(h.d)
		}
		return next(ctx, cmd)
	}
}
func (h *slowHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.on.Load() {
			time.Sleep(h.d)
		}
		return next(ctx, cmds)
	}
}

// However steadily StartPoll calls keep coming, none waits for more than a
// couple of round trips: the caller that sends a batch does not go on
// sending the ones that queued behind it, and calls made together still
// share round trips.
func TestStartPollCallsDoNotWaitForOthers(t *testing.T) {
	s := openStore(t, localURL(t), Options{})
	const trip = 20 * time.Millisecond
	if err := s.sc.load(t.Context(), s.rdb); err != nil { // no NOSCRIPT round trips below
		t.Fatal(err)
	}
	slow := &slowHook{d: trip}
	slow.on.Store(true)
	defer slow.on.Store(false) // for the cleanup
	s.rdb.AddHook(slow)
	hook := &countHook{}
	s.rdb.AddHook(hook)
	ctx := t.Context()
	stop := time.Now().Add(time.Second)
	var (
		wg      sync.WaitGroup
		calls   atomic.Int64
		mu      sync.Mutex
		longest time.Duration
	)
	for w := range 32 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				// Calls come at random, many of them while a batch is
				// in flight.
				time.Sleep(rand.N(5 * trip))
				start := time.Now()
				if _, held, err := storetest.StartPoll(ctx, s, fmt.Sprint("src", w), fmt.Sprint(i), "me", time.Minute); err != nil || !held {
					t.Errorf("StartPoll = held %v, %v", held, err)
					return
				}
				calls.Add(1)
				mu.Lock()
				longest = max(longest, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d calls, %d round trips, longest %v", calls.Load(), hook.trips.Load(), longest)
	// Two round trips, and then some for a busy machine; a caller that
	// sent every batch queued behind its own would take the whole second.
	if longest > 15*trip {
		t.Errorf("a StartPoll call took %v, want a few round trips of %v at most", longest, trip)
	}
	if n, trips := calls.Load(), hook.trips.Load(); trips*2 > n {
		t.Errorf("%d calls took %d round trips, want them grouped", n, trips)
	}
}
