package kafka

import (
	"bytes"
	"testing"

	"github.com/streamd/streamd/engine"
)

func FuzzDecodeSinkState(f *testing.F) {
	f.Add(appendSinkState(nil, sinkState{TxnID: "a/b/0", Task: 0}))
	f.Add(appendSinkState(nil, sinkState{TxnID: "a/b/1", Task: 1, Pending: &pendingTxn{Checkpoint: 9, ProducerID: 77, Epoch: 3}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeSinkState(b)
		if err != nil {
			return
		}
		if again := appendSinkState(nil, st); !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes to %x, not %x", st, again, b)
		}
	})
}

func FuzzDecodeDiscState(f *testing.F) {
	f.Add(appendDiscState(nil, discState{Known: []int32{3}, Found: []discovered{{Topic: "in", Partition: 4, partState: partState{Next: 5, Stop: -1}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeDiscState(b)
		if err != nil {
			return
		}
		if again := appendDiscState(nil, st); !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes to %x, not %x", st, again, b)
		}
	})
}

func FuzzDecodePartState(f *testing.F) {
	f.Add(appendPartState(nil, partState{Next: 10, Stop: 20}))
	f.Add(appendPartState(nil, partState{Next: 0, Stop: -1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodePartState(b)
		if err != nil {
			return
		}
		if again := appendPartState(nil, st); !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes to %x, not %x", st, again, b)
		}
	})
}

// TestSinkCrashPoints drives one writer through the crash points and
// recovers a new sink from what a checkpoint would hold.
func TestSinkCrashPoints(t *testing.T) {
	c := newCluster(t, "out")
	brokers := c.ListenAddrs()
	newSink := func() *Sink[event] {
		s, err := NewSink("j", SinkOptions[event]{Connection: Connection{Brokers: brokers}, ID: "s", Topic: "out", Encode: encodeCount})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	write := func(w engine.SinkWriter[event], from, to int64) {
		for i := from; i < to; i++ {
			v := event{Key: "k", Count: i}
			if err := w.Write(&v); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := newSink()
	w, err := s.NewWriter(engine.SinkContext{Job: "j", Operator: "s", Index: 0, Parallelism: 1, Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	write(w, 1, 11)
	st1, err := w.PreCommit(1)
	if err != nil {
		t.Fatal(err)
	}
	// Crash after the pre-commit of 1 (whose checkpoint completed), before
	// its commit: recovery commits it.
	w.Close()
	s2 := newSink()
	if err := s2.Recover([][]byte{st1}); err != nil {
		t.Fatal(err)
	}
	if got := len(readCommitted(t, brokers, "out")); got != 10 {
		t.Fatalf("after recovering checkpoint 1: %d records, want 10", got)
	}
	if last, err := s2.LastCommitted(); err != nil || last != 1 {
		t.Fatalf("LastCommitted = %d, %v; want 1", last, err)
	}
	// Recovering the same checkpoint again (a crash during recovery) is
	// idempotent.
	if err := newSink().Recover([][]byte{st1}); err != nil {
		t.Fatal(err)
	}
	// A new run: commit 2, then write into 3 and crash after its
	// pre-commit, with 3 not complete: restoring 2 must neither commit 3
	// nor duplicate 2.
	w, err = s2.NewWriter(engine.SinkContext{Job: "j", Operator: "s", Index: 0, Parallelism: 1, Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	write(w, 11, 21)
	st2, err := w.PreCommit(2)
	if err != nil {
		t.Fatal(err)
	}
	write(w, 21, 31) // held: 2 waits for its commit
	if err := w.Commit(2); err != nil {
		t.Fatal(err)
	}
	write(w, 31, 41)
	if _, err := w.PreCommit(3); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := newSink().Recover([][]byte{st2}); err != nil {
		t.Fatal(err)
	}
	recs := readCommitted(t, brokers, "out")
	if len(recs) != 20 {
		t.Fatalf("after restoring checkpoint 2: %d records, want 20 (checkpoint 3 must be aborted, 2 committed once)", len(recs))
	}
}
