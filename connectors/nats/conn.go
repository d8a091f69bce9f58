package nats

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// DefaultURL is the server ConnOptions.URL defaults to.
const DefaultURL = "nats://127.0.0.1:4222"

// DefaultConnectTimeout is ConnOptions.ConnectTimeout's default.
const DefaultConnectTimeout = 5 * time.Second

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
}

func (o *ConnOptions) ensureDefaults() {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
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
// server and in errors). The client reconnects by itself while the job
// runs; a request that cannot complete within ConnectTimeout is an error.
func connect(o ConnOptions, what string) (*natsgo.Conn, error) {
	opts := []natsgo.Option{
		natsgo.Name("streamd " + what),
		natsgo.Timeout(o.ConnectTimeout),
		// Without it, a server that is down at start fails at once,
		// which is what we want: "unreachable at start" is an error.
		natsgo.RetryOnFailedConnect(false),
		// A job that lost its server reconnects for up to 2 minutes,
		// then its requests fail and the job fails.
		natsgo.MaxReconnects(60),
		natsgo.ReconnectWait(2 * time.Second),
	}
	if o.UserEnv != "" {
		opts = append(opts, natsgo.UserInfo(os.Getenv(o.UserEnv), os.Getenv(o.PasswordEnv)))
	}
	if o.TokenEnv != "" {
		opts = append(opts, natsgo.Token(os.Getenv(o.TokenEnv)))
	}
	nc, err := natsgo.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: %s: cannot connect to %s: %s", what, redactURLs(o.URL), scrub(err.Error(), o))
	}
	return nc, nil
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
