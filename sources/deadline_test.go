package sources

import (
	"context"
	"errors"
	"testing"
	"time"
)

// nonComparableCtx is a context whose type cannot be a map key.
type nonComparableCtx struct {
	context.Context
	tags []string
}

// Fetches with one parent and timeout that begin within the slack share a
// context; any other fetch gets its own, and every context ends within
// [timeout − slack, timeout] of its fetch's start.
func TestDeadlinesShareWithinSlack(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	other := context.WithValue(parent, struct{}{}, "x")
	odd := nonComparableCtx{Context: parent}
	t0 := time.Now()
	type fetch struct {
		parent  context.Context
		timeout time.Duration
		after   time.Duration // since t0
	}
	for _, tc := range []struct {
		name  string
		a, b  fetch
		share bool
	}{
		{"same tick", fetch{parent, 10 * time.Second, 0}, fetch{parent, 10 * time.Second, 3 * time.Millisecond}, true},
		{"at the slack", fetch{parent, 10 * time.Second, 0}, fetch{parent, 10 * time.Second, maxDeadlineSlack}, true},
		{"past the slack", fetch{parent, 10 * time.Second, 0}, fetch{parent, 10 * time.Second, maxDeadlineSlack + time.Millisecond}, false},
		{"short timeout, smaller slack", fetch{parent, 100 * time.Millisecond, 0}, fetch{parent, 100 * time.Millisecond, 2 * time.Millisecond}, false},
		{"other timeout", fetch{parent, 10 * time.Second, 0}, fetch{parent, 5 * time.Second, 0}, false},
		{"other parent", fetch{parent, 10 * time.Second, 0}, fetch{other, 10 * time.Second, 0}, false},
		{"parent not comparable", fetch{odd, 10 * time.Second, 0}, fetch{odd, 10 * time.Second, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d deadlines
			get := func(f fetch) context.Context {
				start := t0.Add(f.after)
				ctx, cancel := d.within(f.parent, f.timeout, start)
				t.Cleanup(cancel)
				at, ok := ctx.Deadline()
				if !ok || at.After(start.Add(f.timeout)) || at.Before(start.Add(f.timeout-slack(f.timeout))) {
					t.Errorf("fetch at +%s with timeout %s: deadline %v (ok %v), want within [%s, %s] after t0",
						f.after, f.timeout, at.Sub(t0), ok, f.after+f.timeout-slack(f.timeout), f.after+f.timeout)
				}
				if f.parent == other && ctx.Value(struct{}{}) != "x" {
					t.Error("the fetch's context lost its parent's values")
				}
				return ctx
			}
			a, b := get(tc.a), get(tc.b)
			if (a == b) != tc.share {
				t.Errorf("shared = %v, want %v", a == b, tc.share)
			}
		})
	}
}

// A shared deadline ends its fetches with errFetchTimeout as the cause, so
// their errors say they timed out; a fetch's own context ends when it is
// done; and the parent's end ends them all.
func TestDeadlinesEnd(t *testing.T) {
	var d deadlines
	ctx, cancel := d.within(context.Background(), 20*time.Millisecond, time.Now())
	cancel() // shared: not ended by one fetch
	if ctx.Err() != nil {
		t.Fatalf("a shared deadline ended when one fetch was done: %v", ctx.Err())
	}
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || context.Cause(ctx) != errFetchTimeout {
		t.Errorf("at its deadline: err %v, cause %v; want deadline exceeded, errFetchTimeout", ctx.Err(), context.Cause(ctx))
	}

	own, cancel := d.within(nonComparableCtx{Context: context.Background()}, time.Hour, time.Now())
	cancel()
	if own.Err() == nil {
		t.Error("a fetch's own context did not end when it was done")
	}

	parent, stop := context.WithCancel(context.Background())
	shared, cancel := d.within(parent, time.Hour, time.Now())
	defer cancel()
	stop()
	if shared.Err() == nil {
		t.Error("a shared deadline outlived its parent")
	}

	// Ended ones (past their deadline, or their parent's end) are forgotten
	// when the next context is made.
	d.within(context.Background(), time.Hour, time.Now().Add(time.Minute))
	if len(d.shared) != 1 {
		t.Errorf("%d shared deadlines kept, want 1 (the new one)", len(d.shared))
	}
}

// Sources with different timeouts polled together take turns: each fetch
// still finds the context of its own timeout.
func TestDeadlinesInterleaved(t *testing.T) {
	var d deadlines
	now := time.Now()
	a1, _ := d.within(context.Background(), 10*time.Second, now)
	b1, _ := d.within(context.Background(), 5*time.Second, now)
	a2, _ := d.within(context.Background(), 10*time.Second, now.Add(time.Millisecond))
	b2, _ := d.within(context.Background(), 5*time.Second, now.Add(2*time.Millisecond))
	if a1 != a2 || b1 != b2 || a1 == b1 {
		t.Errorf("a1==a2 %v, b1==b2 %v, a1==b1 %v; want true, true, false", a1 == a2, b1 == b2, a1 == b1)
	}
}
