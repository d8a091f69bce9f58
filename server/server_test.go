package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/snapshot"
)

// testDaemon is a Manager and its HTTP handler over a temporary data dir.
type testDaemon struct {
	t     *testing.T
	dir   string
	store *snapshot.Store
	m     *Manager
	srv   *httptest.Server
}

func newTestDaemon(t *testing.T, dir string) *testDaemon {
	t.Helper()
	store, err := snapshot.Open(filepath.Join(dir, "data"), snapshot.Options{Logger: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := NewManager(Options{DataDir: filepath.Join(dir, "data"), Store: store, Logger: log, Pinning: engine.PinOff,
		Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := NewHTTPServer(m, HTTPOptions{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	d := &testDaemon{t: t, dir: dir, store: store, m: m, srv: httptest.NewServer(hs.Handler)}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

func (d *testDaemon) close() {
	if d.srv == nil {
		return
	}
	d.srv.Close()
	d.m.Shutdown(d.t.Context())
	d.store.Close()
	d.srv = nil
}

func (d *testDaemon) do(method, path, body string, want int, v any) {
	d.t.Helper()
	req, _ := http.NewRequest(method, d.srv.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		d.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			d.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func (d *testDaemon) waitEnded(id string) jobDetailJSON {
	d.t.Helper()
	j, err := d.m.Get(id)
	if err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-j.done:
	case <-time.After(30 * time.Second):
		d.t.Fatalf("job %s did not end: %+v", id, j.detail())
	}
	var out jobDetailJSON
	d.do("GET", "/v1/jobs/"+id, "", 200, &out)
	return out
}

// failingJob reads a file whose third line is not JSON: every attempt
// fails there.
func failingJob(t *testing.T, dir, restart string) string {
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte("{\"k\": 1}\n{\"k\": 2}\nnot json\n"), 0o644)
	return fmt.Sprintf(`name: failing
checkpointing: {interval: 50ms}
%s
source: {type: file, path: %s, fields: {k: int}}
sink: {type: blackhole}
`, restart, in)
}

func TestRestartStrategies(t *testing.T) {
	f := func(restart string, wantRestarts int) {
		t.Helper()
		d := newTestDaemon(t, t.TempDir())
		d.do("POST", "/v1/jobs", failingJob(t, d.dir, restart), 201, nil)
		j := d.waitEnded("failing")
		if j.Status != StatusFailed || j.Restarts != wantRestarts || len(j.Failures) != wantRestarts+1 {
			t.Fatalf("restart %q: status %s, %d restarts, %d failures; want FAILED, %d, %d: %+v", restart, j.Status, j.Restarts, len(j.Failures), wantRestarts, wantRestarts+1, j.Failures)
		}
		for i, f := range j.Failures {
			if !strings.Contains(f.Message, "in.jsonl") || f.Restarted != (i < wantRestarts) {
				t.Fatalf("failure %d: %+v; want the file named, restarted %v", i, f, i < wantRestarts)
			}
		}
		d.close()
		// A new daemon lists it as failed and does not run it again.
		d2 := newTestDaemon(t, d.dir)
		var list struct{ Jobs []jobSummaryJSON }
		d2.do("GET", "/v1/jobs", "", 200, &list)
		if len(list.Jobs) != 1 || list.Jobs[0].Status != StatusFailed {
			t.Fatalf("after a restart of the daemon: %+v", list.Jobs)
		}
	}
	f("restart: {strategy: fixed_delay, attempts: 2, delay: 10ms}", 2)
	f("restart: {strategy: none}", 0)
	f("restart: {strategy: exponential_delay, initial_backoff: 10ms, max_backoff: 20ms, attempts_before_reset: 3}", 3)
}

func TestRegistrySkipsDamagedRecords(t *testing.T) {
	dir := t.TempDir()
	d := newTestDaemon(t, dir)
	d.do("POST", "/v1/jobs", "name: ok\nsource: {type: sequence, count: 10, keys: 2}\nsink: {type: blackhole}\n", 201, nil)
	if j := d.waitEnded("ok"); j.Status != StatusFinished {
		t.Fatalf("job: %+v", j)
	}
	d.close()
	os.WriteFile(filepath.Join(dir, "data", registryDir, "broken.json"), []byte("{\"id\": \"broken\", \"spec\": "), 0o600)
	os.WriteFile(filepath.Join(dir, "data", registryDir, "other.json"), []byte(`{"id": "ok", "spec": "x"}`), 0o600)
	d2 := newTestDaemon(t, dir)
	var list struct{ Jobs []jobSummaryJSON }
	d2.do("GET", "/v1/jobs", "", 200, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != "ok" || list.Jobs[0].Status != StatusFinished {
		t.Fatalf("jobs: %+v", list.Jobs)
	}
}

func TestNeedTokenOffLoopback(t *testing.T) {
	d := newTestDaemon(t, t.TempDir())
	for addr, want := range map[string]error{"0.0.0.0:8081": ErrNeedToken, "[::]:1": ErrNeedToken, "10.1.2.3:80": ErrNeedToken,
		"127.0.0.1:8081": nil, "[::1]:8081": nil, "localhost:8081": nil} {
		_, err := NewHTTPServer(d.m, HTTPOptions{Addr: addr})
		if err != want {
			t.Errorf("%s: %v, want %v", addr, err, want)
		}
		if _, err := NewHTTPServer(d.m, HTTPOptions{Addr: addr, AuthToken: "t"}); err != nil {
			t.Errorf("%s with a token: %v", addr, err)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{5, 1, 3, 2, 4})
	if s.Min != 1 || s.Max != 5 || s.Avg != 3 || s.P50 != 3 || s.P90 != 5 || s.P99 != 5 {
		t.Fatalf("%+v", s)
	}
	if (summarize(nil) != statJSON{}) {
		t.Fatal("empty")
	}
}

// FuzzRegistryRecord: whatever a registry file holds, reading it returns a
// record with an id and a spec, or an error naming the file; never a
// panic.
func FuzzRegistryRecord(f *testing.F) {
	f.Add([]byte(`{"id":"j","spec":"name: j\n","desired":"running","submitted_at":"2026-12-07T00:00:00Z"}`))
	f.Add([]byte(`{"id":"j","spec":""}`))
	f.Add([]byte(`{"id": 1}`))
	f.Add([]byte("\x00\xff"))
	dir := f.TempDir()
	r := &registry{dir: dir}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "j.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		rec, err := r.read(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "j.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if rec.ID == "" || rec.Spec == "" {
			t.Fatalf("accepted a record without id or spec: %+v", rec)
		}
	})
}

// A JSON spec is accepted as YAML is; a spec that does not fit the
// checkpoints an earlier job of that name left is a 400 naming the step.
func TestSubmitJSONAndIncompatible(t *testing.T) {
	d := newTestDaemon(t, t.TempDir())
	out := filepath.Join(d.dir, "out")
	spec := fmt.Sprintf(`{"name": "j", "parallelism": 2, "source": {"type": "sequence", "count": 20000, "keys": 10},
		"pipeline": [{"key_by": "key"}, {"count": {}, "name": "counted"}],
		"sink": {"type": "file", "path": %q}, "checkpointing": {"interval": "10ms"}}`, out)
	d.do("POST", "/v1/jobs", spec, 201, nil)
	if j := d.waitEnded("j"); j.Status != StatusFinished {
		t.Fatalf("job: %+v", j)
	}
	changed := strings.Replace(spec, `{"count": {}, "name": "counted"}`, `{"sum": "seq", "name": "counted"}`, 1)
	var e errorJSON
	d.do("POST", "/v1/jobs", changed, 400, &e)
	if !strings.Contains(e.Error, "counted") {
		t.Fatalf("incompatible spec: %+v; want the step named", e)
	}
}

// TestEventTimeMetrics: a running window job shows its tasks' watermarks
// and its window step's late records in /metrics and the job's vertices.
func TestEventTimeMetrics(t *testing.T) {
	d := newTestDaemon(t, t.TempDir())
	spec := `name: w
parallelism: 1
source: {type: sequence, keys: 10, rate: 20000, event_time: {field: seq, watermark_interval: 10ms}}
pipeline:
  - key_by: key
  - window: {tumbling: 100ms, aggregate: {n: {count: {}}}}
    name: win
sink: {type: blackhole}
`
	d.do("POST", "/v1/jobs", spec, 201, nil)
	defer d.do("DELETE", "/v1/jobs/w", "", 200, nil)
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(d.srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if strings.Contains(body, `streamd_task_watermark_milliseconds{job="w"`) && strings.Contains(body, `streamd_operator_late_records_total{job="w",operator="win"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no watermark or late-records metric of job w within 30 s:\n%s", body)
		}
	}
	var j jobDetailJSON
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		d.do("GET", "/v1/jobs/w", "", 200, &j)
		found := false
		for _, v := range j.Vertices {
			found = found || (v.WatermarkMs != nil && *v.WatermarkMs > 0)
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no vertex with a watermark: %+v", j.Vertices)
		}
	}
}
