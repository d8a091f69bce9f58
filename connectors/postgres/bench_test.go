package postgres

import (
	"strconv"
	"testing"

	"github.com/streamd/streamd/connectors/file"
	"github.com/streamd/streamd/engine"
)

// benchWriter writes b.N records through w, pre-committing and committing
// every 10 000 (a checkpoint), and reports records/s.
func benchWriter(b *testing.B, w engine.SinkWriter[rec]) {
	b.ReportAllocs()
	var id uint64
	r := rec{}
	for i := 0; i < b.N; i++ {
		r = rec{Seq: int64(i), Key: int64(i % 1000), N: int64(i)}
		if err := w.Write(&r); err != nil {
			b.Fatal(err)
		}
		if i%10_000 == 9_999 || i == b.N-1 {
			id++
			if _, err := w.PreCommit(id); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(id); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkSink(b *testing.B) {
	for _, mode := range []Mode{Append, Upsert} {
		b.Run(mode.String(), func(b *testing.B) {
			conn := dial(b)
			table := newTable(b, conn, mode)
			o := testOptions(table, mode)
			o.BatchRows = DefaultBatchRows
			s, err := NewSink(jobOf(table), o)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.Recover(nil); err != nil {
				b.Fatal(err)
			}
			benchWriter(b, newTestWriter(b, s, 0))
		})
	}
	b.Run("file", func(b *testing.B) {
		s, err := file.NewSink("bench", file.SinkOptions[rec]{Dir: b.TempDir(), Encode: func(dst []byte, r *rec) []byte {
			dst = append(dst, `{"seq":`...)
			dst = appendInt(dst, r.Seq)
			dst = append(dst, `,"k":`...)
			dst = appendInt(dst, r.Key)
			dst = append(dst, `,"n":`...)
			dst = appendInt(dst, r.N)
			return append(dst, '}')
		}})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if err := s.Recover(nil); err != nil {
			b.Fatal(err)
		}
		w, err := s.NewWriter(engine.SinkContext{Job: "bench", Transactional: true})
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		benchWriter(b, w)
	})
}

func appendInt(dst []byte, v int64) []byte {
	return strconv.AppendInt(dst, v, 10)
}
