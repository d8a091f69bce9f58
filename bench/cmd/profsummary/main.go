// Command profsummary prints the hot spots of CPU profiles as markdown, for
// profiles/README.md: the top functions by flat and cumulative time.
//
//	go run ./bench/cmd/profsummary [-n 15] profiles/*.cpu.pprof
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/pprof/profile"
)

func main() {
	n := flag.Int("n", 15, "functions per profile")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: profsummary [-n N] PROFILE...")
		os.Exit(2)
	}
	for _, path := range flag.Args() {
		if err := summarize(os.Stdout, path, *n); err != nil {
			fmt.Fprintf(os.Stderr, "profsummary: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

type fnTime struct {
	name      string
	flat, cum int64
	flatPct   float64
	cumPct    float64
}

func summarize(w io.Writer, path string, n int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return err
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			idx = i
		}
	}
	if idx < 0 {
		idx = len(p.SampleType) - 1
	}
	flat := make(map[string]int64)
	cum := make(map[string]int64)
	var total int64
	for _, s := range p.Sample {
		v := s.Value[idx]
		total += v
		seen := make(map[string]bool)
		for i, loc := range s.Location {
			for j, line := range loc.Line {
				name := line.Function.Name
				if i == 0 && j == 0 {
					flat[name] += v
				}
				if !seen[name] {
					cum[name] += v
					seen[name] = true
				}
			}
		}
	}
	if total == 0 {
		return fmt.Errorf("no samples")
	}
	var fns []fnTime
	for name, c := range cum {
		fns = append(fns, fnTime{name: name, flat: flat[name], cum: c,
			flatPct: 100 * float64(flat[name]) / float64(total), cumPct: 100 * float64(c) / float64(total)})
	}
	sort.Slice(fns, func(i, j int) bool {
		if fns[i].flat != fns[j].flat {
			return fns[i].flat > fns[j].flat
		}
		return fns[i].name < fns[j].name
	})
	fmt.Fprintf(w, "### %s\n\n%d samples, %.2fs of CPU over %.2fs\n\n| flat %% | cum %% | function |\n| ---: | ---: | --- |\n",
		filepath.Base(path), len(p.Sample), float64(total)/1e9, float64(p.DurationNanos)/1e9)
	for i := 0; i < n && i < len(fns); i++ {
		fmt.Fprintf(w, "| %.1f | %.1f | `%s` |\n", fns[i].flatPct, fns[i].cumPct, fns[i].name)
	}
	fmt.Fprintln(w)
	return nil
}
