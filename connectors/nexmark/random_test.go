package nexmark

import (
	"bufio"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestJavaRandomGolden compares the port with java.util.Random's output,
// recorded by testdata/JavaRandomGolden.java, value for value.
func TestJavaRandomGolden(t *testing.T) {
	f, err := os.Open("testdata/java_random.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	lines, values := 0, 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		method, want := fields[0], fields[3:]
		lines++
		if method == "round" {
			for _, w := range want {
				bitsHex, res, _ := strings.Cut(w, ":")
				b, _ := strconv.ParseUint(bitsHex, 16, 64)
				x := math.Float64frombits(b)
				if got := strconv.FormatInt(javaRound(x), 10); got != res {
					t.Errorf("javaRound(%v) = %s, Java's Math.round %s", x, got, res)
				}
				values++
			}
			continue
		}
		seed, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		r := NewJavaRandom(seed)
		var got []string
		dbl := func(v float64) string { return strconv.FormatUint(math.Float64bits(v), 16) }
		for len(got) < len(want) {
			switch method {
			case "nextInt":
				got = append(got, strconv.Itoa(int(r.NextInt())))
			case "nextIntBound":
				bound, _ := strconv.Atoi(fields[2])
				got = append(got, strconv.Itoa(int(r.NextIntn(int32(bound)))))
			case "nextLong":
				got = append(got, strconv.FormatInt(r.NextLong(), 10))
			case "nextDouble":
				got = append(got, dbl(r.NextDouble()))
			case "nextBoolean":
				got = append(got, strconv.FormatBool(r.NextBoolean()))
			case "mixed":
				got = append(got, strconv.Itoa(int(r.NextIntn(13))), strconv.FormatInt(r.NextLong(), 10),
					dbl(r.NextDouble()), strconv.Itoa(int(r.NextIntn(1500000001))), strconv.FormatBool(r.NextBoolean()))
			case "price":
				got = append(got, strconv.FormatInt(nextPrice(&r), 10))
			default:
				t.Fatalf("unknown method %q in java_random.txt", method)
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s seed %d arg %s: value %d is %s, Java's %s", method, seed, fields[2], i, got[i], want[i])
			}
			values++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines < 100 || values < 5000 {
		t.Fatalf("only %d lines, %d values compared", lines, values)
	}
}

func TestJavaRandomNextIntnPanicsOnBadBound(t *testing.T) {
	for _, b := range []int32{0, -1, math.MinInt32} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NextIntn(%d) did not panic", b)
				}
			}()
			r := NewJavaRandom(1)
			r.NextIntn(b)
		}()
	}
}

// TestPow10Exact checks the slow path of priceOf against 10^k exactly and
// against math.Pow where both must be correctly rounded.
func TestPow10Exact(t *testing.T) {
	for k := 0; k <= 15; k++ {
		want := math.Pow10(k)
		if got := pow10Exact(float64(k)); got != want {
			t.Errorf("pow10Exact(%d) = %v, want %v", k, got, want)
		}
	}
	// 10^0.5 = sqrt(10), and math.Sqrt is correctly rounded.
	if got, want := pow10Exact(0.5), math.Sqrt(10); got != want {
		t.Errorf("pow10Exact(0.5) = %v, want %v", got, want)
	}
	// The slow and the fast path agree where the fast one is certain.
	r := NewJavaRandom(7)
	for i := 0; i < 2000; i++ {
		x := r.NextDouble() * 6.0
		v := math.Pow(10, x) * 100
		if math.Abs(v-math.Floor(v)-0.5) > 1e-12*v {
			if a, b := javaRound(v), javaRound(pow10Exact(x)*100); a != b {
				t.Fatalf("x=%v: fast price %d, exact price %d", x, a, b)
			}
		}
	}
}
