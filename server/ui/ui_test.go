package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, header http.Header) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServesPageAndAssets(t *testing.T) {
	h := Handler()
	f := func(path, wantType, wantInBody string) {
		t.Helper()
		resp := get(t, h, "GET", path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200", path, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != wantType {
			t.Errorf("GET %s: Content-Type %q, want %q", path, got, wantType)
		}
		if got := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(got, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q, want it to start with default-src 'self'", path, got)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", path, got)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", path, got)
		}
		if etag := resp.Header.Get("ETag"); !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) {
			t.Errorf("GET %s: ETag %q, want a quoted hash", path, etag)
		}
		if b := body(t, resp); !strings.Contains(b, wantInBody) {
			t.Errorf("GET %s: body does not contain %q", path, wantInBody)
		}
	}
	f("/", "text/html; charset=utf-8", `data-testid="checkpoint-chart"`)
	f("/index.html", "text/html; charset=utf-8", `<script src="ui/app.js" defer></script>`)
	f("/ui/app.js", "text/javascript; charset=utf-8", "function drawChart(")
	f("/ui/style.css", "text/css; charset=utf-8", ".series.s-e2e")
	f("/ui/favicon.svg", "image/svg+xml", "<svg")
}

func TestServes(t *testing.T) {
	for _, p := range []string{"/", "/index.html", "/ui/app.js", "/ui/style.css", "/ui/favicon.svg"} {
		if !Serves(p) {
			t.Errorf("Serves(%q) = false", p)
		}
	}
	for _, p := range []string{"", "/v1/jobs", "/healthz", "/metrics", "/debug/pprof/", "/ui/", "/ui/x.js", "/index.htm"} {
		if Serves(p) {
			t.Errorf("Serves(%q) = true", p)
		}
	}
}

func TestHandlerRejectsUnknownPathsAndMethods(t *testing.T) {
	h := Handler()
	for _, path := range []string{
		"/ui/", "/ui/nope.js", "/ui/app.js/", "/ui/index.html", "/ui/../embed.go",
		"/static/app.js", "/app.js", "/embed.go", "/v1/jobs", "/favicon.ico", "/ui/APP.JS",
	} {
		resp := get(t, h, "GET", path, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("GET %s: the 404 has Content-Security-Policy %q", path, got)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp := get(t, h, m, "/", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /: status %d, want 405", m, resp.StatusCode)
		}
		if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("%s /: Allow %q", m, got)
		}
	}
}

func TestHandlerRevalidates(t *testing.T) {
	h := Handler()
	first := get(t, h, "GET", "/ui/app.js", nil)
	etag := first.Header.Get("ETag")
	again := get(t, h, "GET", "/ui/app.js", http.Header{"If-None-Match": {etag}})
	if again.StatusCode != http.StatusNotModified {
		t.Fatalf("GET with If-None-Match %s: status %d, want 304", etag, again.StatusCode)
	}
	if b := body(t, again); b != "" {
		t.Fatalf("a 304 has a body of %d bytes", len(b))
	}
	other := get(t, h, "GET", "/ui/app.js", http.Header{"If-None-Match": {`"0123"`}})
	if other.StatusCode != http.StatusOK {
		t.Fatalf("GET with a stale ETag: status %d, want 200", other.StatusCode)
	}
	if get(t, h, "GET", "/ui/style.css", nil).Header.Get("ETag") == etag {
		t.Fatal("two different files have the same ETag")
	}
	head := get(t, h, "HEAD", "/", nil)
	if head.StatusCode != http.StatusOK || body(t, head) != "" {
		t.Fatalf("HEAD /: status %d with a body", head.StatusCode)
	}
}

// TestPageIsSelfContained checks, without a browser, what the CSP would
// otherwise make the browser refuse at run time: every URL in the page is
// one of our own assets, served by the handler; there is no inline script
// or style; the script and the stylesheet fetch nothing from elsewhere; and
// the script never parses API data as HTML.
func TestPageIsSelfContained(t *testing.T) {
	h := Handler()
	index := body(t, get(t, h, "GET", "/", nil))
	refs := regexp.MustCompile(`(?i)\b(src|href|action|data|poster|srcset)\s*=\s*("([^"]*)"|'([^']*)'|([^\s>]+))`).FindAllStringSubmatch(index, -1)
	if len(refs) < 3 {
		t.Fatalf("found only %d references in index.html; the pattern is broken", len(refs))
	}
	local := 0
	for _, m := range refs {
		u := m[3] + m[4] + m[5]
		if strings.HasPrefix(u, "#") {
			continue
		}
		if strings.Contains(u, ":") || strings.HasPrefix(u, "//") || strings.HasPrefix(u, "/") {
			t.Errorf("index.html: %s=%q is not a relative URL of our own assets", m[1], u)
			continue
		}
		if resp := get(t, h, "GET", "/"+u, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("index.html: %s=%q: the handler answers %d", m[1], u, resp.StatusCode)
		}
		local++
	}
	if local < 3 {
		t.Errorf("index.html references %d local assets, want the script, the stylesheet and the icon", local)
	}
	if m := regexp.MustCompile(`(?is)<script\b[^>]*>\s*\S.*?</script>`).FindString(index); m != "" {
		t.Errorf("index.html has an inline script, which the CSP blocks: %.80s", m)
	}
	for _, bad := range []string{"<style", " style=", " onclick=", " onload=", "javascript:", "<iframe", "<object", "<embed", "@import"} {
		if strings.Contains(strings.ToLower(index), bad) {
			t.Errorf("index.html contains %q, which the CSP blocks or which loads something", bad)
		}
	}

	js := body(t, get(t, h, "GET", "/ui/app.js", nil))
	css := body(t, get(t, h, "GET", "/ui/style.css", nil))
	urls := regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s'"<>)]*`)
	for name, src := range map[string]string{"app.js": js, "style.css": css} {
		for _, u := range urls.FindAllString(src, -1) {
			if u != "http://www.w3.org/2000/svg" { // the SVG namespace names, it loads nothing
				t.Errorf("%s refers to %s", name, u)
			}
		}
	}
	if regexp.MustCompile(`(?i)url\(|@import|@font-face`).MatchString(css) {
		t.Error("style.css loads a resource (url(), @import or @font-face)")
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", `setAttribute("style"`, "import("} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s: API data must never be parsed as HTML or code, and inline styles are blocked by the CSP", bad)
		}
	}
	// Every fetch goes through api(), with a path relative to the page.
	for _, m := range regexp.MustCompile(`\bapi\(([^)]*)\)`).FindAllStringSubmatch(js, -1) {
		arg := strings.TrimSpace(m[1])
		if arg == "path" {
			continue // the definition
		}
		if !strings.HasPrefix(arg, "'v1/") && !strings.HasPrefix(arg, "jobPath(") {
			t.Errorf("app.js calls api(%s): want a relative v1/ path", arg)
		}
	}
	if n := strings.Count(js, "fetch("); n != 1 {
		t.Errorf("app.js calls fetch %d times, want once (in api, which adds the token and a timeout)", n)
	}
}
