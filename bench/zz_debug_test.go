package bench

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func TestZZDebug(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	restore, _ := takeBenchtimeFlag()
	defer restore()
	var rows []*row
	for _, c := range Cases("ring") {
		rows = append(rows, &row{Case: c})
	}
	for _, r := range rows {
		start := time.Now()
		r.calibrate(300 * time.Millisecond)
		fmt.Println(r.Name, r.iterations, time.Since(start))
	}
	for round := range 5 {
		for i := range rows {
			r := rows[(i+round)%len(rows)]
			start := time.Now()
			r.measure()
			fmt.Printf("%s %.2f %v\n", r.Name, r.nsPerRecord[len(r.nsPerRecord)-1], time.Since(start))
		}
	}
}
