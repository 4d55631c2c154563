#!/usr/bin/env bash
# deploy/local/services.sh — the payrail Python services of a local stack, run under
# supervisord (infrastructure first: deploy/local/stack.sh up).
#
#   up              start supervisord with every service, wait until each is SERVING
#   down            stop every service (SIGTERM to its process group, SIGKILL after the
#                   stop bound) and supervisord itself
#   status          per service: supervisord state, pid, uptime and its gRPC health
#                   (overall and each payrail.dependency.<name>)
#   pid NAME        the pid of the service's main process (exit 1 when it is not running)
#   restart NAME    restart one service and wait until it is SERVING again
#   stop NAME | start NAME   stop one service (it stays down) / start it and wait
#   wait NAME       wait (bounded) until the service is SERVING; exit 1 if it is not
#
# Why supervisord: it is pure Python and installs into the project's venv from PyPI (no
# system service, no root), it is mature, restarts a crashed process (with a growing
# back-off for one that keeps dying at start), signals and kills whole process groups
# (a service may fork worker children), appends each program's output to its own log,
# and is controlled over a private unix socket (supervisorctl, XML-RPC).
#
# `up` writes $DATA/run/supervisord.conf from the SERVICES table below: one program per
# service, `$PYTHON -m <module>` with cwd = repo root, output appended to
# $DATA/logs/<name>.log. supervisord's socket and pid file are in $DATA/run, its own log
# is $DATA/logs/supervisord.log; nothing listens on TCP. The services read their PAYRAIL_*
# settings (ports, DSNs, ...) from the environment, which supervisord passes on: they
# run with the environment of the `up` that started supervisord (to change it: `down`,
# then `up`).
#
# Configuration (environment): PAYRAIL_DATA_DIR (<repo>/.data), PYTHON (<repo>/.venv/bin/python),
# PAYRAIL_SHUTDOWN_GRACE_S (10; the stop bound is 5 s more), PAYRAIL_STARTUP_TIMEOUT_S
# (30; readiness waits 30 s more), plus each service's port variable below (also used for
# the readiness and health checks).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOG_TAG=services
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# The services, in start order ("name:module:port-env-var:default-port"). The port is the
# gRPC port that serves grpc.health.v1 (readiness). Add a line to add a service, e.g. a
# sandbox gateway: "sandbox_gw:sandbox_gw_svc:PAYRAIL_SANDBOX_GW_PORT:50061". A module
# with a "/" is an executable relative to the repo root, run as it is (the Go and
# TypeScript sandboxes: their `run` scripts exec what `make sandboxes` built).
SERVICES=(
	"gateway_svc:gateway_svc:PAYRAIL_GATEWAY_PORT:50051"
	"payment_svc:payment_svc:PAYRAIL_PAYMENT_PORT:50052"
	"consumer_svc:consumer_svc:PAYRAIL_CONSUMER_PORT:50053"
	"consumer_insights:consumer_svc.insights:PAYRAIL_INSIGHTS_PORT:50054"
	"sandbox_json:sandbox_gateways.json_gateway:PAYRAIL_SANDBOX_JSON_PORT:50061"
	"sandbox_soap:sandbox_gateways.soap_gateway:PAYRAIL_SANDBOX_SOAP_PORT:50062"
)
# The Go and TypeScript sandbox gateways (sdk/go, sdk/ts), with
# PAYRAIL_LOCAL_POLYGLOT_SANDBOXES=1 (what `make up` sets, after `make sandboxes` built
# them; the chaos stack leaves them out).
if [[ ${PAYRAIL_LOCAL_POLYGLOT_SANDBOXES:-0} == 1 ]]; then
	SERVICES+=(
		"sandbox_go:sandbox_gateways/go/run:PAYRAIL_SANDBOX_GO_PORT:50063"
		"sandbox_ts:sandbox_gateways/ts/run:PAYRAIL_SANDBOX_TS_PORT:50064"
	)
fi
# The web console, with PAYRAIL_LOCAL_CONSOLE=1 (what `make up` sets; stacks of test
# harnesses that start only the platform leave it out). Browsers use its HTTP port
# (PAYRAIL_CONSOLE_HTTP_PORT, 50080); the port here serves only the gRPC health
# protocol, like consumer_svc's. It needs its cookie key (.data/keys/console-cookie.key).
if [[ ${PAYRAIL_LOCAL_CONSOLE:-0} == 1 ]]; then
	SERVICES+=("console_svc:console_svc:PAYRAIL_CONSOLE_PORT:50055")
fi

DATA=$(abs_path "${PAYRAIL_DATA_DIR:-$ROOT/.data}")
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
RUN=$DATA/run
LOGS=$DATA/logs
SUP_CONF=$RUN/supervisord.conf
SUP_SOCK=$RUN/supervisord.sock
SUP_PIDFILE=$RUN/supervisord.pid
SUP_LOG=$LOGS/supervisord.log
# All programs are in one supervisord group: supervisord stops groups one after the other
# (waiting for each), but the programs of one group all at once. Its programs are
# addressed as payrail:<name> in supervisorctl.
GROUP=payrail

# Readiness bound: the services themselves wait up to PAYRAIL_STARTUP_TIMEOUT_S (default
# 30) for their dependencies before giving up, so wait a little longer than that.
STARTUP_TIMEOUT_S=${PAYRAIL_STARTUP_TIMEOUT_S:-30}
GRACE_S=${PAYRAIL_SHUTDOWN_GRACE_S:-10}
[[ $STARTUP_TIMEOUT_S =~ ^[0-9]+$ ]] || die "PAYRAIL_STARTUP_TIMEOUT_S must be a whole number of seconds"
[[ $GRACE_S =~ ^[0-9]+$ ]] || die "PAYRAIL_SHUTDOWN_GRACE_S must be a whole number of seconds"
HEALTH_TIMEOUT_S=$((STARTUP_TIMEOUT_S + 30))
# A service drains for GRACE_S after SIGTERM (its worker children too, in parallel); then
# supervisord kills the whole group. The old pid-file scheme's bound, for `down` of a
# stack it started.
STOP_WAIT_S=$((GRACE_S + 5))
LEGACY_STOP_TIMEOUT_S=10
# supervisord's restart policy. A program counts as started once it has run START_S
# seconds; one that exits sooner is started again after 1 s, 2 s, 3 s, ... and given up
# (FATAL) after START_RETRIES such failures in a row (about a minute). One that exits
# later (a crash, a kill -9, a dependency it waited for in vain) is restarted at once.
START_S=5
START_RETRIES=10
# How many exits during start-up `up`/`wait` watch before they report the service as
# failing (supervisord keeps retrying regardless).
WAIT_CRASHES_MAX=3

# svc_fields ENTRY: split "name:module:port-var:default" into NAME MODULE PORT (the port
# variable's value when set, else the default).
svc_fields() {
	local name module var default
	IFS=: read -r name module var default <<<"$1"
	[[ -n $name && -n $module && -n $var && -n $default ]] || die "bad SERVICES entry '$1'"
	NAME=$name MODULE=$module PORT=${!var:-$default}
	[[ $PORT =~ ^[0-9]+$ ]] || die "$var must be a TCP port, got '$PORT'"
}

# find_service NAME: set NAME MODULE PORT for the service called NAME, or die.
find_service() {
	local entry want=${1:-}
	[[ -n $want ]] || die "which service? one of: $(service_names)"
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		[[ $NAME == "$want" ]] && return 0
	done
	die "no service '$want'; the services are: $(service_names)"
}

service_names() {
	local entry
	for entry in "${SERVICES[@]}"; do printf '%s ' "${entry%%:*}"; done
}

# ctl ARGS...: supervisorctl against this data dir's supervisord.
ctl() { "$PYTHON" -m supervisor.supervisorctl -c "$SUP_CONF" "$@"; }

# supervisord_pid: pid of this data dir's supervisord, verified by its command line (a
# stale pid file, or one copied from another data dir, must never name a stranger).
supervisord_pid() {
	local pid
	pid=$(read_pid "$SUP_PIDFILE") && pid_alive "$pid" &&
		pid_cmdline_has "$pid" "-m supervisor.supervisord -c $SUP_CONF " && echo "$pid"
}

# orphan_pids: live processes started by a supervisord of this data dir that is gone
# (killed with SIGKILL, say): supervisord puts its socket's URL into every program's
# environment, and the services pass it on to their workers.
orphan_pids() {
	local file pid
	grep -lzxF -- "SUPERVISOR_SERVER_URL=unix://$SUP_SOCK" /proc/[0-9]*/environ 2>/dev/null |
		while read -r file; do
			pid=${file#/proc/}
			pid=${pid%/environ}
			[[ $pid != "$$" ]] && pid_alive "$pid" && echo "$pid"
		done || true
}

# legacy_pid NAME MODULE: pid of a service started by the pid-file scheme services.sh used
# before supervisord (its own session, $RUN/NAME.pid), verified like the original did.
legacy_pid() {
	local pid
	pid=$(read_pid "$RUN/$1.pid") && pid_alive "$pid" && pid_cmdline_has "$pid" "-m $2 " &&
		[[ $(pid_pgid "$pid") == "$pid" ]] && echo "$pid"
}

require_python() {
	[[ -x $PYTHON ]] || die "PYTHON=$PYTHON is not executable (run 'make venv')"
	"$PYTHON" -c 'import supervisor' 2>/dev/null ||
		die "supervisor is not installed for $PYTHON (run 'make venv')"
	# A unix socket path is at most 107 bytes.
	((${#SUP_SOCK} <= 100)) || die "$SUP_SOCK is too long for a unix socket; use a shorter PAYRAIL_DATA_DIR"
}

# svc_command: the command line of the service svc_fields last read (shell-quoted).
svc_command() {
	if [[ $MODULE == */* ]]; then
		printf '%q' "$ROOT/$MODULE"
	else
		printf '%q -m %s' "$PYTHON" "$MODULE"
	fi
}

# conf_value V: V escaped for supervisord's config file, whose values expand %(...)s.
conf_value() { printf '%s' "${1//%/%%}"; }

# render_conf: supervisord's configuration for this data dir, on stdout.
render_conf() {
	local entry priority=0
	cat <<-CONF
		; Generated by deploy/local/services.sh from its SERVICES table; do not edit (every
		; 'services.sh up' that starts supervisord writes it again).
		[unix_http_server]
		file=$(conf_value "$SUP_SOCK")
		chmod=0700

		[supervisord]
		pidfile=$(conf_value "$SUP_PIDFILE")
		logfile=$(conf_value "$SUP_LOG")
		logfile_maxbytes=10MB
		logfile_backups=2
		loglevel=info
		childlogdir=$(conf_value "$LOGS")
		directory=$(conf_value "$ROOT")
		identifier=payrail-services

		[rpcinterface:supervisor]
		supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

		[supervisorctl]
		serverurl=unix://$(conf_value "$SUP_SOCK")

		[group:$GROUP]
		programs=$(service_names | sed 's/ $//; s/ /,/g')
	CONF
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		priority=$((priority + 10))
		cat <<-CONF

			[program:$NAME]
			command=$(conf_value "$(svc_command)")
			directory=$(conf_value "$ROOT")
			priority=$priority
			autostart=true
			autorestart=true
			startsecs=$START_S
			startretries=$START_RETRIES
			stopsignal=TERM
			stopwaitsecs=$STOP_WAIT_S
			stopasgroup=true
			killasgroup=true
			redirect_stderr=true
			stdout_logfile=$(conf_value "$LOGS/$NAME.log")
			stdout_logfile_maxbytes=50MB
			stdout_logfile_backups=3
		CONF
	done
}

# start_supervisord: write the configuration and start supervisord (it daemonizes once
# its socket listens, then starts every program). fd 9 (our lock) stays behind.
start_supervisord() {
	local entry pid deadline
	render_conf >"$SUP_CONF.tmp"
	mv -f "$SUP_CONF.tmp" "$SUP_CONF"
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		echo "----- $(date -Is) services.sh: starting $(svc_command) under supervisord" >>"$LOGS/$NAME.log"
	done
	echo "----- $(date -Is) services.sh: starting supervisord -c $SUP_CONF" >>"$SUP_LOG"
	if ! (cd "$ROOT" && exec "$PYTHON" -m supervisor.supervisord -c "$SUP_CONF") \
		</dev/null >>"$SUP_LOG" 2>&1 9>&-; then
		tail_log "$SUP_LOG" 15
		die "supervisord did not start"
	fi
	deadline=$(($(now_ms) + 10000))
	until pid=$(supervisord_pid); do
		if (($(now_ms) > deadline)); then
			tail_log "$SUP_LOG" 15
			die "supervisord wrote no pid file $SUP_PIDFILE within 10 s"
		fi
		sleep 0.05
	done
	log "supervisord: started (pid $pid; config $SUP_CONF, log $SUP_LOG)"
}

# start_stopped: with supervisord already running, start the programs that are not (a
# FATAL one after its cause was fixed, one stopped with `stop NAME`).
start_stopped() {
	local name state rest
	while read -r name state rest; do
		name=${name#"$GROUP:"}
		case $state in
		RUNNING | STARTING | BACKOFF | STOPPING) log "$name: already $state${rest:+ ($rest)}" ;;
		*)
			log "$name: $state; starting it"
			ctl start "$GROUP:$name" >/dev/null 2>&1 || true # the wait below tells how it went
			;;
		esac
	done < <(ctl status 2>/dev/null || true)
}

# wait_serving NAME PORT: bounded wait until NAME answers SERVING; a program supervisord
# gave up on, or one that keeps exiting at start, fails at once (wait_health.py prints
# the reason and the tail of its log).
wait_serving() {
	"$PYTHON" "$HERE/wait_health.py" "127.0.0.1:$2" --timeout-s "$HEALTH_TIMEOUT_S" \
		--supervisor "$SUP_SOCK" --program "$GROUP:$1" --crashes-max "$WAIT_CRASHES_MAX" \
		--log "$LOGS/$1.log" --name "$1"
}

cmd_up() {
	local entry pid t0 failed=0 conf
	local -a leftovers=()
	t0=$(now_ms)
	require_python
	mkdir -p "$RUN" "$LOGS"
	lock_or_die "$RUN/services.lock" "services.sh"
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		if pid=$(legacy_pid "$NAME" "$MODULE"); then
			die "$NAME runs outside supervisord (pid $pid, started by an older services.sh); '$0 down' first"
		fi
	done

	if pid=$(supervisord_pid); then
		log "supervisord: already running (pid $pid); its services keep the environment" \
			"they were started with ('$0 down', then '$0 up' to change it)"
		conf=$(render_conf)
		[[ $conf == "$(<"$SUP_CONF")" ]] ||
			log "WARNING: the SERVICES table or settings changed since supervisord started;" \
				"'$0 down', then '$0 up' to apply them"
		start_stopped
	else
		mapfile -t leftovers < <(orphan_pids)
		((${#leftovers[@]} == 0)) ||
			die "processes of a supervisord that is gone still run (pids ${leftovers[*]}); '$0 down' first"
		for entry in "${SERVICES[@]}"; do
			svc_fields "$entry"
			require_port_free "$NAME" "$PORT"
		done
		start_supervisord
	fi

	# supervisord starts every program at once; wait for each in turn.
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		if wait_serving "$NAME" "$PORT"; then
			log "$NAME: SERVING on 127.0.0.1:$PORT"
		else
			failed=1
		fi
	done
	((failed == 0)) ||
		die "some services did not become healthy; '$0 status' shows them, '$0 down' stops everything"
	log "up: ${#SERVICES[@]} services SERVING in $(elapsed_s "$t0")"
}

# stop_pids_bounded WHAT PID...: SIGTERM, one shared bounded wait, then SIGKILL (to each
# pid's process group when it leads one).
stop_pids_bounded() {
	local what=$1 pid deadline
	shift
	for pid in "$@"; do kill -TERM -- "$pid" 2>/dev/null || true; done
	deadline=$(($(now_ms) + STOP_WAIT_S * 1000))
	for pid in "$@"; do
		while pid_alive "$pid"; do
			if (($(now_ms) > deadline)); then
				log "$what: pid $pid still running ${STOP_WAIT_S}s after SIGTERM; SIGKILL"
				if [[ $(pid_pgid "$pid") == "$pid" ]]; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
				kill -KILL -- "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	done
}

# stop_legacy: services started by the pid-file scheme services.sh used before
# supervisord (SIGTERM to every group at once, one bounded wait, then SIGKILL).
stop_legacy() {
	local i pid deadline
	local -a names=() pids=()
	for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
		svc_fields "${SERVICES[i]}"
		if pid=$(legacy_pid "$NAME" "$MODULE"); then
			log "$NAME: stopping (started without supervisord; process group $pid, SIGTERM)"
			kill -TERM -- "-$pid" 2>/dev/null || true
			names+=("$NAME")
			pids+=("$pid")
		fi
		rm -f "$RUN/$NAME.pid"
	done
	deadline=$(($(now_ms) + LEGACY_STOP_TIMEOUT_S * 1000))
	for i in "${!pids[@]}"; do
		while group_alive "${pids[i]}"; do
			if (($(now_ms) > deadline)); then
				log "${names[i]}: still running ${LEGACY_STOP_TIMEOUT_S}s after SIGTERM; SIGKILL to group ${pids[i]}"
				kill -KILL -- "-${pids[i]}" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	done
}

cmd_down() {
	local pid t0 deadline
	local -a leftovers=()
	t0=$(now_ms)
	if [[ ! -d $RUN ]]; then
		log "down: nothing to stop ($RUN does not exist)"
		return 0
	fi
	lock_or_die "$RUN/services.lock" "services.sh"

	if pid=$(supervisord_pid); then
		# SIGTERM makes supervisord stop every program at once (SIGTERM to each process
		# group, SIGKILL to the group after stopwaitsecs), then exit.
		log "stopping every service (SIGTERM, SIGKILL after ${STOP_WAIT_S}s) and supervisord (pid $pid)"
		kill -TERM -- "$pid" 2>/dev/null || true
		deadline=$(($(now_ms) + (STOP_WAIT_S + 10) * 1000))
		while pid_alive "$pid"; do
			if (($(now_ms) > deadline)); then
				log "supervisord: still running $((STOP_WAIT_S + 10))s after SIGTERM; SIGKILL"
				tail_log "$SUP_LOG" 15
				kill -KILL -- "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
	fi
	# Whatever a vanished (or just killed) supervisord left behind.
	mapfile -t leftovers < <(orphan_pids)
	if ((${#leftovers[@]} > 0)); then
		log "stopping processes left by a supervisord that is gone: pids ${leftovers[*]}"
		stop_pids_bounded "left-over process" "${leftovers[@]}"
	fi
	stop_legacy
	log "down: done in $(elapsed_s "$t0")"
}

cmd_status() {
	local entry pid
	local -a targets=() leftovers=()
	[[ -x $PYTHON ]] || die "PYTHON=$PYTHON is not executable (run 'make venv')"
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		targets+=("$NAME=127.0.0.1:$PORT")
	done
	if supervisord_pid >/dev/null; then
		"$PYTHON" "$HERE/service_status.py" --supervisor "$SUP_SOCK" "${targets[@]}"
	else
		"$PYTHON" "$HERE/service_status.py" "${targets[@]}"
		mapfile -t leftovers < <(orphan_pids)
		((${#leftovers[@]} == 0)) ||
			echo "left behind by a supervisord that is gone: pids ${leftovers[*]} ('$0 down' stops them)"
	fi
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		if pid=$(legacy_pid "$NAME" "$MODULE"); then
			echo "$NAME: runs outside supervisord (pid $pid, an older services.sh); '$0 down' stops it"
		fi
	done
}

# require_supervisord: this data dir's supervisord must run (for the one-service commands).
require_supervisord() {
	supervisord_pid >/dev/null || die "supervisord is not running for $DATA ('$0 up' starts it)"
}

cmd_pid() {
	local pid
	find_service "${1:-}"
	supervisord_pid >/dev/null || exit 1
	pid=$(ctl pid "$GROUP:$NAME" 2>/dev/null) || true
	[[ $pid =~ ^[0-9]+$ && $pid != 0 ]] || exit 1
	echo "$pid"
}

# ctl_logged ARGS...: supervisorctl with its answer as progress lines.
ctl_logged() {
	local line
	while IFS= read -r line; do log "supervisorctl: $line"; done < <(ctl "$@" 2>&1 || true)
}

cmd_restart() {
	find_service "${1:-}"
	require_python
	require_supervisord
	log "$NAME: restarting (SIGTERM to its process group, SIGKILL after ${STOP_WAIT_S}s)"
	ctl_logged restart "$GROUP:$NAME"
	cmd_wait "$NAME"
}

cmd_start() {
	find_service "${1:-}"
	require_python
	require_supervisord
	ctl_logged start "$GROUP:$NAME"
	cmd_wait "$NAME"
}

cmd_stop() {
	find_service "${1:-}"
	require_python
	require_supervisord
	log "$NAME: stopping (SIGTERM to its process group, SIGKILL after ${STOP_WAIT_S}s); it stays down"
	ctl_logged stop "$GROUP:$NAME"
}

cmd_wait() {
	local t0
	t0=$(now_ms)
	find_service "${1:-}"
	require_supervisord
	wait_serving "$NAME" "$PORT" || exit 1
	log "$NAME: SERVING on 127.0.0.1:$PORT (waited $(elapsed_s "$t0"))"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
pid) cmd_pid "${2:-}" ;;
restart) cmd_restart "${2:-}" ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
wait) cmd_wait "${2:-}" ;;
*)
	echo "usage: $0 {up|down|status|pid NAME|restart NAME|start NAME|stop NAME|wait NAME}" >&2
	exit 2
	;;
esac
