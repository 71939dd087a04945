#!/usr/bin/env bash
# bench/memwatch.sh MASTER_PID OUT_PREFIX INTERVAL_S [CAP_MB]
#
# Samples the USS (Private_Clean + Private_Dirty from /proc/PID/smaps_rollup)
# of every child of MASTER_PID (the workers) every INTERVAL_S seconds until
# MASTER_PID exits or this script gets SIGTERM.  Writes:
#   OUT_PREFIX.fleet.csv    t_s,fleet_uss_mb,workers
#   OUT_PREFIX.workers.csv  t_s,pid,uss_mb
#   OUT_PREFIX.events.csv   t_s,event,pid      (event: spawn|exit)
# t_s counts from the start of this script.  A worker pid that disappears
# between two samples is an "exit" (a recycle, or a crash); a new one a
# "spawn".  If CAP_MB > 0 and the fleet USS goes above it, the script writes
# OUT_PREFIX.capped and exits: a safety stop for the no-recycling runs.
set -u
master=$1 out=$2 interval=${3:-0.5} cap=${4:-0}
fleet="$out.fleet.csv" workers="$out.workers.csv" events="$out.events.csv"
echo "t_s,fleet_uss_mb,workers" >"$fleet"
echo "t_s,pid,uss_mb" >"$workers"
echo "t_s,event,pid" >"$events"

start=$(date +%s%N)
declare -A seen=()
first=1
stop=0
trap 'stop=1' TERM INT

while [ $stop = 0 ] && kill -0 "$master" 2>/dev/null; do
	now=$(date +%s%N)
	t=$(awk -v a="$now" -v b="$start" 'BEGIN{printf "%.2f", (a-b)/1e9}')
	pids=$(pgrep -P "$master" 2>/dev/null | sort -n)
	total=0 n=0
	declare -A cur=()
	for p in $pids; do
		kb=$(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s+0}' \
			"/proc/$p/smaps_rollup" 2>/dev/null) || continue
		[ -n "$kb" ] || continue
		cur[$p]=1
		total=$((total + kb)); n=$((n + 1))
		printf '%s,%s,%.2f\n' "$t" "$p" "$(awk -v k="$kb" 'BEGIN{print k/1024}')" >>"$workers"
		if [ -z "${seen[$p]:-}" ] && [ $first = 0 ]; then
			echo "$t,spawn,$p" >>"$events"
		fi
	done
	for p in "${!seen[@]}"; do
		[ -n "${cur[$p]:-}" ] || echo "$t,exit,$p" >>"$events"
	done
	seen=()
	for p in "${!cur[@]}"; do seen[$p]=1; done
	unset cur
	first=0
	mb=$(awk -v k="$total" 'BEGIN{printf "%.2f", k/1024}')
	echo "$t,$mb,$n" >>"$fleet"
	if [ "$cap" != 0 ] && awk -v m="$mb" -v c="$cap" 'BEGIN{exit !(m > c)}'; then
		echo "$t fleet USS $mb MB > cap $cap MB" >"$out.capped"
		exit 0
	fi
	# sleep the rest of the interval
	el=$(( ($(date +%s%N) - now) / 1000000 ))
	awk -v i="$interval" -v e="$el" 'BEGIN{s = i - e/1000; if (s < 0.01) s = 0.01; printf "%.3f\n", s}' |
		{ read -r s; sleep "$s"; }
done
exit 0
