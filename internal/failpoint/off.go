//go:build !failpoints

package failpoint

// Compiled reports whether failpoints are compiled into this binary: false,
// it was built without -tags failpoints.
const Compiled = false

// Enabled reports whether any failpoint is armed: never, in this build.
func Enabled() bool { return false }

// Hit does nothing in this build; calls to it compile to nothing.
func Hit(name string) {}
