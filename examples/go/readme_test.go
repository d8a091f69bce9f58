package examples_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's quoted blocks from the files they quote")

const readme = "../../README.md"

// quoteRE matches a quoted file in the README:
//
//	<!-- quote examples/go/checkpointed/main.go -->
//	```go
//	…the file's content…
//	```
//	<!-- end quote -->
var quoteRE = regexp.MustCompile("(?s)<!-- quote ([^ ]+) -->\n```go\n(.*?)```\n<!-- end quote -->")

// TestREADMEQuotesExamples checks that every file the README quotes (between
// "<!-- quote PATH -->" and "<!-- end quote -->") is quoted verbatim, so the
// README's programs are the ones that TestCheckpointed and TestCustom build
// and run. After changing an example, rewrite the README's copies with
//
//	go test ./examples/go -run TestREADME -update
func TestREADMEQuotesExamples(t *testing.T) {
	doc, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	quotes := quoteRE.FindAllSubmatchIndex(doc, -1)
	if len(quotes) == 0 {
		t.Fatalf("%s quotes no example (no %q blocks)", readme, "<!-- quote PATH -->")
	}
	var out bytes.Buffer
	last := 0
	for _, q := range quotes {
		path := string(doc[q[2]:q[3]])
		quoted := doc[q[4]:q[5]]
		file, err := os.ReadFile(filepath.Join("../..", filepath.FromSlash(path)))
		if err != nil {
			t.Fatalf("%s quotes %s: %v", readme, path, err)
		}
		out.Write(doc[last:q[4]])
		out.Write(file)
		last = q[5]
		if !bytes.Equal(quoted, file) && !*update {
			t.Errorf("%s's copy of %s differs from the file; rerun with -update to copy the file into the README", readme, path)
		}
	}
	out.Write(doc[last:])
	if *update && !bytes.Equal(out.Bytes(), doc) {
		if err := os.WriteFile(readme, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", readme)
	}
	// The checkpointed example, at least, must be quoted.
	if !bytes.Contains(doc, []byte("<!-- quote examples/go/checkpointed/main.go -->")) {
		t.Errorf("%s does not quote examples/go/checkpointed/main.go", readme)
	}
}
