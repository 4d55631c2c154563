#!/usr/bin/env bash
# deploy/local/services.sh {up|down|status} — the payrail Python services as background
# processes of a local stack (infrastructure first: deploy/local/stack.sh up).
#
# Each service runs as `$PYTHON -m <module>` with cwd = repo root, in its own session
# (setsid), so `down` can signal its whole process group. Output goes to
# $DATA/logs/<name>.log, the pid to $DATA/run/<name>.pid. The environment is passed through
# untouched: the services read their own PAYRAIL_* variables (ports, DSNs, ...).
#
# Configuration (environment): PAYRAIL_DATA_DIR (<repo>/.data), PYTHON (<repo>/.venv/bin/python),
# plus each service's port variable below (also used for the readiness check).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOG_TAG=services
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# The services, in start order ("name:module:port-env-var:default-port"). The port is the
# gRPC port that serves grpc.health.v1 (readiness). Add a line to add a service, e.g. a
# sandbox gateway: "sandbox_gw:sandbox_gw_svc:PAYRAIL_SANDBOX_GW_PORT:50061".
SERVICES=(
	"gateway_svc:gateway_svc:PAYRAIL_GATEWAY_PORT:50051"
	"payment_svc:payment_svc:PAYRAIL_PAYMENT_PORT:50052"
	"consumer_svc:consumer_svc:PAYRAIL_CONSUMER_PORT:50053"
	"consumer_insights:consumer_svc.insights:PAYRAIL_INSIGHTS_PORT:50054"
	"sandbox_json:sandbox_gateways.json_gateway:PAYRAIL_SANDBOX_JSON_PORT:50061"
	"sandbox_soap:sandbox_gateways.soap_gateway:PAYRAIL_SANDBOX_SOAP_PORT:50062"
)

DATA=$(abs_path "${PAYRAIL_DATA_DIR:-$ROOT/.data}")
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
RUN=$DATA/run
LOGS=$DATA/logs

# Readiness bound: the services themselves wait up to PAYRAIL_STARTUP_TIMEOUT_S (default
# 30) for their dependencies before giving up, so wait a little longer than that.
HEALTH_TIMEOUT_S=$((${PAYRAIL_STARTUP_TIMEOUT_S:-30} + 30))
STOP_TIMEOUT_S=10

# svc_fields ENTRY: split "name:module:port-var:default" into NAME MODULE PORT (the port
# variable's value when set, else the default).
svc_fields() {
	local name module var default
	IFS=: read -r name module var default <<<"$1"
	[[ -n $name && -n $module && -n $var && -n $default ]] || die "bad SERVICES entry '$1'"
	NAME=$name MODULE=$module PORT=${!var:-$default}
	[[ $PORT =~ ^[0-9]+$ ]] || die "$var must be a TCP port, got '$PORT'"
}

# svc_pid NAME MODULE: pid of the running service, verified to be `python -m MODULE` and
# its process-group leader (so signalling the group -PID cannot hit anything else). The
# module must be followed by the end of the argument ("-m consumer_svc " is not
# "-m consumer_svc.insights "): the command line's NULs read as spaces.
svc_pid() {
	local pid
	pid=$(read_pid "$RUN/$1.pid") && pid_alive "$pid" && pid_cmdline_has "$pid" "-m $2 " &&
		[[ $(pid_pgid "$pid") == "$pid" ]] && echo "$pid"
}

cmd_up() {
	local entry pid t0 failed=0
	local -a started=()
	t0=$(now_ms)
	[[ -x $PYTHON ]] || die "PYTHON=$PYTHON is not executable (run 'make venv')"
	mkdir -p "$RUN" "$LOGS"
	lock_or_die "$RUN/services.lock" "services.sh"

	# Start every service first, then wait for each: they boot in parallel, and a service
	# that needs another one (gateway -> payment) keeps retrying on its own meanwhile.
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		if pid=$(svc_pid "$NAME" "$MODULE"); then
			log "$NAME: already running (pid $pid, 127.0.0.1:$PORT)"
			started+=("$NAME:$MODULE:$PORT:$pid")
			continue
		fi
		require_port_free "$NAME" "$PORT"
		echo "----- $(date -Is) services.sh: starting $PYTHON -m $MODULE" >>"$LOGS/$NAME.log"
		spawn "$RUN/$NAME.pid" "$LOGS/$NAME.log" "$ROOT" "$PYTHON" -m "$MODULE"
		pid=$(read_pid "$RUN/$NAME.pid")
		log "$NAME: started (pid $pid, 127.0.0.1:$PORT)"
		started+=("$NAME:$MODULE:$PORT:$pid")
	done

	for entry in "${started[@]}"; do
		IFS=: read -r NAME MODULE PORT pid <<<"$entry"
		if "$PYTHON" "$HERE/wait_health.py" "127.0.0.1:$PORT" --timeout-s "$HEALTH_TIMEOUT_S" \
			--pid "$pid" --log "$LOGS/$NAME.log" --name "$NAME"; then
			log "$NAME: SERVING on 127.0.0.1:$PORT"
		else
			failed=1 # wait_health.py has printed the reason and the log tail
		fi
	done
	((failed == 0)) || die "some services did not become healthy; '$0 down' stops the rest"
	log "up: ${#started[@]} services SERVING in $(elapsed_s "$t0")"
}

cmd_down() {
	local entry pid t0 deadline i
	local -a names=() pids=()
	t0=$(now_ms)
	if [[ ! -d $RUN ]]; then
		log "down: nothing to stop ($RUN does not exist)"
		return 0
	fi
	lock_or_die "$RUN/services.lock" "services.sh"

	# SIGTERM every group at once (reverse start order: the edge stops taking requests
	# first), then one shared bounded wait, then SIGKILL whatever is left.
	for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
		svc_fields "${SERVICES[i]}"
		if pid=$(svc_pid "$NAME" "$MODULE"); then
			log "$NAME: stopping (process group $pid, SIGTERM)"
			kill -TERM -- "-$pid" 2>/dev/null || true
			names+=("$NAME")
			pids+=("$pid")
		else
			[[ -e $RUN/$NAME.pid ]] && log "$NAME: not running (removing stale pid file)"
			rm -f "$RUN/$NAME.pid"
		fi
	done

	deadline=$(($(now_ms) + STOP_TIMEOUT_S * 1000))
	for i in "${!pids[@]}"; do
		while group_alive "${pids[i]}"; do
			if (($(now_ms) > deadline)); then
				log "${names[i]}: still running ${STOP_TIMEOUT_S}s after SIGTERM; SIGKILL to group ${pids[i]}"
				tail_log "$LOGS/${names[i]}.log" 15
				kill -KILL -- "-${pids[i]}" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		rm -f "$RUN/${names[i]}.pid"
	done
	log "down: done in $(elapsed_s "$t0")"
}

cmd_status() {
	local entry pid state
	for entry in "${SERVICES[@]}"; do
		svc_fields "$entry"
		if pid=$(svc_pid "$NAME" "$MODULE"); then state="running (pid $pid)"; else state=stopped; fi
		printf '%-18s %-32s %s\n' "$NAME" "127.0.0.1:$PORT" "$state"
	done
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
	echo "usage: $0 {up|down|status}" >&2
	exit 2
	;;
esac
