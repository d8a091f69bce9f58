// Command streamd-bench runs streamd's registered benchmark suites in one
// process and prints a markdown table of medians and of ratios against
// each case's baselines (see package bench). `make bench` runs it.
//
//	streamd-bench [-suite ring,...] [-count 5] [-benchtime 1s] [-list]
//
// The table goes to standard output. Exit status: 0 when every case ran,
// 1 when a case failed (the table is still printed), 2 for a bad command
// line.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/streamd/streamd/bench"
)

func main() {
	fs := flag.NewFlagSet("streamd-bench", flag.ContinueOnError)
	suite := fs.String("suite", "", "comma-separated suites to run (default: all registered: "+strings.Join(bench.Suites(), ",")+")")
	count := fs.Int("count", 5, "runs per case; the table shows medians")
	benchtime := fs.Duration("benchtime", time.Second, "duration of one run of one case")
	list := fs.Bool("list", false, "list the registered suites and cases, and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "streamd-bench: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	if *list {
		for _, s := range bench.Suites() {
			for _, c := range bench.Cases(s) {
				fmt.Printf("%s/%s", s, c.Name)
				if c.Baseline != "" {
					fmt.Printf(" (vs %s)", c.Baseline)
				}
				fmt.Println()
			}
		}
		return
	}
	var suites []string
	for _, s := range strings.Split(*suite, ",") {
		if s = strings.TrimSpace(s); s != "" {
			suites = append(suites, s)
		}
	}
	err := bench.Run(os.Stdout, suites, *count, *benchtime)
	if notes := bench.Notes(); len(notes) > 0 {
		fmt.Println()
		for _, n := range notes {
			fmt.Println("- " + n)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "streamd-bench: %v\n", err)
		if errors.Is(err, bench.ErrCaseFailed) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}
