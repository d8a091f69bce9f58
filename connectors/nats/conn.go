package nats

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// DefaultURL is the server ConnOptions.URL defaults to.
const DefaultURL = "nats://127.0.0.1:4222"

// DefaultConnectTimeout is ConnOptions.ConnectTimeout's default.
const DefaultConnectTimeout = 5 * time.Second

// DefaultReconnectTimeout is ConnOptions.ReconnectTimeout's default.
const DefaultReconnectTimeout = 30 * time.Second

// reconnectWait is the pause between two reconnect attempts to one
// server: short, because a server that restarts is usually back within a
// second or two, and an attempt on a refused port costs nothing.
const reconnectWait = 250 * time.Millisecond

// ConnOptions says how to reach the NATS server. Credentials are never
// written in options: they name environment variables.
type ConnOptions struct {
	// URL is the server, or a comma-separated list of servers. Default
	// DefaultURL. It must not hold credentials (user:password@): use
	// UserEnv and PasswordEnv, or TokenEnv.
	URL string
	// UserEnv and PasswordEnv name the environment variables holding the
	// user and password, when the server wants them.
	UserEnv, PasswordEnv string
	// TokenEnv names the environment variable holding a token.
	TokenEnv string
	// ConnectTimeout bounds connecting and every request of setup and
	// commit (stream look-ups, acknowledgements). Default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ReconnectTimeout is how long a running job waits for a server it
	// lost (a server that stopped, restarted, or became unreachable).
	// Meanwhile the client reconnects by itself, and a job whose server
	// is back in time goes on as if nothing happened: its sources resume
	// where they were and a commit caught by the loss is published again
	// (the duplicate window drops what arrived twice). A source reader
	// without a connection for longer, or a sink commit that could not
	// complete within ReconnectTimeout of its first failure, fails the
	// job with an error that says so; a rerun resumes from the last
	// completed checkpoint. Default DefaultReconnectTimeout.
	ReconnectTimeout time.Duration
}

func (o *ConnOptions) ensureDefaults() {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.ReconnectTimeout <= 0 {
		o.ReconnectTimeout = DefaultReconnectTimeout
	}
}

// validate reports every problem of the options.
func (o *ConnOptions) validate() []error {
	var errs []error
	for _, s := range strings.Split(o.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			// url's error quotes the input, which may hold a password.
			errs = append(errs, fmt.Errorf("nats: URL %q does not parse", redactURL(s)))
			continue
		}
		if u.User != nil {
			errs = append(errs, fmt.Errorf("nats: URL %q holds credentials: name environment variables in UserEnv and PasswordEnv (or TokenEnv) instead", redactURL(s)))
		}
	}
	if (o.UserEnv == "") != (o.PasswordEnv == "") {
		errs = append(errs, errors.New("nats: UserEnv and PasswordEnv go together"))
	}
	for _, env := range []string{o.UserEnv, o.PasswordEnv, o.TokenEnv} {
		if env != "" {
			if _, ok := os.LookupEnv(env); !ok {
				errs = append(errs, fmt.Errorf("nats: the environment variable %s (named in the options) is not set", env))
			}
		}
	}
	return errs
}

// redactURL returns a server URL without anything after "//" and before
// "@": it is what error messages show.
func redactURL(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		scheme := ""
		if j := strings.Index(s, "//"); j >= 0 && j < i {
			scheme = s[:j+2]
		}
		return scheme + "REDACTED@" + s[i+1:]
	}
	return s
}

// redactURLs redacts a comma-separated list.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactURL(p)
	}
	return strings.Join(parts, ",")
}

// connect opens a connection for what (it names the connection on the
// server and in errors), and returns it with the record of its losses.
// The client reconnects by itself, without limit: ReconnectTimeout is
// enforced by the connection's users (connHealth), which know what they
// were doing when it was lost.
func connect(o ConnOptions, what string) (*natsgo.Conn, *connHealth, error) {
	h := &connHealth{server: redactURLs(o.URL), timeout: o.ReconnectTimeout}
	opts := []natsgo.Option{
		natsgo.Name("streamd " + what),
		natsgo.Timeout(o.ConnectTimeout),
		// Without it, a server that is down at start fails at once,
		// which is what we want: "unreachable at start" is an error.
		natsgo.RetryOnFailedConnect(false),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(reconnectWait),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) { h.lost(describeLoss(err, o)) }),
		natsgo.ReconnectHandler(func(*natsgo.Conn) { h.back() }),
	}
	if o.UserEnv != "" {
		opts = append(opts, natsgo.UserInfo(os.Getenv(o.UserEnv), os.Getenv(o.PasswordEnv)))
	}
	if o.TokenEnv != "" {
		opts = append(opts, natsgo.Token(os.Getenv(o.TokenEnv)))
	}
	nc, err := natsgo.Connect(o.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats: %s: cannot connect to %s: %s", what, redactURLs(o.URL), scrub(err.Error(), o))
	}
	return nc, h, nil
}

// describeLoss says why a connection was lost, as text: never the error
// itself, so that no error of this package wraps the io.EOF of a closed
// connection (a source's Read must return io.EOF only at its end), and
// scrubbed of credentials.
func describeLoss(err error, o ConnOptions) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF):
		return "the server closed the connection"
	default:
		return scrub(err.Error(), o)
	}
}

// connHealth records when a connection was lost and why. The client's
// callbacks write it; readers and sinks ask it whether the loss has lasted
// longer than ReconnectTimeout.
type connHealth struct {
	server  string        // the redacted URLs, for errors
	timeout time.Duration // ReconnectTimeout

	mu struct {
		sync.Mutex
		// downSince is when the connection was lost, zero while it is up.
		downSince time.Time
		// cause says why it was lost ("" if the client did not say).
		cause string
	}
}

func (h *connHealth) lost(cause string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.downSince.IsZero() {
		h.mu.downSince = time.Now()
	}
	if cause != "" {
		h.mu.cause = cause
	}
}

func (h *connHealth) back() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.downSince, h.mu.cause = time.Time{}, ""
}

// downSince returns when the connection was lost, zero if it is up.
func (h *connHealth) downSince() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.downSince
}

// check returns an error when the connection has been lost for longer than
// ReconnectTimeout, nil otherwise. The error does not wrap the cause.
func (h *connHealth) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.downSince.IsZero() {
		return nil
	}
	if d := time.Since(h.mu.downSince); d > h.timeout {
		return h.errorLocked(d)
	}
	return nil
}

// giveUp returns the error of a connection that is not back within
// ReconnectTimeout, or, if it is up, of a server that did not answer
// within it.
func (h *connHealth) giveUp(since time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.mu.downSince.IsZero() {
		return h.errorLocked(time.Since(h.mu.downSince))
	}
	return fmt.Errorf("the server at %s did not answer for %v (ReconnectTimeout %v)",
		h.server, time.Since(since).Round(time.Millisecond), h.timeout)
}

func (h *connHealth) errorLocked(d time.Duration) error {
	cause := ""
	if h.mu.cause != "" {
		cause = " (" + h.mu.cause + ")"
	}
	return fmt.Errorf("the connection to %s was lost %v ago%s and did not come back within ReconnectTimeout (%v)",
		h.server, d.Round(time.Millisecond), cause, h.timeout)
}

// waitUp waits until nc is connected or deadline has passed, and reports
// whether it is connected.
func waitUp(nc *natsgo.Conn, deadline time.Time) bool {
	for !nc.IsConnected() {
		if nc.IsClosed() || !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(min(50*time.Millisecond, time.Until(deadline)+time.Millisecond))
	}
	return true
}

// scrub removes the values of the credential variables from an error
// text, in case a library ever quotes them.
func scrub(msg string, o ConnOptions) string {
	for _, env := range []string{o.UserEnv, o.PasswordEnv, o.TokenEnv} {
		if env == "" {
			continue
		}
		if v := os.Getenv(env); len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "REDACTED")
		}
	}
	return msg
}
