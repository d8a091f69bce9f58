// Package uitest drives the dashboard in headless Chromium for tests: it
// starts Debian's chromium with the flags a machine without a network
// needs, polls the page for conditions and takes screenshots. It is
// imported only by tests (server/ui's and cmd/streamd's dashboard test);
// nothing in the daemon imports it.
package uitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Viewport is the browser window's size: the dashboard must read well at it.
const (
	ViewportWidth  = 1280
	ViewportHeight = 800
)

// ChromiumPath returns the Chromium binary the tests use: $STREAMD_CHROMIUM
// when set, else the first of /usr/bin/chromium, chromium,
// chromium-browser found on $PATH; "" when there is none.
func ChromiumPath() string {
	if p := os.Getenv("STREAMD_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser is one headless Chromium with one tab, closed when the test ends.
type Browser struct {
	// Ctx is the tab's context: pass it to chromedp.Do and chromedp.Run.
	// The browser lives as long as the test; bound single calls with
	// context.WithTimeout(Ctx, …), as Run and WaitFor do.
	Ctx context.Context

	t  testing.TB
	mu struct {
		sync.Mutex
		problems []string // uncaught exceptions, console errors of the page, CSP violations
	}
}

// CallTimeout bounds one browser call of Run, Eval and Screenshot.
const CallTimeout = 30 * time.Second

// NewBrowser starts headless Chromium for t. Without Chromium the test is
// skipped with a loud reason, or fails when $CI is set (CI installs it
// with .ci/setup-chromium.sh).
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	bin := ChromiumPath()
	if bin == "" {
		msg := "NO CHROMIUM: the dashboard's browser test did not run; install it with .ci/setup-chromium.sh (Debian's chromium) or set STREAMD_CHROMIUM"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// This machine's network may be closed: every flag that makes
	// Chromium call home is off, and the profile is fresh.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(ViewportWidth, ViewportHeight),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-proxy-server", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &Browser{Ctx: ctx, t: t}
	messages := chromedp.Console(ctx) // starts the browser
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch {
			case m.IsException():
				b.problem(fmt.Sprintf("uncaught exception at %s:%d: %s", m.URL, m.Line+1, m.Text))
			case m.Source == "security" || strings.Contains(m.Text, "Content Security Policy"):
				b.problem("security: " + m.Text)
			case m.Type == chromedp.ConsoleError && m.Source == "":
				b.problem("console.error: " + m.Text)
			}
		}
	}()
	version := Run(b, chromedp.Evaluate[string](`navigator.userAgent`))
	t.Logf("browser: %s (%s)", version, bin)
	return b
}

func (b *Browser) problem(s string) {
	b.mu.Lock()
	b.mu.problems = append(b.mu.problems, s)
	b.mu.Unlock()
}

// Problems returns the uncaught exceptions, console.error calls and CSP
// violations the page reported so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.mu.problems...)
}

// Run runs one action in b's tab within CallTimeout and returns its value,
// failing the test on an error.
func Run[T any](b *Browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, CallTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v\npage text:\n%s", err, b.Text())
	}
	return v
}

// Do runs actions in b's tab within CallTimeout, failing the test on an error.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	Run(b, chromedp.Steps(actions...))
}

// Text returns the page's visible text, or why it could not be read.
func (b *Browser) Text() string {
	ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(cannot read the page: " + err.Error() + ")"
	}
	return s
}

// WaitFor polls the JavaScript expression cond until it is truthy, every
// 100 ms for up to timeout; then it fails the test naming what, with the
// value of the JavaScript expression diag at the last poll (what the page
// shows instead, as JSON) and the page's text.
func (b *Browser) WaitFor(what, cond, diag string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		cancel()
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) || b.Ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d := "(none)"
	if diag != "" {
		ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](diag))
		cancel()
		d = string(raw)
		if err != nil {
			d = "cannot evaluate the diagnostic: " + err.Error()
		}
	}
	b.t.Fatalf("timed out after %v waiting for %s (last error: %v)\nthe page says: %s\npage text:\n%s", timeout, what, lastErr, d, b.Text())
}

// Screenshot returns a PNG of the whole page, beyond the viewport.
func (b *Browser) Screenshot() []byte {
	b.t.Helper()
	return Run(b, chromedp.FullScreenshot(100))
}

// SaveScreenshot writes a PNG of the whole page to name in
// $STREAMD_SCREENSHOT_DIR when that is set (to look at it after the
// test), else in the test's temporary directory, logs its path and returns
// it.
func (b *Browser) SaveScreenshot(name string) string {
	b.t.Helper()
	png := b.Screenshot()
	dir := os.Getenv("STREAMD_SCREENSHOT_DIR")
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}

// Click clicks the first visible element that matches the CSS selector.
func (b *Browser) Click(selector string) {
	b.t.Helper()
	b.Do(chromedp.Click(chromedp.CSS(selector), chromedp.NodeVisible))
}
