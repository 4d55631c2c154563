# shellcheck shell=bash
# deploy/local/stack/redis.sh — Redis: one daemonized server.
# A library of functions sourced by deploy/local/stack.sh: it uses the variables that
# stack.sh sets (DATA, RUN, LOGS, ports, timeouts) and the helpers of lib.sh.

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
