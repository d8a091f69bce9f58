# Thin wrappers around the go command; nothing is hidden.
SHELL     := /bin/bash
# A failing command in a pipeline (go test | grep) fails the target.
.SHELLFLAGS := -o pipefail -c
GO        ?= go
PKGS      := ./...
# Packages with goroutines that talk to each other run under the race detector.
RACE_PKGS := ./ringbuf/... ./align/... ./keyed/... ./snapshot/... ./engine/... ./window/... ./join/... ./connectors/... ./jobrun/... ./server/...
FUZZTIME  ?= 10s
BENCH_COUNT ?= 5
BENCH_TIME  ?= 1s

.PHONY: build test race invariants bench bench-smoke profile fuzz lint ci example clean stress

build:
	$(GO) build -o bin/streamd ./cmd/streamd

# The README's test command: every test, including the crash tests.
# cmd/streamd (the crash tests, the power-loss and fault sweeps: minutes)
# runs on its own with -v, so its progress lines appear as they happen.
test:
	$(GO) test -count=1 $$($(GO) list $(PKGS) | grep -v '/cmd/streamd$$')
	$(GO) test -count=1 -timeout 20m -v ./cmd/streamd/ | grep -v -E --line-buffered '^=== (RUN|PAUSE|CONT|NAME)'
	$(GO) test -tags failpoints -count=1 -run Crash ./snapshot/
	$(GO) test -tags failpoints -count=1 -run TestCountJobSIGKILL ./connectors/kafka/

# -race also turns on the invariant checks (internal/invariants).
race:
	$(GO) test -race -short -count=1 $(RACE_PKGS)

# The packages' tests again with their structural invariant checks
# compiled in (-tags invariants, the switch in internal/invariants: ring
# indexes, alignment, keyed tables, snapshot blocks, the checkpoint
# coordinator), without the race detector's slowdown.
INVARIANT_PKGS := ./ringbuf/... ./align/... ./keyed/... ./snapshot/... ./engine/... ./window/...
invariants:
	$(GO) test -tags invariants -short -count=1 $(INVARIANT_PKGS)

# Benchmark table: medians of BENCH_COUNT interleaved runs, ratios against
# baselines measured in the same process, at full state sizes (10 M keys for
# the snapshot pause, ~1 GiB for the restore).
bench: bench-nexmark
	STREAMD_BENCH_FULL=1 $(GO) run ./bench/cmd/streamd-bench -count $(BENCH_COUNT) -benchtime $(BENCH_TIME)

# The Nexmark suite (issue 12): every registered query RUNS times on
# EVENTS generated events, with exactly-once checkpoints every second (the
# issue's targets), each followed by the same run without checkpoints
# (the checkpoint cost) and by its plain-Go channels baseline; writes
# bench/results/nexmark-<query>.json, nexmark.md (the README's Nexmark
# table, medians and min-max) and nexmark.png. The binary is built with
# -buildvcs=auto so that the results name the commit.
EVENTS ?= 5000000
RUNS   ?= 3
.PHONY: bench-nexmark
bench-nexmark:
	$(GO) build -buildvcs=auto -o bin/streamd ./cmd/streamd
	./bin/streamd bench nexmark --suite --events $(EVENTS) --runs $(RUNS) --checkpoint-interval 1s --checkpoint-cost --baseline channels --out bench/results

# Every benchmark once, briefly, at CI sizes (<= 100 k keys): proves the
# benchmark code runs and its checks hold; asserts no speed.
bench-smoke:
	STREAMD_BENCH_SMALL=1 $(GO) run ./bench/cmd/streamd-bench -count 1 -benchtime 50ms

# CPU profiles of the standard benchmarks into profiles/, and their hot
# spots (printed; profiles/README.md quotes them).
PROFILE_BENCHES := PipelineEngine YAMLStreamd Checkpoint100ms
# Nexmark queries profiled with the generator in the process and exactly-once
# checkpoints every second (issue 12), as `streamd bench nexmark` runs them.
PROFILE_QUERIES := q1 q5
PROFILE_EVENTS  ?= 20000000
profile:
	@for b in $(PROFILE_BENCHES); do \
	  echo "profiling $$b"; \
	  $(GO) test -run '^$$' -bench "^Benchmark$$b$$" -benchtime 150000000x -cpuprofile profiles/$$b.cpu.pprof -o $${TMPDIR:-/tmp}/streamd-bench.test ./bench/ || exit 1; \
	done
	@echo "profiling Incremental100ms (issue 17's job: 40 M records over 10 M keys, incremental checkpoints every 100 ms)"
	STREAMD_BENCH_FULL=1 $(GO) test -run '^$$' -bench '^BenchmarkIncremental100ms$$' -benchtime 1x -cpuprofile profiles/Incremental100ms.cpu.pprof -o $${TMPDIR:-/tmp}/streamd-bench.test ./bench/
	$(GO) build -o bin/streamd ./cmd/streamd
	@for q in $(PROFILE_QUERIES); do \
	  echo "profiling Nexmark $$q"; \
	  ./bin/streamd bench nexmark --query $$q --events $(PROFILE_EVENTS) --checkpoint-interval 1s --cpuprofile profiles/Nexmark$$q.cpu.pprof >/dev/null || exit 1; \
	done
	$(GO) run ./bench/cmd/profsummary profiles/*.cpu.pprof

# The power-loss and error sweeps of jobrun/powerloss_test.go at every
# operation of the job (make test runs a spread sample of them). Set
# STREAMD_POWERLOSS_SEED to replay a run; its seed is logged.
stress:
	STREAMD_POWERLOSS_FULL=1 $(GO) test -count=1 -timeout 60m -v -run '^(TestPowerLossSweep|TestErrorInjectionSweep|TestDiskFullDuringCheckpoint)$$' ./jobrun/
	STREAMD_FAULTSWEEP_FULL=1 $(GO) test -count=1 -timeout 30m -v -run '^TestFaultSweep$$' ./cmd/streamd/

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Runs the README's example job from scratch: 1 M records, checkpoints every
# 100 ms, output in out/counts/, checkpoints in out/example-data/.
example: build
	rm -rf out/counts out/example-data
	./bin/streamd run --data-dir out/example-data --stats out/counts-stats.json examples/counts.yaml
	@echo "committed files:"; ls -l out/counts/
	@echo "first lines:"; head -n 3 $$(ls out/counts/*.jsonl | head -n 1)
	@echo "records: $$(cat out/counts/*.jsonl | wc -l)"

ci: lint test race invariants bench-smoke

clean:
	rm -rf bin out streamd-data

# The README's screenshot of the dashboard, docs/dashboard.png: the
# end-to-end test runs a job on a real `streamd serve`, opens the page in
# headless Chromium (.ci/setup-chromium.sh installs it) and saves it.
.PHONY: screenshot
screenshot:
	STREAMD_UPDATE_SCREENSHOT=1 $(GO) test -count=1 -v -run '^TestDashboardEndToEnd$$' ./cmd/streamd/
