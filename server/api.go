package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/streamd/streamd/job"
	"github.com/streamd/streamd/server/ui"
)

// Limits of the HTTP API.
const (
	// MaxRequestBytes bounds a request body: a job spec (job.MaxSpecBytes)
	// and a little more.
	MaxRequestBytes = job.MaxSpecBytes + 4<<10
	// maxHeaderBytes bounds a request's headers.
	maxHeaderBytes = 64 << 10
	// Timeouts of a connection: headers, the whole request, the response
	// (a CPU profile of /debug/pprof/profile?seconds=N needs N < write
	// timeout; a savepoint of a large state takes a while), idle.
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = 5 * time.Minute
	idleTimeout       = 2 * time.Minute
)

// HTTPOptions configures the daemon's HTTP listener.
type HTTPOptions struct {
	// Addr is host:port. A host other than a loopback address requires
	// AuthToken.
	Addr string
	// AuthToken, if set, must come as "Authorization: Bearer TOKEN" on
	// every request but GET /healthz.
	AuthToken string
	Logger    *slog.Logger
}

// ErrNeedToken is returned by NewHTTPServer for a non-loopback address
// without a token.
var ErrNeedToken = errors.New("server: listening on a non-loopback address needs an auth token (--auth-token or STREAMD_AUTH_TOKEN)")

// isLoopback reports whether host names only loopback addresses.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NewHTTPServer returns the daemon's HTTP server for m: the API under
// /v1, /healthz, /metrics, /debug/pprof/ and the dashboard at /.
func NewHTTPServer(m *Manager, o HTTPOptions) (*http.Server, error) {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("server: listen address %q: %w", o.Addr, err)
	}
	if !isLoopback(host) && o.AuthToken == "" {
		return nil, ErrNeedToken
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &api{m: m, log: o.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.metrics.registry, promhttp.HandlerOpts{ErrorLog: nil}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /v1/jobs", a.listJobs)
	mux.HandleFunc("POST /v1/jobs", a.submit)
	mux.HandleFunc("GET /v1/jobs/{id}", a.getJob)
	mux.HandleFunc("DELETE /v1/jobs/{id}", a.cancel)
	mux.HandleFunc("GET /v1/jobs/{id}/checkpoints", a.getCheckpoints)
	mux.HandleFunc("POST /v1/jobs/{id}/checkpoints", a.triggerCheckpoint)
	mux.HandleFunc("POST /v1/jobs/{id}/savepoints", a.triggerSavepoint)
	mux.HandleFunc("POST /v1/jobs/{id}/stop", a.stop)
	mux.HandleFunc("/v1/", a.notFound)
	mux.Handle("/", ui.Handler())

	var h http.Handler = mux
	h = limitBody(h)
	if o.AuthToken != "" {
		h = requireToken(h, o.AuthToken)
	}
	h = recoverPanics(h, o.Logger)
	return &http.Server{
		Addr:              o.Addr,
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}, nil
}

// requireToken refuses every request but GET /healthz that does not carry
// the token, comparing in constant time.
func requireToken(next http.Handler, token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The dashboard's files hold no data; the page asks for the token.
		if r.URL.Path == "/healthz" || ui.Serves(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="streamd"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong auth token: send Authorization: Bearer TOKEN")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxRequestBytes {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is %d bytes; the limit is %d", r.ContentLength, MaxRequestBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic in a handler into a 500 with a message and
// a log line with the stack, instead of a dropped connection.
func recoverPanics(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic in an HTTP handler (a bug)", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, "internal error (a bug; see the daemon's log)")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type api struct {
	m   *Manager
	log *slog.Logger
}

type errorJSON struct {
	Error  string   `json:"error"`
	Errors []string `json:"errors,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorJSON{Error: msg})
}

// writeErr maps an error of the manager to a status.
func (a *api) writeErr(w http.ResponseWriter, err error) {
	var se *SpecError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
	case errors.As(err, &se):
		lines := strings.Split(strings.TrimSpace(se.Error()), "\n")
		writeJSON(w, http.StatusBadRequest, errorJSON{Error: "invalid job spec: " + lines[0], Errors: lines})
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrTooMany):
		writeError(w, http.StatusTooManyRequests, err.Error())
	case errors.Is(err, ErrClosed):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeError(w, http.StatusGatewayTimeout, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func (a *api) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s (see the README's HTTP API)", r.Method, r.URL.Path))
}

func (a *api) listJobs(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Jobs []jobSummaryJSON `json:"jobs"`
	}{Jobs: []jobSummaryJSON{}}
	for _, j := range a.m.List() {
		out.Jobs = append(out.Jobs, j.summary())
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) submit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		writeError(w, http.StatusBadRequest, "empty request body: send a job spec (YAML or JSON)")
		return
	}
	q := r.URL.Query()
	so := SubmitOptions{Savepoint: q.Get("savepoint_path")}
	if v := q.Get("allow_non_restored_state"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("allow_non_restored_state=%q: want true or false", v))
			return
		}
		so.AllowNonRestoredState = b
	}
	j, err := a.m.Submit(body, so)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": j.id})
}

func (a *api) job(w http.ResponseWriter, r *http.Request) (*managedJob, bool) {
	j, err := a.m.Get(r.PathValue("id"))
	if err != nil {
		a.writeErr(w, err)
		return nil, false
	}
	return j, true
}

func (a *api) getJob(w http.ResponseWriter, r *http.Request) {
	if j, ok := a.job(w, r); ok {
		writeJSON(w, http.StatusOK, j.detail())
	}
}

func (a *api) getCheckpoints(w http.ResponseWriter, r *http.Request) {
	if j, ok := a.job(w, r); ok {
		writeJSON(w, http.StatusOK, j.checkpoints())
	}
}

func (a *api) cancel(w http.ResponseWriter, r *http.Request) {
	j, ok := a.job(w, r)
	if !ok {
		return
	}
	if err := a.m.Delete(j.id); err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, j.summary())
}

func (a *api) triggerCheckpoint(w http.ResponseWriter, r *http.Request) {
	j, ok := a.job(w, r)
	if !ok {
		return
	}
	s, err := j.TriggerCheckpoint(r.Context())
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ckptFromStats(ckptEntry{stats: s}))
}

// savepointRequest is the body of POST …/savepoints and …/stop.
type savepointRequest struct {
	// Savepoint (stop only) asks for a final savepoint.
	Savepoint bool `json:"savepoint"`
	// TargetDirectory is where the savepoint goes: a new (or empty)
	// directory, an absolute path. Default DATA/savepoints/JOB-TIME.
	TargetDirectory string `json:"target_directory"`
}

func (a *api) decodeSavepointRequest(w http.ResponseWriter, r *http.Request, id string) (savepointRequest, bool) {
	var req savepointRequest
	body, err := io.ReadAll(r.Body)
	if err != nil {
		a.writeErr(w, err)
		return req, false
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("request body: %v (want {\"savepoint\": bool, \"target_directory\": \"/abs/path\"})", err))
			return req, false
		}
	}
	if req.TargetDirectory == "" {
		req.TargetDirectory = a.m.defaultSavepointDir(id)
	} else if !filepath.IsAbs(req.TargetDirectory) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("target_directory %q must be an absolute path", req.TargetDirectory))
		return req, false
	}
	// A savepoint goes into a new or empty directory: say so now rather
	// than after the job stopped.
	if fi, err := os.Stat(req.TargetDirectory); err == nil {
		ents, _ := os.ReadDir(req.TargetDirectory)
		if !fi.IsDir() || len(ents) > 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("target_directory %q exists and is not an empty directory", req.TargetDirectory))
			return req, false
		}
	}
	return req, true
}

func (a *api) triggerSavepoint(w http.ResponseWriter, r *http.Request) {
	j, ok := a.job(w, r)
	if !ok {
		return
	}
	req, ok := a.decodeSavepointRequest(w, r, j.id)
	if !ok {
		return
	}
	sp, err := j.TriggerSavepoint(r.Context(), req.TargetDirectory)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, savepointView(sp))
}

func (a *api) stop(w http.ResponseWriter, r *http.Request) {
	j, ok := a.job(w, r)
	if !ok {
		return
	}
	req, ok := a.decodeSavepointRequest(w, r, j.id)
	if !ok {
		return
	}
	sp, err := j.Stop(r.Context(), req.Savepoint, req.TargetDirectory)
	if err != nil {
		a.writeErr(w, err)
		return
	}
	out := struct {
		jobSummaryJSON
		Savepoint *savepointJSON `json:"savepoint,omitempty"`
	}{jobSummaryJSON: j.summary()}
	if sp != nil {
		v := savepointView(*sp)
		out.Savepoint = &v
	}
	writeJSON(w, http.StatusOK, out)
}
