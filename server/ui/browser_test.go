package ui

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/streamd/streamd/server/ui/uitest"
)

// The page's conditions, as JavaScript expressions, shared with
// cmd/streamd's dashboard test through the same test IDs.
const (
	jsSeriesPoints = `Object.fromEntries([...document.querySelectorAll('[data-testid=checkpoint-chart] path[data-series]')].map(p => [p.dataset.series, (p.getAttribute('d').match(/[ML]/g) || []).length]))`
	jsChartReady   = `(() => { const s = ` + jsSeriesPoints + `; const v = Object.values(s); return v.length === 6 && v.every(n => n >= 2); })()`
	jsCompleted    = `Number((document.querySelector('[data-testid=checkpoints-completed]') || {}).textContent || 0)`
)

func wait(b *uitest.Browser, what, cond, diag string) {
	b.WaitFor(what, cond, diag, 30*time.Second)
}

// TestDashboardAgainstFakeAPI renders the page in headless Chromium against
// fixture JSON: the jobs list, the task graph with its colours, the chart,
// the checkpoint tables, HTML in names shown as text, a daemon that goes
// away and comes back, and refreshes that never overlap.
func TestDashboardAgainstFakeAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	fake, srv := newFakeAPI(t, "")
	b := uitest.NewBrowser(t)
	b.Do(chromedp.EmulateViewport(uitest.ViewportWidth, uitest.ViewportHeight), chromedp.Navigate(srv.URL+"/"))

	wait(b, "the job rows", `document.querySelectorAll('[data-testid=job-row]').length === 3`, `document.querySelector('[data-testid=jobs]').innerText`)
	// The running job is selected by default, though it is listed second.
	wait(b, "job counts selected", `document.getElementById('job-name').textContent === 'counts'`, `document.getElementById('job-name').textContent`)
	wait(b, "the task graph", `document.querySelectorAll('[data-testid=task-graph] [data-testid=graph-vertex]').length === 4 && document.querySelectorAll('[data-testid=task-graph] [data-testid=graph-edge]').length === 3`,
		`document.querySelector('[data-testid=task-graph]').outerHTML.slice(0, 500)`)
	wait(b, "a chart with 6 series of >= 2 points", jsChartReady, jsSeriesPoints)
	wait(b, ">= 2 completed checkpoints", jsCompleted+` >= 2`, jsCompleted)
	wait(b, "a failed checkpoint marked on the chart", `document.querySelectorAll('[data-testid=checkpoint-chart] [data-testid=failed-checkpoint]').length >= 1`, jsSeriesPoints)

	// Edges are coloured by the producer's backpressure, Flink's thresholds.
	edges := uitest.Run(b, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll('[data-testid=graph-edge]')].map(e => [e.dataset.from + '>' + e.dataset.to, e.getAttribute('class')]))`))
	for k, want := range map[string]string{"v0>v1": "edge bp-ok", "v1>v2": "edge bp-low", "v2>v3": "edge bp-high"} {
		if edges[k] != want {
			t.Errorf("edge %s has class %q, want %q", k, edges[k], want)
		}
	}
	labels := uitest.Run(b, chromedp.Evaluate[string](`document.querySelector('[data-testid=task-graph]').textContent`))
	for _, want := range []string{"1.3M rec/s", "keyed · bp 30%", "parallelism 4", "key_by -> count", "backpressure 70%"} {
		if !strings.Contains(labels, want) {
			t.Errorf("the task graph does not say %q: %q", want, labels)
		}
	}
	titles := uitest.Run(b, chromedp.Evaluate[string](`[...document.querySelectorAll('[data-testid=graph-vertex] title')].map(e => e.textContent).join('|')`))
	for _, want := range []string{"watermark 2015-07-15T00:00:00.000Z", "watermark —"} {
		if !strings.Contains(titles, want) {
			t.Errorf("the vertices' titles do not say %q: %q", want, titles)
		}
	}
	about := uitest.Run(b, chromedp.Evaluate[string](`document.getElementById('job-id').textContent + '|' + document.querySelector('[data-testid=savepoints]').innerText + '|' + document.querySelector('[data-testid=failures]').innerText + '|' + document.querySelector('[data-testid=graph-edge][data-from=v2] title').textContent`))
	for _, want := range []string{"parallelism 2 · restart strategy exponential_delay", "#3\t", "/srv/savepoints/counts-3", "disk full restarted", "ring occupancy 95% (973 of 1,024 slots)"} {
		if !strings.Contains(about, want) {
			t.Errorf("the job's details do not say %q: %q", want, about)
		}
	}
	// Every series is drawn with its class, so the legend's colours match.
	legend := uitest.Run(b, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#legend .legend-item')].map(e => e.textContent)`))
	if len(legend) != 7 || legend[0] != "end-to-end" {
		t.Errorf("legend %q, want the 6 series and the failed mark", legend)
	}
	// The tables: latest, summary, history.
	latest := uitest.Run(b, chromedp.Evaluate[string](`document.querySelector('[data-testid=checkpoints-latest]').innerText`))
	for _, want := range []string{"Completed", "Failed", "checkpoint expired before completing", "Restored\t#3"} {
		if !strings.Contains(latest, want) {
			t.Errorf("the latest checkpoints table does not say %q:\n%s", want, latest)
		}
	}
	summary := uitest.Run(b, chromedp.Evaluate[string](`document.querySelector('[data-testid=checkpoints-summary]').innerText`))
	if !strings.Contains(summary, "End-to-end\t20 ms\t35 ms\t35 ms\t45 ms\t50 ms\t50 ms") || !strings.Contains(summary, "Sync\t80 µs\t90 µs") {
		t.Errorf("summary table:\n%s", summary)
	}

	// The history table shows the newest 20 of the API's 25; the chart all.
	hist := uitest.Run(b, chromedp.Evaluate[string](`document.querySelectorAll('[data-testid=checkpoints-history] tbody tr').length + '|' + document.getElementById('cp-history-note').textContent + '|' + document.querySelector('[data-testid=checkpoint-chart] path[data-series=end_to_end_duration]').dataset.points`))
	var rows, total, points int
	if n, _ := fmt.Sscanf(hist, "%d|the newest 20 of %d (the chart shows them all)|%d", &rows, &total, &points); n != 3 || rows != 20 || total <= 20 || total > fakeHistory || points < 15 {
		t.Errorf("history rows|note|chart points = %q", hist)
	}

	// HTML in a job's name and in a failure message is text, never markup.
	row := uitest.Run(b, chromedp.Evaluate[string](`document.querySelector('[data-testid=job-row][data-job-id=evil] td a').textContent`))
	if row != evilName {
		t.Errorf("the evil job's row shows %q, want its name as text", row)
	}
	b.Click(`[data-testid=job-row][data-job-id=evil] td:nth-child(3)`)
	wait(b, "the evil job's failures", `[...document.querySelectorAll('[data-testid=failure]')].some(li => li.textContent.endsWith(`+jsString(evilMessage)+`))`,
		`[...document.querySelectorAll('[data-testid=failure]')].map(li => li.textContent)`)
	if got := uitest.Run(b, chromedp.Evaluate[string](`document.getElementById('job-name').textContent`)); got != evilName {
		t.Errorf("job name %q, want %q", got, evilName)
	}
	if got := uitest.Run(b, chromedp.Evaluate[string](`document.querySelector('[data-testid=restarts]').textContent + '|' + location.hash`)); got != "3|#job=evil" {
		t.Errorf("restarts|hash = %q", got)
	}
	if got := uitest.Run(b, chromedp.Evaluate[string](`[...document.querySelectorAll('[data-testid=failure]')].map(li => li.textContent.replace(/^\S+ \S+ /, '')).join('|')`)); got != evilMessage+"|first failure" {
		t.Errorf("failures, newest first: %q", got)
	}
	if n := uitest.Run(b, chromedp.Evaluate[int](`document.querySelectorAll('img, b').length + (window.__pwned ? 1000 : 0)`)); n != 0 {
		t.Errorf("API data was parsed as HTML: %d elements or a script ran", n)
	}
	wait(b, "an empty chart for a job without checkpoints", `document.querySelector('[data-testid=checkpoint-chart]').textContent.includes('no completed checkpoint yet')`, jsSeriesPoints)
	// A job with most fields missing renders without an error.
	b.Click(`[data-testid=job-row][data-job-id=sparse] td:nth-child(2)`)
	wait(b, "the sparse job", `document.getElementById('job-name').textContent === 'sparse' && document.querySelector('[data-testid=task-graph]').textContent.includes('no tasks') && document.querySelector('[data-testid=connection]').textContent === 'live'`,
		`[document.getElementById('job-name').textContent, document.querySelector('[data-testid=connection]').textContent]`)
	b.Click(`[data-testid=job-row][data-job-id=counts] a`)
	wait(b, "job counts selected again", `document.getElementById('job-name').textContent === 'counts'`, `document.getElementById('job-name').textContent`)
	wait(b, "the chart again", jsChartReady, jsSeriesPoints)

	// Slow answers, longer than the refresh interval: the page waits for
	// one refresh to end before it starts the next. A refresh sends the
	// jobs list, then the job and its checkpoints at once: 2 at most.
	fake.maxInflight.Store(0)
	fake.delayMs.Store(1500)
	time.Sleep(5 * time.Second)
	fake.delayMs.Store(0)
	if m := fake.maxInflight.Load(); m > 2 || m == 0 {
		t.Errorf("%d API requests were in flight at once, want 1 or 2 (refreshes must not overlap)", m)
	}

	// The daemon goes away and comes back.
	fake.down.Store(true)
	wait(b, "disconnected", `document.querySelector('[data-testid=connection]').textContent.startsWith('disconnected') && document.getElementById('main').classList.contains('stale')`,
		`document.querySelector('[data-testid=connection]').textContent`)
	before := uitest.Run(b, chromedp.Evaluate[int](jsCompleted))
	fake.down.Store(false)
	wait(b, "connected again", `document.querySelector('[data-testid=connection]').textContent === 'live' && !document.getElementById('main').classList.contains('stale')`,
		`document.querySelector('[data-testid=connection]').textContent`)
	wait(b, "checkpoints counted again", jsCompleted+` > `+jsonNum(before), jsCompleted)

	b.SaveScreenshot("dashboard-fake.png")
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}

// TestDashboardAsksForToken: a daemon with an auth token answers 401; the
// page asks for the token, keeps it for the tab's session and sends it.
func TestDashboardAsksForToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	fake, srv := newFakeAPI(t, "s3cret")
	b := uitest.NewBrowser(t)
	b.Do(chromedp.Navigate(srv.URL + "/"))
	visible := `!document.querySelector('[data-testid=auth-form]').hidden`
	wait(b, "the token form", visible, `document.querySelector('[data-testid=connection]').textContent`)

	b.Do(chromedp.SendKeys(chromedp.CSS("#token"), "wrong"), chromedp.Click(chromedp.CSS("#auth button")))
	wait(b, "the wrong token refused", visible+` && document.getElementById('auth-error').textContent.includes('refused')`, `document.getElementById('auth-error').textContent`)

	b.Do(chromedp.SendKeys(chromedp.CSS("#token"), "s3cret"), chromedp.Click(chromedp.CSS("#auth button")))
	wait(b, "the jobs with the token", `document.querySelectorAll('[data-testid=job-row]').length === 3 && !(`+visible+`)`, `document.body.innerText`)
	if got := uitest.Run(b, chromedp.Evaluate[string](`sessionStorage.getItem('streamd.token')`)); got != "s3cret" {
		t.Errorf("sessionStorage holds %q", got)
	}
	refused := fake.unauthed.Load()
	b.Do(chromedp.Reload())
	wait(b, "the jobs after a reload, without asking again", `document.querySelectorAll('[data-testid=job-row]').length === 3 && !(`+visible+`)`, `document.body.innerText`)
	wait(b, "the chart after a reload", jsChartReady, jsSeriesPoints)
	if n := fake.unauthed.Load(); n != refused {
		t.Errorf("after the reload %d more requests were refused: the token was not kept", n-refused)
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func jsonNum(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
