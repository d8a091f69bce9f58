// Package dirlock takes an exclusive lock on a directory, for one writer
// per directory: the checkpoint store's data dir and the file sink's
// output directory. On the operating system's filesystem it is a flock on
// a lock file (so a second lock fails whether it comes from this process
// or another, and the kernel drops it when the process dies), and the lock
// file names its holder; on any other filesystem (Pebble's in-memory
// filesystems, in tests) it is that filesystem's Lock.
//
// It imports only Pebble's vfs and golang.org/x/sys.
package dirlock

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// ErrHeld is wrapped by the error of a lock that someone else holds.
var ErrHeld = errors.New("dirlock: held by another writer")

// HeldError says who holds a lock.
type HeldError struct {
	Path string
	// Holder is what the holder wrote into the lock file ("" if unknown).
	Holder string
}

func (e *HeldError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("%s is locked by another writer", e.Path)
	}
	return fmt.Sprintf("%s is locked by %s", e.Path, e.Holder)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// maxHolderBytes bounds what is read back from a lock file.
const maxHolderBytes = 4 << 10

// Lock takes the lock file path on fs and writes holder into it (on the
// OS filesystem). The lock lasts until the returned Closer is closed or the
// process ends. A lock someone holds is an error wrapping ErrHeld (a
// *HeldError naming the holder).
func Lock(fs vfs.FS, path, holder string) (io.Closer, error) {
	if vfs.Root(fs) != vfs.Default {
		l, err := fs.Lock(path)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &HeldError{Path: path}
			}
			return nil, fmt.Errorf("cannot lock %s: %w", path, err)
		}
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &HeldError{Path: path, Holder: readHolder(f)}
		}
		return nil, fmt.Errorf("cannot lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(holder+"\n"), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cannot write the holder into lock file %s: %w", path, err)
	}
	return f, nil
}

func readHolder(f *os.File) string {
	b := make([]byte, maxHolderBytes)
	n, _ := f.ReadAt(b, 0)
	return string(bytes.TrimSpace(b[:n]))
}
