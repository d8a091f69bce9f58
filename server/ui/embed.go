// Package ui is the web dashboard of `streamd serve`: one page of our own
// HTML, CSS and JavaScript, embedded in the binary, that reads the daemon's
// JSON API (/v1/jobs, /v1/jobs/{id}, /v1/jobs/{id}/checkpoints) from the
// browser and draws the jobs, each job's task graph and its checkpoint
// history as SVG. There is no build step and nothing is fetched from
// elsewhere: every response carries Content-Security-Policy
// "default-src 'self'", so a browser refuses any script, style, font,
// image or connection that is not the daemon's own.
//
// Handler serves the page at "/" (also "/index.html") and its assets under
// "/ui/" (app.js, style.css); every other path is a 404, and methods other
// than GET and HEAD are a 405. Serves tells which paths those are, so the
// daemon can exempt them from its auth token: the files hold no data. Responses carry a strong ETag (a hash of the
// embedded file) and "Cache-Control: no-cache": a browser keeps its copy
// and revalidates it on every load (a 304 when unchanged), so a new binary
// never shows a stale page. The page itself is the same for every user; it
// holds no data.
//
// The page's API calls use paths relative to the page, so the daemon can sit
// behind a reverse proxy under a prefix. When the daemon answers 401 (an
// auth token is configured), the page asks for the token once, keeps it in
// the tab's sessionStorage and sends it as "Authorization: Bearer TOKEN".
//
// This package imports nothing of streamd; the daemon (package server)
// mounts Handler next to its API.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the CSP header of every response of Handler:
// only the daemon's own scripts, styles, images and API; no inline script
// or style; the page cannot be framed by another site.
const ContentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// AssetPrefix is the URL path under which Handler serves the page's assets.
const AssetPrefix = "/ui/"

// contentTypes are the types of the files the dashboard is made of: fixed
// here rather than read from the host's mime tables, which vary.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// asset is one embedded file, ready to serve.
type asset struct {
	name        string
	body        []byte
	contentType string
	etag        string
}

// assets maps a URL path to its file; built once from the embedded FS.
var assets = func() map[string]*asset {
	m := map[string]*asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		ct := contentTypes[path.Ext(name)]
		if ct == "" {
			panic("ui: no content type for the embedded file " + name)
		}
		sum := sha256.Sum256(body)
		a := &asset{name: name, body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		if name == "index.html" {
			m["/"] = a
			m["/index.html"] = a
		} else {
			m[AssetPrefix+name] = a
		}
		return nil
	})
	if err != nil {
		panic("ui: cannot read the embedded dashboard files: " + err.Error())
	}
	if m["/"] == nil {
		panic("ui: the embedded dashboard has no index.html")
	}
	return m
}()

// Handler returns the dashboard's handler: the page at "/", its assets under
// AssetPrefix. Mount it at "/" of the daemon's mux; the API's own patterns
// (/v1/…, /healthz, /metrics, /debug/pprof/) are more specific and win.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

// Serves reports whether Handler serves the URL path: the page and its
// assets. They hold no data (the page reads everything from the API with
// the user's token), so a daemon that requires an auth token lets requests
// for them through without one; otherwise a browser could not load the
// page that asks for the token.
func Serves(urlPath string) bool {
	return assets[urlPath] != nil
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	a := assets[r.URL.Path]
	if a == nil {
		h.Set("Cache-Control", "no-store")
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	// ServeContent answers If-None-Match with a 304 and HEAD without a body.
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
