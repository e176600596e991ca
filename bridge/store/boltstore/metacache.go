package boltstore

import (
	"maps"
	"sync"

	"github.com/pollbridge/pollbridge/bridge/store"
)

// metaCache keeps each source's generation and meta as last read, so that
// a poll that finds nothing changed (most polls) opens no transaction. The
// file belongs to this process and only Commit changes a source, so the
// cache stays true: Commit drops the source's entry after its transaction
// and counts a new version, which keeps a read that raced the commit from
// storing what it read.
type metaCache struct {
	mu      sync.Mutex
	version uint64
	entries map[string]store.State // Items nil; nil map: closed
}

func newMetaCache() *metaCache {
	return &metaCache{entries: map[string]store.State{}}
}

// get returns a copy of source's entry: the caller may change it.
func (c *metaCache) get(source string) (store.State, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.entries[source]
	if !ok {
		return store.State{}, false
	}
	return store.State{Generation: st.Generation, Items: map[string]store.Item{}, Meta: maps.Clone(st.Meta)}, true
}

// current is the version to pass to put for a read that starts now.
func (c *metaCache) current() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// put stores a copy of st, read by a read that started at version, unless
// a commit has ended since.
func (c *metaCache) put(source string, version uint64, st store.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || c.version != version {
		return
	}
	c.entries[source] = store.State{Generation: st.Generation, Meta: maps.Clone(st.Meta)}
}

// drop forgets source after a commit to it.
func (c *metaCache) drop(source string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	delete(c.entries, source)
}

// close forgets every entry and stores no more.
func (c *metaCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	c.entries = nil
}
