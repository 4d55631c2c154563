# shellcheck shell=bash
# deploy/local/lib.sh — helpers shared by stack.sh and services.sh (sourced, not executed).
#
# Conventions:
#   * progress goes to stderr as "[$LOG_TAG] ...", so stdout stays free for `status` output;
#   * every wait is a bounded poll that ends with an error naming the component and the
#     tail of its log, never a fixed sleep standing in for readiness;
#   * a pid file alone is never trusted: the pid must be alive (not a zombie) *and* look like
#     the process we started (pid reuse, or a pid file copied from another stack's data dir,
#     must never make us signal a stranger).

LOG_TAG=${LOG_TAG:-stack}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# tail_log FILE [N]: show the last N lines of a component log on stderr (used on failures).
tail_log() {
	local file=$1 n=${2:-30}
	if [[ -s $file ]]; then
		log "last $n lines of $file:"
		tail -n "$n" -- "$file" | sed 's/^/    /' >&2
	else
		log "($file is missing or empty)"
	fi
}

now_ms() { date +%s%3N; }

# elapsed_s START_MS: seconds since START_MS with one decimal, for progress lines.
elapsed_s() {
	local d=$(($(now_ms) - $1))
	printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100))
}

# pid_alive PID: the process exists and is not a zombie. PID 1 on these machines is not a
# classic init, so an exited daemon can linger as a zombie; `kill -0` would call it alive.
pid_alive() {
	local pid=$1 stat
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
	stat=${stat##*) } # drop "pid (comm) ", comm may contain spaces
	[[ ${stat%% *} != Z ]]
}

# pid_pgid PID: the process group id (field 5 of /proc/PID/stat; no procps needed).
pid_pgid() {
	local stat pgid
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	read -r _ _ pgid _ <<<"$stat"
	echo "$pgid"
}

# group_alive PGID: some non-zombie process is still in process group PGID.
group_alive() {
	local f stat state pgid
	# Builtins only (no fork per process): this runs in a polling loop.
	for f in /proc/[0-9]*/stat; do
		{ read -r stat <"$f"; } 2>/dev/null || continue
		stat=${stat##*) }
		read -r state _ pgid _ <<<"$stat"
		[[ $pgid == "$1" && $state != Z ]] && return 0
	done
	return 1
}

# pid_cmdline_has PID NEEDLE: the process's command line contains NEEDLE.
pid_cmdline_has() {
	local cmd
	cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ $cmd == *"$2"* ]]
}

# pid_cwd_is PID DIR: the process's working directory is DIR (used for redis-server, which
# rewrites its command line but chdirs into its --dir).
pid_cwd_is() {
	[[ $(readlink "/proc/$1/cwd" 2>/dev/null) == "$2" ]]
}

# read_pid FILE: print the pid stored in FILE (first line), or fail.
read_pid() {
	local pid
	[[ -r $1 ]] || return 1
	read -r pid <"$1" || [[ -n ${pid:-} ]] || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	echo "$pid"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT (bash /dev/tcp, so no
# dependency on ss/nc being installed).
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# require_port_free NAME PORT: fail early, and clearly, when a port we are about to bind is
# taken by a process we did not start (another stack with the same ports, the Debian
# package's own postgres/redis service, ...), instead of timing out later.
# A process that was just killed can hold its listening socket for a moment while it exits,
# so the port gets a few seconds' grace before this counts as a conflict.
require_port_free() {
	local name=$1 port=$2 deadline
	deadline=$(($(now_ms) + 5000))
	while port_open "$port" && (($(now_ms) < deadline)); do
		sleep 0.1
	done
	if port_open "$port"; then
		die "$name: port 127.0.0.1:$port is already in use by a process this stack did not start" \
			"(another stack on the same ports? a system service from the Debian package?)." \
			"Stop it or choose another port via the PAYRAIL_*_PORT variables."
	fi
}

# spawn PIDFILE LOGFILE CWD CMD...: start CMD in the background in its own session (setsid:
# its own process group, detached from our terminal and from `make`'s signals), stdin from
# /dev/null, stdout+stderr appended to LOGFILE. The pid file is written by the child itself
# right before it execs CMD, so it holds CMD's pid whether or not setsid had to fork.
# fd 9 (our flock, see lock_or_die) is closed so a long-lived daemon never holds the lock.
spawn() {
	local pidfile=$1 logfile=$2 cwd=$3
	shift 3
	rm -f -- "$pidfile"
	(
		cd "$cwd" || exit 1
		# shellcheck disable=SC2016  # $$ / $0 / $@ are for the inner bash
		exec setsid bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@"
	) </dev/null >>"$logfile" 2>&1 9>&- &
	# Bounded wait for the pid file (milliseconds: it is written before exec).
	local deadline=$(($(now_ms) + 10000))
	until [[ -s $pidfile ]]; do
		(($(now_ms) < deadline)) || die "could not start: $* (no pid file $pidfile after 10 s)"
		sleep 0.02
	done
}

# lock_or_die LOCKFILE WHAT: serialise concurrent invocations on the same data dir (e.g. two
# `up`s racing to initdb). Held on fd 9 until the script exits; spawned daemons close fd 9.
lock_or_die() {
	exec 9>"$1"
	flock -w 300 9 || die "another '$2' on this data dir has held $1 for 300 s; giving up"
}

# abs_path P: absolute, normalised path without requiring P to exist.
abs_path() { realpath -m -- "$1"; }
