package atomicfile

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestRoundTripAndDamage(t *testing.T) {
	b := Encode("magic v1 a=1 b=two")
	if body, err := Decode(b); err != nil || body != "magic v1 a=1 b=two" {
		t.Fatalf("Decode(Encode) = %q, %v", body, err)
	}
	for name, bad := range map[string][]byte{
		"empty":     {},
		"truncated": b[:len(b)-1],
		"half":      b[:len(b)/2],
		"flipped":   []byte(strings.Replace(string(b), "a=1", "a=2", 1)),
		"two lines": append(append([]byte{}, b...), b...),
	} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("%s: Decode accepted %q", name, bad)
		}
	}
}

func TestWriteReplacesAtomically(t *testing.T) {
	mem := vfs.NewCrashableMem()
	if err := mem.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	syncDir := func(dir string) error {
		d, err := mem.OpenDir(dir)
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	if err := syncDir("/"); err != nil { // /d itself must survive
		t.Fatal(err)
	}
	if _, err := Read(mem, "/d/r"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a missing record: %v, want ErrNotExist", err)
	}
	for _, body := range []string{"one", "two"} {
		if err := Write(mem, "/d/r", Encode(body), syncDir); err != nil {
			t.Fatal(err)
		}
		// What a power loss right now keeps is the record just written.
		clone := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		b, err := Read(clone, "/d/r")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Decode(b); err != nil || got != body {
			t.Fatalf("after a crash: %q, %v; want %q", got, err, body)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode("x v1 n=1"))
	f.Add([]byte("x crc=00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		body, err := Decode(b)
		if err != nil {
			return
		}
		if got, err := Decode(Encode(body)); err != nil || got != body {
			t.Fatalf("round trip of %q: %q, %v", body, got, err)
		}
	})
}
