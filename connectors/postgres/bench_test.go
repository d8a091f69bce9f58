package postgres

import (
	"io"
	"strconv"
	"testing"
	"time"

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

// BenchmarkSource reads a table of 200 000 rows (a bigserial id, an int
// and a short text) through the source's reader, from the start again
// whenever it has read them all, and reports rows/s: the loopback cost of
// the queries (BatchRows rows each), the wire decoding and Decode. A new
// reader's first fence waits for the transactions then in progress in the
// database (other tests'): PollInterval is short so that this costs little.
func BenchmarkSource(b *testing.B) {
	const rows = 200_000
	conn := dialSource(b)
	table := newSourceTable(b, conn, "k bigint NOT NULL, s text NOT NULL")
	exec1(b, conn, "INSERT INTO "+table+" (k, s) SELECT g % 1000, 'user-' || g FROM generate_series(1, "+strconv.Itoa(rows)+") g")
	exec1(b, conn, "VACUUM ANALYZE "+table)
	type row struct {
		ID, K int64
		S     string
	}
	src, err := NewSource(SourceOptions[row]{URL: pgURL(), Table: table, Column: "id", Columns: []string{"k", "s"},
		Kinds: []Kind{KindInt, KindText}, Bounded: true, Logger: quiet, PollInterval: time.Millisecond,
		Decode: func(r *Row, v *row) error {
			k, err := r.Int(0)
			if err != nil {
				return err
			}
			s, err := r.Text(1)
			*v = row{ID: r.Position(), K: k, S: s}
			return err
		}})
	if err != nil {
		b.Fatal(err)
	}
	asg, err := src.Initial(1)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]row, 256)
	b.ReportAllocs()
	b.ResetTimer()
	var r engine.SplitReader[row]
	for read := 0; read < b.N; {
		if r == nil {
			if r, err = src.NewReader(engine.SourceContext{Job: "bench", Operator: "src"}, asg[0]); err != nil {
				b.Fatal(err)
			}
		}
		n, err := r.Read(buf[:min(len(buf), b.N-read)])
		read += n
		if err == io.EOF {
			r.Close()
			r = nil
		} else if err != nil {
			b.Fatal(err)
		}
	}
	if r != nil {
		r.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
