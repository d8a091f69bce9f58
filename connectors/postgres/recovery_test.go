package postgres

import (
	"reflect"
	"strings"
	"testing"
)

func TestGIDRoundTrip(t *testing.T) {
	p := gidPrefix("job", "sink")
	if p != gidPrefix("job", "sink") || p == gidPrefix("job", "sink2") || p == gidPrefix("jobs", "ink") {
		t.Fatal("prefix is not a function of job and sink only")
	}
	for _, r := range []txnRef{{0, 1}, {7, 123456789}, {1 << 20, 1<<63 - 1}} {
		g := gid(p, r)
		if len(g) > 200 {
			t.Fatalf("gid %q longer than PostgreSQL's 200 bytes", g)
		}
		got, ok := parseGID(p, g)
		if !ok || got != r {
			t.Fatalf("parseGID(%q) = %v, %v; want %v", g, got, ok, r)
		}
	}
	for _, g := range []string{p, p + "t1", p + "t1_c0", p + "t01_c1", p + "t1_c01", p + "t-1_c1", p + "t1_c+1", p + "tx_c1", "other_t1_c1", p + "t1_c1_c2"} {
		if r, ok := parseGID(p, g); ok {
			t.Errorf("parseGID(%q) accepted %v", g, r)
		}
	}
}

func TestPlanRecovery(t *testing.T) {
	p := gidPrefix("j", "s")
	g := func(task int, cp uint64) string { return gid(p, txnRef{task, cp}) }
	f := func(name string, prepared []string, pending []txnRef, through map[int]uint64, want recoveryPlan, wantErr string) {
		t.Helper()
		got, err := planRecovery(p, prepared, pending, through)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%s: err = %v, want one containing %q", name, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
	f("fresh start", nil, nil, nil, recoveryPlan{}, "")
	f("fresh start rolls back strays", []string{g(0, 3), g(1, 3)}, nil, nil,
		recoveryPlan{Rollback: []string{g(0, 3), g(1, 3)}}, "")
	f("crash after pre-commit before the checkpoint is durable: the restored checkpoint is older",
		[]string{g(0, 2), g(0, 3)}, []txnRef{{0, 2}}, map[int]uint64{0: 1},
		recoveryPlan{Commit: []string{g(0, 2)}, Rollback: []string{g(0, 3)}}, "")
	f("crash after the metadata, before commit: commit it",
		[]string{g(0, 3), g(1, 3)}, []txnRef{{0, 3}, {1, 3}}, map[int]uint64{0: 2, 1: 2},
		recoveryPlan{Commit: []string{g(0, 3), g(1, 3)}}, "")
	f("crash after commit: already committed, nothing prepared",
		nil, []txnRef{{0, 3}, {1, 3}}, map[int]uint64{0: 3, 1: 3}, recoveryPlan{}, "")
	f("one task committed, the other did not",
		[]string{g(1, 3), g(1, 4)}, []txnRef{{0, 3}, {1, 3}}, map[int]uint64{0: 3, 1: 2},
		recoveryPlan{Commit: []string{g(1, 3)}, Rollback: []string{g(1, 4)}}, "")
	f("aborted checkpoints: several pending of one task commit in order",
		[]string{g(0, 5), g(0, 3), g(0, 4)}, []txnRef{{0, 3}, {0, 4}, {0, 5}}, nil,
		recoveryPlan{Commit: []string{g(0, 3), g(0, 4), g(0, 5)}}, "")
	f("restore at another parallelism: old tasks' transactions",
		[]string{g(2, 7), g(0, 7), g(1, 8)}, []txnRef{{0, 7}, {1, 7}, {2, 7}}, map[int]uint64{1: 7},
		recoveryPlan{Commit: []string{g(0, 7), g(2, 7)}, Rollback: []string{g(1, 8)}}, "")
	f("lost: pending, not prepared, not committed",
		nil, []txnRef{{0, 3}}, map[int]uint64{0: 2}, recoveryPlan{}, "neither prepared nor committed")
	f("lost: another task's progress does not count",
		nil, []txnRef{{0, 3}}, map[int]uint64{1: 9}, recoveryPlan{}, "neither prepared nor committed")
	f("a gid with the prefix and another format is refused",
		[]string{p + "garbage"}, nil, nil, recoveryPlan{}, "resolve it by hand")
}

func TestDecodeState(t *testing.T) {
	b, err := encodeState([]txnRef{{3, 1}, {3, 5}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeState(b)
	if err != nil || !reflect.DeepEqual(st.Pending, []txnRef{{3, 1}, {3, 5}}) {
		t.Fatalf("round trip: %v, %v", st, err)
	}
	for _, bad := range []string{``, `{`, `[]`, `{"pending":[{"task":0,"checkpoint":0}]}`, `{"pending":[{"task":-1,"checkpoint":1}]}`,
		`{"pending":[{"task":0,"checkpoint":2},{"task":0,"checkpoint":2}]}`, `{"pending":[{"task":0,"checkpoint":2},{"task":1,"checkpoint":3}]}`,
		`{"pending":[{"task":0,"checkpoint":-1}]}`} {
		if _, err := decodeState([]byte(bad)); err == nil {
			t.Errorf("decodeState(%s) accepted it", bad)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"pending":[{"task":0,"checkpoint":1}]}`))
	f.Add([]byte(`{"pending":[{"task":2,"checkpoint":1},{"task":2,"checkpoint":9}]}`))
	f.Add([]byte(`{"pending":null}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		// What decodes is valid, and survives a round trip.
		for i, r := range st.Pending {
			if r.Checkpoint == 0 || r.Task < 0 || (i > 0 && (r.Checkpoint <= st.Pending[i-1].Checkpoint || r.Task != st.Pending[0].Task)) {
				t.Fatalf("decodeState accepted an invalid state %+v", st)
			}
		}
		b2, err := encodeState(st.Pending)
		if err != nil {
			t.Fatal(err)
		}
		st2, err := decodeState(b2)
		if err != nil || !reflect.DeepEqual(st.Pending, st2.Pending) {
			t.Fatalf("round trip changed %+v into %+v (%v)", st, st2, err)
		}
		p := gidPrefix("j", "s")
		for _, r := range st.Pending {
			if got, ok := parseGID(p, gid(p, r)); !ok || got != r {
				t.Fatalf("gid of %+v does not parse back", r)
			}
		}
	})
}
