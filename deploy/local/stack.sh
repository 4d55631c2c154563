#!/usr/bin/env bash
# deploy/local/stack.sh {up|down|status|env|start-kafka I|stop-kafka I} — the local
# infrastructure of payrail: Kafka (KRaft; one node, or PAYRAIL_KAFKA_BROKERS of them),
# PostgreSQL and Redis as plain processes (no Docker here),
# each bound to 127.0.0.1, with every byte of state under one data directory so several
# stacks (`make up` and `make test`) can run side by side on different ports.
# This file holds the settings and the commands; each component's functions live in
# deploy/local/stack/{install,postgres,redis,kafka}.sh.
#
# Configuration (environment only):
#   PAYRAIL_DATA_DIR      <repo>/.data   data, logs ($DATA/logs/*.log), pid files ($DATA/run)
#   PAYRAIL_TOOLS_DIR     <repo>/.tools  shared downloads: Kafka jars, Maven cache ($TOOLS/m2)
#   PAYRAIL_PG_PORT       5432
#   PAYRAIL_REDIS_PORT    6379
#   PAYRAIL_KAFKA_PORT    9092
#   PAYRAIL_KAFKA_CONTROLLER_PORT 9093
#   PAYRAIL_KAFKA_BROKERS 1   number of Kafka nodes (1..9). 1 = one node in $DATA/kafka,
#                         run/kafka.pid, logs/kafka.log. N > 1 = N combined broker+controller
#                         nodes of one cluster: node I in $DATA/kafka-I, run/kafka-I.pid,
#                         logs/kafka-I.log, listening on PAYRAIL_KAFKA_PORT + 2*(I-1) and
#                         PAYRAIL_KAFKA_CONTROLLER_PORT + 2*(I-1); replication factor N for
#                         every topic, min.insync.replicas=2, no unclean leader election
#                         (the chaos suite's topology, see docs/reliability.md).
#   PAYRAIL_PG_FAST       0   1 = fsync/synchronous_commit/full_page_writes off (tests only)
#   PYTHON                <repo>/.venv/bin/python  (needs aiokafka, for the Kafka helpers)
#
# `up` is idempotent: it installs what is missing, starts what is not running, waits for
# each component by polling it, then creates the database and topics if absent. A second
# `up` only re-checks. `down` stops only the processes recorded in this data dir.
# `env` prints the PAYRAIL_* connection variables matching this stack (for `eval`/export).
# `up` restarts only what is missing: after a `kill -9` of Kafka node 2, it starts just
# node 2. `stop-kafka I` (SIGTERM, controlled shutdown) and `start-kafka I` (start and wait
# until ready) act on one Kafka node only (fault injection, rolling restarts).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOG_TAG=stack
# shellcheck source=lib.sh
source "$HERE/lib.sh"

DATA=$(abs_path "${PAYRAIL_DATA_DIR:-$ROOT/.data}")
TOOLS=$(abs_path "${PAYRAIL_TOOLS_DIR:-$ROOT/.tools}")
PG_PORT=${PAYRAIL_PG_PORT:-5432}
REDIS_PORT=${PAYRAIL_REDIS_PORT:-6379}
KAFKA_PORT=${PAYRAIL_KAFKA_PORT:-9092}
KAFKA_CTRL_PORT=${PAYRAIL_KAFKA_CONTROLLER_PORT:-9093}
PG_FAST=${PAYRAIL_PG_FAST:-0}
KAFKA_BROKERS=${PAYRAIL_KAFKA_BROKERS:-1}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

for _p in PG_PORT REDIS_PORT KAFKA_PORT KAFKA_CTRL_PORT; do
	if ! [[ ${!_p} =~ ^[0-9]+$ ]] || ((${!_p} < 1 || ${!_p} > 65535)); then
		die "$_p must be a TCP port, got '${!_p}'"
	fi
done
[[ $KAFKA_BROKERS =~ ^[1-9]$ ]] || die "PAYRAIL_KAFKA_BROKERS must be 1..9, got '$KAFKA_BROKERS'"
((KAFKA_PORT + 2 * KAFKA_BROKERS <= 65536 && KAFKA_CTRL_PORT + 2 * KAFKA_BROKERS <= 65536)) ||
	die "PAYRAIL_KAFKA_BROKERS=$KAFKA_BROKERS does not fit above the Kafka ports"
[[ $PG_FAST == 0 || $PG_FAST == 1 ]] || die "PAYRAIL_PG_FAST must be 0 or 1, got '$PG_FAST'"

RUN=$DATA/run
LOGS=$DATA/logs
PGDATA=$DATA/pg
REDIS_DIR=$DATA/redis
KAFKA_LIBS=$TOOLS/kafka/libs
KAFKA_POM=$HERE/kafka/pom.xml

# Upper bounds of every wait (seconds). Generous: a cold JVM on 2 busy cores is slow.
KAFKA_READY_TIMEOUT_S=120
KAFKA_STOP_TIMEOUT_S=60
PG_TIMEOUT_S=60
REDIS_TIMEOUT_S=20
INSTALL_TIMEOUT_S=1200

# Kafka JVM: small fixed heap (several stacks share a small machine), die on OOM rather
# than limp along.
KAFKA_JVM=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true)

# ============================================================================ components
# One file per component, each a library of functions over the variables above.
for _part in install postgres redis kafka; do
	# shellcheck source=/dev/null
	source "$HERE/stack/$_part.sh"
done

# ============================================================================ shared

# wait_exit NAME PID TIMEOUT_S LOG: poll until PID has exited; SIGKILL it at the deadline.
wait_exit() {
	local name=$1 pid=$2 timeout_s=$3 logf=$4 deadline
	deadline=$(($(now_ms) + timeout_s * 1000))
	while pid_alive "$pid"; do
		if (($(now_ms) > deadline)); then
			log "$name: still running ${timeout_s}s after SIGTERM; sending SIGKILL to $pid"
			tail_log "$logf" 15
			kill -KILL "$pid" 2>/dev/null || true
			deadline=$(($(now_ms) + 5000))
			while pid_alive "$pid"; do
				(($(now_ms) < deadline)) || {
					log "$name: ERROR pid $pid survived SIGKILL"
					return 1
				}
				sleep 0.05
			done
			return 0
		fi
		sleep 0.1
	done
}

status_line() {
	# name, address, state
	printf '%-9s %-36s %s\n' "$1" "$2" "$3"
}

# component_state "FUNCTION [ARGS]": running (pid) or stopped.
component_state() {
	local pid
	# shellcheck disable=SC2086  # word splitting intended: a function and its arguments
	if pid=$($1); then echo "running (pid $pid)"; else echo stopped; fi
}

cmd_status() {
	local i
	for ((i = 1; i <= KAFKA_BROKERS; i++)); do
		kafka_node "$i"
		status_line "$K_NAME" "127.0.0.1:$K_PORT (controller :$K_CTRL)" "$(component_state "kafka_pid $i")"
	done
	status_line postgres "127.0.0.1:$PG_PORT" "$(component_state pg_pid)"
	status_line redis "127.0.0.1:$REDIS_PORT" "$(component_state redis_pid)"
}

cmd_env() {
	cat <<EOF
PAYRAIL_PG_DSN=postgresql://postgres@127.0.0.1:$PG_PORT/payrail
PAYRAIL_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
PAYRAIL_KAFKA_BOOTSTRAP=$(kafka_bootstrap)
EOF
}

cmd_up() {
	local t0 i nodes=""
	t0=$(now_ms)
	((KAFKA_BROKERS == 1)) || nodes=" x$KAFKA_BROKERS nodes"
	log "up: data $DATA, tools $TOOLS (pg :$PG_PORT, redis :$REDIS_PORT, kafka :$KAFKA_PORT/:$KAFKA_CTRL_PORT$nodes)"
	[[ -x $PYTHON ]] || die "PYTHON=$PYTHON is not executable (the venv with aiokafka; run 'make venv')"
	ensure_packages
	ensure_kafka_jars
	mkdir -p "$RUN" "$LOGS" "$REDIS_DIR"
	lock_or_die "$RUN/stack.lock" "stack.sh"
	# Kafka is the slowest to boot: start every missing node first, wait for them last.
	for ((i = 1; i <= KAFKA_BROKERS; i++)); do kafka_start "$i"; done
	pg_start
	redis_start
	kafka_wait_ready
	log "up: done in $(elapsed_s "$t0")"
}

cmd_down() {
	local t0 i rc=0
	t0=$(now_ms)
	if [[ ! -d $RUN ]]; then
		log "down: nothing to stop ($RUN does not exist)"
		return 0
	fi
	lock_or_die "$RUN/stack.lock" "stack.sh"
	# Kafka's controlled shutdown takes longest: signal it first, stop the others meanwhile.
	for ((i = 1; i <= KAFKA_BROKERS; i++)); do kafka_stop_begin "$i"; done
	pg_stop || rc=1
	redis_stop || rc=1
	kafka_stop_end || rc=1
	((rc == 0)) || die "down: some components did not stop (see above)"
	log "down: done in $(elapsed_s "$t0")"
}

# start-kafka I / stop-kafka I: one node only (the others keep running).
cmd_start_kafka() {
	[[ -n ${1:-} ]] || die "usage: $0 start-kafka NODE (1..$KAFKA_BROKERS)"
	kafka_node "$1"
	mkdir -p "$RUN" "$LOGS"
	lock_or_die "$RUN/stack.lock" "stack.sh"
	kafka_start "$1"
	kafka_wait_node "$1"
}

cmd_stop_kafka() {
	[[ -n ${1:-} ]] || die "usage: $0 stop-kafka NODE (1..$KAFKA_BROKERS)"
	kafka_node "$1"
	[[ -d $RUN ]] || return 0
	lock_or_die "$RUN/stack.lock" "stack.sh"
	kafka_stop_begin "$1"
	kafka_stop_end
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
start-kafka) cmd_start_kafka "${2:-}" ;;
stop-kafka) cmd_stop_kafka "${2:-}" ;;
*)
	echo "usage: $0 {up|down|status|env|start-kafka NODE|stop-kafka NODE}" >&2
	exit 2
	;;
esac
