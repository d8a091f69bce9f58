package nats

import (
	"fmt"
	"os"
	"sync"
	"time"

	server "github.com/nats-io/nats-server/v2/server"
)

// embedded is a nats-server with JetStream that the tests start in their
// own process when no server answers at testURL and CI is not set (issue
// 13: "nats-server/v2 embedded in tests where none runs"). Under CI the
// machine's server must answer: the tests fail instead.
var embedded struct {
	once sync.Once
	url  string
	err  error
}

// embeddedServer starts the embedded server once and points testURL — in
// this process and in the child processes the kill tests start — at it.
func embeddedServer() (string, error) {
	embedded.once.Do(func() {
		dir, err := os.MkdirTemp("", "streamd-nats-test-")
		if err != nil {
			embedded.err = err
			return
		}
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
		if err != nil {
			embedded.err = err
			return
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			embedded.err = fmt.Errorf("the embedded nats-server did not start within 10 s")
			return
		}
		embedded.url = s.ClientURL()
		embedded.err = os.Setenv("STREAMD_NATS_URL", embedded.url)
	})
	return embedded.url, embedded.err
}
