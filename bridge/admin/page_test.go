package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium for the test, or skips (fails under CI)
// when it is not installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: CI installs it (apt-get install chromium)", chromiumPath)
		}
		t.Skipf("%s missing (apt-get install chromium); CI runs this test", chromiumPath)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelAlloc)
	var mu sync.Mutex
	var errs []string
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, fmt.Sprintf(f, a...))
	}))
	t.Cleanup(func() {
		cancelTab()
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() && len(errs) > 0 {
			t.Logf("chromedp errors: %s", strings.Join(errs, "\n"))
		}
	})
	// Start the browser now, on the tab's own context: steps then run
	// under shorter timeouts without taking it down when they end.
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return tabCtx
}

// The status page end to end in a real browser: the token prompt, a failing
// source flagged, a dead letter replayed with a click and delivered.
func TestStatusPageInBrowser(t *testing.T) {
	const token = "page-test-token"
	orders, broken, r := newAPI(t, "1"), newAPI(t), newReceiver(t, http.StatusUnprocessableEntity)
	broken.setFail(true)
	d := startDaemon(t, testConfig(orders.URL, broken.URL, r.URL), token)
	// One dead letter (the receiver refuses the event) and a failing source.
	if status, body := d.call(t, "POST", "/api/sources/orders/poll", token); status != 200 {
		t.Fatalf("poll orders: %d %s", status, body)
	}
	eventually(t, "a dead letter", func() bool { return d.sink(t, "app", token).Outbox.Dead == 1 })
	d.call(t, "POST", "/api/sources/broken/poll", token)

	ctx := browser(t)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	waitJS := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, html)
		}
	}

	// The page asks for the token; the API refused it without one.
	step("load the page", chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(chromedp.ID("auth")))
	step("enter the token",
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("save-token")))
	waitJS("the data to load", `document.body.dataset.loaded === "true"`)
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("pollbridge.admin.token")`))
	if err != nil || stored != token {
		t.Fatalf("token in sessionStorage: %q %v", stored, err)
	}
	if hidden, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("auth").hidden`)); !hidden {
		t.Error("the token prompt stays after a good token")
	}

	// The failing source is flagged with its error; the healthy one is ok.
	waitJS("the failing source flagged", `(() => {
		const row = document.querySelector('tr[data-source="broken"]');
		return row !== null && /failing|backing/.test(row.querySelector(".health").className) &&
			row.textContent.includes("upstream exploded");
	})()`)
	okText, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-source="orders"] .health').textContent`))
	if err != nil || okText != "ok" {
		t.Errorf("orders health: %q %v", okText, err)
	}
	waitJS("one dead letter shown", `document.querySelector('tr[data-sink="app"] .dead').textContent === "1" &&
		document.querySelectorAll("#dead tbody tr").length === 1 &&
		document.querySelector("#dead tbody").textContent.includes("422")`)

	// The sink's deliveries, expanded: the dead letter with its attempts
	// and error, nothing retrying.
	step("expand the sink's deliveries", clickJS(`tr[data-sink="app"] button.details`))
	waitJS("the sink's dead letter listed", `(() => {
		const detail = document.querySelector('tr[data-sink-detail="app"]');
		if (detail === null) return false;
		const rows = detail.querySelectorAll(".deliveries.dead tbody tr");
		return rows.length === 1 && rows[0].textContent.includes("orders/1") && rows[0].textContent.includes("422") &&
			rows[0].querySelector(".attempts").textContent === "1" &&
			detail.querySelector(".deliveries.retrying").textContent.includes("none");
	})()`)

	// Replay the sink's dead letters with the button: delivered this time.
	r.setStatus(http.StatusOK)
	step("press replay", clickJS(`tr[data-sink="app"] button.replay`))
	eventually(t, "the receiver to get the replayed event", func() bool { return r.received() == 1 })
	waitJS("the dead letter gone from the page", `document.querySelector('tr[data-sink="app"] .dead').textContent === "0" &&
		document.querySelectorAll("#dead tbody tr").length === 0 &&
		document.getElementById("message").textContent.includes("Replayed 1")`)

	// Pause and resume from the page.
	step("press pause", clickJS(`tr[data-sink="app"] button.pause`))
	waitJS("the sink paused", `document.querySelector('tr[data-sink="app"] .state').textContent === "paused"`)
	if st, _ := d.Engine.SinkStatus("app"); st.State != "paused" {
		t.Errorf("after pressing pause the sink is %q", st.State)
	}
	step("press resume", clickJS(`tr[data-sink="app"] button.resume`))
	waitJS("the sink active", `document.querySelector('tr[data-sink="app"] .state').textContent === "active"`)

	// Poll now from the page: the new item is delivered.
	orders.add("2")
	step("press poll now", clickJS(`tr[data-source="orders"] button.poll`))
	eventually(t, "the new item delivered", func() bool { return r.received() == 2 })
	waitJS("the item count updated", `document.querySelector('tr[data-source="orders"] .items').textContent === "2"`)

	// A receiver failing with 503: the new item's delivery shows as
	// retrying under the still expanded sink, then goes once it is
	// delivered.
	r.setStatus(http.StatusServiceUnavailable)
	orders.add("3")
	step("press poll now again", clickJS(`tr[data-source="orders"] button.poll`))
	eventually(t, "a retrying delivery", func() bool { return d.sink(t, "app", token).Outbox.Retrying == 1 })
	step("refresh", clickJS(`#refresh`))
	waitJS("the retrying delivery listed", `(() => {
		const rows = document.querySelectorAll('tr[data-sink-detail="app"] .deliveries.retrying tbody tr');
		return rows.length === 1 && rows[0].textContent.includes("orders/3") && rows[0].textContent.includes("503") &&
			rows[0].textContent.includes("item.created") && Number(rows[0].querySelector(".attempts").textContent) >= 1;
	})()`)
	r.setStatus(http.StatusOK)
	if err := d.Engine.ResumeSink("app"); err != nil { // closes the circuit the failures may have opened
		t.Fatal(err)
	}
	eventually(t, "the retried item delivered", func() bool { return r.received() == 3 })
	step("refresh", clickJS(`#refresh`))
	waitJS("nothing retrying", `document.querySelector('tr[data-sink-detail="app"] .deliveries.retrying').textContent.includes("none")`)
	step("hide the sink's deliveries", clickJS(`tr[data-sink="app"] button.details`))
	waitJS("the deliveries hidden", `document.querySelector('tr[data-sink-detail="app"]') === null`)

	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, token) {
		t.Error("the page shows the token")
	}
}

// clickJS clicks the element that selector names inside the page, in one
// step: the page re-renders its tables every few seconds, so a node found
// first and clicked after may be gone (chromedp.Click would then fail with
// "Could not find node").
func clickJS(selector string) chromedp.Action[chromedp.Void] {
	eval := chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		if (el === null) throw new Error("no element matches " + %q);
		el.click();
		return true;
	})()`, selector, selector))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := eval(ctx, t)
		return chromedp.Void{}, err
	}
}
