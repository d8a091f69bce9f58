package nexmark

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
)

// beamLine returns AppendJSON's line for e without nexmark-flink's channel
// and url (which Beam does not have) and without the newline: the format
// of testdata/beam_events.txt.
func beamLine(dst []byte, e *Event) []byte {
	dst = AppendJSON(dst, e)
	dst = dst[:len(dst)-1] // newline
	if e.Kind == KindBid {
		i := bytes.LastIndex(dst, []byte(`,"channel":`))
		if i < 0 {
			panic("no channel field in a bid")
		}
		dst = append(dst[:i], '}')
	}
	return dst
}

// TestBeamGoldenEvents compares events with the output of Beam's
// generator logic run in Java (testdata/README.md): the first 200 events,
// 50 from event 1,000,000, 50 from 123,456,789,000 and the last 50 before
// MaxEvents.
func TestBeamGoldenEvents(t *testing.T) {
	f, err := os.Open("testdata/beam_events.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	cfg := DefaultConfig()
	kinds := map[Kind]int{}
	var buf []byte
	for sc.Scan() {
		num, want, _ := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		e := EventAt(cfg, n)
		kinds[e.Kind]++
		buf = beamLine(buf[:0], &e)
		if string(buf) != want {
			t.Errorf("event %d:\n got %s\nwant %s", n, buf, want)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if kinds[KindPerson] < 5 || kinds[KindAuction] < 12 || kinds[KindBid] < 100 {
		t.Fatalf("golden file too small: %v", kinds)
	}
}

// TestBeamGoldenDigests compares SHA-256 digests of long runs of events
// with those of Beam's generator logic run in Java: 2 M events from 0,
// 200 000 from 10^9 and 100 000 from 3·10^14.
func TestBeamGoldenDigests(t *testing.T) {
	data, err := os.ReadFile("testdata/beam_digests.txt")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Fields(line)
		start, _ := strconv.ParseInt(fields[0], 10, 64)
		count, _ := strconv.ParseInt(fields[1], 10, 64)
		if testing.Short() && count > 100000 {
			count = 0
			continue
		}
		h := sha256.New()
		var e Event
		var buf []byte
		for n := start; n < start+count; n++ {
			cfg.Fill(n, &e)
			buf = append(beamLine(buf[:0], &e), '\n')
			h.Write(buf)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != fields[2] {
			t.Errorf("events [%d, %d): SHA-256 %s, Beam's %s", start, start+count, got, fields[2])
		}
	}
}
