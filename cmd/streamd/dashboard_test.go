package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/streamd/streamd/server/ui/uitest"
)

// dashboardJob is the job the dashboard test submits: unbounded, throttled
// so that the two cores stay free for the browser, keyed, checkpointed
// every 200 ms, into a file sink (%s: the sink's directory).
const dashboardJob = `name: dashboard
parallelism: 2
source: {type: sequence, keys: 1000, rate: 20000}
pipeline:
  - filter: "seq %% 7 != 3"
  - key_by: key
  - count: {}
sink: {type: file, path: %s}
checkpointing: {interval: 200ms, mode: exactly_once}
`

// TestDashboardEndToEnd starts `streamd serve` as a real process, submits
// a job over HTTP, and opens the dashboard in headless Chromium: the job's
// row, its task graph, its completed checkpoints and the chart with every
// series must appear, with records flowing on the graph's edges. It saves a
// full-page screenshot: to docs/dashboard.png (the README's) with
// STREAMD_UPDATE_SCREENSHOT=1 (make screenshot), else into the test's
// temporary directory (or $STREAMD_SCREENSHOT_DIR). Then it stops the job
// over the API, sees the page show it, and stops the daemon with SIGTERM.
func TestDashboardEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd and starts a browser")
	}
	update := os.Getenv("STREAMD_UPDATE_SCREENSHOT") == "1"
	b := uitest.NewBrowser(t) // first: skips (or fails in CI) without Chromium
	bin := buildStreamd(t)
	dir := t.TempDir()
	d := startServe(t, bin, dir, filepath.Join(dir, "data"))
	out := filepath.Join(dir, "out") + "/"

	var sub struct{ ID string }
	d.mustJSON("POST", "/v1/jobs", fmt.Sprintf(dashboardJob, out), http.StatusCreated, &sub)
	if sub.ID == "" {
		t.Fatal("POST /v1/jobs answered no id")
	}
	id := sub.ID
	t.Logf("daemon on %s, job %s", d.addr, id)

	b.Do(chromedp.EmulateViewport(uitest.ViewportWidth, uitest.ViewportHeight), chromedp.Navigate("http://"+d.addr+"/"))
	const timeout = 60 * time.Second
	row := `document.querySelector('[data-testid=job-row][data-job-id=` + jsQuote(id) + `]')`
	b.WaitFor("the job's row", row+` !== null && `+row+`.textContent.includes('RUNNING')`, `document.querySelector('[data-testid=jobs]').innerText`, timeout)
	b.WaitFor("the job's task graph",
		`document.querySelectorAll('[data-testid=task-graph] [data-testid=graph-vertex]').length >= 2 && document.querySelectorAll('[data-testid=task-graph] [data-testid=graph-edge]').length >= 1`,
		`document.querySelector('[data-testid=task-graph]').textContent`, timeout)
	// Records flow: some edge carries a nonzero rate.
	b.WaitFor("records per second on an edge",
		`[...document.querySelectorAll('[data-testid=graph-edge] .edge-label')].some(e => e.textContent.endsWith(' rec/s') && parseFloat(e.textContent) > 0)`,
		`[...document.querySelectorAll('[data-testid=graph-edge] .edge-label')].map(e => e.textContent)`, timeout)
	completed := `Number((document.querySelector('[data-testid=checkpoints-completed]') || {}).textContent || 0)`
	points := `Object.fromEntries([...document.querySelectorAll('[data-testid=checkpoint-chart] path[data-series]')].map(p => [p.dataset.series, (p.getAttribute('d').match(/[ML]/g) || []).length]))`
	b.WaitFor(">= 2 completed checkpoints", completed+` >= 2`, completed, timeout)
	b.WaitFor("the checkpoint chart with every series of >= 2 points",
		`(() => { const v = Object.values(`+points+`); return v.length === 6 && v.every(n => n >= 2); })()`, points, timeout)

	// The page agrees with the API.
	var cps struct {
		Counts struct{ Completed int }
	}
	d.mustJSON("GET", "/v1/jobs/"+id+"/checkpoints", "", http.StatusOK, &cps)
	shown := uitest.Run(b, chromedp.Evaluate[int](completed))
	if shown < 2 || shown > cps.Counts.Completed {
		t.Errorf("the page shows %d completed checkpoints, the API %d afterwards", shown, cps.Counts.Completed)
	}

	// A fuller chart for the README.
	want := 5
	if update {
		want = 25
	}
	b.WaitFor(fmt.Sprintf(">= %d completed checkpoints", want), completed+` >= `+fmt.Sprint(want), completed, timeout)
	time.Sleep(1500 * time.Millisecond) // a second refresh of the rates
	if update {
		png := b.Screenshot()
		if err := os.MkdirAll("../../docs", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/dashboard.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: docs/dashboard.png (%d bytes)", len(png))
	} else {
		b.SaveScreenshot("dashboard.png")
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}

	// Stop the job: the page shows it stopped, with committed output.
	d.mustJSON("POST", "/v1/jobs/"+id+"/stop", "", http.StatusOK, nil)
	b.WaitFor("the job shown STOPPED", row+`.textContent.includes('STOPPED')`, row+`.textContent`, timeout)
	files, _ := filepath.Glob(filepath.Join(out, "*.jsonl"))
	if len(files) == 0 {
		t.Errorf("the stopped job committed no output in %s", out)
	}

	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("streamd serve exited %d after SIGTERM:\n%s", code, d.out)
	}
	b.WaitFor("the page disconnected", `document.querySelector('[data-testid=connection]').textContent.startsWith('disconnected')`,
		`document.querySelector('[data-testid=connection]').textContent`, 10*time.Second)
}

// TestDashboardAuthToken: a daemon started with --auth-token serves the
// page without the token (the page holds no data) but refuses its API; the
// page asks for the token, and with it shows the job.
func TestDashboardAuthToken(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd and starts a browser")
	}
	b := uitest.NewBrowser(t)
	bin := buildStreamd(t)
	dir := t.TempDir()
	const token = "dashboard-test-token"
	d := startServe(t, bin, dir, filepath.Join(dir, "data"), "--auth-token", token)
	d.mustJSON("GET", "/v1/jobs", "", http.StatusUnauthorized, nil)
	d.token = token
	var sub struct{ ID string }
	d.mustJSON("POST", "/v1/jobs", fmt.Sprintf(dashboardJob, filepath.Join(dir, "out")+"/"), http.StatusCreated, &sub)

	b.Do(chromedp.Navigate("http://" + d.addr + "/"))
	const timeout = 60 * time.Second
	form := `!document.querySelector('[data-testid=auth-form]').hidden`
	b.WaitFor("the page asking for the token", form, `document.querySelector('[data-testid=connection]').textContent`, timeout)
	b.Do(chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#auth button")))
	row := `document.querySelector('[data-testid=job-row][data-job-id=` + jsQuote(sub.ID) + `]')`
	b.WaitFor("the job's row with the token", row+` !== null && !(`+form+`)`, `document.body.innerText`, timeout)
	b.WaitFor("the job's checkpoints with the token", `Number(document.querySelector('[data-testid=checkpoints-completed]').textContent) >= 1`, `document.body.innerText`, timeout)
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("streamd serve exited %d after SIGTERM:\n%s", code, d.out)
	}
}

// jsQuote returns s as a JavaScript string literal (JSON's syntax is a
// subset), for CSS attribute selectors and expressions.
func jsQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
