package engine

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSplitsRoundTrip(t *testing.T) {
	f := func(splits []Split) {
		t.Helper()
		b := AppendSplits([]byte("prefix"), splits)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("AppendSplits did not append")
		}
		b = b[len("prefix"):]
		if !IsSplitList(b) {
			t.Fatalf("IsSplitList(%q) = false", b)
		}
		got, err := DecodeSplits(b)
		if err != nil {
			t.Fatalf("DecodeSplits: %v", err)
		}
		if len(got) != len(splits) {
			t.Fatalf("got %d splits, want %d", len(got), len(splits))
		}
		for i := range got {
			if got[i].ID != splits[i].ID || !bytes.Equal(got[i].State, splits[i].State) {
				t.Fatalf("split %d: got %v, want %v", i, got[i], splits[i])
			}
		}
	}
	f(nil)
	f([]Split{{ID: "a"}})
	f([]Split{{ID: "i%2==0", State: []byte("1234")}, {ID: "i%2==1", State: []byte{0, 1, 2, 0xff}}})
	f([]Split{{ID: strings.Repeat("x", MaxSplitIDBytes), State: bytes.Repeat([]byte{7}, MaxSplitStateBytes)}})
}

// A plain source's positions are not split lists: the sequence source's
// 8 big-endian bytes, the file source's 24, the test sources' decimal
// text.
func TestPlainPositionsAreNotSplitLists(t *testing.T) {
	for _, b := range [][]byte{nil, {}, {0, 0, 0, 0, 0, 0, 0, 5}, make([]byte, 24), []byte("12345"), {0xff, 'S', 'P'}} {
		if IsSplitList(b) {
			t.Errorf("IsSplitList(%q) = true", b)
		}
	}
}

func TestDecodeSplitsErrors(t *testing.T) {
	good := AppendSplits(nil, []Split{{ID: "a", State: []byte("1")}, {ID: "b"}})
	f := func(name string, b []byte, want string) {
		t.Helper()
		_, err := DecodeSplits(b)
		if !errors.Is(err, ErrBadSplits) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want ErrBadSplits mentioning %q", name, err, want)
		}
	}
	f("no magic", []byte("12345"), "magic")
	f("no version", []byte(splitMagic), "no version")
	f("future version", append([]byte(splitMagic), 2, 0), "version 2")
	f("truncated", good[:len(good)-2], "only 0 left")
	f("truncated varint", append([]byte(splitMagic), splitFormatVersion, 0x81), "truncated split count")
	f("trailing bytes", append(slices.Clone(good), 0), "after the last split")
	f("duplicate ID", AppendSplits(nil, []Split{{ID: "a"}, {ID: "a"}}), `split "a" appears twice`)
	f("empty ID", AppendSplits(nil, []Split{{ID: ""}}), "empty ID")
	f("huge count", append([]byte(splitMagic), splitFormatVersion, 0xff, 0xff, 0xff, 0x7f), "splits in")
	f("non-minimal varint", append([]byte(splitMagic), splitFormatVersion, 0x81, 0x00), "non-minimal")
	f("ID too long", AppendSplits(nil, []Split{{ID: strings.Repeat("x", MaxSplitIDBytes+1)}}), "limit")
	f("state too long", AppendSplits(nil, []Split{{ID: "a", State: make([]byte, MaxSplitStateBytes+1)}}), "limit")
}

func TestSplitString(t *testing.T) {
	f := func(s Split, want string) {
		t.Helper()
		if got := s.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", s, got, want)
		}
	}
	f(Split{ID: "i%2==1", State: []byte("4097")}, "i%2==1 @ 4097")
	f(Split{ID: "/in/a.jsonl", State: []byte("done")}, "/in/a.jsonl @ done")
	f(Split{ID: "p", State: []byte{0, 1}}, "p (2 bytes)")
	f(Split{ID: "p"}, "p (0 bytes)")
	f(Split{ID: "a\nb", State: []byte("x\ty")}, `"a\nb" (3 bytes)`)
}

func TestCheckAssignment(t *testing.T) {
	if err := checkAssignment([][]Split{{{ID: "a"}}, {}}, 2); err != nil {
		t.Fatal(err)
	}
	if err := checkAssignment([][]Split{{{ID: "a"}}}, 2); err == nil || !strings.Contains(err.Error(), "1 lists of splits for 2 tasks") {
		t.Fatalf("wrong count of lists: %v", err)
	}
	if err := checkAssignment([][]Split{{{ID: "a"}}, {{ID: "a"}}}, 2); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("a split in two tasks: %v", err)
	}
}

// FuzzDecodeSplits: the decoder never panics, never allocates beyond what
// the input justifies, and what it accepts re-encodes to the same bytes
// (the encoding is canonical) with no duplicate IDs.
func FuzzDecodeSplits(f *testing.F) {
	f.Add(AppendSplits(nil, nil))
	f.Add(AppendSplits(nil, []Split{{ID: "i%2==0", State: []byte("12")}, {ID: "i%2==1", State: []byte("done")}}))
	f.Add(AppendSplits(nil, []Split{{ID: "/a/b.jsonl", State: []byte("offset 10 line 2")}}))
	f.Add([]byte("12345"))
	f.Add(append([]byte(splitMagic), splitFormatVersion, 0x81, 0x00))
	f.Fuzz(func(t *testing.T, b []byte) {
		splits, err := DecodeSplits(b)
		if err != nil {
			if !errors.Is(err, ErrBadSplits) {
				t.Fatalf("error %v does not wrap ErrBadSplits", err)
			}
			return
		}
		if again := AppendSplits(nil, splits); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in  %q\n out %q", b, again)
		}
		seen := make(map[string]bool)
		for _, s := range splits {
			if s.ID == "" || seen[s.ID] {
				t.Fatalf("accepted an empty or duplicate ID %q", s.ID)
			}
			seen[s.ID] = true
			_ = s.String()
		}
	})
}

// countReader emits records forever, as a split reader.
type countReader struct{ n int64 }

func (r *countReader) Read(buf []int64) (int, error) {
	for i := range buf {
		buf[i] = r.n
		r.n++
	}
	return len(buf), nil
}
func (r *countReader) Splits() ([]Split, error) { return nil, nil }
func (r *countReader) Close() error             { return nil }

// A splittable source task's step costs no allocation per batch.
func TestSplitSourceStepAllocs(t *testing.T) {
	var sum int64
	s := &typedSplitSource[int64]{r: &countReader{}, buf: make([]int64, 64), push: func(v *int64) { sum += *v }}
	if a := testing.AllocsPerRun(100, func() { _, _, _ = s.step() }); a != 0 {
		t.Fatalf("step allocates %v times per batch", a)
	}
	if sum == 0 {
		t.Fatal("nothing was pushed")
	}
}
