package invariants

import (
	"runtime/debug"
	"slices"
	"strings"
	"testing"
)

// TestEnabledFollowsTheBuild checks the build constraints of on.go and
// off.go against the flags this test binary was built with: Enabled is
// true exactly when -race or -tags invariants was given.
func TestEnabledFollowsTheBuild(t *testing.T) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build information in this binary")
	}
	race, tagged := false, false
	for _, s := range info.Settings {
		switch s.Key {
		case "-race":
			race = s.Value == "true"
		case "-tags":
			tagged = slices.Contains(strings.Split(s.Value, ","), "invariants")
		}
	}
	if want := race || tagged; Enabled != want {
		t.Fatalf("Enabled = %v, want %v (-race %v, -tags invariants %v)", Enabled, want, race, tagged)
	}
}
