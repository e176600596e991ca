package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"time"
)

// apiOptions configures a load API child.
type apiOptions struct {
	Sources, Items int
	ETag           bool
	PageSize       int // 0: one page
	Seed           uint64
}

// apiChild is a running load API child and the harness's client of its
// control endpoints.
type apiChild struct {
	*child
	url    string // http://127.0.0.1:PORT
	client *http.Client
}

// startAPI starts the load API as a child process (`EXE __child api`) and
// waits until it listens.
func startAPI(ctx context.Context, exe, dir string, o apiOptions) (*apiChild, error) {
	args := []string{childArg, "api",
		"-sources", itoa(o.Sources), "-items", itoa(o.Items),
		"-page-size", itoa(o.PageSize), "-seed", strconv.FormatUint(o.Seed, 10)}
	if o.ETag {
		args = append(args, "-etag")
	}
	c, err := startChild("load API", exe, args, filepath.Join(dir, "api.log"), true)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // a million items take a while to render
	defer cancel()
	addr, err := c.expect(ctx, "listening ")
	if err != nil {
		_ = c.stop(time.Second)
		return nil, err
	}
	return &apiChild{child: c, url: "http://" + addr, client: &http.Client{Timeout: time.Minute}}, nil
}

// do makes one control request and decodes its JSON answer into out.
func (a *apiChild) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, nil)
	if err != nil {
		return fmt.Errorf("load API %s %s: %w", method, path, err)
	}
	req.Header.Set("User-Agent", "pbbench-control")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("load API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("load API %s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("load API %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// counters returns the API's request counters.
func (a *apiChild) counters(ctx context.Context) (apiCounters, error) {
	var c apiCounters
	return c, a.do(ctx, http.MethodGet, "/_ctl/counters", &c)
}

// progress returns how many sources pollbridge fetched, and fetched at
// their latest generation.
func (a *apiChild) progress(ctx context.Context) (apiProgress, error) {
	var p apiProgress
	return p, a.do(ctx, http.MethodGet, "/_ctl/progress", &p)
}

// log returns the mutation and fetch logs.
func (a *apiChild) log(ctx context.Context) (apiLog, error) {
	var l apiLog
	return l, a.do(ctx, http.MethodGet, "/_ctl/log", &l)
}

// setMutator runs the mutator at rate mutations per second (0 stops it)
// and returns the number of mutations made so far.
func (a *apiChild) setMutator(ctx context.Context, rate float64) (int, error) {
	var out map[string]int
	err := a.do(ctx, http.MethodPost, "/_ctl/mutator?rate="+strconv.FormatFloat(rate, 'f', -1, 64), &out)
	return out["mutations"], err
}

// mutate makes n mutations now, spread over the sources.
func (a *apiChild) mutate(ctx context.Context, n int) error {
	var out map[string]int
	return a.do(ctx, http.MethodPost, "/_ctl/mutate?n="+itoa(n), &out)
}

// delta returns the counters of class that grew from c0 to c1.
func (c1 apiCounters) delta(c0 apiCounters, class string) classCounters {
	a, b := c1.Classes[class], c0.Classes[class]
	return classCounters{
		Requests:    a.Requests - b.Requests,
		FirstPages:  a.FirstPages - b.FirstPages,
		NotModified: a.NotModified - b.NotModified,
		Bytes:       a.Bytes - b.Bytes,
	}
}
