package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/streamd/streamd/engine"
	"github.com/streamd/streamd/internal/logx"
	"github.com/streamd/streamd/server"
	"github.com/streamd/streamd/snapshot"
)

// cmdServe runs the daemon: every job submitted over HTTP, resumed on
// start, stopped with final checkpoints on SIGTERM/SIGINT.
func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "streamd-data", "directory of checkpoints and of the jobs' records (created owner-only if missing)")
	addr := fs.String("http", "127.0.0.1:8081", "listen address of the HTTP API, metrics, pprof and dashboard; a non-loopback host needs --auth-token")
	token := fs.String("auth-token", "", "require Authorization: Bearer TOKEN on every request but /healthz (default $STREAMD_AUTH_TOKEN)")
	grace := fs.Duration("grace", 30*time.Second, "on SIGTERM/SIGINT, how long jobs get to take their final checkpoint before they are cancelled")
	// Off by default: the daemon's jobs share the cores through the Go
	// scheduler; auto and on pin each job's workers to cores from the
	// first, which suits one job per daemon.
	pin := fs.String("pin", "off", "pin each job's worker threads to cores: off, auto or on (off shares the cores between jobs)")
	logLevel := fs.String("log-level", "info", "log events at this level and above: debug, info, warn or error")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "streamd serve: unexpected arguments %q (jobs are submitted over HTTP: POST /v1/jobs)\n%s", fs.Args(), usage)
		return exitUsage
	}
	pinning, ok := parsePin(*pin)
	if !ok {
		fmt.Fprintf(stderr, "streamd serve: --pin must be auto, on or off, not %q\n", *pin)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil || !validLogLevel(*logLevel) {
		fmt.Fprintf(stderr, "streamd serve: --log-level must be debug, info, warn or error, not %q\n", *logLevel)
		return exitUsage
	}
	if *token == "" {
		*token = os.Getenv("STREAMD_AUTH_TOKEN")
	}
	logger := slog.New(logx.NewLineHandler(stderr, level))

	// The data dir is the daemon's alone (its files hold the jobs' specs
	// and state): created owner-only.
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitFailure
	}
	if err := os.Chmod(*dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitFailure
	}
	// Open takes the data dir's lock: a second daemon, or `streamd run`
	// on the same dir, is refused with the holder's pid.
	store, err := snapshot.Open(*dataDir, snapshot.Options{LevelLogger: logger.With("data_dir", *dataDir)})
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitFailure
	}
	defer store.Close()
	m, err := server.NewManager(server.Options{DataDir: *dataDir, Store: store, Logger: logger, Pinning: pinning})
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitFailure
	}
	srv, err := server.NewHTTPServer(m, server.HTTPOptions{Addr: *addr, AuthToken: *token, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitUsage
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		return exitFailure
	}
	if err := m.Resume(); err != nil {
		fmt.Fprintf(stderr, "streamd: %v\n", err)
		ln.Close()
		return exitFailure
	}
	logger.Info("streamd serving", "http", ln.Addr().String(), "data_dir", *dataDir, "auth", *token != "", "version", version)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		fmt.Fprintf(stderr, "streamd: HTTP server: %v\n", err)
		ctx, cancel := context.WithTimeout(context.Background(), *grace)
		defer cancel()
		_ = m.Shutdown(ctx)
		return exitFailure
	case sig := <-sigs:
		logger.Info("stopping every job with a final checkpoint (signal again to exit at once)", "signal", sig.String(), "grace", grace.String())
	}
	go func() {
		<-sigs
		logger.Warn("second signal: exiting at once; jobs resume from their newest checkpoint on the next start")
		os.Exit(exitSignal)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	// The API keeps answering while jobs stop (they show STOPPED one by
	// one); submissions are refused.
	shutdownErr := m.Shutdown(ctx)
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	_ = srv.Shutdown(hctx)
	if shutdownErr != nil {
		logger.Warn("grace period over: cancelled the jobs still stopping; they resume from their newest checkpoint", "grace", grace.String())
		return exitFailure
	}
	logger.Info("streamd stopped; every job took its final checkpoint and resumes on the next start")
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "streamd: HTTP server: %v\n", err)
	}
	return exitOK
}

// parsePin decodes --pin.
func parsePin(s string) (engine.PinMode, bool) {
	switch s {
	case "auto":
		return engine.PinAuto, true
	case "on":
		return engine.PinOn, true
	case "off":
		return engine.PinOff, true
	}
	return 0, false
}
