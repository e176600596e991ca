package boltstore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pollbridge/pollbridge/bridge/store"
	"github.com/pollbridge/pollbridge/bridge/store/storetest"
)

func openPath(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() }) // a second Close after an explicit one is harmless
	return s
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// rewriteFile runs fn in a write transaction on the closed state file at
// path, opened with bbolt alone: tests use it to lay out what an older
// pollbridge left behind.
func rewriteFile(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("rewrite %s: %v", path, err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openPath(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	})
}

func testDelivery(id string) store.Delivery {
	return store.Delivery{ID: id, EventID: "evt_" + id, Sink: "hook", Source: "s", Key: id,
		Payload: json.RawMessage(`{"id": "` + id + `"}`)}
}

// seed commits two items, meta and three deliveries d1..d3 to a fresh store,
// claims them all, then retries d2 into the past and buries d3: only d1 stays
// claimed, for an hour.
func seed(ctx context.Context, s *Store) error {
	err := s.Commit(ctx, store.Commit{Source: "s", Generation: 0,
		Upsert: map[string]store.Item{
			"a": {Fingerprint: "fa", Data: json.RawMessage(`{"id":"a"}`)},
			"b": {Fingerprint: "fb", Data: json.RawMessage(`{"id":"b"}`)},
		},
		Meta:       map[string]string{"etag": "v1"},
		Deliveries: []store.Delivery{testDelivery("d1"), testDelivery("d2"), testDelivery("d3")}})
	if err != nil {
		return err
	}
	now := time.Now()
	ds, err := s.Claim(ctx, "hook", now, 3, time.Hour)
	if err != nil {
		return err
	}
	if len(ds) != 3 {
		return fmt.Errorf("claimed %d deliveries, want 3", len(ds))
	}
	if err := storetest.Retry(ctx, s, ds[1], ds[1].Due.Add(-time.Second)); err != nil {
		return err
	}
	ds[2].Attempts, ds[2].LastError = 7, "gone"
	return storetest.Bury(ctx, s, ds[2])
}

// checkReopened checks what seed left behind, as seen after a reopen: d1 is
// claimable at once although its lease has an hour to go.
func checkReopened(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	st, err := s.Load(ctx, "s")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if st.Generation != 1 || len(st.Items) != 2 || string(st.Items["b"].Data) != `{"id":"b"}` || st.Meta["etag"] != "v1" {
		t.Errorf("Load after reopen = %+v, want generation 1, items a and b, etag v1", st)
	}
	dead, err := s.Dead(ctx, "")
	if err != nil || len(dead) != 1 || dead[0].ID != "d3" || dead[0].Attempts != 7 {
		t.Errorf("Dead after reopen = %+v, %v; want d3 with 7 attempts", dead, err)
	}
	ds, err := s.Claim(ctx, "hook", time.Now(), 10, time.Minute)
	if err != nil {
		t.Fatalf("Claim after reopen: %v", err)
	}
	// d2 was retried to a second before the commit, so it comes first.
	if len(ds) != 2 || ds[0].ID != "d2" || ds[1].ID != "d1" {
		t.Errorf("Claim after reopen = %v, want d2 and d1 (its claim released)", ds)
	}
}

func TestReopenKeepsStateAndReleasesClaims(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "state.db")
	s := openPath(t, path, Options{})
	if err := seed(t.Context(), s); err != nil {
		t.Fatalf("seed: %v", err)
	}
	closeStore(t, s)
	checkReopened(t, openPath(t, path, Options{}))
}

func TestLockedFileFailsPlainly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openPath(t, path, Options{})

	for _, opts := range []Options{{Timeout: 200 * time.Millisecond}, {Timeout: 200 * time.Millisecond, ReadOnly: true}} {
		start := time.Now()
		s, err := Open(path, opts)
		if err == nil {
			s.Close()
			t.Fatalf("second Open(%+v) of a held file succeeded", opts)
		}
		want := "open state file " + path + ": it is in use by another pollbridge process"
		if err.Error() != want || !errors.Is(err, ErrInUse) {
			t.Errorf("second Open(%+v): %q, want %q wrapping ErrInUse", opts, err, want)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("second Open took %v with a 200ms timeout", took)
		}
	}
}

func TestDefaultTimeoutIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openPath(t, path, Options{})
	start := time.Now()
	if s, err := Open(path, Options{}); !errors.Is(err, ErrInUse) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("second Open with the default timeout: %v, want ErrInUse", err)
	}
	if took := time.Since(start); took < DefaultTimeout/2 || took > 3*DefaultTimeout {
		t.Errorf("second Open gave up after %v, want about %v", took, DefaultTimeout)
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openPath(t, path, Options{})
	if err := seed(t.Context(), s); err != nil {
		t.Fatalf("seed: %v", err)
	}
	closeStore(t, s)

	ro := openPath(t, path, Options{ReadOnly: true})
	ctx := t.Context()
	if st, err := ro.Load(ctx, "s"); err != nil || st.Generation != 1 || len(st.Items) != 2 {
		t.Errorf("read-only Load = %+v, %v; want generation 1 with 2 items", st, err)
	}
	if dead, err := ro.Dead(ctx, "hook"); err != nil || len(dead) != 1 {
		t.Errorf("read-only Dead = %v, %v; want 1 dead letter", dead, err)
	}
	if st, err := ro.Stats(ctx, time.Now()); err != nil || st["hook"] != (store.SinkStats{Pending: 2, Dead: 1}) {
		t.Errorf("read-only Stats = %v, %v; want hook 2 pending, 1 dead", st, err)
	}
	if err := ro.Commit(ctx, store.Commit{Source: "s", Generation: 1}); err == nil {
		t.Error("read-only Commit succeeded")
	}
	if _, err := ro.Claim(ctx, "hook", time.Now(), 1, time.Minute); err == nil {
		t.Error("read-only Claim succeeded")
	}
	closeStore(t, ro)

	// A writer opening the file after the reader finds it intact.
	checkReopened(t, openPath(t, path, Options{}))

	if _, err := Open(filepath.Join(t.TempDir(), "missing.db"), Options{ReadOnly: true}); err == nil {
		t.Error("read-only Open of a missing file succeeded")
	}
}

func TestRejectsForeignFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(garbage, Options{}); err == nil {
		s.Close()
		t.Error("Open of a non-bolt file succeeded")
	} else if !strings.Contains(err.Error(), garbage) {
		t.Errorf("Open of a non-bolt file: %v, want the path in the error", err)
	}
}

// The helper process: with POLLBRIDGE_TEST_HOLD=path it opens path, seeds
// it, says "ready" and waits to be killed.
func TestMain(m *testing.M) {
	if path := os.Getenv("POLLBRIDGE_TEST_HOLD"); path != "" {
		s, err := Open(path, Options{})
		if err == nil {
			err = seed(context.Background(), s)
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		// Not select{}: with no other goroutine the runtime would report a
		// deadlock and exit, releasing the lock.
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(m.Run())
}

func TestOtherProcessAndKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POLLBRIDGE_TEST_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("helper process: %q", line)
	}

	if s, err := Open(path, Options{Timeout: 200 * time.Millisecond}); !errors.Is(err, ErrInUse) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open while another process holds the file: %v, want ErrInUse", err)
	}

	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no Close, no cleanup
		t.Fatal(err)
	}
	cmd.Wait()
	checkReopened(t, openPath(t, path, Options{}))
}
