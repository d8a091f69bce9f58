package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// Defaults.
const (
	// DefaultTransactionalIDPrefix starts every transactional id.
	DefaultTransactionalIDPrefix = "streamd"
	// DefaultControlTopic holds the sinks' control records.
	DefaultControlTopic = "streamd-commits"
	// DefaultTransactionTimeout is Kafka's transaction.timeout.ms for the
	// sink's producers (the broker caps it at transaction.max.timeout.ms,
	// 15 minutes by default).
	DefaultTransactionTimeout = 15 * time.Minute
	// DefaultMaxBufferedBytes bounds the records a sink task holds while
	// the previous checkpoint's transaction waits for its commit.
	DefaultMaxBufferedBytes = 64 << 20
	// DefaultRequestTimeout bounds each blocking call to the cluster
	// (flush, commit, listing offsets).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultDiscoveryInterval is how often a source looks for new
	// partitions.
	DefaultDiscoveryInterval = 30 * time.Second
)

// Connection is how to reach the cluster; it is shared by sources and
// sinks. Credentials are read from the environment variables it names,
// never written in a spec, and never appear in an error or a log line.
type Connection struct {
	// Brokers are the seed addresses (host:port). Required.
	Brokers []string
	// UserEnv and PasswordEnv name the environment variables that hold
	// the SASL/PLAIN user and password; empty: no SASL.
	UserEnv, PasswordEnv string
	// ClientID is the client id the brokers see. Default "streamd".
	ClientID string
}

func (c *Connection) validate() []error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: brokers: at least one seed address is required"))
	}
	if (c.UserEnv == "") != (c.PasswordEnv == "") {
		errs = append(errs, errors.New("kafka: user_env and password_env go together"))
	}
	return errs
}

// clientOpts returns the franz-go options of c. An unset credential
// variable is an error that names the variable (never its value).
func (c *Connection) clientOpts() ([]kgo.Opt, error) {
	id := c.ClientID
	if id == "" {
		id = "streamd"
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(id), kgo.DialTimeout(10 * time.Second)}
	if c.UserEnv != "" {
		user, ok1 := os.LookupEnv(c.UserEnv)
		pass, ok2 := os.LookupEnv(c.PasswordEnv)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("kafka: the credentials' environment variables %s and %s must both be set", c.UserEnv, c.PasswordEnv)
		}
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	}
	return opts, nil
}

// newClient opens a client and checks the cluster answers (a refused
// connection or a rejected login is an error at start, not a hang).
func (c *Connection) newClient(ctx context.Context, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.clientOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: cannot create a client for %v: %w", c.Brokers, err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		if c.UserEnv != "" {
			// A broker that refuses a SASL login closes the connection
			// (the client sees EOF): say that it may be the login,
			// naming the variables, never their values.
			return nil, fmt.Errorf("kafka: cannot reach the cluster at %v, or it refused the SASL/PLAIN login of the credentials in $%s and $%s: %w",
				c.Brokers, c.UserEnv, c.PasswordEnv, scrub(err, c))
		}
		return nil, fmt.Errorf("kafka: cannot reach the cluster at %v: %w", c.Brokers, scrub(err, c))
	}
	return cl, nil
}

// scrub keeps credentials out of an error's text: franz-go's errors do not
// carry them, but an error that did would be replaced, not passed on.
func scrub(err error, c *Connection) error {
	if err == nil || c.PasswordEnv == "" {
		return err
	}
	if pass := os.Getenv(c.PasswordEnv); pass != "" && strings.Contains(err.Error(), pass) {
		return fmt.Errorf("kafka: the cluster refused the connection (details withheld: they contained the credentials of %s)", c.PasswordEnv)
	}
	return err
}

// CheckTransactionTimeout reports an error when a sink's transaction
// timeout cannot outlive a checkpoint: a transaction opens right after one
// checkpoint and is committed when the next completes, up to the interval
// plus the checkpoint timeout later; a shorter timeout lets the broker
// abort it first, and its output would be lost (Flink's most reported
// Kafka pain). The YAML layer calls it when it builds a job.
func CheckTransactionTimeout(txnTimeout, checkpointInterval, checkpointTimeout time.Duration) error {
	if txnTimeout == 0 {
		txnTimeout = DefaultTransactionTimeout
	}
	if need := checkpointInterval + checkpointTimeout; txnTimeout < need {
		return fmt.Errorf("kafka: sink transaction_timeout %v is shorter than the checkpoint interval plus the checkpoint timeout (%v + %v = %v): "+
			"the broker would abort transactions before their checkpoint completes and their output would be lost; "+
			"raise transaction_timeout (and the broker's transaction.max.timeout.ms) or checkpoint more often",
			txnTimeout, checkpointInterval, checkpointTimeout, need)
	}
	return nil
}
