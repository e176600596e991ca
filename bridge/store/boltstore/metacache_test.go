package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// A read that started before a commit ended must not store what it read:
// it may be the state from before the commit.
func TestMetaCacheDropsReadsRacingACommit(t *testing.T) {
	c := newMetaCache()
	old := store.State{Generation: 1, Meta: map[string]string{"etag": "v1"}}
	v := c.current()
	c.drop("s") // a commit to s ends while the read runs
	c.put("s", v, old)
	if st, ok := c.get("s"); ok {
		t.Fatalf("get after a put that raced a commit = %+v, want a miss", st)
	}
	c.put("s", c.current(), old)
	if st, ok := c.get("s"); !ok || st.Generation != 1 || st.Meta["etag"] != "v1" {
		t.Fatalf("get after a put = %+v, %v; want generation 1, etag v1", st, ok)
	}
}

// A closed Store answers no LoadMeta from the cache.
func TestLoadMetaFailsWhenClosed(t *testing.T) {
	s := openPath(t, filepath.Join(t.TempDir(), "state.db"), Options{})
	if err := s.Commit(t.Context(), store.Commit{Source: "s", Generation: 0, Meta: map[string]string{"etag": "v1"}}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.LoadMeta(t.Context(), "s"); err != nil || st.Meta["etag"] != "v1" {
		t.Fatalf("LoadMeta = %+v, %v; want etag v1", st, err)
	}
	if _, ok := s.meta.get("s"); !ok {
		t.Fatal("LoadMeta left nothing in the cache")
	}
	closeStore(t, s)
	if st, err := s.LoadMeta(t.Context(), "s"); err == nil {
		t.Errorf("LoadMeta of a closed store = %+v, want an error", st)
	}
}
