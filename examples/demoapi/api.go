package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Order statuses, in the order an order moves through them.
const (
	StatusNew     = "new"
	StatusPaid    = "paid"
	StatusShipped = "shipped"
)

// Chaos modes accepted by POST /_chaos.
const (
	ChaosOK        = "ok"        // answer normally
	Chaos500       = "500"       // HTTP 500 with a JSON error
	ChaosHTML      = "html"      // HTTP 200 with an HTML maintenance page
	ChaosTruncated = "truncated" // HTTP 200 with the JSON cut in half
	ChaosEmpty     = "empty"     // HTTP 200 with {"data":[]}
)

// maxBody bounds request bodies; orders are tiny.
const maxBody = 64 << 10

// Order is one order of the demo shop.
type Order struct {
	ID        int       `json:"id"`
	Customer  string    `json:"customer"`
	Status    string    `json:"status"`
	Total     float64   `json:"total"`
	UpdatedAt time.Time `json:"updated_at"`
}

// orderPatch holds the fields a client may set. Absent fields stay nil and
// keep their current value.
type orderPatch struct {
	Customer *string  `json:"customer"`
	Status   *string  `json:"status"`
	Total    *float64 `json:"total"`
}

// chaosRequest is the body of POST /_chaos.
type chaosRequest struct {
	Mode  string `json:"mode"`
	Count int    `json:"count"`
}

// API is an in-memory orders API. Its methods are safe for concurrent use.
type API struct {
	now func() time.Time

	mu         sync.Mutex
	orders     map[int]*Order
	nextID     int
	rng        *rand.Rand
	chaos      string
	chaosCount int
}

// NewAPI returns an API seeded with three orders. now is the clock used for
// updated_at (nil: time.Now); seed makes Mutate's choices reproducible.
func NewAPI(now func() time.Time, seed uint64) *API {
	if now == nil {
		now = time.Now
	}
	a := &API{
		now:    now,
		orders: make(map[int]*Order),
		nextID: 1,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	a.create("ada", StatusNew, 12.5)
	a.create("grace", StatusPaid, 42)
	a.create("linus", StatusShipped, 7.99)
	return a
}

// Handler returns the HTTP routes of the API.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /orders", a.list)
	mux.HandleFunc("POST /orders", a.post)
	mux.HandleFunc("GET /orders/{id}", a.get)
	mux.HandleFunc("PUT /orders/{id}", a.update)
	mux.HandleFunc("PATCH /orders/{id}", a.update)
	mux.HandleFunc("DELETE /orders/{id}", a.delete)
	mux.HandleFunc("POST /_chaos", a.setChaos)
	return mux
}

// Mutate makes one random change, as a busy shop would, and describes it: it
// creates an order, moves an order from new to paid or paid to shipped, or
// deletes a shipped order.
func (a *API) Mutate() string {
	a.mu.Lock()
	defer a.mu.Unlock()

	var advance, shipped []int
	for _, id := range a.sortedIDs() {
		switch a.orders[id].Status {
		case StatusNew, StatusPaid:
			advance = append(advance, id)
		case StatusShipped:
			shipped = append(shipped, id)
		}
	}
	// Creating is always possible; weigh advancing higher so orders move.
	choices := []string{"create"}
	if len(advance) > 0 {
		choices = append(choices, "advance", "advance")
	}
	if len(shipped) > 0 {
		choices = append(choices, "delete")
	}

	switch choices[a.rng.IntN(len(choices))] {
	case "advance":
		o := a.orders[advance[a.rng.IntN(len(advance))]]
		old := o.Status
		if old == StatusNew {
			o.Status = StatusPaid
		} else {
			o.Status = StatusShipped
		}
		o.UpdatedAt = a.stamp()
		return fmt.Sprintf("order %d: status %s → %s", o.ID, old, o.Status)
	case "delete":
		id := shipped[a.rng.IntN(len(shipped))]
		delete(a.orders, id)
		return fmt.Sprintf("order %d: deleted (was shipped)", id)
	default:
		customers := []string{"ada", "grace", "linus", "ken", "barbara", "margaret", "dennis", "rob"}
		total := float64(100+a.rng.IntN(9900)) / 100
		o := a.create(customers[a.rng.IntN(len(customers))], StatusNew, total)
		return fmt.Sprintf("order %d: created for %s, total %.2f", o.ID, o.Customer, o.Total)
	}
}

// create adds an order; the caller holds a.mu (or owns a).
func (a *API) create(customer, status string, total float64) *Order {
	o := &Order{ID: a.nextID, Customer: customer, Status: status, Total: total, UpdatedAt: a.stamp()}
	a.orders[o.ID] = o
	a.nextID++
	return o
}

// stamp is the current time as updated_at shows it: UTC, whole seconds.
func (a *API) stamp() time.Time { return a.now().UTC().Truncate(time.Second) }

// sortedIDs lists the order ids in ascending order; the caller holds a.mu.
func (a *API) sortedIDs() []int {
	ids := make([]int, 0, len(a.orders))
	for id := range a.orders {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	mode := a.chaos
	if mode != ChaosOK && mode != "" {
		a.chaosCount--
		if a.chaosCount <= 0 {
			a.chaos, a.chaosCount = ChaosOK, 0
		}
	}
	data := make([]Order, 0, len(a.orders))
	for _, id := range a.sortedIDs() {
		data = append(data, *a.orders[id])
	}
	a.mu.Unlock()

	body, err := json.Marshal(map[string][]Order{"data": data})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	switch mode {
	case Chaos500:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "chaos: internal server error"})
		return
	case ChaosHTML:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html>\n<html><body><h1>Down for maintenance</h1><p>Back soon.</p></body></html>\n")
		return
	case ChaosTruncated:
		w.Header().Set("Content-Type", "application/json")
		w.Write(body[:len(body)/2])
		return
	case ChaosEmpty:
		writeJSON(w, http.StatusOK, map[string][]Order{"data": {}})
		return
	}

	// A strong ETag lets pollers use If-None-Match and get a cheap 304.
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n'))
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	o, found := a.orders[id]
	var c Order
	if found {
		c = *o
	}
	a.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("order %d not found", id))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) post(w http.ResponseWriter, r *http.Request) {
	var p orderPatch
	if err := decode(w, r, &p); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if p.Customer == nil || *p.Customer == "" {
		writeError(w, http.StatusBadRequest, "customer is required")
		return
	}
	o := Order{Customer: *p.Customer, Status: StatusNew}
	if err := apply(&o, p); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.mu.Lock()
	c := *a.create(o.Customer, o.Status, o.Total)
	a.mu.Unlock()
	w.Header().Set("Location", "/orders/"+strconv.Itoa(c.ID))
	writeJSON(w, http.StatusCreated, c)
}

func (a *API) update(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var p orderPatch
	if err := decode(w, r, &p); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.mu.Lock()
	o, found := a.orders[id]
	var c Order
	var err error
	if found {
		c = *o
		if err = apply(&c, p); err == nil {
			c.UpdatedAt = a.stamp()
			*o = c
		}
	}
	a.mu.Unlock()
	switch {
	case !found:
		writeError(w, http.StatusNotFound, fmt.Sprintf("order %d not found", id))
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	_, found := a.orders[id]
	delete(a.orders, id)
	a.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, fmt.Sprintf("order %d not found", id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) setChaos(w http.ResponseWriter, r *http.Request) {
	var c chaosRequest
	if err := decode(w, r, &c); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch c.Mode {
	case ChaosOK:
		c.Count = 0
	case Chaos500, ChaosHTML, ChaosTruncated, ChaosEmpty:
		if c.Count < 0 {
			writeError(w, http.StatusBadRequest, "count must not be negative")
			return
		}
		if c.Count == 0 {
			c.Count = 1
		}
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown mode %q (want ok, 500, html, truncated or empty)", c.Mode))
		return
	}
	a.mu.Lock()
	a.chaos, a.chaosCount = c.Mode, c.Count
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, c)
}

// apply merges p into o, checking the values.
func apply(o *Order, p orderPatch) error {
	if p.Customer != nil {
		if *p.Customer == "" {
			return errors.New("customer must not be empty")
		}
		o.Customer = *p.Customer
	}
	if p.Status != nil {
		switch *p.Status {
		case StatusNew, StatusPaid, StatusShipped:
			o.Status = *p.Status
		default:
			return fmt.Errorf("status %q is not new, paid or shipped", *p.Status)
		}
	}
	if p.Total != nil {
		if *p.Total < 0 {
			return errors.New("total must not be negative")
		}
		o.Total = *p.Total
	}
	return nil
}

// decode reads one JSON object from the request body into v, rejecting
// unknown fields and trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	if dec.More() {
		return errors.New("decode body: unexpected data after the JSON object")
	}
	return nil
}

// pathID parses {id}, answering 400 itself when it is not a number.
func pathID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("order id %q is not a number", r.PathValue("id")))
		return 0, false
	}
	return id, true
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
