#!/bin/sh
# setup-postgres.sh: make the local PostgreSQL server ready for the
# postgres connector's exactly-once sink, idempotently.
#
# The sink pre-commits with PREPARE TRANSACTION, which needs
# max_prepared_transactions > 0; that setting takes effect only after a
# server restart. This script raises it (ALTER SYSTEM) only when the
# current value is lower than what we need, restarts the server only then,
# waits until it accepts connections, and creates the database `test` if
# it is missing. Running it again changes nothing.
#
# Environment:
#   STREAMD_PG_PREPARED  the value we need (default 64: one prepared
#                        transaction per sink task per checkpoint in flight)
#   STREAMD_PG_RESTART_CMD  how to restart the server (default: the
#                        pg_ctlcluster command of the single local cluster)
#   PGHOST, PGPORT, PGUSER  as psql reads them (default 127.0.0.1, 5432,
#                        postgres)
set -eu

need=${STREAMD_PG_PREPARED:-64}
export PGHOST=${PGHOST:-127.0.0.1}
export PGPORT=${PGPORT:-5432}
export PGUSER=${PGUSER:-postgres}

if ! command -v psql >/dev/null 2>&1; then
	echo "setup-postgres: psql not found: is PostgreSQL installed?" >&2
	exit 1
fi

wait_ready() {
	i=0
	until psql -d postgres -Atqc 'select 1' >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -ge 60 ]; then
			echo "setup-postgres: the server at $PGHOST:$PGPORT does not accept connections after 30 s" >&2
			exit 1
		fi
		sleep 0.5
	done
}

wait_ready
have=$(psql -d postgres -Atqc 'show max_prepared_transactions')
if [ "$have" -lt "$need" ]; then
	echo "setup-postgres: max_prepared_transactions is $have, setting $need and restarting the server"
	psql -d postgres -qc "alter system set max_prepared_transactions = $need"
	if [ -n "${STREAMD_PG_RESTART_CMD:-}" ]; then
		sh -c "$STREAMD_PG_RESTART_CMD"
	else
		ver=$(ls /etc/postgresql | head -n 1)
		pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
	fi
	wait_ready
	have=$(psql -d postgres -Atqc 'show max_prepared_transactions')
	if [ "$have" -lt "$need" ]; then
		echo "setup-postgres: max_prepared_transactions is still $have after the restart" >&2
		exit 1
	fi
else
	echo "setup-postgres: max_prepared_transactions is $have (>= $need), nothing to change"
fi

if [ "$(psql -d postgres -Atqc "select count(*) from pg_database where datname = 'test'")" = 0 ]; then
	psql -d postgres -qc 'create database test'
fi
