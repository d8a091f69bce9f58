package postgres

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// connSettings is what the source and the sink connect with: the URL
// (without a password), the variable that holds the password, the bound on
// every round trip.
type connSettings struct {
	url, passwordEnv string
	timeout          time.Duration
}

// connect opens a connection with the given run-time parameters
// (application_name, so that an operator finds it in pg_stat_activity,
// and whatever else the caller needs). errf makes the caller's errors
// (named after it, and scrubbed of the password).
func (c connSettings) connect(params map[string]string, errf func(format string, args ...any) error) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(c.url)
	if err != nil {
		return nil, errf("the URL does not parse")
	}
	if c.passwordEnv != "" {
		// An unset variable is a mistake, not an empty password.
		pw, ok := os.LookupEnv(c.passwordEnv)
		if !ok {
			return nil, errf("the environment variable %s (PasswordEnv) is not set", c.passwordEnv)
		}
		cfg.Password = pw
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > c.timeout {
		cfg.ConnectTimeout = c.timeout
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, errf("cannot connect to %s:%d database %q as %q: %w", cfg.Host, cfg.Port, cfg.Database, cfg.User, err)
	}
	return conn, nil
}

// scrub returns err without the password (the variable's current value)
// in its text; the chain (errors.Is) is kept.
func (c connSettings) scrub(err error) error {
	if err == nil {
		return nil
	}
	pw := ""
	if c.passwordEnv != "" {
		pw = os.Getenv(c.passwordEnv)
	}
	if pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return scrubbedError{msg: strings.ReplaceAll(err.Error(), pw, "********"), err: err}
}
