package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	f := func(spec string, want map[string]float64) {
		t.Helper()
		got, err := Parse(spec)
		if err != nil {
			t.Fatalf("Parse(%q): %v", spec, err)
		}
		if len(got) != len(want) {
			t.Fatalf("Parse(%q) = %v, want %v", spec, got, want)
		}
		for name, p := range want {
			if got[name] != p {
				t.Fatalf("Parse(%q) = %v, want %v", spec, got, want)
			}
		}
	}
	f("", map[string]float64{})
	f("a", map[string]float64{"a": 1})
	f("a=0.5, b=0 ,,c=1", map[string]float64{"a": 0.5, "b": 0, "c": 1})

	for _, bad := range []string{"a=x", "a=-0.1", "a=1.5", "a=NaN"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", bad)
		}
	}
}

const childEnv = "FAILPOINT_TEST_CHILD"

// TestHitKillsOnlyWithTheTag runs a child process with STREAMD_FAILPOINTS
// arming a point at probability 1 and hits it. Built with -tags failpoints
// the child dies by SIGKILL; built without, the variable does nothing:
// Enabled is false, Hit returns and the child exits normally.
func TestHitKillsOnlyWithTheTag(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		if Enabled() != Compiled {
			os.Exit(3)
		}
		Hit("test-point")
		os.Stderr.WriteString("child survived\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKillsOnlyWithTheTag$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1", EnvVar+"=test-point=1")
	out, err := cmd.CombinedOutput()
	if Compiled {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("with -tags failpoints: child ended with %v, want SIGKILL; output:\n%s", err, out)
		}
		if !strings.Contains(string(out), "failpoint test-point hit") {
			t.Fatalf("with -tags failpoints: child output:\n%s", out)
		}
		return
	}
	if err != nil || !strings.Contains(string(out), "child survived") {
		t.Fatalf("without -tags failpoints: child ended with %v, want a normal exit; output:\n%s", err, out)
	}
	if strings.Contains(string(out), "failpoint") {
		t.Fatalf("without -tags failpoints: child mentioned failpoints:\n%s", out)
	}
}
