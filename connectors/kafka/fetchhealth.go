package kafka

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchHealth watches a reader's fetches. franz-go retries a fetch that
// fails on its connection (a broker that died, a closed connection, a
// refused dial) forever and never reports it to PollRecords: without this
// a source whose cluster fails mid-job would wait for records forever
// instead of failing the job. The hooks run on franz-go's goroutines.
type fetchHealth struct {
	mu sync.Mutex
	// lastOK is when the last fetch succeeded (or the reader started).
	lastOK time.Time
	// failure is the first error since lastOK, nil if none.
	failure error
}

func newFetchHealth() *fetchHealth { return &fetchHealth{lastOK: time.Now()} }

var (
	_ kgo.HookBrokerE2E     = (*fetchHealth)(nil)
	_ kgo.HookBrokerConnect = (*fetchHealth)(nil)
)

// OnBrokerE2E records the outcome of each fetch request.
func (h *fetchHealth) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key != kmsg.Fetch.Int16() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := e2e.Err(); err != nil {
		if h.failure == nil {
			h.failure = err
		}
		return
	}
	h.lastOK, h.failure = time.Now(), nil
}

// OnBrokerConnect records a failed dial: a fetch cannot run without one.
func (h *fetchHealth) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failure == nil {
		h.failure = err
	}
}

// check returns an error when fetches have failed, with no success, for
// longer than timeout.
func (h *fetchHealth) check(timeout time.Duration, c *Connection) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failure == nil {
		return nil
	}
	if since := time.Since(h.lastOK); since > timeout {
		return fmt.Errorf("kafka: cannot fetch from the cluster at %v: no fetch succeeded for %v: %w",
			c.Brokers, since.Round(time.Millisecond), scrub(h.failure, c))
	}
	return nil
}
