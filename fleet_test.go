package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pollbridge/pollbridge/bridge/store/redisstore"
	"github.com/pollbridge/pollbridge/bridge/store/redisstore/redistest"
)

// The fleet tests run three pollbridge processes against one Redis, one
// API and one receiver, mutate the API through its own interface, and check
// that the receiver heard every change exactly as it happened.

// cleanRedisPrefix deletes every key under prefix when the test ends, on
// one server or on every master of a cluster (a URL with addr=).
func cleanRedisPrefix(t *testing.T, url, prefix string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		del := func(ctx context.Context, c *redis.Client) error {
			iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				c.Del(ctx, iter.Val())
			}
			return iter.Err()
		}
		if strings.Contains(url, "addr=") {
			opt, err := redis.ParseClusterURL(url)
			if err != nil {
				return
			}
			c := redis.NewClusterClient(opt)
			defer c.Close()
			c.ForEachMaster(ctx, del)
			return
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		c := redis.NewClient(opt)
		defer c.Close()
		del(ctx, c)
	})
}

// fleetAPI serves several collections, one per source, at /NAME.
type fleetAPI struct {
	*httptest.Server
	mu      sync.Mutex
	items   map[string]map[string]int // source → key → version
	version int
	served  map[string]bool // "source/key@version" served at least once
}

func newFleetAPI(t *testing.T, sources []string, perSource int) *fleetAPI {
	a := &fleetAPI{items: map[string]map[string]int{}, served: map[string]bool{}}
	for _, s := range sources {
		a.items[s] = map[string]int{}
		for i := range perSource {
			a.version++
			a.items[s][fmt.Sprint("k", i)] = a.version
		}
	}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		src := strings.TrimPrefix(r.URL.Path, "/")
		list := []map[string]any{}
		for k, v := range a.items[src] {
			list = append(list, map[string]any{"id": k, "version": v})
			a.served[fmt.Sprintf("%s/%s@%d", src, k, v)] = true
		}
		sort.Slice(list, func(i, j int) bool { return list[i]["id"].(string) < list[j]["id"].(string) })
		json.NewEncoder(w).Encode(list)
	}))
	t.Cleanup(a.Close)
	return a
}

// mutate makes one random change: update (most often), create or delete.
func (a *fleetAPI) mutate(rng *rand.Rand, sources []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	src := sources[rng.IntN(len(sources))]
	items := a.items[src]
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	a.version++
	switch op := rng.IntN(10); {
	case op < 2 || len(keys) < 3:
		items[fmt.Sprint("n", a.version)] = a.version
	case op < 3:
		delete(items, keys[rng.IntN(len(keys))])
	default:
		items[keys[rng.IntN(len(keys))]] = a.version
	}
}

func (a *fleetAPI) state() map[string]map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]map[string]int{}
	for s, items := range a.items {
		out[s] = map[string]int{}
		for k, v := range items {
			out[s][k] = v
		}
	}
	return out
}

// replay folds the webhooks received (de-duplicated by webhook-id) onto the
// baseline, giving what the receiver believes each source holds.
func replay(baseline map[string]map[string]int, got []hook) map[string]map[string]int {
	out := map[string]map[string]int{}
	for s, items := range baseline {
		out[s] = map[string]int{}
		for k, v := range items {
			out[s][k] = v
		}
	}
	seen := map[string]bool{}
	for _, h := range got {
		if seen[h.ID] {
			continue
		}
		seen[h.ID] = true
		if h.Type == "item.deleted" {
			delete(out[h.Data.Source], h.Data.Key)
		} else {
			out[h.Data.Source][h.Data.Key] = int(h.Data.Item["version"].(float64))
		}
	}
	return out
}

func sameState(a, b map[string]map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for s := range a {
		if len(a[s]) != len(b[s]) {
			return false
		}
		for k, v := range a[s] {
			if w, ok := b[s][k]; !ok || w != v {
				return false
			}
		}
	}
	return true
}

func randomPrefix(t *testing.T) string {
	b := make([]byte, 4)
	crand.Read(b)
	return "pbtest-" + hex.EncodeToString(b) + ":"
}

// fleetConfig writes the configuration of a fleet replica: state in the
// Redis at url under prefix, one sink "app" at hookURL (3s timeout, fast
// retries, an X-Replica header from $REPLICA) and one source per name,
// polled every second at apiURL/NAME.
func fleetConfig(t *testing.T, url, prefix, apiURL, hookURL string, sources []string) string {
	t.Helper()
	var srcYAML strings.Builder
	for _, s := range sources {
		fmt.Fprintf(&srcYAML, "  - {name: %s, schedule: \"@every 1s\", url: \"%s/%s\", key: id}\n", s, apiURL, s)
	}
	return writeFile(t, t.TempDir(), "fleet.yaml", fmt.Sprintf(`
state:
  redis: {url: "%s", prefix: "%s"}
log: {level: debug}
shutdown_timeout: 2s
sinks:
  - name: app
    url: %s
    secret: %s
    timeout: 3s
    headers: {X-Replica: "${REPLICA}"}
    retry: {initial_backoff: 100ms, max_backoff: 500ms}
sources:
%s`, url, prefix, hookURL, secret, srcYAML.String()))
}

// runFleet runs the fleet scenario against the Redis at url. With kill set,
// one replica is killed with SIGKILL in the middle of the mutations.
func runFleet(t *testing.T, url string, kill bool) {
	const replicas, mutations = 3, 60
	sources := []string{"s0", "s1", "s2", "s3", "s4", "s5"}
	prefix := randomPrefix(t)
	cleanRedisPrefix(t, url, prefix)
	api, recv := newFleetAPI(t, sources, 5), newHookReceiver(t)
	if kill {
		// Slow deliveries, so that the killed replica dies holding claims
		// that the others must take over after the claim lease.
		recv.delay = 300 * time.Millisecond
	}
	baseline := api.state()

	cfg := fleetConfig(t, url, prefix, api.URL, recv.URL, sources)

	var fleet []*daemon
	for i := range replicas {
		fleet = append(fleet, startDaemon(t, cfg, fmt.Sprintf("REPLICA=r%d", i)))
	}
	waitFor(t, "baselines of every source", 20*time.Second, func() bool {
		n := 0
		for _, d := range fleet {
			n += strings.Count(d.stderr.String(), "baseline recorded")
		}
		return n >= len(sources)
	})

	rng := rand.New(rand.NewPCG(1, 2))
	inFlightFromR0 := func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return recv.inFlight["r0"] > 0
	}
	killed := false
	for i := range mutations {
		api.mutate(rng, sources)
		if kill && !killed && i >= mutations/2 && inFlightFromR0() {
			fleet[0].kill9(t) // replica 0 dies with a delivery in flight
			killed = true
			t.Logf("killed replica 0 with a delivery in flight after mutation %d", i)
		}
		time.Sleep(50 * time.Millisecond) // the pace of the API's own users
	}
	if kill && !killed {
		waitFor(t, "a delivery in flight from replica 0", 30*time.Second, func() bool {
			api.mutate(rng, sources)
			time.Sleep(20 * time.Millisecond)
			return inFlightFromR0()
		})
		fleet[0].kill9(t)
		t.Log("killed replica 0 with a delivery in flight after the mutations")
	}
	want := api.state()
	settle := time.Now()
	waitFor(t, "every change delivered", 60*time.Second, func() bool {
		return sameState(replay(baseline, recv.got()), want)
	})
	t.Logf("all changes delivered %v after the last mutation", time.Since(settle).Round(time.Millisecond))
	// Every outbox entry, including what the killed replica had claimed,
	// is finished by the survivors once its claim lease runs out.
	st, err := redisstore.Open(context.Background(), redisstore.Options{URL: url, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	waitFor(t, "an empty outbox", 30*time.Second, func() bool {
		stats, err := st.Stats(context.Background(), time.Now())
		return err == nil && stats["app"].Pending+stats["app"].Retrying+stats["app"].Dead == 0
	})
	t.Logf("outbox empty %v after the last mutation", time.Since(settle).Round(time.Millisecond))

	got := recv.got()
	ids := map[string]int{}
	for _, h := range got {
		ids[h.ID]++
		if h.Type != "item.deleted" {
			v := int(h.Data.Item["version"].(float64))
			api.mu.Lock()
			real := api.served[fmt.Sprintf("%s/%s@%d", h.Data.Source, h.Data.Key, v)]
			api.mu.Unlock()
			if !real {
				t.Errorf("invented event %s %s/%s version %d", h.Type, h.Data.Source, h.Data.Key, v)
			}
		}
	}
	dups := 0
	for _, n := range ids {
		dups += n - 1
	}
	t.Logf("%d webhooks, %d distinct changes, %d duplicate deliveries", len(got), len(ids), dups)
	if !kill && dups > 0 {
		t.Errorf("%d duplicate webhook-ids in normal operation", dups)
	}
	if kill && dups > 4 {
		// Only the killed replica's claims (4 slots) are sent twice; an
		// attempt timing out at a slow receiver could add more, but with a
		// 3s timeout and 300ms answers it does not happen.
		t.Errorf("%d duplicate deliveries: more than the killed replica's 4 delivery slots could hold", dups)
	}
	for _, d := range fleet[boolToInt(kill):] {
		d.term(t)
	}
	for i, d := range fleet[boolToInt(kill):] {
		if strings.Count(d.stderr.String(), "msg=polled") == 0 {
			t.Errorf("replica %d never polled: work is not shared", i)
		}
	}
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestFleetSharesWorkAndDeliversEveryChangeOnce(t *testing.T) {
	runFleet(t, redistest.LocalURL(t), false)
}

func TestFleetSurvivesAReplicaKilledMidRun(t *testing.T) {
	runFleet(t, redistest.LocalURL(t), true)
}

// TestFleetOnRedisCluster runs the fleet scenario against a three-master
// Redis Cluster of its own: the six sources' keys spread over the shards,
// and the ready index of the sink lives on one of them.
func TestFleetOnRedisCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{{"normal", false}, {"kill-one-replica", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := redistest.StartCluster(t)
			checkSourcesSpread(t, cl.URL(), []string{"s0", "s1", "s2", "s3", "s4", "s5"})
			runFleet(t, cl.URL(), tc.kill)
		})
	}
}

// checkSourcesSpread asserts that the sources' hash tags do not all fall on
// one master, so the cluster run really exercises more than one shard.
func checkSourcesSpread(t *testing.T, url string, sources []string) {
	t.Helper()
	opt, err := redis.ParseClusterURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClusterClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	masters := map[string]bool{}
	for _, s := range sources {
		slot, err := c.ClusterKeySlot(ctx, "{"+s+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) {
				masters[r.Nodes[0].Addr] = true
			}
		}
	}
	if len(masters) < 2 {
		t.Fatalf("sources %v all hash to one master; the cluster run would test one shard", sources)
	}
	t.Logf("sources spread over %d masters", len(masters))
}

// A rolling restart (SIGTERM one replica, start its successor, next) while
// the API changes loses no event and, since every replica drains before it
// exits, sends none twice.
func TestFleetRollingRestartLosesNothing(t *testing.T) {
	url := redistest.LocalURL(t)
	sources := []string{"s0", "s1", "s2", "s3"}
	prefix := randomPrefix(t)
	cleanRedisPrefix(t, url, prefix)
	api, recv := newFleetAPI(t, sources, 5), newHookReceiver(t)
	recv.delay = 50 * time.Millisecond // deliveries are in flight when SIGTERM comes
	baseline := api.state()
	cfg := fleetConfig(t, url, prefix, api.URL, recv.URL, sources)

	var fleet []*daemon
	for i := range 3 {
		fleet = append(fleet, startDaemon(t, cfg, fmt.Sprintf("REPLICA=r%d", i)))
	}
	waitFor(t, "baselines of every source", 20*time.Second, func() bool {
		n := 0
		for _, d := range fleet {
			n += strings.Count(d.stderr.String(), "baseline recorded")
		}
		return n >= len(sources)
	})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range fleet {
		for range 8 {
			api.mutate(rng, sources)
			time.Sleep(50 * time.Millisecond) // the pace of the API's own users
		}
		fleet[i].term(t) // drains in-flight polls and deliveries, exits 0
		fleet[i] = startDaemon(t, cfg, fmt.Sprintf("REPLICA=r%d-new", i))
	}
	want := api.state()
	waitFor(t, "every change delivered", 30*time.Second, func() bool {
		return sameState(replay(baseline, recv.got()), want)
	})
	got := recv.got()
	ids := map[string]int{}
	dups := 0
	for _, h := range got {
		if ids[h.ID]++; ids[h.ID] > 1 {
			dups++
		}
	}
	t.Logf("%d webhooks, %d distinct, %d duplicates over a rolling restart of 3 replicas", len(got), len(ids), dups)
	if dups > 0 {
		t.Errorf("%d duplicate deliveries: a draining replica left work half done", dups)
	}
	for _, d := range fleet {
		d.term(t)
	}
}
