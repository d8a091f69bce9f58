#!/usr/bin/env bash
# Starts the NATS server with JetStream on 127.0.0.1:4222 when none
# answers there (idempotent): connectors/nats's tests need it, and fail
# under CI without it. The machines start it before a session; this
# covers a server that stopped.
set -euo pipefail
if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
	exit 0
fi
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
	apt-get install -y nats-server >/dev/null
fi
mkdir -p /var/lib/nats-server
start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
	-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
for _ in $(seq 50); do
	if (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
		exit 0
	fi
	sleep 0.1
done
echo "setup-nats: nats-server did not start on 127.0.0.1:4222 (see /var/log/nats-server.log)" >&2
exit 1
