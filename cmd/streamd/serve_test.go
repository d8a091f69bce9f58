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

	"github.com/google/pprof/profile"
)

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveProc is a `streamd serve` process.
type serveProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	out   *lockedBuffer
	addr  string // host:port it listens on
	token string
	done  chan error
}

var servingRE = regexp.MustCompile(`streamd serving http=(\S+)`)

// startServe starts `streamd serve --data-dir dataDir --http
// 127.0.0.1:0 extra…` in dir and waits until it listens.
func startServe(t *testing.T, bin, dir, dataDir string, extra ...string) *serveProc {
	t.Helper()
	args := append([]string{"serve", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--grace", "20s"}, extra...)
	d := &serveProc{t: t, cmd: exec.Command(bin, args...), out: &lockedBuffer{}, done: make(chan error, 1)}
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := servingRE.FindStringSubmatch(d.out.String()); m != nil {
			d.addr = m[1]
			return d
		}
		select {
		case err := <-d.done:
			t.Fatalf("streamd serve exited (%v) before listening:\n%s", err, d.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("streamd serve did not listen within 60 s:\n%s", d.out)
	return nil
}

// call sends a request and returns the status and body.
func (d *serveProc) call(method, path, body string) (int, []byte) {
	d.t.Helper()
	req, err := http.NewRequest(method, "http://"+d.addr+path, strings.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v\n%s", method, path, err, d.out)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// mustJSON calls and decodes a response with status want into v.
func (d *serveProc) mustJSON(method, path, body string, want int, v any) {
	d.t.Helper()
	status, b := d.call(method, path, body)
	if status != want {
		d.t.Fatalf("%s %s: status %d, want %d: %s\ndaemon log:\n%s", method, path, status, want, b, d.out)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			d.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type apiJob struct {
	ID, Status           string
	Restarts             int
	CheckpointsCompleted int `json:"checkpoints_completed"`
	Failures             []struct{ Message string }
	Vertices             []struct {
		Name        string
		Parallelism int
		RecordsIn   int64 `json:"records_in"`
		RecordsOut  int64 `json:"records_out"`
	}
}

// waitJob polls the job until cond holds.
func (d *serveProc) waitJob(id string, what string, timeout time.Duration, cond func(apiJob) bool) apiJob {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var j apiJob
	for time.Now().Before(deadline) {
		d.mustJSON("GET", "/v1/jobs/"+id, "", 200, &j)
		if cond(j) {
			return j
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("job %s: not %s within %v (last: %+v)\ndaemon log:\n%s", id, what, timeout, j, d.out)
	return j
}

// waitFinished waits until the job has ended and fails the test unless it
// finished.
func (d *serveProc) waitFinished(id string) apiJob {
	d.t.Helper()
	j := d.waitJob(id, "ended", 60*time.Second, func(j apiJob) bool {
		return j.Status != "RUNNING" && j.Status != "RESTARTING"
	})
	if j.Status != "FINISHED" {
		d.t.Fatalf("job %s: %+v, want FINISHED\ndaemon log:\n%s", id, j, d.out)
	}
	return j
}

// signal sends sig and waits for the daemon to exit, returning its exit
// status.
func (d *serveProc) stop(sig syscall.Signal) int {
	d.t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		d.t.Fatalf("streamd serve did not exit within 60 s of %v:\n%s", sig, d.out)
	}
	return d.cmd.ProcessState.ExitCode()
}

const serveJob = `name: served
parallelism: %d
checkpointing: {interval: 100ms}
restart: {strategy: fixed_delay, attempts: 3, delay: 100ms}
source: {type: sequence, count: %d, keys: 1000, rate: %d}
pipeline:
  - key_by: key
  - count: {}
sink: {type: file, path: %s}
`

// TestServeSavepointRescale is issue 11's first acceptance test: submit a
// job over HTTP, read its checkpoint statistics, trigger a savepoint,
// stop with a savepoint, start it again from that savepoint with another
// parallelism (sources included), and check the output is exactly once
// across all of it.
func TestServeSavepointRescale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd and runs the daemon")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	const count, rate = 600_000, 150_000
	d := startServe(t, bin, dir, "data")

	var sub struct{ ID string }
	d.mustJSON("POST", "/v1/jobs", fmt.Sprintf(serveJob, 2, count, rate, out), 201, &sub)
	if sub.ID != "served" {
		t.Fatalf("job id %q, want the spec's name", sub.ID)
	}
	// A second submission of a running job is a conflict.
	if status, b := d.call("POST", "/v1/jobs", fmt.Sprintf(serveJob, 2, count, rate, out)); status != 409 {
		t.Fatalf("resubmitting a running job: %d %s, want 409", status, b)
	}
	d.waitJob("served", "checkpointed twice", 20*time.Second, func(j apiJob) bool { return j.CheckpointsCompleted >= 2 })

	// Flink's checkpoint statistics.
	var raw map[string]any
	d.mustJSON("GET", "/v1/jobs/served/checkpoints", "", 200, &raw)
	for _, k := range []string{"counts", "latest", "history", "summary"} {
		if raw[k] == nil {
			t.Fatalf("checkpoint statistics lack %q: %v", k, raw)
		}
	}
	counts := raw["counts"].(map[string]any)
	for _, k := range []string{"triggered", "in_progress", "completed", "failed", "restored"} {
		if _, ok := counts[k]; !ok {
			t.Fatalf("counts lack %q: %v", k, counts)
		}
	}
	latest := raw["latest"].(map[string]any)["completed"].(map[string]any)
	for _, k := range []string{"id", "status", "is_savepoint", "trigger_timestamp", "latest_ack_timestamp", "end_to_end_duration",
		"state_size", "checkpointed_size", "num_subtasks", "num_acknowledged_subtasks", "tasks"} {
		if _, ok := latest[k]; !ok {
			t.Fatalf("a completed checkpoint lacks %q: %v", k, latest)
		}
	}
	if latest["status"] != "COMPLETED" || latest["num_subtasks"].(float64) < 2 {
		t.Fatalf("latest completed checkpoint: %v", latest)
	}
	task := latest["tasks"].([]any)[0].(map[string]any)
	for _, k := range []string{"sync_duration", "async_duration", "alignment_duration", "start_delay"} {
		if _, ok := task[k]; !ok {
			t.Fatalf("a checkpoint's task lacks %q: %v", k, task)
		}
	}
	summary := raw["summary"].(map[string]any)["end_to_end_duration"].(map[string]any)
	for _, k := range []string{"min", "avg", "p50", "p90", "p99", "max"} {
		if _, ok := summary[k]; !ok {
			t.Fatalf("summary lacks %q: %v", k, summary)
		}
	}

	// A checkpoint now, then a savepoint while it runs.
	var ck map[string]any
	d.mustJSON("POST", "/v1/jobs/served/checkpoints", "", 200, &ck)
	if ck["status"] != "COMPLETED" {
		t.Fatalf("triggered checkpoint: %v", ck)
	}
	var sp struct {
		CheckpointID uint64 `json:"checkpoint_id"`
		Path         string
	}
	spDir := filepath.Join(dir, "sp1")
	d.mustJSON("POST", "/v1/jobs/served/savepoints", fmt.Sprintf(`{"target_directory": %q}`, spDir), 200, &sp)
	if sp.Path != spDir || sp.CheckpointID == 0 {
		t.Fatalf("savepoint: %+v", sp)
	}
	if fi, err := os.Stat(spDir); err != nil || !fi.IsDir() {
		t.Fatalf("savepoint directory: %v", err)
	}
	var cps struct {
		Latest struct{ Savepoint *struct{ ID uint64 } }
	}
	d.mustJSON("GET", "/v1/jobs/served/checkpoints", "", 200, &cps)
	if cps.Latest.Savepoint == nil || cps.Latest.Savepoint.ID != sp.CheckpointID {
		t.Fatalf("latest savepoint %+v, want checkpoint %d", cps.Latest.Savepoint, sp.CheckpointID)
	}

	// Stop with a savepoint: the sinks commit, the job is STOPPED.
	stopDir := filepath.Join(dir, "sp-stop")
	var stopped struct {
		Status    string
		Savepoint *struct{ Path string }
	}
	d.mustJSON("POST", "/v1/jobs/served/stop", fmt.Sprintf(`{"savepoint": true, "target_directory": %q}`, stopDir), 200, &stopped)
	if stopped.Status != "STOPPED" || stopped.Savepoint == nil || stopped.Savepoint.Path != stopDir {
		t.Fatalf("stop with savepoint: %+v", stopped)
	}
	committed := len(readOutput(t, out))
	if committed == 0 || committed >= count {
		t.Fatalf("%d records committed at the stop; the test needs the job stopped mid-way (raise count)", committed)
	}

	// Start again from the savepoint with parallelism 3 (the source too).
	d.mustJSON("POST", "/v1/jobs?savepoint_path="+stopDir, fmt.Sprintf(serveJob, 3, count, rate, out), 201, nil)
	j := d.waitFinished("served")
	for _, v := range j.Vertices {
		if v.Parallelism != 3 {
			t.Errorf("vertex %s runs with parallelism %d, want 3", v.Name, v.Parallelism)
		}
	}
	var after struct {
		Latest struct {
			Restored *struct {
				ID          uint64
				IsSavepoint bool   `json:"is_savepoint"`
				Path        string `json:"external_path"`
			}
		}
	}
	d.mustJSON("GET", "/v1/jobs/served/checkpoints", "", 200, &after)
	if r := after.Latest.Restored; r == nil || !r.IsSavepoint || r.Path != stopDir {
		t.Fatalf("restored: %+v, want the savepoint %s", r, stopDir)
	}
	verifyExactlyOnce(t, readOutput(t, out), count, 1000)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, d.out)
	}
}

// TestServeResumesAfterKill SIGKILLs the daemon mid-job, twice, and checks
// that each new daemon resumes the job from its newest checkpoint and the
// output is exactly once.
func TestServeResumesAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd and runs the daemon")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	const count, rate = 500_000, 150_000
	d := startServe(t, bin, dir, "data")
	d.mustJSON("POST", "/v1/jobs", fmt.Sprintf(serveJob, 2, count, rate, out), 201, nil)
	for kill := 0; kill < 2; kill++ {
		d.waitJob("served", "checkpointed", 20*time.Second, func(j apiJob) bool { return j.CheckpointsCompleted >= 2 })
		d.cmd.Process.Kill()
		<-d.done
		d = startServe(t, bin, dir, "data")
		if !strings.Contains(d.out.String(), "resuming job") {
			t.Fatalf("the new daemon did not resume the job:\n%s", d.out)
		}
	}
	d.waitFinished("served")
	verifyExactlyOnce(t, readOutput(t, out), count, 1000)
	// A finished job stays finished across a restart of the daemon.
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, d.out)
	}
	d = startServe(t, bin, dir, "data")
	var list struct{ Jobs []apiJob }
	d.mustJSON("GET", "/v1/jobs", "", 200, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].Status != "FINISHED" {
		t.Fatalf("after a restart, jobs: %+v", list.Jobs)
	}
}

// TestServeGracefulStopResumes: SIGTERM stops the running job with a
// final checkpoint; the next daemon resumes it.
func TestServeGracefulStopResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd and runs the daemon")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	const count, rate = 300_000, 150_000
	d := startServe(t, bin, dir, "data")
	d.mustJSON("POST", "/v1/jobs", fmt.Sprintf(serveJob, 2, count, rate, out), 201, nil)
	d.waitJob("served", "checkpointed", 20*time.Second, func(j apiJob) bool { return j.CheckpointsCompleted >= 1 })
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, d.out)
	}
	if !strings.Contains(d.out.String(), "every job took its final checkpoint") {
		t.Fatalf("no final-checkpoint message:\n%s", d.out)
	}
	d = startServe(t, bin, dir, "data")
	d.waitFinished("served")
	verifyExactlyOnce(t, readOutput(t, out), count, 1000)
}

// TestServeRefusals: a second daemon on the same data dir, a non-loopback
// bind without a token, unauthenticated requests, oversized and malformed
// requests.
func TestServeRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds streamd and runs the daemon")
	}
	bin := buildStreamd(t)
	dir := t.TempDir()
	d := startServe(t, bin, dir, "data", "--auth-token", "s3cret-token")

	// A second daemon, and streamd run, on the same data dir.
	code, msg := runStreamd(t, bin, dir, "serve", "--data-dir", "data", "--http", "127.0.0.1:0")
	if code != exitFailure || !strings.Contains(msg, fmt.Sprint(d.cmd.Process.Pid)) {
		t.Fatalf("second daemon: exit %d, want 1 and a message naming pid %d:\n%s", code, d.cmd.Process.Pid, msg)
	}
	os.WriteFile(filepath.Join(dir, "j.yaml"), []byte("name: j\ncheckpointing: {interval: 1s}\nsource: {type: sequence, count: 10, keys: 1}\nsink: {type: blackhole}\n"), 0o644)
	code, msg = runStreamd(t, bin, dir, "run", "--data-dir", "data", "j.yaml")
	if code != exitFailure || !strings.Contains(msg, fmt.Sprint(d.cmd.Process.Pid)) {
		t.Fatalf("streamd run on the daemon's data dir: exit %d, want 1 and a message naming pid %d:\n%s", code, d.cmd.Process.Pid, msg)
	}
	// A non-loopback bind without a token.
	code, msg = runStreamd(t, bin, dir, "serve", "--data-dir", "data2", "--http", "0.0.0.0:0")
	if code != exitUsage || !strings.Contains(msg, "auth token") {
		t.Fatalf("non-loopback without a token: exit %d, want 2 and a message about the token:\n%s", code, msg)
	}

	// Authentication: /healthz is open, everything else needs the token.
	d.token = ""
	if status, _ := d.call("GET", "/healthz", ""); status != 200 {
		t.Fatalf("healthz without a token: %d", status)
	}
	// The dashboard's files hold no data: they load without the token,
	// so that the page can ask for it.
	if status, _ := d.call("GET", "/", ""); status != 200 {
		t.Fatalf("the dashboard page without a token: %d, want 200", status)
	}
	for _, p := range []string{"/v1/jobs", "/v1/jobs/x/checkpoints", "/metrics", "/debug/pprof/", "/debug/pprof/profile?seconds=1", "/nothing"} {
		if status, b := d.call("GET", p, ""); status != 401 {
			t.Fatalf("GET %s without a token: %d %s, want 401", p, status, b)
		}
	}
	d.token = "wrong"
	if status, _ := d.call("GET", "/v1/jobs", ""); status != 401 {
		t.Fatalf("GET /v1/jobs with a wrong token: %d, want 401", status)
	}
	d.token = "s3cret-token"
	d.mustJSON("GET", "/v1/jobs", "", 200, nil)

	var e struct {
		Error  string
		Errors []string
	}
	// Oversized.
	big := strings.Repeat("#", 300<<10)
	if status, b := d.call("POST", "/v1/jobs", big); status != 413 || json.Unmarshal(b, &e) != nil || e.Error == "" {
		t.Fatalf("oversized spec: %d %s, want 413 with a message", status, b)
	}
	// Malformed: every error, with lines.
	d.mustJSON("POST", "/v1/jobs", "name: Bad Name\nsource: {type: nope}\nsink: {type: blackhole}\n", 400, &e)
	if len(e.Errors) < 2 || !strings.Contains(strings.Join(e.Errors, "\n"), ":2:") {
		t.Fatalf("malformed spec: %+v, want every error with its line", e)
	}
	d.mustJSON("POST", "/v1/jobs", "{not yaml", 400, &e)
	d.mustJSON("POST", "/v1/jobs", "", 400, &e)
	d.mustJSON("GET", "/v1/jobs/nope", "", 404, &e)
	d.mustJSON("GET", "/v1/nothing", "", 404, &e)
	d.mustJSON("POST", "/v1/jobs/nope/stop", "{}", 404, &e)
	d.mustJSON("POST", "/v1/jobs?allow_non_restored_state=maybe", "name: j\nsource: {type: sequence, count: 1, keys: 1}\nsink: {type: blackhole}\n", 400, &e)
	// A job without checkpoints cannot take a savepoint.
	d.mustJSON("POST", "/v1/jobs", "name: slow\nsource: {type: sequence, keys: 1, rate: 1000}\nsink: {type: blackhole}\n", 201, nil)
	d.mustJSON("POST", "/v1/jobs/slow/savepoints", `{"target_directory": "relative"}`, 400, &e)
	d.mustJSON("POST", "/v1/jobs/slow/savepoints", `{"bogus": 1}`, 400, &e)
	d.mustJSON("POST", "/v1/jobs/slow/stop", fmt.Sprintf(`{"savepoint": true, "target_directory": %q}`, dir), 400, &e)
	d.mustJSON("POST", "/v1/jobs/slow/savepoints", "", 409, &e)

	// pprof reads a CPU profile of the running daemon; metrics are
	// Prometheus text with streamd_ names.
	status, b := d.call("GET", "/debug/pprof/profile?seconds=1", "")
	if status != 200 {
		t.Fatalf("pprof profile: %d %s", status, b)
	}
	if p, err := profile.Parse(bytes.NewReader(b)); err != nil || len(p.SampleType) == 0 {
		t.Fatalf("pprof profile does not parse: %v", err)
	}
	status, b = d.call("GET", "/metrics", "")
	if status != 200 {
		t.Fatalf("metrics: %d", status)
	}
	for _, want := range []string{"streamd_operator_records_out_total{job=\"slow\"", "streamd_job_running{job=\"slow\",status=\"RUNNING\"} 1", "go_goroutines"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Fatalf("metrics lack %q:\n%s", want, b)
		}
	}
	// The token never reaches the log.
	d.mustJSON("DELETE", "/v1/jobs/slow", "", 200, nil)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, d.out)
	}
	if strings.Contains(d.out.String(), "s3cret-token") {
		t.Fatalf("the auth token reached the log:\n%s", d.out)
	}
	// Files of the data dir are the owner's alone.
	for _, p := range []string{"data", "data/jobs", "data/jobs/slow.json"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v; want owner-only", p, fi.Mode().Perm())
		}
	}
	sc := bufio.NewScanner(strings.NewReader(d.out.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "panic") {
			t.Fatalf("the daemon logged a panic: %s", sc.Text())
		}
	}
}
