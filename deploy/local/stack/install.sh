# shellcheck shell=bash
# deploy/local/stack/install.sh — installation: apt packages, Kafka jars from Maven Central.
# A library of functions sourced by deploy/local/stack.sh: it uses the variables that
# stack.sh sets (DATA, RUN, LOGS, ports, timeouts) and the helpers of lib.sh.

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
