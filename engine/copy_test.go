package engine

import (
	"testing"
	"unsafe"
)

type copyRec struct{ A, B, C, D, E int64 }

// BenchmarkSlotCopy copies a record that was just written field by field
// (as operators build records) into a ring-sized array of slots: by Go
// assignment (vector moves) and word by word (copyWords).
func BenchmarkSlotCopy(b *testing.B) {
	slots := make([]element[copyRec], 1024)
	var r copyRec
	b.Run("assign", func(b *testing.B) {
		for i := range b.N {
			r.A, r.B, r.C, r.D, r.E = int64(i), int64(i)*2, 3, 4, 5
			e := &slots[i&1023]
			e.kind, e.id = elemRecord, uint64(i)
			e.rec = r
		}
	})
	b.Run("words", func(b *testing.B) {
		n := wordCount[copyRec]()
		for i := range b.N {
			r.A, r.B, r.C, r.D, r.E = int64(i), int64(i)*2, 3, 4, 5
			e := &slots[i&1023]
			e.kind, e.id = elemRecord, uint64(i)
			copyWords(unsafe.Pointer(&e.rec), unsafe.Pointer(&r), n)
		}
	})
	if slots[5].rec.C != 3 {
		b.Fatal("not copied")
	}
}

func TestCopyWords(t *testing.T) {
	type big struct{ X [16]int64 }
	for n := 1; n <= maxWordCopy; n++ {
		var src, dst big
		for i := range src.X {
			src.X[i] = int64(i + 1)
		}
		copyWords(unsafe.Pointer(&dst), unsafe.Pointer(&src), n)
		for i := range dst.X {
			want := int64(0)
			if i < n {
				want = int64(i + 1)
			}
			if dst.X[i] != want {
				t.Fatalf("copyWords of %d words: word %d = %d, want %d", n, i, dst.X[i], want)
			}
		}
	}
	if wordCount[copyRec]() != 5 || wordCount[struct{ P *int }]() != 0 || wordCount[struct{ A, B int32 }]() != 1 || wordCount[struct{ A int32 }]() != 0 {
		t.Fatal("wordCount")
	}
}
