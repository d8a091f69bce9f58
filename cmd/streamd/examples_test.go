package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExamplesValidate runs `streamd validate` on every examples/*.yaml:
// the examples the README points to must stay valid specs.
func TestExamplesValidate(t *testing.T) {
	wd, _ := os.Getwd()
	files, err := filepath.Glob(filepath.Join(wd, "..", "..", "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		code, stdout, stderr := run(t, t.TempDir(), "validate", f)
		if code != 0 {
			t.Errorf("streamd validate %s: exit %d\n%s%s", filepath.Base(f), code, stdout, stderr)
		}
	}
}
