// Package atomicfile keeps small records that must survive a power loss
// whole or not at all: a one-line text record with a CRC-32C, replaced
// atomically (written to a temporary name, fsynced, renamed over the old
// one, and the directory fsynced). The file sink's commit marker and the
// checkpoint store's record of completed checkpoints are such records.
//
// It imports only Pebble's vfs (the filesystem seam, DESIGN rule 5).
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	iofs "io/fs"
	"strconv"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// MaxBytes bounds a record (what Read reads at most).
const MaxBytes = 4 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Encode returns the record line "BODY crc=XXXXXXXX\n", the CRC-32C of BODY
// in hex. BODY must be one line.
func Encode(body string) []byte {
	return fmt.Appendf(nil, "%s crc=%08x\n", body, crc32.Checksum([]byte(body), crcTable))
}

// Decode checks a record line and returns its body. A truncated or damaged
// record is an error that says what is wrong.
func Decode(b []byte) (string, error) {
	line, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok {
		return "", errors.New("truncated (no final newline)")
	}
	if bytes.IndexByte(line, '\n') >= 0 {
		return "", errors.New("more than one line")
	}
	i := bytes.LastIndex(line, []byte(" crc="))
	if i < 0 || len(line)-i-len(" crc=") != 8 {
		return "", errors.New("no checksum")
	}
	body, crcHex := line[:i], line[i+len(" crc="):]
	want, err := strconv.ParseUint(string(crcHex), 16, 32)
	if err != nil {
		return "", errors.New("bad checksum field")
	}
	if crc32.Checksum(body, crcTable) != uint32(want) {
		return "", errors.New("checksum mismatch")
	}
	return string(body), nil
}

// Write replaces path with data durably: it writes path+".tmp", fsyncs
// it, renames it over path, and calls syncDir on path's directory (the
// caller's, so that a caller that remembers failed directory fsyncs never
// fsyncs one again). On error the old record may or may not have been
// replaced; it is never half written.
func Write(fs vfs.FS, path string, data []byte, syncDir func(dir string) error) error {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("cannot fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", tmp, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("cannot rename %s to %s: %w", tmp, path, err)
	}
	return syncDir(fs.PathDir(path))
}

// Read reads a record file of at most MaxBytes; a larger one is an error.
// A missing file is an error for which errors.Is(err, fs.ErrNotExist)
// holds (oserror semantics of the FS).
func Read(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, MaxBytes)
	}
	return b, nil
}

// MkdirAll creates dir and its missing parents, and calls syncDir on the
// parent of every directory it created (as Pebble does for its own dir):
// without that, a power loss may forget a new directory with everything in
// it, although each file inside was synced.
func MkdirAll(fs vfs.FS, dir string, syncDir func(dir string) error) error {
	var created []string // dir and its missing parents, innermost first
	for p := dir; ; {
		if _, err := fs.Stat(p); err == nil {
			break
		} else if !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("cannot create %s: %w", dir, err)
		}
		created = append(created, p)
		parent := fs.PathDir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if len(created) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	for _, p := range created {
		if parent := fs.PathDir(p); parent != p {
			if err := syncDir(parent); err != nil {
				return err
			}
		}
	}
	return nil
}
