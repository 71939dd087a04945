# bench/peers.sh - sourced by bench/run: install/detect, configure, start and
# stop the servers under test.  Every peer runs on loopback, from a config
# written here into $WORK, with its own pid file and logs, and 2 workers.
#
# Globals used: WORK (temp dir), WWW (document root), SRC (molt source tree),
# BENCH_DIR, PORT_BASE, LOGDIR (where peer logs are copied at stop).
# start_peer sets PEER_PID[<key>] (the master / parent) and PEER_URL[<key>].

declare -A PEER_PID=() PEER_URL=() PEER_LOG=() PEER_PORT=() PEER_STARTED_AT=()
MOLT_BIN="" MOLT_MODULES="" MOLT_MISSING=""

say() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ------------------------------------------------------------------ install
install_peers() {
	local need=() p
	command -v wrk >/dev/null || need+=(wrk)
	command -v gnuplot >/dev/null || need+=(gnuplot-nox)
	command -v nginx >/dev/null || need+=(nginx-light)
	command -v apache2 >/dev/null || need+=(apache2)
	command -v apxs >/dev/null || need+=(apache2-dev)
	[ -e /usr/lib/apache2/modules/mod_mpm_prefork.so ] || need+=(apache2)
	command -v uwsgi >/dev/null || need+=(uwsgi-core)
	# symcall is a plugin shipped in uwsgi-core itself
	[ -e /usr/lib/uwsgi/plugins/symcall_plugin.so ] || need+=(uwsgi-core)
	command -v cc >/dev/null || need+=(gcc)
	command -v curl >/dev/null || need+=(curl)
	[ ${#need[@]} -eq 0 ] && return 0
	if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
		say "missing: ${need[*]} (BENCH_NO_INSTALL=1, not installing)"
		return 1
	fi
	say "installing from Debian packages: ${need[*]}"
	if [ "$(id -u)" != 0 ]; then
		say "not root: install ${need[*]} first"; return 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		$(printf '%s\n' "${need[@]}" | sort -u) >&2
	# the Debian apache2 package starts the system service: we never use it
	# (our peer listens on its own high port), so leave it alone.
}

peer_versions() {
	echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
	echo "- Apache: $(apache2 -v 2>/dev/null | sed -n 's/^Server version: //p') (prefork MPM)"
	echo "- uWSGI: $(uwsgi --version 2>/dev/null) (symcall plugin, Debian uwsgi-core $(dpkg-query -W -f='${Version}' uwsgi-core 2>/dev/null))"
	echo "- wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
	echo "- gnuplot: $(gnuplot --version 2>/dev/null)"
	if [ -n "$MOLT_BIN" ]; then
		echo "- molt: $("$MOLT_BIN" -V 2>/dev/null || echo unknown) at $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null)"
	else
		echo "- molt: not built ($MOLT_MISSING)"
	fi
	echo "- libc: $(ldd --version 2>/dev/null | head -1)"
}

# ---------------------------------------------------------------- building
build_peer_code() {
	mkdir -p "$WORK/build"
	cp "$BENCH_DIR/peers/uwsgi_hello.c" "$BENCH_DIR/peers/mod_bench_hello.c" \
	    "$BENCH_DIR/bare.c" "$WORK/build/"
	( cd "$WORK/build" &&
	  cc -O2 -Wall -fPIC -shared -o uwsgi_hello.so uwsgi_hello.c &&
	  cc -O2 -Wall -o bare bare.c &&
	  apxs -c mod_bench_hello.c >apxs.log 2>&1 ) || { say "building peer handlers failed"; return 1; }
	chmod -R a+rX "$WORK/build"
}

# Build molt from $SRC (in build/bench, or in the tree if it is configured there) unless
# BENCH_NO_BUILD=1; sets MOLT_BIN/MOLT_MODULES or MOLT_MISSING.
build_molt() {
	# An in-tree build (./configure run in the source) is used as it is;
	# otherwise molt is built out of tree in build/bench, as tests/check-all
	# builds (configure refuses a VPATH build in a configured source tree).
	local b="$SRC/build/bench"
	[ -f "$SRC/Makefile" ] && b=$SRC
	MOLT_BIN="" MOLT_MISSING=""
	MOLT_MODULES="$b/modules/.libs"
	if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
		(
			cd "$SRC" && { [ -x configure ] || autoreconf -fi; } &&
			mkdir -p "$b" && cd "$b" &&
			{ [ -f Makefile ] || "$SRC/configure"; } && make -j2
		) >"$LOGDIR/molt-build.log" 2>&1 || {
			MOLT_MISSING="build failed (see molt-build.log: $(grep -m1 -E 'error' "$LOGDIR/molt-build.log" | cut -c1-160))"
			say "molt: $MOLT_MISSING"
			return 0
		}
	fi
	if [ ! -x "$b/molt" ]; then
		MOLT_MISSING="no $b/molt binary"
		return 0
	fi
	MOLT_BIN="$b/molt"
	local m
	for m in hello static fragment; do
		[ -e "$MOLT_MODULES/$m.so" ] || MOLT_MISSING="${MOLT_MISSING:+$MOLT_MISSING; }module $m.so not built"
	done
	[ -n "$MOLT_MISSING" ] && say "molt: $MOLT_MISSING"
	return 0
}

# ------------------------------------------------------------------ config
# molt config: $1 = variant, $2 = dir, $3 = port
#   base         2 workers, no recycling triggers (memory monitoring is on:
#                it is always on in molt)
#   recycle      [recycle] max_requests = $BENCH_RECYCLE_REQUESTS
#   nomon        [recycle] sample_interval = 1h: memory sampling as good as off
#   routestats   [status] route_stats = on: every malloc and free counted
#   mem-trim     [recycle] max_rss = $BENCH_MAX_RSS_MB M, trim = on
#   mem-off      no [recycle] limits at all
#   pin          worker_cpu_affinity = auto (and with it listen_per_cpu)
#   pin-recycle  both
write_molt_conf() {
	local variant=$1 dir=$2 port=$3
	{
		echo "[server]"
		echo "listen = 127.0.0.1:$port"
		echo "workers = 2"
		echo "modules_dir = $MOLT_MODULES"
		echo "pid_file = $dir/molt.pid"
		echo "error_log = $dir/error.log"
		echo "access_log = off"
		case $variant in pin | pin-recycle) echo "worker_cpu_affinity = auto" ;; esac
		echo
		echo "[route /hello]"
		echo "module = hello"
		echo
		echo "[route /fragment]"
		echo "module = fragment"
		echo
		echo "[route /]"
		echo "module = static"
		echo "root = $WWW"
		echo
		case $variant in
		recycle | pin-recycle)
			echo "[recycle]"
			echo "max_requests = $BENCH_RECYCLE_REQUESTS"
			echo "max_requests_jitter = $((BENCH_RECYCLE_REQUESTS / 10))"
			;;
		nomon)
			# Memory sampling (worker mallinfo2, master /proc reads)
			# as good as off: the first sample at start, then one an
			# hour.  The per-request scoreboard counters stay: they
			# are not optional.
			echo "[recycle]"
			echo "sample_interval = 1h"
			;;
		routestats)
			echo "[status]"
			echo "route_stats = on"
			;;
		mem-trim)
			echo "[recycle]"
			echo "max_rss = ${BENCH_MAX_RSS_MB}M"
			echo "trim = on"
			echo "sample_interval = 500ms"
			echo "min_lifetime = 1s"
			echo "drain_timeout = 10s"
			;;
		mem-notrim)
			echo "[recycle]"
			echo "max_rss = ${BENCH_MAX_RSS_MB}M"
			echo "trim = off"
			echo "sample_interval = 500ms"
			echo "min_lifetime = 1s"
			echo "drain_timeout = 10s"
			;;
		esac
	} >"$dir/molt.conf"
}

# nginx: $3 = variant: base | pin (worker_cpu_affinity auto)
write_nginx_conf() {
	local dir=$1 port=$2 affinity=""
	[ "${3:-base}" = pin ] && affinity="worker_cpu_affinity auto;"
	mkdir -p "$dir/tmp"
	cat >"$dir/nginx.conf" <<EOF
# written by bench/run
worker_processes 2;
$affinity
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    server {
        # deferred: TCP_DEFER_ACCEPT, which molt, Apache (AcceptFilter)
        # and uWSGI all set by default
        listen 127.0.0.1:$port backlog=4096 deferred;
        location = /hello { default_type text/plain; return 200 "hello, world\n"; }
        location / { root $WWW; }
    }
}
EOF
}

# Apache: prefork, 2 processes, KeepAlive Off (see doc/benchmarks.md: with
# 2 single-connection processes, keep-alive would park 62 of 64 clients).
#   $3 = MaxConnectionsPerChild (0 = never recycle)
write_apache_conf() {
	local dir=$1 port=$2 mcpc=${3:-0}
	mkdir -p "$dir/logs"
	cat >"$dir/httpd.conf" <<EOF
# written by bench/run
ServerRoot $dir
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile $dir/httpd.pid
ErrorLog $dir/error.log
LogLevel notice
Mutex file:$dir
DefaultRuntimeDir $dir
User www-data
Group www-data
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule bench_hello_module $WORK/build/.libs/mod_bench_hello.so
TypesConfig /etc/mime.types
StartServers 2
MinSpareServers 2
MaxSpareServers 2
ServerLimit 2
MaxRequestWorkers 2
MaxConnectionsPerChild $mcpc
ListenBacklog 4096
KeepAlive Off
EnableSendfile On
DocumentRoot $WWW
<Directory />
    AllowOverride None
    Require all granted
</Directory>
<Location "/hello">
    SetHandler bench-hello
</Location>
EOF
}

# uWSGI: argv in $dir/uwsgi.args, one per line.  $3 = variant:
#   base | recycle (max-requests) | mem (reload-on-rss)
write_uwsgi_args() {
	local dir=$1 port=$2 variant=$3
	{
		printf '%s\n' --plugin-dir /usr/lib/uwsgi/plugins --plugin symcall \
			--dlopen "$WORK/build/uwsgi_hello.so" --symcall molt_bench_handler \
			--http-socket "127.0.0.1:$port" --http-socket-modifier1 18 \
			--master --processes 2 --listen 1024 --die-on-term \
			--add-header "Connection: close" \
			--static-map "/static=$WWW/static" \
			--pidfile "$dir/uwsgi.pid" --logto "$dir/error.log" --log-date
		case $variant in
		base) printf '%s\n' --disable-logging ;;
		recycle) printf '%s\n' --disable-logging --max-requests "$BENCH_RECYCLE_REQUESTS" \
				--min-worker-lifetime 0 ;;
		mem) printf '%s\n' --disable-logging --reload-on-rss "$BENCH_MAX_RSS_MB" \
				--min-worker-lifetime 1 --worker-reload-mercy 10 ;;
		esac
	} >"$dir/uwsgi.args"
}

# ------------------------------------------------------------- lifecycle
NEXT_PORT=""
wait_http() { # url timeout_s
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		curl -s -o /dev/null --max-time 1 "$1" && return 0
		sleep 0.1
	done
	return 1
}

# Every server runs in its own session (setsid): Apache's parent signals its
# whole process group when it stops, which would otherwise hit this script.
# start_peer NAME VARIANT -> instance key "NAME" for variant base, else
# "NAME+VARIANT"; each instance gets its own port, so several run at once
# and the load runs can be interleaved.
start_peer() {
	local name=$1 variant=${2:-base} key port dir pid
	key=$name; [ "$variant" = base ] || key="$name+$variant"
	[ -n "$NEXT_PORT" ] || NEXT_PORT=$PORT_BASE
	port=$NEXT_PORT
	while ss -Htln "sport = :$port" 2>/dev/null | grep -q .; do port=$((port + 1)); done
	NEXT_PORT=$((port + 1))
	dir="$WORK/$name-$variant"
	rm -rf "$dir"; mkdir -p "$dir"; chmod 755 "$dir"
	case $name in
	molt)
		[ -n "$MOLT_BIN" ] || return 1
		write_molt_conf "$variant" "$dir" "$port"
		setsid "$MOLT_BIN" -c "$dir/molt.conf" >"$dir/stderr.log" 2>&1 &
		pid=$!
		;;
	nginx)
		write_nginx_conf "$dir" "$port" "$variant"
		setsid nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' >"$dir/stderr.log" 2>&1 &
		pid=$!
		;;
	apache)
		local mcpc=0
		[ "$variant" = recycle ] && mcpc=$BENCH_RECYCLE_REQUESTS
		write_apache_conf "$dir" "$port" "$mcpc"
		setsid apache2 -f "$dir/httpd.conf" -DFOREGROUND >"$dir/stderr.log" 2>&1 &
		pid=$!
		;;
	uwsgi)
		write_uwsgi_args "$dir" "$port" "$variant"
		local args=()
		mapfile -t args <"$dir/uwsgi.args"
		setsid uwsgi "${args[@]}" >"$dir/stderr.log" 2>&1 &
		pid=$!
		;;
	bare)
		# a reference, not a server: keep-alive /hello only (serves)
		setsid "$WORK/build/bare" "$port" 2 >"$dir/stderr.log" 2>&1 &
		pid=$!
		;;
	*) say "unknown peer $name"; return 1 ;;
	esac
	PEER_PID[$key]=$pid
	PEER_PORT[$key]=$port
	PEER_URL[$key]="http://127.0.0.1:$port"
	PEER_LOG[$key]=$dir
	PEER_STARTED_AT[$key]=$(date +%s.%N)
	if ! wait_http "http://127.0.0.1:$port/hello" 15; then
		say "$key did not answer on port $port; log:"
		tail -n 20 "$dir/stderr.log" "$dir/error.log" 2>/dev/null | sed 's/^/    /' >&2
		stop_peer "$key"
		return 1
	fi
	# let every worker come up (apache/uwsgi fork after the listener is up)
	sleep 0.5
	say "started $key pid $pid on port $port"
}

# serves KEY PATH CLOSE: does the instance answer this test?  bare
# answers every request with hello and never closes a connection.
serves() {
	case $1 in
	bare*) [ "$2" = /hello ] && [ "$3" = 0 ] ;;
	*) return 0 ;;
	esac
}

# children of a pid (the workers of a master)
workers_of() { pgrep -P "$1" 2>/dev/null || true; }

# server_cpu_ticks KEY: CPU time (clock ticks, user + system) the server
# has used so far: every process of its session, plus what its master's
# reaped children used (recycled workers), so a recycle loses nothing.
server_cpu_ticks() {
	local sid=${PEER_PID[$1]:-} p
	[ -n "$sid" ] || { echo 0; return; }
	for p in $(ps -o pid= -s "$sid" 2>/dev/null); do
		# fields after "(comm) ": 12-13 utime stime, 14-15 cutime cstime.
		# A recycling peer's child can be gone since ps saw it: skip it
		# (once reaped, its time is in its parent's cutime), or pipefail ends
		# the run.
		sed 's/.*) //' "/proc/$p/stat" 2>/dev/null || true
	done | awk '{ t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}

stop_peer() {
	local name=$1 pid sig i kids
	pid=${PEER_PID[$name]:-}
	[ -n "$pid" ] || return 0
	case ${name%%+*} in
	uwsgi) sig=INT ;;      # uWSGI 2.0: TERM means "brutal reload" without --die-on-term
	nginx) sig=TERM ;;
	*) sig=TERM ;;
	esac
	kids=$(workers_of "$pid")
	kill -"$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "$name pid $pid did not stop in 10 s: KILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
	if [ -n "${LOGDIR:-}" ] && [ -d "${PEER_LOG[$name]:-}" ]; then
		local d; d="$LOGDIR/logs/$(basename "${PEER_LOG[$name]}")"
		mkdir -p "$d"
		cp -p "${PEER_LOG[$name]}"/*.log "${PEER_LOG[$name]}"/*.conf \
			"${PEER_LOG[$name]}"/*.args "$d/" 2>/dev/null || true
	fi
	unset "PEER_PID[$name]"
}

stop_all_peers() {
	local n
	for n in "${!PEER_PID[@]}"; do stop_peer "$n"; done
}
