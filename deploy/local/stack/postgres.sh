# shellcheck shell=bash
# deploy/local/stack/postgres.sh — PostgreSQL: a throwaway cluster as the postgres user.
# A library of functions sourced by deploy/local/stack.sh: it uses the variables that
# stack.sh sets (DATA, RUN, LOGS, ports, timeouts) and the helpers of lib.sh.

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
