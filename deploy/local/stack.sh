#!/usr/bin/env bash
# deploy/local/stack.sh {up|down|status|env|start-kafka I|stop-kafka I} — the local
# infrastructure of payrail: Kafka (KRaft; one node, or PAYRAIL_KAFKA_BROKERS of them),
# PostgreSQL and Redis as plain processes (no Docker here),
# each bound to 127.0.0.1, with every byte of state under one data directory so several
# stacks (`make up` and `make test`) can run side by side on different ports.
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

# ============================================================================ installation

APT_UPDATED=0

# apt_get ARGS...: apt-get that waits for another apt/dpkg process (e.g. a concurrent
# install) instead of failing. DPkg::Lock::Timeout covers the dpkg lock; `apt-get update`
# takes the lists lock, which it does not cover, so lock errors are retried until a deadline.
apt_get() {
	local out deadline=$(($(now_ms) + 900000))
	out=$(mktemp)
	while :; do
		if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@" >"$out" 2>&1; then
			rm -f "$out"
			return 0
		fi
		if grep -qiE 'could not get lock|unable to acquire|another process using it' "$out" &&
			(($(now_ms) < deadline)); then
			log "apt/dpkg is locked by another process; retrying"
			sleep 5 # back-off between bounded retries, not a readiness wait
			continue
		fi
		tail -n 30 "$out" | sed 's/^/    /' >&2
		rm -f "$out"
		die "apt-get $* failed"
	done
}

apt_install() {
	(($#)) || return 0
	command -v apt-get >/dev/null || die "missing packages ($*) and no apt-get to install them"
	((EUID == 0)) || die "missing packages ($*); installing them needs root"
	if ((APT_UPDATED == 0)); then
		log "apt-get update (once)"
		apt_get update -qq
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	apt_get install -y -qq --no-install-recommends "$@"
}

# pg_cluster_version: major version of an existing cluster in $PGDATA (empty if none).
pg_cluster_version() {
	if [[ -s $PGDATA/PG_VERSION ]]; then cat "$PGDATA/PG_VERSION"; fi
}

# pg_bindir: the PostgreSQL server binaries to use, or fail. An existing cluster pins its
# major version (a server only opens clusters of its own major); a new cluster uses the
# newest installed version.
pg_bindir() {
	local v dir
	v=$(pg_cluster_version)
	if [[ -n $v ]]; then
		dir=/usr/lib/postgresql/$v/bin
		[[ -x $dir/postgres ]] || return 1
		echo "$dir"
		return
	fi
	dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
	[[ -n $dir && -x $dir/initdb ]] || return 1
	echo "$dir"
}

kafka_installed() {
	[[ -f $TOOLS/kafka/.installed && $(<"$TOOLS/kafka/.installed") == "$(sha256sum <"$KAFKA_POM" | cut -c1-64)" ]]
}

# Debian packages, each only when its binary is missing (fresh machine).
ensure_packages() {
	local pkgs=() v
	command -v redis-server >/dev/null || pkgs+=(redis-server)
	command -v redis-cli >/dev/null || pkgs+=(redis-tools)
	if ! pg_bindir >/dev/null; then
		# An existing cluster needs its own major version; otherwise Debian's default.
		v=$(pg_cluster_version)
		pkgs+=("postgresql${v:+-$v}")
	fi
	command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
	# Maven is only needed to fetch the Kafka jars.
	kafka_installed || command -v mvn >/dev/null || pkgs+=(maven)
	command -v runuser >/dev/null && command -v setsid >/dev/null && command -v flock >/dev/null ||
		pkgs+=(util-linux)
	apt_install "${pkgs[@]}"
}

# Kafka jars from Maven Central into $TOOLS/kafka/libs, shared by every stack. The stamp
# holds the pom's hash: editing the pom (e.g. a version bump) triggers a reinstall. Jars are
# copied to a temporary dir and renamed, so a failed download never leaves a half classpath.
ensure_kafka_jars() {
	kafka_installed && return 0
	mkdir -p "$TOOLS/kafka"
	# Two stacks starting at once share $TOOLS: one installs, the other waits (fd 8).
	exec 8>"$TOOLS/kafka/.install.lock"
	if ! flock -n 8; then
		log "another stack is installing the Kafka jars into $TOOLS; waiting for it"
		flock -w "$INSTALL_TIMEOUT_S" 8 || die "timed out waiting for another install of the Kafka jars"
	fi
	if ! kafka_installed; then
		local t0 tmp=$TOOLS/kafka/libs.tmp ilog=$TOOLS/kafka/install.log
		t0=$(now_ms)
		log "downloading Kafka 3.9.2 jars with Maven (first run only) -> $KAFKA_LIBS"
		rm -rf "$tmp"
		if ! timeout "$INSTALL_TIMEOUT_S" mvn -B -q -f "$KAFKA_POM" \
			-Dmaven.repo.local="$TOOLS/m2" \
			dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
			>"$ilog" 2>&1; then
			tail_log "$ilog" 40
			die "Maven could not fetch the Kafka jars (see $ilog)"
		fi
		compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "Maven ran but no kafka_2.13 jar in $tmp"
		rm -rf "$KAFKA_LIBS"
		mv "$tmp" "$KAFKA_LIBS"
		sha256sum <"$KAFKA_POM" | cut -c1-64 >"$TOOLS/kafka/.installed"
		log "Kafka jars installed ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars) in $(elapsed_s "$t0")"
	fi
	exec 8>&-
}

# ============================================================================ PostgreSQL

# pg_pid: pid of this stack's postmaster. PostgreSQL keeps its own postmaster.pid (first
# line = pid); we check the process is alive and was started on *this* data dir.
pg_pid() {
	local pid
	pid=$(read_pid "$PGDATA/postmaster.pid") && pid_alive "$pid" && pid_cmdline_has "$pid" "$PGDATA" && echo "$pid"
}

# The unix socket path is limited to ~107 bytes; a deep data dir falls back to /tmp.
pg_sockdir() {
	local d=$RUN/pg
	if ((${#d} + 20 > 100)); then
		d=/tmp/payrail-pg-$(printf '%s' "$DATA" | sha256sum | cut -c1-12)
	fi
	echo "$d"
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# initdb and the server run as the `postgres` OS user (both refuse root), so that user must
# be able to *traverse* every directory down to the data dir. Repos often live under paths
# only root can enter (/root/..., a 0700 dir): add o+x (search, not read) exactly where the
# postgres user is refused, and say so.
pg_make_reachable() {
	local target=$1 path="" part
	as_postgres test -x "$target" 2>/dev/null && return 0
	local -a parts
	IFS=/ read -ra parts <<<"${target#/}"
	for part in "${parts[@]}"; do
		[[ -n $part ]] || continue
		path+=/$part
		if ! as_postgres test -x "$path" 2>/dev/null; then
			chmod o+x "$path"
			log "postgres: granted o+x on $path so the postgres OS user can reach $target"
		fi
	done
}

pg_start() {
	local bindir pid sockdir opts t0
	bindir=$(pg_bindir) ||
		die "PostgreSQL server binaries not found under /usr/lib/postgresql (cluster version: $(pg_cluster_version || true))"
	id postgres >/dev/null 2>&1 || die "no 'postgres' OS user (the Debian postgresql package creates it)"
	sockdir=$(pg_sockdir)
	mkdir -p "$sockdir"
	chown postgres:postgres "$sockdir"
	pg_make_reachable "$DATA" # parent of $PGDATA
	pg_make_reachable "$LOGS"
	pg_make_reachable "$sockdir"
	# The server appends to this log as the postgres user.
	touch "$LOGS/postgres.log"
	chown postgres:postgres "$LOGS/postgres.log"

	if [[ ! -s $PGDATA/PG_VERSION ]]; then
		# No PG_VERSION = never initialised or a failed initdb: safe to start from scratch.
		t0=$(now_ms)
		rm -rf "$PGDATA"
		mkdir -p "$PGDATA"
		chown postgres:postgres "$PGDATA"
		chmod 700 "$PGDATA"
		log "postgres: initdb $PGDATA ($("$bindir/postgres" --version | awk '{print $3}'))"
		if ! as_postgres "$bindir/initdb" -D "$PGDATA" -A trust -E UTF8 --locale=C -U postgres \
			>>"$LOGS/postgres.log" 2>&1; then
			tail_log "$LOGS/postgres.log"
			die "postgres: initdb failed"
		fi
		log "postgres: initdb done in $(elapsed_s "$t0")"
	fi

	if pid=$(pg_pid); then
		log "postgres: already running (pid $pid, 127.0.0.1:$PG_PORT)"
		pg_warn_fast_mismatch "$bindir"
	else
		pg_wait_zombie_postmaster
		require_port_free postgres "$PG_PORT"
		t0=$(now_ms)
		# Settings on the command line (not in postgresql.conf) so each `up` applies the
		# current environment. Quotes: pg_ctl hands -o to a shell.
		opts="-p $PG_PORT -k '$sockdir' -c listen_addresses=127.0.0.1 -c max_connections=200"
		if [[ $PG_FAST == 1 ]]; then
			# Test suite only: losing the last transactions on a crash is fine there.
			opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
		fi
		log "postgres: starting on 127.0.0.1:$PG_PORT$([[ $PG_FAST == 1 ]] && echo ' (PAYRAIL_PG_FAST=1: fsync off)')"
		if ! as_postgres "$bindir/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -o "$opts" \
			-w -t "$PG_TIMEOUT_S" start >/dev/null 9>&-; then
			tail_log "$LOGS/postgres.log"
			die "postgres: pg_ctl start failed or timed out (${PG_TIMEOUT_S}s); see the log above"
		fi
		pid=$(pg_pid) || {
			tail_log "$LOGS/postgres.log"
			die "postgres: pg_ctl reported success but no postmaster runs on $PGDATA"
		}
		# Mirror the pid for tooling that looks in $DATA/run (postmaster.pid stays the truth).
		echo "$pid" >"$RUN/postgres.pid"
		log "postgres: started (pid $pid) in $(elapsed_s "$t0")"
	fi

	# pg_ctl -w watches postmaster.pid; pg_isready proves the TCP listener clients use.
	local deadline=$(($(now_ms) + PG_TIMEOUT_S * 1000))
	until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 2; do
		if ! pg_pid >/dev/null || (($(now_ms) > deadline)); then
			tail_log "$LOGS/postgres.log"
			die "postgres: not accepting connections on 127.0.0.1:$PG_PORT (waited up to ${PG_TIMEOUT_S}s)"
		fi
		sleep 0.1
	done
	pg_ensure_db "$bindir"
}

# After a crash (kill -9) postmaster.pid stays behind. PostgreSQL ignores a stale one by
# itself, *unless* the old pid still exists as a zombie, which it takes for a live server
# ("lock file postmaster.pid already exists"). PID 1 on these machines reaps exited
# orphans only every few seconds, so wait (bounded) for that zombie to go away.
pg_wait_zombie_postmaster() {
	local pid deadline
	pid=$(read_pid "$PGDATA/postmaster.pid") || return 0
	[[ -e /proc/$pid ]] && ! pid_alive "$pid" || return 0
	log "postgres: the previous postmaster (pid $pid) is an unreaped zombie; waiting for it to go"
	deadline=$(($(now_ms) + 30000))
	while [[ -e /proc/$pid ]]; do
		(($(now_ms) < deadline)) || die "postgres: zombie postmaster $pid not reaped within 30 s; cannot start"
		sleep 0.1
	done
}

pg_psql() {
	local bindir=$1
	shift
	PGCONNECT_TIMEOUT=5 "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

pg_ensure_db() {
	local bindir=$1
	if [[ $(pg_psql "$bindir" -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = 'payrail'") != 1 ]]; then
		pg_psql "$bindir" -d postgres -c 'CREATE DATABASE payrail OWNER postgres' ||
			die "postgres: could not create database payrail"
		log "postgres: created database payrail"
	fi
}

# A running server keeps the durability settings it was started with; say so when they
# differ from what this `up` asked for, rather than silently ignoring PAYRAIL_PG_FAST.
pg_warn_fast_mismatch() {
	local fsync want=on
	[[ $PG_FAST == 1 ]] && want=off
	fsync=$(pg_psql "$1" -d postgres -At -c 'SHOW fsync' 2>/dev/null) || return 0
	[[ $fsync == "$want" ]] ||
		log "postgres: WARNING running with fsync=$fsync but PAYRAIL_PG_FAST=$PG_FAST; run 'down' then 'up' to apply"
}

pg_stop() {
	local pid bindir
	if ! pid=$(pg_pid); then
		rm -f "$RUN/postgres.pid"
		log "postgres: not running"
		return 0
	fi
	bindir=$(pg_bindir) || die "postgres: no binaries for the running cluster in $PGDATA"
	log "postgres: stopping (pid $pid, fast mode)"
	if ! as_postgres "$bindir/pg_ctl" -D "$PGDATA" -m fast -w -t "$PG_TIMEOUT_S" stop >/dev/null; then
		log "postgres: fast stop timed out; using immediate mode"
		as_postgres "$bindir/pg_ctl" -D "$PGDATA" -m immediate -w -t "$PG_TIMEOUT_S" stop >/dev/null || {
			tail_log "$LOGS/postgres.log"
			log "postgres: ERROR could not stop pid $pid"
			return 1
		}
	fi
	rm -f "$RUN/postgres.pid"
}

# ============================================================================ Redis

# redis-server rewrites its command line, but it chdirs into --dir: that identifies ours.
redis_pid() {
	local pid
	pid=$(read_pid "$RUN/redis.pid") && pid_alive "$pid" && pid_cwd_is "$pid" "$REDIS_DIR" && echo "$pid"
}

redis_ping() { [[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_start() {
	local pid t0
	if pid=$(redis_pid); then
		log "redis: already running (pid $pid, 127.0.0.1:$REDIS_PORT)"
	else
		require_port_free redis "$REDIS_PORT"
		t0=$(now_ms)
		rm -f "$RUN/redis.pid"
		mkdir -p "$REDIS_DIR"
		log "redis: starting on 127.0.0.1:$REDIS_PORT"
		# --daemonize: redis forks, detaches and writes its own pid file. Our redirection
		# only catches what it prints before --logfile takes over (e.g. a bad argument).
		# shellcheck disable=SC2094
		redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
			--dir "$REDIS_DIR" --pidfile "$RUN/redis.pid" --logfile "$LOGS/redis.log" \
			--appendonly yes </dev/null >>"$LOGS/redis.log" 2>&1 9>&- ||
			{
				tail_log "$LOGS/redis.log"
				die "redis: redis-server failed to start"
			}
	fi
	local deadline=$(($(now_ms) + REDIS_TIMEOUT_S * 1000))
	until redis_ping; do
		# The pid file appears right after the fork; a process that then exits (bad port,
		# unwritable dir) fails here at once instead of at the deadline.
		if (($(now_ms) > deadline)) || { [[ -s $RUN/redis.pid ]] && ! redis_pid >/dev/null; }; then
			tail_log "$LOGS/redis.log"
			die "redis: no PONG from 127.0.0.1:$REDIS_PORT (waited up to ${REDIS_TIMEOUT_S}s)"
		fi
		sleep 0.05
	done
	[[ -n ${t0:-} ]] && log "redis: ready (pid $(redis_pid)) in $(elapsed_s "$t0")"
	return 0
}

redis_stop() {
	local pid
	if ! pid=$(redis_pid); then
		rm -f "$RUN/redis.pid"
		log "redis: not running"
		return 0
	fi
	# SIGTERM = the same clean shutdown as `redis-cli shutdown` (flushes the AOF), but aimed
	# at our pid, so it works even if the port variable differs from the one used by `up`.
	log "redis: stopping (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	wait_exit redis "$pid" "$REDIS_TIMEOUT_S" "$LOGS/redis.log"
	rm -f "$RUN/redis.pid"
}

# ============================================================================ Kafka

# kafka_node I: the layout of Kafka node I (1-based) in K_NAME, K_DIR, K_PID, K_LOG, K_PORT,
# K_CTRL. One node keeps the historical layout ($DATA/kafka, run/kafka.pid, logs/kafka.log:
# tests/stack_control.py relies on it); several nodes are kafka-1, kafka-2, ... each on
# its own pair of ports, two apart.
kafka_node() {
	local i=$1
	[[ $i =~ ^[1-9]$ ]] && ((i <= KAFKA_BROKERS)) || die "no Kafka node '$i' (PAYRAIL_KAFKA_BROKERS=$KAFKA_BROKERS)"
	K_PORT=$((KAFKA_PORT + 2 * (i - 1)))
	K_CTRL=$((KAFKA_CTRL_PORT + 2 * (i - 1)))
	if ((KAFKA_BROKERS == 1)); then
		K_NAME=kafka
	else
		K_NAME=kafka-$i
	fi
	K_DIR=$DATA/$K_NAME
	K_PID=$RUN/$K_NAME.pid
	K_LOG=$LOGS/$K_NAME.log
}

# kafka_pid [I]: pid of node I (default 1) if it runs from this data dir.
kafka_pid() {
	local pid
	kafka_node "${1:-1}"
	pid=$(read_pid "$K_PID") && pid_alive "$pid" &&
		pid_cmdline_has "$pid" "$K_DIR/server.properties" && echo "$pid"
}

# The bootstrap list of every node, and the controller quorum (every node votes).
kafka_bootstrap() {
	local i out=""
	for ((i = 1; i <= KAFKA_BROKERS; i++)); do out+=${out:+,}127.0.0.1:$((KAFKA_PORT + 2 * (i - 1))); done
	echo "$out"
}
kafka_voters() {
	local i out=""
	for ((i = 1; i <= KAFKA_BROKERS; i++)); do out+=${out:+,}$i@127.0.0.1:$((KAFKA_CTRL_PORT + 2 * (i - 1))); done
	echo "$out"
}

# kafka_replication_config: the replication settings for this number of nodes.
kafka_replication_config() {
	if ((KAFKA_BROKERS == 1)); then
		cat <<EOF
# One broker: every internal topic has a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
EOF
		return
	fi
	local isr=$((KAFKA_BROKERS < 2 ? KAFKA_BROKERS : 2))
	cat <<EOF
# $KAFKA_BROKERS nodes: every topic, internal ones included, has $KAFKA_BROKERS replicas, and an
# acks=all write is acknowledged once $isr of them have it, so one node may die without
# stopping writes or losing an acknowledged record. A replica that lags 5 s leaves the ISR
# (a killed node is noticed quickly); an out-of-sync replica never becomes leader.
offsets.topic.replication.factor=$KAFKA_BROKERS
transaction.state.log.replication.factor=$KAFKA_BROKERS
transaction.state.log.min.isr=$isr
default.replication.factor=$KAFKA_BROKERS
min.insync.replicas=$isr
replica.lag.time.max.ms=5000
unclean.leader.election.enable=false
EOF
}

# kafka_write_config I: server.properties and log4j.properties of node I.
kafka_write_config() {
	local i=$1 roles_comment
	kafka_node "$i"
	mkdir -p "$K_DIR/logs"
	if ((KAFKA_BROKERS == 1)); then
		roles_comment="# Single node in KRaft combined mode: this process is both the broker and the controller."
	else
		roles_comment="# Node $i of $KAFKA_BROKERS in KRaft combined mode: broker and controller; every node votes."
	fi
	cat >"$K_DIR/server.properties" <<EOF
# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
$roles_comment
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(kafka_voters)
listeners=PLAINTEXT://127.0.0.1:$K_PORT,CONTROLLER://127.0.0.1:$K_CTRL
advertised.listeners=PLAINTEXT://127.0.0.1:$K_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$K_DIR/logs

$(kafka_replication_config)
# Internal topics default to 50 partitions; 3 makes the first consumer group / first
# transaction of a fresh stack ready much sooner (local stack only).
offsets.topic.num.partitions=3
transaction.state.log.num.partitions=3

# Topics come from deploy/local/topics.txt only; a typo in a topic name fails loudly.
auto.create.topics.enable=false
num.partitions=3
# Consumers join at once instead of after the default 3 s grace period.
group.initial.rebalance.delay.ms=0
EOF
	sed "s|\$DATA/logs/kafka.log|\$DATA/logs/$K_NAME.log|" >"$K_DIR/log4j.properties" <<'EOF'
# Broker logging (reload4j): stdout, which stack.sh appends to $DATA/logs/kafka.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# Quiet the loggers that print hundreds of lines per start (config dumps, per-partition
# log loading, raft/metadata chatter) or per request.
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
log4j.logger.kafka.server.KafkaConfig=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.common.network=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.org.apache.kafka.image=WARN
log4j.logger.org.apache.kafka.metadata=WARN
log4j.logger.org.apache.kafka.controller=WARN
log4j.logger.org.apache.kafka.storage=WARN
log4j.logger.kafka.log=WARN
log4j.logger.kafka.cluster=WARN
log4j.logger.kafka.server.metadata=WARN
log4j.logger.kafka.server.ReplicaFetcherManager=WARN
log4j.logger.kafka.server.ReplicaAlterLogDirsManager=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.kafka.utils.Log4jControllerRegistration$=WARN
log4j.logger.kafka.server.ClientQuotaManager$ThrottledChannelReaper=WARN
log4j.logger.kafka.server.DelayedOperationPurgatory$ExpiredOperationReaper=WARN
log4j.logger.kafka.server.NodeToControllerRequestThread=WARN
log4j.logger.kafka.network.ConnectionQuotas=WARN
log4j.logger.org.apache.kafka.server.util.timer=WARN
log4j.logger.org.apache.zookeeper=WARN
EOF
}

# The cluster id is generated once per data dir and kept: the storage is formatted with it
# and the broker refuses to start if they differ. Recovered from meta.properties when the
# id file alone was lost. Several nodes share one id, kept in $DATA/kafka-cluster.id.
kafka_cluster_id() {
	local f=$DATA/kafka/cluster.id id meta
	((KAFKA_BROKERS == 1)) || f=$DATA/kafka-cluster.id
	if [[ ! -s $f ]]; then
		id=
		for meta in "$DATA"/kafka/logs/meta.properties "$DATA"/kafka-[1-9]/logs/meta.properties; do
			[[ -s $meta ]] || continue
			id=$(sed -n 's/^cluster\.id=//p' "$meta")
			[[ -n $id ]] && break
		done
		if [[ -z $id ]]; then
			# Kafka's Uuid format: 16 random bytes, base64url without padding, not starting
			# with '-' (which the CLI would parse as an option).
			id=-
			while [[ $id == -* ]]; do
				id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
			done
		fi
		mkdir -p "$(dirname "$f")"
		echo "$id" >"$f"
	fi
	cat "$f"
}

# kafka_java I: the JVM command line of node I, shared by the storage tool and the broker
# ("libs/*" is expanded by java itself, not the shell), in KAFKA_JAVA.
kafka_java() {
	kafka_node "$1"
	KAFKA_JAVA=(java "${KAFKA_JVM[@]}" -cp "$KAFKA_LIBS/*" "-Dlog4j.configuration=file:$K_DIR/log4j.properties")
}

# kafka_start I: launch node I and return at once (the JVM boots while PostgreSQL and
# Redis start); kafka_wait_ready does the waiting.
KAFKA_STARTED_AT=
kafka_start() {
	local i=$1 pid id t0
	if pid=$(kafka_pid "$i"); then
		kafka_node "$i"
		log "$K_NAME: already running (pid $pid, 127.0.0.1:$K_PORT)"
		return 0
	fi
	kafka_node "$i"
	require_port_free "$K_NAME" "$K_PORT"
	require_port_free "$K_NAME controller" "$K_CTRL"
	kafka_write_config "$i"
	kafka_java "$i"
	id=$(kafka_cluster_id)
	if [[ ! -s $K_DIR/logs/meta.properties ]]; then
		t0=$(now_ms)
		log "$K_NAME: formatting storage (cluster id $id)"
		"${KAFKA_JAVA[@]}" kafka.tools.StorageTool format -t "$id" -c "$K_DIR/server.properties" \
			--ignore-formatted </dev/null >>"$K_LOG" 2>&1 || {
			tail_log "$K_LOG"
			die "$K_NAME: storage format failed"
		}
		log "$K_NAME: storage formatted in $(elapsed_s "$t0")"
	fi
	log "$K_NAME: starting on 127.0.0.1:$K_PORT (controller 127.0.0.1:$K_CTRL)"
	echo "----- $(date -Is) stack.sh: starting $K_NAME" >>"$K_LOG"
	KAFKA_STARTED_AT=$(now_ms)
	spawn "$K_PID" "$K_LOG" "$K_DIR" "${KAFKA_JAVA[@]}" kafka.Kafka "$K_DIR/server.properties"
}

# kafka_wait_node I: node I answers a metadata request listing every node of the cluster
# (kafka_ready.py polls, bounded, and gives up early if the JVM exits).
kafka_wait_node() {
	local i=$1 pid rc=0
	kafka_node "$i"
	pid=$(kafka_pid "$i") || {
		tail_log "$K_LOG" 40
		die "$K_NAME: the broker process exited during startup"
	}
	"$PYTHON" "$HERE/kafka_ready.py" --bootstrap "127.0.0.1:$K_PORT" --min-brokers "$KAFKA_BROKERS" \
		--timeout-s "$KAFKA_READY_TIMEOUT_S" --pid "$pid" || rc=$?
	if ((rc != 0)); then
		tail_log "$K_LOG" 40
		die "$K_NAME: broker on 127.0.0.1:$K_PORT not ready (see $K_LOG)"
	fi
	[[ -n $KAFKA_STARTED_AT ]] && log "$K_NAME: ready (pid $pid) in $(elapsed_s "$KAFKA_STARTED_AT")"
	return 0
}

# Readiness of every node, then the topics (replication factor = number of nodes).
kafka_wait_ready() {
	local i
	for ((i = 1; i <= KAFKA_BROKERS; i++)); do kafka_wait_node "$i"; done
	"$PYTHON" "$HERE/kafka_topics.py" --bootstrap "$(kafka_bootstrap)" \
		--replication-factor "$KAFKA_BROKERS" --file "$HERE/topics.txt" --timeout-s 60 ||
		die "kafka: topic creation failed"
}

KAFKA_STOPPING=()
# kafka_stop_begin I: SIGTERM node I (controlled shutdown); kafka_stop_end waits for it.
kafka_stop_begin() {
	local pid
	if pid=$(kafka_pid "$1"); then
		kafka_node "$1"
		log "$K_NAME: stopping (pid $pid, SIGTERM: controlled shutdown)"
		kill -TERM "$pid" 2>/dev/null || true
		KAFKA_STOPPING+=("$1:$pid")
	else
		kafka_node "$1"
		log "$K_NAME: not running"
		rm -f "$K_PID"
	fi
}

kafka_stop_end() {
	local entry i pid rc=0
	for entry in "${KAFKA_STOPPING[@]}"; do
		IFS=: read -r i pid <<<"$entry"
		kafka_node "$i"
		if wait_exit "$K_NAME" "$pid" "$KAFKA_STOP_TIMEOUT_S" "$K_LOG"; then rm -f "$K_PID"; else rc=1; fi
	done
	KAFKA_STOPPING=()
	return $rc
}

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
