package storetest

import (
	"context"
	"testing"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// testLoadMeta: LoadMeta returns the generation and meta of Load, and no
// items; for an unknown source, the empty state.
func testLoadMeta(t *testing.T, s store.Store) {
	ctx := context.Background()
	st, err := s.LoadMeta(ctx, "nobody")
	if err != nil || st.Generation != 0 || st.Items == nil || st.Meta == nil || len(st.Meta) != 0 {
		t.Fatalf("LoadMeta(unknown) = %+v, %v; want generation 0 and empty non-nil maps", st, err)
	}
	err = s.Commit(ctx, store.Commit{Source: "src", Generation: 0,
		Upsert: map[string]store.Item{"a": item("fa", `{"id":"a"}`)},
		Meta:   map[string]string{"etag": `"v1"`}})
	if err != nil {
		t.Fatal(err)
	}
	full, err := s.Load(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := s.LoadMeta(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Generation != full.Generation || meta.Generation != 1 {
		t.Errorf("generation: LoadMeta %d, Load %d, want 1", meta.Generation, full.Generation)
	}
	if meta.Meta["etag"] != `"v1"` || len(meta.Meta) != len(full.Meta) {
		t.Errorf("meta: LoadMeta %v, Load %v", meta.Meta, full.Meta)
	}
	if meta.Items == nil || len(meta.Items) != 0 || len(full.Items) != 1 {
		t.Errorf("items: LoadMeta %d (non-nil %v), Load %d; want 0 and 1", len(meta.Items), meta.Items != nil, len(full.Items))
	}
}
