// Package failpoint lets crash tests kill the process at named points.
//
// A failpoint is a named place in the code (failpoint.Hit("snapshot-async"))
// where a crash test can kill the process. Failpoints exist only in a binary
// built with -tags failpoints (the crash tests build streamd that way, as
// etcd's gofail and Pebble's invariants do with their tags). In any other
// build — a release binary, `go test` without the tag — Hit is an empty
// function the compiler inlines away, Enabled reports false, Compiled is
// false, and the environment variable below is never read: nothing of this
// package's mechanism is linked in, so no setting can make a production
// daemon kill itself. Such a build says nothing when the variable is set
// either: reading it just to warn would put the mechanism's trace back into
// the release binary, and a crash test run against the wrong binary fails
// anyway, because its failpoints are never hit.
//
// In a -tags failpoints build, the environment variable STREAMD_FAILPOINTS
// arms the points: a comma-separated list of name=probability entries, e.g.
// "snapshot-async=0.3,sink-after-rename=1". When an armed point is hit, it
// fires with that probability: it writes "failpoint NAME hit" to standard
// error and kills the process with SIGKILL, exactly as an operator's
// `kill -9` or a power loss would (no deferred functions, no flushing).
// STREAMD_FAILPOINTS_SEED fixes the random sequence, for reproducible runs.
// When the variable is unset, Hit costs one atomic load.
//
// This package owns only the mechanism; the names of the points are listed
// in the README ("Crash testing").
package failpoint

import (
	"fmt"
	"strconv"
	"strings"
)

// EnvVar names the environment variable that arms failpoints in a
// -tags failpoints build.
const EnvVar = "STREAMD_FAILPOINTS"

// SeedEnvVar names the environment variable that seeds the random choice.
const SeedEnvVar = "STREAMD_FAILPOINTS_SEED"

// Parse decodes a failpoint specification "name=prob,name=prob". A name
// without "=prob" fires every time. It is available in every build.
func Parse(spec string) (map[string]float64, error) {
	points := make(map[string]float64)
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, probStr, ok := strings.Cut(part, "=")
		if !ok {
			probStr = "1"
		}
		prob, err := strconv.ParseFloat(probStr, 64)
		if err != nil || !(prob >= 0 && prob <= 1) { // NaN too
			return nil, fmt.Errorf("failpoint %q: probability %q is not a number in [0, 1]", name, probStr)
		}
		points[name] = prob
	}
	return points, nil
}
