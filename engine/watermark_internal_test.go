package engine

import (
	"errors"
	"testing"
)

func TestTaskStateRoundTrip(t *testing.T) {
	for _, wm := range []int64{MinWatermark, -1, 0, 1, 1436918400000, MaxWatermark} {
		got, err := decodeTaskState(appendTaskState(nil, wm))
		if err != nil || got != wm {
			t.Fatalf("watermark %d: decoded %d, %v", wm, got, err)
		}
	}
	if wm, err := decodeTaskState(nil); err != nil || wm != MinWatermark {
		t.Fatalf("empty task state (a checkpoint from before event time): %d, %v; want MinWatermark", wm, err)
	}
	for _, bad := range [][]byte{{2, 0}, {1}, {1, 0x80}, {1, 2, 3}} {
		if _, err := decodeTaskState(bad); !errors.Is(err, errTaskState) {
			t.Fatalf("%x: error %v, want errTaskState", bad, err)
		}
	}
}

func FuzzTaskState(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendTaskState(nil, 1436918400000))
	f.Add([]byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		wm, err := decodeTaskState(b)
		if err != nil {
			return
		}
		if len(b) > 0 && string(appendTaskState(nil, wm)) != string(b) {
			t.Fatalf("%x decodes to %d, which encodes to %x", b, wm, appendTaskState(nil, wm))
		}
	})
}
