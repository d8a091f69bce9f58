package bench

import (
	"fmt"
	"io"
	"strconv"
)

var errEOF = io.EOF

func itoa(n int) string { return strconv.Itoa(n) }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
