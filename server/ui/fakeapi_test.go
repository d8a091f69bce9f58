package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI serves fixture JSON in the shapes of the daemon's API (see the
// brief of issue 11 and package server) next to Handler, so the page can be
// tested in a browser without a daemon. Job "counts" is running: every
// request for its checkpoints completes one more checkpoint (every fourth
// fails), so the chart grows as the page polls. Job "evil" has failed, and
// its name and failure message are HTML, which the page must show as text.
type fakeAPI struct {
	token string // when set, every /v1 request needs "Authorization: Bearer token"

	down        atomic.Bool  // every request gets its connection closed, as if the daemon were gone
	delayMs     atomic.Int64 // every /v1 response waits this long
	inflight    atomic.Int64 // /v1 requests being served now
	maxInflight atomic.Int64 // the most /v1 requests served at once
	unauthed    atomic.Int64 // requests answered 401

	mu struct {
		sync.Mutex
		cps []map[string]any // the checkpoints of job counts, oldest first
	}
}

// The fake's bounded checkpoint history, and the checkpoints job counts
// has when the fake starts: more than the page's history table shows.
const (
	fakeHistory            = 25
	fakeInitialCheckpoints = 21
)

const evilName = `<img src=x onerror="window.__pwned=1">`
const evilMessage = `task count (2/2) failed: <b>boom</b> & "quotes"`

func newFakeAPI(t *testing.T, token string) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{token: token}
	for range fakeInitialCheckpoints {
		f.addCheckpointLocked()
	}
	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	mux.HandleFunc("GET /v1/jobs", f.jobs)
	mux.HandleFunc("GET /v1/jobs/{id}", f.job)
	mux.HandleFunc("GET /v1/jobs/{id}/checkpoints", f.checkpoints)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			mux.ServeHTTP(w, r)
			return
		}
		n := f.inflight.Add(1)
		defer f.inflight.Add(-1)
		for {
			m := f.maxInflight.Load()
			if n <= m || f.maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
			f.unauthed.Add(1)
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong auth token"})
			return
		}
		time.Sleep(time.Duration(f.delayMs.Load()) * time.Millisecond)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

var fakeStart = time.Now().Add(-95 * time.Minute).UnixMilli()

func (f *fakeAPI) jobs(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	n := len(f.mu.cps)
	f.mu.Unlock()
	writeJSON(w, 200, map[string]any{"jobs": []any{
		map[string]any{"id": "evil", "name": evilName, "status": "FAILED", "start_time": fakeStart - 3600_000, "end_time": fakeStart, "duration": 3600_000, "restarts": 3, "checkpoints_completed": 0, "last_checkpoint_id": 0},
		map[string]any{"id": "sparse", "status": "RESTARTING"},
		map[string]any{"id": "counts", "name": "counts", "status": "RUNNING", "start_time": fakeStart, "end_time": 0, "duration": time.Now().UnixMilli() - fakeStart, "restarts": 1, "checkpoints_completed": n - n/4, "last_checkpoint_id": n},
	}})
}

func vertex(id, name string, p int, rate, bp float64) map[string]any {
	var tasks []any
	for i := 0; i < p; i++ {
		tasks = append(tasks, map[string]any{"index": i, "records_in": 1000000 + i, "records_out": 1000000 + i, "records_in_per_second": rate / float64(p), "records_out_per_second": rate / float64(p), "backpressure": bp * float64(i+1) / float64(p)})
	}
	var wm any // the event-time watermark: none before the first
	if id == "v2" {
		wm = int64(1436918400000)
	}
	return map[string]any{
		"id": id, "name": name, "parallelism": p, "watermark_ms": wm,
		"records_in": 2000000, "records_out": 2000000, "records_in_per_second": rate, "records_out_per_second": rate,
		"backpressure": bp,
		"operators":    []any{map[string]any{"name": name, "uid": name, "records_in": 2000000, "records_out": 2000000, "records_in_per_second": rate, "records_out_per_second": rate}},
		"tasks":        tasks,
	}
}

func (f *fakeAPI) job(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("id") {
	case "counts":
		writeJSON(w, 200, map[string]any{
			"id": "counts", "name": "counts", "status": "RUNNING", "start_time": fakeStart, "end_time": 0,
			"duration": time.Now().UnixMilli() - fakeStart, "restarts": 1, "parallelism": 2, "restart_strategy": "exponential_delay",
			"failures":   []any{map[string]any{"time": fakeStart + 1000, "message": "task key_by -> count (1/2) failed: disk full", "restarted": true}},
			"savepoints": []any{map[string]any{"checkpoint_id": 3, "path": "/srv/savepoints/counts-3", "timestamp": fakeStart + 600, "state_size": 41e6}},
			"vertices": []any{
				vertex("v0", "source: sequence", 2, 1.25e6, 0.03),
				vertex("v1", "filter -> map", 2, 1.25e6, 0.3),
				vertex("v2", "key_by -> count", 4, 0.8e6, 0.7),
				vertex("v3", "sink: file", 1, 0.8e6, 0),
			},
			"edges": []any{
				map[string]any{"from": "v0", "to": "v1", "partitioning": "forward", "records_per_second": 1.25e6, "backpressure": 0.03, "occupancy": 0.1},
				map[string]any{"from": "v1", "to": "v2", "partitioning": "keyed", "records_per_second": 1.25e6, "backpressure": 0.3, "occupancy": 0.5},
				map[string]any{"from": "v2", "to": "v3", "partitioning": "rebalance", "records_per_second": 0.8e6, "backpressure": 0.7, "occupancy": 0.95, "occupied_slots": 973, "capacity_slots": 1024},
			},
		})
	case "evil":
		writeJSON(w, 200, map[string]any{
			"id": "evil", "name": evilName, "status": "FAILED", "start_time": fakeStart - 3600_000, "end_time": fakeStart,
			"duration": 3600_000, "restarts": 3,
			"failures": []any{
				map[string]any{"time": fakeStart - 7200_000, "message": "first failure"},
				map[string]any{"time": fakeStart - 100, "message": evilMessage},
			},
			"vertices": []any{vertex("v0", "source: sequence -> count", 1, 0, 0)},
			"edges":    []any{},
		})
	case "sparse":
		// A job the daemon knows little about yet: fields missing or null.
		writeJSON(w, 200, map[string]any{"id": "sparse", "status": "RESTARTING", "vertices": nil, "failures": nil})
	default:
		writeJSON(w, 404, map[string]any{"error": "no job " + r.PathValue("id")})
	}
}

func durations(min, max float64) map[string]any {
	return map[string]any{"min": min, "max": max, "avg": (min + max) / 2, "p50": (min + max) / 2, "p90": max * 0.9, "p99": max}
}

func (f *fakeAPI) checkpoints(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("id") {
	case "evil":
		writeJSON(w, 200, map[string]any{
			"counts":  map[string]any{"triggered": 0, "in_progress": 0, "completed": 0, "failed": 0, "restored": 0},
			"latest":  map[string]any{"completed": nil, "failed": nil, "savepoint": nil, "restored": nil},
			"history": []any{},
			"summary": map[string]any{},
		})
		return
	case "sparse":
		writeJSON(w, 200, map[string]any{"counts": nil, "latest": map[string]any{}, "history": nil})
		return
	case "counts":
	default:
		writeJSON(w, 404, map[string]any{"error": "no job " + r.PathValue("id")})
		return
	}
	f.mu.Lock()
	f.addCheckpointLocked()
	id := len(f.mu.cps)
	var history []any
	var latest, failed, savepoint any
	completed, nfailed := 0, 0
	for i := len(f.mu.cps) - 1; i >= 0; i-- {
		c := f.mu.cps[i]
		if len(history) < fakeHistory {
			history = append(history, c)
		}
		if c["status"] == "FAILED" {
			nfailed++
			if failed == nil {
				failed = c
			}
			continue
		}
		completed++
		if latest == nil {
			latest = c
		}
		if savepoint == nil && c["is_savepoint"] == true {
			savepoint = c
		}
	}
	f.mu.Unlock()
	writeJSON(w, 200, map[string]any{
		"counts": map[string]any{"triggered": id, "in_progress": 0, "completed": completed, "failed": nfailed, "restored": 1},
		"latest": map[string]any{"completed": latest, "failed": failed, "savepoint": savepoint,
			"restored": map[string]any{"id": 3, "restore_timestamp": fakeStart, "is_savepoint": false, "external_path": ""}},
		"history": history,
		"summary": map[string]any{
			"end_to_end_duration": durations(20, 50), "state_size": durations(40e6, 60e6), "checkpointed_size": durations(3e6, 5e6),
			"sync_duration": durations(0.08, 0.1), "async_duration": durations(12, 21), "alignment_duration": durations(2, 3), "start_delay": durations(1.5, 1.5),
		},
	})
}

// addCheckpointLocked completes the next checkpoint of job counts; every
// fourth fails, every seventh is a savepoint. f.mu must be held.
func (f *fakeAPI) addCheckpointLocked() {
	id := len(f.mu.cps) + 1
	trig := fakeStart + int64(id)*200
	cp := map[string]any{
		"id": id, "status": "COMPLETED", "is_savepoint": id%7 == 0, "trigger_timestamp": trig, "latest_ack_timestamp": trig + 30,
		"end_to_end_duration": 20 + float64(id%5)*7.5, "state_size": 40e6 + float64(id)*1e6, "checkpointed_size": 3e6 + float64(id%3)*1e6,
		"num_subtasks": 9, "num_acknowledged_subtasks": 9, "failure_message": "", "external_path": "",
		"sync_duration": 0.08 + float64(id%3)*0.01, "async_duration": 12 + float64(id%4)*3, "alignment_duration": 2 + float64(id%2), "start_delay": 1.5,
		"tasks": []any{map[string]any{"vertex": "v2", "index": 0, "sync_duration": 0.08, "async_duration": 12, "alignment_duration": 2, "start_delay": 1.5, "state_size": 40e6, "checkpointed_size": 3e6}},
	}
	if id%4 == 0 {
		cp["status"] = "FAILED"
		cp["num_acknowledged_subtasks"] = 5
		cp["failure_message"] = "checkpoint expired before completing (timeout 10s)"
	}
	if id%7 == 0 {
		cp["external_path"] = fmt.Sprintf("/var/lib/streamd/savepoints/savepoint-%d", id)
	}
	f.mu.cps = append(f.mu.cps, cp)
}
