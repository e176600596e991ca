package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
)

// Floor modes.
const (
	floorPoll    = "poll"    // paced GET + full scan, like scheduled polls
	floorCond    = "cond"    // paced conditional GET (If-None-Match → 304)
	floorOneshot = "oneshot" // every page of every source once, on "go"
	floorPost    = "post"    // N workers POST signed events, on "go"
)

// floorUserAgent is sent by the floors so the load API counts them apart.
const floorUserAgent = classFloor + "/1"

// floorMain is a floor child (`bench __child floor -mode M ...`). It
// prints "ready" once set up. The paced modes (poll, cond) start at once
// and run until stdin closes. The one-off modes (oneshot, post) wait for
// a "go" line, do their work, print "done ..." and wait for stdin to
// close. The harness measures the child's CPU from /proc around that.
func floorMain(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	mode := fs.String("mode", floorPoll, "poll, cond, oneshot or post")
	api := fs.String("api", "", "load API base URL (poll, cond, oneshot)")
	sources := fs.Int("sources", 1, "sources to poll")
	interval := fs.Duration("interval", time.Second, "poll interval (poll, cond)")
	offsetsFlag := fs.String("offsets", "", "comma-separated tick offset of each source, in nanoseconds (poll, cond)")
	target := fs.String("url", "", "receiver URL (post)")
	n := fs.Int("n", 1000, "deliveries to make (post)")
	conc := fs.Int("concurrency", 4, "workers (post)")
	secret := fs.String("secret", "", "whsec_ secret (post)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdin := bufio.NewScanner(os.Stdin)
	waitGo := func() error {
		if !stdin.Scan() || stdin.Text() != "go" {
			return errors.New("stdin closed before go")
		}
		return nil
	}
	waitEOF := func() {
		for stdin.Scan() {
		}
	}
	switch *mode {
	case floorPoll, floorCond:
		offsets := make([]time.Duration, *sources)
		if *offsetsFlag != "" {
			for i, v := range strings.Split(*offsetsFlag, ",") {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || i >= len(offsets) {
					return fmt.Errorf("-offsets: bad value %q at %d", v, i)
				}
				offsets[i] = time.Duration(n)
			}
		}
		f := newPollFloor(*api, *sources, *mode == floorCond)
		var wg sync.WaitGroup
		for s := range *sources {
			wg.Go(func() { f.pace(ctx, s, *interval, offsets[s]) })
		}
		fmt.Println("ready")
		waitEOF()
		cancel()
		wg.Wait()
		if e := f.errors.Load(); e > 0 {
			fmt.Fprintf(os.Stderr, "floor: %d failed polls; last: %v\n", e, f.lastErr.Load())
		}
		return nil
	case floorOneshot:
		f := newPollFloor(*api, *sources, false)
		fmt.Println("ready")
		if err := waitGo(); err != nil {
			return err
		}
		items := 0
		for s := range *sources {
			k, err := f.fetch(ctx, s)
			if err != nil {
				return err
			}
			items += k
		}
		fmt.Printf("done %d\n", items)
		waitEOF()
		return nil
	case floorPost:
		key, err := secretKey(*secret)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		if err := waitGo(); err != nil {
			return err
		}
		elapsed, failures := postFloor(ctx, *target, key, *n, *conc)
		fmt.Printf("done %d %d\n", elapsed.Nanoseconds(), failures)
		waitEOF()
		return nil
	}
	return fmt.Errorf("unknown floor mode %q", *mode)
}

// pollFloor does the unavoidable work of a poll: GET every page, read the
// body, walk every item once with gjson reading its key, and hash each
// item's raw bytes. It keeps nothing but the ETags (cond mode).
type pollFloor struct {
	api    string
	cond   bool
	client *http.Client
	etags  []atomic.Pointer[string]

	errors  atomic.Int64
	lastErr atomic.Value
}

// newPollFloor returns a floor for sources sources of api; cond sends
// If-None-Match with the ETag last seen.
func newPollFloor(api string, sources int, cond bool) *pollFloor {
	return &pollFloor{
		api:    api,
		cond:   cond,
		client: keepAliveClient(sources),
		etags:  make([]atomic.Pointer[string], sources),
	}
}

// keepAliveClient returns a client whose transport keeps an idle
// connection for each of conns users (a source, a worker): connection
// set-up is avoidable work.
func keepAliveClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = conns + 8
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// pace polls source s on the wall-clock grid of interval shifted by
// offset (pollbridge's grid for that source) until ctx ends.
func (f *pollFloor) pace(ctx context.Context, s int, interval, offset time.Duration) {
	if sleepUntil(ctx, time.Now().Truncate(interval).Add(interval+offset)) != nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := f.fetch(ctx, s); err != nil && ctx.Err() == nil {
			f.errors.Add(1)
			f.lastErr.Store(err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fetch polls source s once, every page, and returns the items seen.
func (f *pollFloor) fetch(ctx context.Context, s int) (int, error) {
	next := fmt.Sprintf("%s/s/%d", f.api, s)
	items, buf := 0, make([]byte, 0, 512)
	for page := 1; next != ""; page++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return items, fmt.Errorf("floor: source %d page %d: %w", s, page, err)
		}
		req.Header.Set("User-Agent", floorUserAgent)
		if f.cond && page == 1 {
			if e := f.etags[s].Load(); e != nil {
				req.Header.Set("If-None-Match", *e)
			}
		}
		resp, err := f.client.Do(req)
		if err != nil {
			return items, fmt.Errorf("floor: source %d page %d: %w", s, page, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return items, fmt.Errorf("floor: source %d page %d: read: %w", s, page, err)
		}
		if resp.StatusCode == http.StatusNotModified {
			return items, nil
		}
		if resp.StatusCode != http.StatusOK {
			return items, fmt.Errorf("floor: source %d page %d: status %d", s, page, resp.StatusCode)
		}
		if f.cond && page == 1 {
			if e := resp.Header.Get("ETag"); e != "" {
				f.etags[s].Store(&e)
			}
		}
		gjson.GetBytes(body, "data").ForEach(func(_, v gjson.Result) bool {
			_ = v.Get("id").String()
			buf = append(buf[:0], v.Raw...)
			_ = sha256.Sum256(buf)
			items++
			return true
		})
		next, err = nextLink(req.URL, resp.Header.Get("Link"))
		if err != nil {
			return items, fmt.Errorf("floor: source %d page %d: %w", s, page, err)
		}
	}
	return items, nil
}

// nextLink returns the rel="next" target of a Link header, resolved
// against base; "" when there is none.
func nextLink(base *url.URL, link string) (string, error) {
	for part := range strings.SplitSeq(link, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok || !strings.Contains(params, `rel="next"`) {
			continue
		}
		u, err := base.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
		if err != nil {
			return "", fmt.Errorf("next link: %w", err)
		}
		return u.String(), nil
	}
	return "", nil
}

// floorEvent returns a pre-built event body of about 400 bytes, shaped
// like a pollbridge item.updated webhook.
func floorEvent() []byte {
	it := &apiItem{key: itemKey(1, 42), num: 42, version: 3, amount: 4321, status: "paid", updated: itemBaseTime()}
	it.render()
	return []byte(`{"type":"item.updated","timestamp":"2026-11-27T16:00:00.123Z","data":{"id":"msg_floor","source":"s1","key":"` +
		it.key + `","item":` + string(it.raw) +
		`,"changes":[{"op":"replace","path":"/amount","old":1234,"new":4321},{"op":"replace","path":"/version","old":2,"new":3}]}}`)
}

// postFloor POSTs n signed copies of floorEvent to target from workers
// goroutines over a transport that keeps a connection per worker, and
// returns the time it took and the number of failed requests.
func postFloor(ctx context.Context, target string, key []byte, n, workers int) (time.Duration, int64) {
	client := keepAliveClient(workers)
	body := floorEvent()
	var next, failures atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				id := "msg_floor_" + strconv.FormatInt(i, 10)
				ts := time.Now().Unix()
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(string(body)))
				if err != nil {
					failures.Add(1)
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("User-Agent", floorUserAgent)
				req.Header.Set("Webhook-Id", id)
				req.Header.Set("Webhook-Timestamp", strconv.FormatInt(ts, 10))
				req.Header.Set("Webhook-Signature", sign(key, id, ts, body))
				resp, err := client.Do(req)
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				if resp.StatusCode < 200 || resp.StatusCode > 299 {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), failures.Load()
}

// floorRun is the outcome of a floor child measured by the harness.
type floorRun struct {
	CPU      float64       // CPU seconds of the floor child in the window
	Wall     time.Duration // the window
	Polls    int64         // first pages the API served it in the window
	NewConns int64         // TCP connections the API accepted in the window
	APICPU   float64       // CPU seconds of the load API in the window
	Done     string        // the one-off modes' "done" line
}

// startFloor starts a floor child (`EXE __child floor ARGS`), logging to
// floor-NAME.log, and waits until it says it is ready. Stop it when done.
func (e *env) startFloor(ctx context.Context, name string, args []string) (*child, error) {
	c, err := startChild("floor "+name, e.exe, append([]string{childArg, "floor"}, args...), filepath.Join(e.dir, "floor-"+name+".log"), true)
	if err != nil {
		return nil, err
	}
	if _, err := c.expect(ctx, "ready"); err != nil {
		_ = c.stop(5 * time.Second)
		return nil, err
	}
	return c, nil
}

// startPacedFloor starts the poll or cond floor against api, one source
// per offset (each ticking on its offset). Stop it when done.
func (e *env) startPacedFloor(ctx context.Context, api *apiChild, mode string, interval time.Duration, offsets []time.Duration) (*child, error) {
	offs := make([]string, len(offsets))
	for i, o := range offsets {
		offs[i] = strconv.FormatInt(int64(o), 10)
	}
	return e.startFloor(ctx, mode, []string{"-mode", mode, "-api", api.url, "-sources", itoa(len(offsets)),
		"-interval", interval.String(), "-offsets", strings.Join(offs, ",")})
}

// runOneOffFloor runs a oneshot or post floor child with args: it waits
// for "ready", samples its CPU, says "go", waits for "done" and samples
// again.
func (e *env) runOneOffFloor(ctx context.Context, name string, args []string, timeout time.Duration) (floorRun, error) {
	c, err := e.startFloor(ctx, name, args)
	if err != nil {
		return floorRun{}, err
	}
	defer func() { _ = c.stop(5 * time.Second) }()
	m, err := e.proc.startCPU(c.pid())
	if err != nil {
		return floorRun{}, err
	}
	if err := c.send("go"); err != nil {
		return floorRun{}, err
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done, err := c.expect(tctx, "done")
	if err != nil {
		return floorRun{}, err
	}
	cpu, wall, err := m.stop()
	if err != nil {
		return floorRun{}, err
	}
	return floorRun{CPU: cpu[0], Wall: wall, Done: done}, nil
}
