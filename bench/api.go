package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mutation types, as mutation.T holds them.
const (
	mutCreate = 'c'
	mutUpdate = 'u'
	mutDelete = 'd'
)

// Client classes the load API counts separately, by User-Agent.
const (
	classPollbridge = "pollbridge"    // pollbridge's own User-Agent
	classFloor      = "pbbench-floor" // the floor children
	classOther      = "other"
)

// itemBaseTime is the updated_at of every item before its first update.
func itemBaseTime() time.Time { return time.Date(2026, 11, 27, 16, 0, 0, 123e6, time.UTC) }

// itemKey is the key (the "id" field) of item number n of source s. The
// checker relies on it to know the initial items: numbers 0..items-1, each
// at version 1.
func itemKey(s, n int) string { return fmt.Sprintf("s%d-i%06d", s, n) }

// sourceName is the pollbridge source name of source s; sourceIndex is its
// inverse.
func sourceName(s int) string { return "s" + strconv.Itoa(s) }

// sourceIndex returns the index of the source called name ("s12": 12).
func sourceIndex(name string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "s"))
	return n, err == nil && strings.HasPrefix(name, "s")
}

// mutation is one change the mutator made to the load API's data.
type mutation struct {
	S  int    `json:"s"`  // source index
	K  string `json:"k"`  // item key
	T  byte   `json:"t"`  // mutCreate, mutUpdate or mutDelete
	V  int    `json:"v"`  // version after (create, update) or last version (delete)
	G  uint64 `json:"g"`  // the source's generation after this mutation
	At int64  `json:"at"` // unix nanoseconds
}

// served is one first-page answer the load API gave to pollbridge.
type served struct {
	S  int    `json:"s"`            // source index
	G  uint64 `json:"g"`            // generation of the data served
	At int64  `json:"at"`           // arrival of the request, unix nanoseconds
	NM bool   `json:"nm,omitempty"` // answered 304 Not Modified
}

// apiLog is what the load API recorded, as /_ctl/log returns it.
type apiLog struct {
	Mutations []mutation `json:"mutations"`
	Served    []served   `json:"served"`
}

// classCounters counts the requests of one client class.
type classCounters struct {
	Requests    int64 `json:"requests"`     // every request, all pages
	FirstPages  int64 `json:"first_pages"`  // requests for page 1: polls
	NotModified int64 `json:"not_modified"` // 304 answers
	Bytes       int64 `json:"bytes"`        // body bytes sent
}

// apiCounters is a snapshot of the load API's counters (/_ctl/counters).
type apiCounters struct {
	Classes  map[string]classCounters `json:"classes"`
	NewConns int64                    `json:"new_conns"` // TCP connections accepted
}

// apiProgress says how far pollbridge got through the sources
// (/_ctl/progress).
type apiProgress struct {
	Total    int `json:"total"`     // sources
	Polled   int `json:"polled"`    // sources pollbridge fetched at least once
	CaughtUp int `json:"caught_up"` // sources whose latest data pollbridge fetched
}

// apiItem is one item of a source, with its rendered JSON.
type apiItem struct {
	key     string
	num     int
	version int
	amount  int
	status  string
	updated time.Time
	raw     []byte
}

// render sets it.raw: about 170 bytes of JSON.
func (it *apiItem) render() {
	b := make([]byte, 0, 192)
	b = append(b, `{"id":"`...)
	b = append(b, it.key...)
	b = append(b, `","status":"`...)
	b = append(b, it.status...)
	b = append(b, `","amount":`...)
	b = strconv.AppendInt(b, int64(it.amount), 10)
	b = append(b, `,"currency":"EUR","customer":"cus_`...)
	b = appendPadded(b, it.num, 6)
	b = append(b, `","note":"synthetic load item","version":`...)
	b = strconv.AppendInt(b, int64(it.version), 10)
	b = append(b, `,"updated_at":"`...)
	b = it.updated.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `"}`...)
	it.raw = b
}

// appendPadded appends n in decimal, zero-padded to width digits.
func appendPadded(b []byte, n, width int) []byte {
	d := strconv.Itoa(n)
	for i := len(d); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// apiSource is one endpoint of the load API: its items, and its answers
// rendered once per generation.
type apiSource struct {
	idx     int
	initial int // item count at start: the mutator keeps it within ±10%

	mu       sync.Mutex
	list     []*apiItem // in body order
	next     int        // number of the next created item
	gen      uint64     // bumped by every mutation
	rendered uint64     // generation of pages; ^0 when never rendered
	pages    [][]byte
	etags    []string

	servedAny atomic.Bool
	servedGen atomic.Uint64 // generation of pollbridge's latest fetch
}

// page returns the body and ETag of page p (1-based) of the current data,
// rendering the pages first if a mutation made them stale, with the data's
// generation and the number of pages. Callers hold s.mu.
func (s *apiSource) page(p, size int) (body []byte, etag string, gen uint64, pages int) {
	if s.rendered != s.gen || s.pages == nil {
		s.render(size)
	}
	if p < 1 || p > len(s.pages) {
		return []byte(`{"data":[]}`), `"empty"`, s.gen, len(s.pages)
	}
	return s.pages[p-1], s.etags[p-1], s.gen, len(s.pages)
}

// render rebuilds every page from the items' rendered JSON (new slices:
// earlier pages may still be being written to a client).
func (s *apiSource) render(size int) {
	if size <= 0 {
		size = max(len(s.list), 1)
	}
	n := max((len(s.list)+size-1)/size, 1)
	s.pages, s.etags = make([][]byte, n), make([]string, n)
	for p := range n {
		items := s.list[min(p*size, len(s.list)):min((p+1)*size, len(s.list))]
		total := 12
		for _, it := range items {
			total += len(it.raw) + 1
		}
		b := make([]byte, 0, total)
		b = append(b, `{"data":[`...)
		for i, it := range items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, it.raw...)
		}
		b = append(b, "]}"...)
		sum := sha256.Sum256(b)
		s.pages[p], s.etags[p] = b, `"`+hex.EncodeToString(sum[:12])+`"`
	}
	s.rendered = s.gen
}

// loadAPI is the synthetic REST API pollbridge and the floors poll: GET
// /s/{i}[?page=N] answers {"data":[...]} for source i. It also runs the
// mutator and answers the harness's control requests under /_ctl/.
type loadAPI struct {
	sources  []*apiSource
	etag     bool
	pageSize int // 0: one page
	log      *slog.Logger

	counters map[string]*atomicCounters
	newConns atomic.Int64

	logMu     sync.Mutex
	mutations []mutation
	served    []served

	rngMu sync.Mutex
	rng   *rand.Rand
	order []int // source order the mutator cycles through
	pos   int

	mutMu   sync.Mutex
	stopMut context.CancelFunc // the running mutator; nil when none
	mutDone chan struct{}
}

// atomicCounters are classCounters updated concurrently.
type atomicCounters struct {
	requests, firstPages, notModified, bytes atomic.Int64
}

// newLoadAPI makes the API's data: sources × items, all at version 1.
func newLoadAPI(sources, items int, etag bool, pageSize int, seed uint64, log *slog.Logger) *loadAPI {
	a := &loadAPI{
		etag:     etag,
		pageSize: pageSize,
		log:      log,
		counters: map[string]*atomicCounters{classPollbridge: {}, classFloor: {}, classOther: {}},
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	base := itemBaseTime()
	for s := range sources {
		src := &apiSource{idx: s, initial: items, next: items, rendered: ^uint64(0)}
		src.list = make([]*apiItem, items)
		for n := range items {
			it := &apiItem{key: itemKey(s, n), num: n, version: 1, amount: (s*7919 + n*104729) % 100000, status: "open", updated: base}
			it.render()
			src.list[n] = it
		}
		a.sources = append(a.sources, src)
	}
	a.order = a.rng.Perm(sources)
	return a
}

// handler routes the API and the control endpoints.
func (a *loadAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /s/{i}", a.serveSource)
	mux.HandleFunc("GET /_ctl/counters", a.serveCounters)
	mux.HandleFunc("GET /_ctl/progress", a.serveProgress)
	mux.HandleFunc("GET /_ctl/log", a.serveLog)
	mux.HandleFunc("POST /_ctl/mutator", a.serveMutator)
	mux.HandleFunc("POST /_ctl/mutate", a.serveMutate)
	return mux
}

// serveSource answers one page of one source.
func (a *loadAPI) serveSource(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	idx, err := strconv.Atoi(r.PathValue("i"))
	if err != nil || idx < 0 || idx >= len(a.sources) {
		http.Error(w, "no such source", http.StatusNotFound)
		return
	}
	p := 1
	if v := r.URL.Query().Get("page"); v != "" {
		if p, err = strconv.Atoi(v); err != nil || p < 1 {
			http.Error(w, "bad page", http.StatusBadRequest)
			return
		}
	}
	class := classOther
	switch ua := r.UserAgent(); {
	case ua == classPollbridge:
		class = classPollbridge
	case strings.HasPrefix(ua, classFloor):
		class = classFloor
	}
	s := a.sources[idx]
	s.mu.Lock()
	body, etag, gen, pages := s.page(p, a.pageSize)
	s.mu.Unlock()

	c := a.counters[class]
	c.requests.Add(1)
	notModified := a.etag && r.Header.Get("If-None-Match") == etag
	if p == 1 {
		c.firstPages.Add(1)
		if class == classPollbridge {
			s.servedGen.Store(gen)
			s.servedAny.Store(true)
			a.logMu.Lock()
			a.served = append(a.served, served{S: idx, G: gen, At: now.UnixNano(), NM: notModified})
			a.logMu.Unlock()
		}
	}
	h := w.Header()
	if a.etag {
		h.Set("ETag", etag)
	}
	if notModified {
		c.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if p < pages {
		h.Set("Link", fmt.Sprintf(`</s/%d?page=%d>; rel="next"`, idx, p+1))
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.bytes.Add(int64(len(body)))
	_, _ = w.Write(body)
}

// counters returns a snapshot of the request counters.
func (a *loadAPI) snapshotCounters() apiCounters {
	out := apiCounters{Classes: map[string]classCounters{}, NewConns: a.newConns.Load()}
	for name, c := range a.counters {
		out.Classes[name] = classCounters{
			Requests: c.requests.Load(), FirstPages: c.firstPages.Load(),
			NotModified: c.notModified.Load(), Bytes: c.bytes.Load(),
		}
	}
	return out
}

// serveCounters answers the request counters (apiCounters).
func (a *loadAPI) serveCounters(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, a.snapshotCounters())
}

// serveProgress answers how many sources pollbridge fetched, and fetched
// at their latest generation (apiProgress).
func (a *loadAPI) serveProgress(w http.ResponseWriter, _ *http.Request) {
	p := apiProgress{Total: len(a.sources)}
	for _, s := range a.sources {
		if !s.servedAny.Load() {
			continue
		}
		p.Polled++
		s.mu.Lock()
		gen := s.gen
		s.mu.Unlock()
		if s.servedGen.Load() == gen {
			p.CaughtUp++
		}
	}
	writeJSON(w, p)
}

// serveLog answers the mutation and fetch logs (apiLog).
func (a *loadAPI) serveLog(w http.ResponseWriter, _ *http.Request) {
	a.logMu.Lock()
	l := apiLog{Mutations: a.mutations, Served: a.served}
	a.logMu.Unlock()
	writeJSON(w, l)
}

// serveMutator starts the mutator at ?rate= mutations per second over all
// sources (replacing a running one), or stops it with rate=0. It answers
// the number of mutations made so far.
func (a *loadAPI) serveMutator(w http.ResponseWriter, r *http.Request) {
	rate, err := strconv.ParseFloat(r.URL.Query().Get("rate"), 64)
	if err != nil || rate < 0 {
		http.Error(w, "rate: want a number >= 0", http.StatusBadRequest)
		return
	}
	a.mutMu.Lock()
	if a.stopMut != nil {
		a.stopMut()
		<-a.mutDone
		a.stopMut = nil
	}
	if rate > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		a.stopMut, a.mutDone = cancel, make(chan struct{})
		go func() {
			defer close(a.mutDone)
			a.runMutator(ctx, rate)
		}()
	}
	a.mutMu.Unlock()
	a.logMu.Lock()
	n := len(a.mutations)
	a.logMu.Unlock()
	writeJSON(w, map[string]int{"mutations": n})
}

// serveMutate makes ?n= mutations at once, spread over the sources.
func (a *loadAPI) serveMutate(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 {
		http.Error(w, "n: want a number >= 0", http.StatusBadRequest)
		return
	}
	for range n {
		a.mutate(time.Now())
	}
	writeJSON(w, map[string]int{"mutations": n})
}

// mutatorTick is how often the mutator wakes: mutations are spread over
// time at this granularity.
const mutatorTick = 5 * time.Millisecond

// runMutator makes rate mutations per second until ctx ends, cycling
// through the sources in a shuffled order, so that every source changes
// at the same rate at evenly spread moments.
func (a *loadAPI) runMutator(ctx context.Context, rate float64) {
	t := time.NewTicker(mutatorTick)
	defer t.Stop()
	last, budget := time.Now(), 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			budget += rate * now.Sub(last).Seconds()
			last = now
			for ; budget >= 1; budget-- {
				a.mutate(time.Now())
			}
		}
	}
}

// mutate changes one item of the next source in the mutator's order: 80%
// updates (version+1, a new amount and status), 10% creates, 10% deletes,
// with the source's size kept within ±10% of its initial size.
func (a *loadAPI) mutate(now time.Time) {
	a.rngMu.Lock()
	s := a.sources[a.order[a.pos]]
	a.pos = (a.pos + 1) % len(a.order)
	roll, pick, amount := a.rng.IntN(100), a.rng.Uint64(), a.rng.IntN(100000)
	a.rngMu.Unlock()

	s.mu.Lock()
	n := len(s.list)
	lo, hi := s.initial-s.initial/10, s.initial+s.initial/10
	var typ byte
	switch {
	case n == 0 || n < lo:
		typ = mutCreate
	case n > hi:
		typ = mutDelete
	case roll < 10:
		typ = mutCreate
	case roll < 20:
		typ = mutDelete
	default:
		typ = mutUpdate
	}
	m := mutation{S: s.idx, T: typ}
	switch typ {
	case mutCreate:
		it := &apiItem{key: itemKey(s.idx, s.next), num: s.next, version: 1, amount: amount, status: "open", updated: now}
		it.render()
		s.next++
		s.list = append(s.list, it)
		m.K, m.V = it.key, it.version
	case mutUpdate:
		it := s.list[pick%uint64(n)]
		it.version++
		it.amount = amount
		it.status = [...]string{"open", "paid", "void", "refunded"}[it.version%4]
		it.updated = now
		it.render()
		m.K, m.V = it.key, it.version
	case mutDelete:
		i := int(pick % uint64(n))
		it := s.list[i]
		s.list[i] = s.list[n-1]
		s.list[n-1] = nil
		s.list = s.list[:n-1]
		m.K, m.V = it.key, it.version
	}
	s.gen++
	m.G, m.At = s.gen, now.UnixNano()
	s.mu.Unlock()

	a.logMu.Lock()
	a.mutations = append(a.mutations, m)
	a.logMu.Unlock()
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// apiMain is the load API child (`bench __child api`): it serves on
// 127.0.0.1:0, prints "listening ADDR", and exits when its stdin closes.
func apiMain(args []string) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	sources := fs.Int("sources", 1, "sources")
	items := fs.Int("items", 100, "items per source")
	etag := fs.Bool("etag", false, "send ETags and answer 304 to a matching If-None-Match")
	pageSize := fs.Int("page-size", 0, "items per page (0: one page)")
	seed := fs.Uint64("seed", 1, "random seed of the mutator")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	a := newLoadAPI(*sources, *items, *etag, *pageSize, *seed, log)
	for _, s := range a.sources { // render before the first request
		s.mu.Lock()
		s.page(1, a.pageSize)
		s.mu.Unlock()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				a.newConns.Add(1)
			}
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the harness closes stdin
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if err := <-served; err != nil && err != http.ErrServerClosed {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
