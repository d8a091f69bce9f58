package snapshot

import (
	"fmt"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// manifestMarkerPrefix starts the name of the file in which Pebble records
// which MANIFEST is current ("marker.manifest.000002.MANIFEST-000005";
// vfs/atomicfs.Marker).
const manifestMarkerPrefix = "marker.manifest."

// manifestSyncFS is the filesystem the Store gives Pebble: Options.FS,
// except that before Pebble creates a MANIFEST marker it fsyncs the
// marker's directory.
//
// Pebble v2.1.7 writes a new MANIFEST (at every Open, and whenever the
// MANIFEST grows too large), fsyncs the file, creates the marker that
// names it, and only then fsyncs the directory: the two new directory
// entries become durable together. A filesystem that does not keep the
// order of metadata updates may, after a power loss, keep the marker and
// lose the MANIFEST, and Pebble then refuses the directory for good
// ("could not open manifest file ...: file does not exist") — a store
// whose checkpoints are all intact on disk. make stress hit it during a
// first Open (TestPowerLossSweep, seed 1796630625476906021). With the
// directory fsynced first, the MANIFEST is durable before its marker
// exists, so a marker never names a missing MANIFEST. Pebble fixed the
// same upstream after v2.1.7 (cockroachdb/pebble#5825, pull request #5915:
// "ensure manifest durable before marker creation"); this wrapper can go
// once streamd runs a Pebble release with that fix.
//
// A failed fsync is never retried (DESIGN.md, durability rule 4): once one
// failed, every later marker creation fails with its error, without
// another fsync. Pebble treats a failed marker creation as fatal.
type manifestSyncFS struct {
	vfs.FS

	mu struct {
		sync.Mutex
		// err is the first failed fsync of a marker's directory: set once,
		// under mu, by Create.
		err error
	}
}

var _ vfs.FS = (*manifestSyncFS)(nil)

func newManifestSyncFS(fs vfs.FS) *manifestSyncFS { return &manifestSyncFS{FS: fs} }

// Create creates name; a MANIFEST marker only after its directory, which
// holds the MANIFEST it is about to name, has been fsynced.
func (fs *manifestSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasPrefix(fs.PathBase(name), manifestMarkerPrefix) {
		if err := fs.syncDirBeforeMarker(fs.PathDir(name)); err != nil {
			return nil, err
		}
	}
	return fs.FS.Create(name, category)
}

func (fs *manifestSyncFS) syncDirBeforeMarker(dir string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.mu.err != nil {
		return fs.mu.err
	}
	if err := syncDir(fs.FS, dir); err != nil {
		fs.mu.err = fmt.Errorf("cannot fsync %s before recording its new MANIFEST: %w", dir, err)
		return fs.mu.err
	}
	return nil
}

// Unwrap returns the filesystem manifestSyncFS wraps.
func (fs *manifestSyncFS) Unwrap() vfs.FS { return fs.FS }
