package engine

import (
	"strings"
	"testing"
	"unsafe"
)

func TestAutoRingCapacity(t *testing.T) {
	for _, c := range []struct {
		slot  uintptr
		batch int
		want  int
	}{
		{56, 256, 4096},     // the typed pipeline's prec: 229 KiB
		{64, 256, 4096},     // exactly DefaultRingBytes
		{65, 256, 2048},     // just over: halve
		{272, 256, 512},     // a YAML row: 139 KiB
		{272, 100, 512},     // the byte budget, not the batch, decides
		{1 << 20, 256, 512}, // huge records: still two batches
		{56, 1000, 4096},    // 2*1000 rounds up to 2048 < 4096
		{56, 3000, 8192},    // two batches need more than the default
		{1, 1, DefaultRingSlots},
	} {
		if got := autoRingCapacity(c.slot, c.batch); got != c.want {
			t.Errorf("autoRingCapacity(%d, %d) = %d, want %d", c.slot, c.batch, got, c.want)
		}
	}
	type prec struct{ a, b, c, d, e int64 }
	if got := autoRingCapacity(unsafe.Sizeof(element[prec]{}), 256); got != 4096 {
		t.Errorf("element of 5 words: %d slots, want 4096", got)
	}
}

func TestValidateRingAndBatch(t *testing.T) {
	for _, c := range []struct {
		ring, batch int
		err         string // "" = valid
	}{
		{0, 256, ""},
		{0, MaxRingCapacity / 2, ""},
		{0, MaxRingCapacity/2 + 1, "batch size 524289 is outside [1, 524288]"},
		{0, -1, "batch size -1 is outside"},
		{1024, 256, ""},
		{64, 128, "batch size 128 is outside [1, ring capacity 64]"},
		{1, 1, "ring capacity 1 is outside [2, 1048576]"},
		{MaxRingCapacity + 1, 1, "ring capacity 1048577 is outside"},
	} {
		o := Options{RingCapacity: c.ring, BatchSize: c.batch}
		o.EnsureDefaults()
		err := o.Validate()
		switch {
		case c.err == "" && err != nil:
			t.Errorf("ring %d batch %d: %v", c.ring, c.batch, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ring %d batch %d: error %v, want one containing %q", c.ring, c.batch, err, c.err)
		}
	}
}
