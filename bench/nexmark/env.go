package nexmark

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Env describes where and when results were measured; every JSON object
// the harness writes carries it.
type Env struct {
	CommandLine string `json:"command_line"`
	Date        string `json:"date"` // RFC 3339, local time with offset
	GoVersion   string `json:"go_version"`
	GOOS        string `json:"goos"`
	GOARCH      string `json:"goarch"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	NumCPU      int    `json:"num_cpu"`
	// Commit is the VCS revision the binary was built from, with
	// CommitTime and CommitModified (uncommitted changes in the tree), as
	// debug.ReadBuildInfo has them: empty when the build did not stamp
	// them (go run and go test do not; -buildvcs=false neither).
	Commit         string `json:"commit"`
	CommitTime     string `json:"commit_time"`
	CommitModified bool   `json:"commit_modified"`
}

// CurrentEnv returns the environment of this process; args is the command
// line (os.Args).
func CurrentEnv(args []string) Env {
	e := Env{
		CommandLine: strings.Join(args, " "),
		Date:        time.Now().Format(time.RFC3339),
		GoVersion:   runtime.Version(),
		GOOS:        runtime.GOOS,
		GOARCH:      runtime.GOARCH,
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		NumCPU:      runtime.NumCPU(),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				e.Commit = s.Value
			case "vcs.time":
				e.CommitTime = s.Value
			case "vcs.modified":
				e.CommitModified = s.Value == "true"
			}
		}
	}
	return e
}
