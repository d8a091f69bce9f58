package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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

// daemon is a `streamd serve` process started by a test.
type daemon struct {
	cmd   *exec.Cmd
	addr  string // host:port of its HTTP listener
	token string // sent by call when not empty
	done  chan struct{}
	mu    struct {
		sync.Mutex
		log bytes.Buffer // its stderr and stdout
	}
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.log.String()
}

// startDaemon starts `streamd serve` with extra arguments on a free
// loopback port (it binds port 0 and logs the address it got) and waits
// until /healthz answers. The process is killed when the test ends, if it
// still runs.
func startDaemon(t *testing.T, bin, dataDir string, args ...string) *daemon {
	t.Helper()
	d := &daemon{done: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"serve", "--data-dir", dataDir, "--http", "127.0.0.1:0"}, args...)...)
	d.cmd.Dir = filepath.Dir(dataDir)
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("cannot start streamd serve: %v", err)
	}
	addrc := make(chan string, 1)
	serving := regexp.MustCompile(`streamd serving .*\bhttp=(\S+)`)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.mu.log.WriteString(line + "\n")
			d.mu.Unlock()
			if m := serving.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		d.cmd.Wait()
		pw.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	select {
	case d.addr = <-addrc:
	case <-d.done:
		t.Fatalf("streamd serve exited before serving (%v):\n%s", d.cmd.ProcessState, d.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("streamd serve did not log its address within 60 s:\n%s", d.log())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + d.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /healthz on %s: %v %v\n%s", d.addr, err, resp, d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends a request to the daemon's API and decodes its JSON answer
// into out (when not nil), failing the test unless the status is want.
func (d *daemon) call(t *testing.T, method, path, body string, want int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+d.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, d.log())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s\ndaemon log:\n%s", method, path, resp.StatusCode, want, b, d.log())
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: cannot decode %q: %v", method, path, b, err)
		}
	}
}

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
	d := startDaemon(t, bin, filepath.Join(dir, "data"))
	out := filepath.Join(dir, "out") + "/"

	var sub struct{ ID string }
	d.call(t, "POST", "/v1/jobs", fmt.Sprintf(dashboardJob, out), http.StatusCreated, &sub)
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
	d.call(t, "GET", "/v1/jobs/"+id+"/checkpoints", "", http.StatusOK, &cps)
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
	d.call(t, "POST", "/v1/jobs/"+id+"/stop", "", http.StatusOK, nil)
	b.WaitFor("the job shown STOPPED", row+`.textContent.includes('STOPPED')`, row+`.textContent`, timeout)
	files, _ := filepath.Glob(filepath.Join(out, "*.jsonl"))
	if len(files) == 0 {
		t.Errorf("the stopped job committed no output in %s", out)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("streamd serve did not exit within 60 s of SIGTERM:\n%s", d.log())
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("streamd serve exited %d after SIGTERM:\n%s", code, d.log())
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
	d := startDaemon(t, bin, filepath.Join(dir, "data"), "--auth-token", token)
	d.call(t, "GET", "/v1/jobs", "", http.StatusUnauthorized, nil)
	d.token = token
	var sub struct{ ID string }
	d.call(t, "POST", "/v1/jobs", fmt.Sprintf(dashboardJob, filepath.Join(dir, "out")+"/"), http.StatusCreated, &sub)

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
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("streamd serve did not exit within 60 s of SIGTERM:\n%s", d.log())
	}
}

// jsQuote returns s as a JavaScript string literal (JSON's syntax is a
// subset), for CSS attribute selectors and expressions.
func jsQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
