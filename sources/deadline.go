package sources

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// maxDeadlineSlack bounds how much earlier than its own timeout a fetch may
// end because it shares its deadline with fetches that began a little
// before it (see deadlines).
const maxDeadlineSlack = 10 * time.Millisecond

// deadlines hands out the contexts that end fetches after their timeout.
//
// A context with a deadline costs an allocation, a timer and a place among
// its parent's children, and cancelling it undoes all three: about 4% of
// an unchanged poll's CPU when every fetch made its own. The engine starts
// the polls of a tick together, under one parent, so fetches with the same
// parent and timeout that begin within a slack of each other share one
// context. The slack is a hundredth of the timeout, at most
// maxDeadlineSlack: a fetch may end that much before its full timeout,
// never after it. A shared context is never cancelled early; it ends at
// its deadline (its timer frees it) or with its parent.
type deadlines struct {
	last   atomic.Pointer[sharedDeadline] // the last one handed out: most fetches take it
	mu     sync.Mutex
	shared map[deadlineKey]*sharedDeadline
}

type deadlineKey struct {
	parent  context.Context
	timeout time.Duration
}

type sharedDeadline struct {
	key    deadlineKey
	ctx    context.Context
	at     time.Time // ctx's deadline
	cancel context.CancelFunc
}

// serves reports whether d may end a fetch that wants to end at want.
func (d *sharedDeadline) serves(want time.Time) bool {
	return !d.at.After(want) && want.Sub(d.at) <= slack(d.key.timeout)
}

// slack is how much earlier than timeout a shared deadline may end.
func slack(timeout time.Duration) time.Duration {
	return min(timeout/100, maxDeadlineSlack)
}

// within returns a context of parent that ends, with cause errFetchTimeout,
// between timeout − slack(timeout) and timeout after now, and the function
// to call when the fetch is done: it cancels a context of the fetch's own,
// and leaves a shared one to its deadline.
func (d *deadlines) within(parent context.Context, timeout time.Duration, now time.Time) (context.Context, context.CancelFunc) {
	want := now.Add(timeout)
	if !reflect.TypeOf(parent).Comparable() { // cannot be a map key
		return context.WithDeadlineCause(parent, want, errFetchTimeout)
	}
	key := deadlineKey{parent, timeout}
	if sd := d.last.Load(); sd != nil && sd.key == key && sd.serves(want) {
		return sd.ctx, func() {}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if sd, ok := d.shared[key]; ok && sd.serves(want) {
		d.last.Store(sd)
		return sd.ctx, func() {}
	}
	if d.shared == nil {
		d.shared = map[deadlineKey]*sharedDeadline{}
	}
	for k, sd := range d.shared {
		if sd.at.Before(now) || sd.ctx.Err() != nil { // ended: forget it
			sd.cancel()
			delete(d.shared, k)
		}
	}
	// An entry replaced here may still serve fetches: its timer, not a
	// cancel, ends it.
	ctx, cancel := context.WithDeadlineCause(parent, want, errFetchTimeout)
	sd := &sharedDeadline{key: key, ctx: ctx, at: want, cancel: cancel}
	d.shared[key] = sd
	d.last.Store(sd)
	return ctx, func() {}
}
