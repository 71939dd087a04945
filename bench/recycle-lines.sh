# bench/recycle-lines.sh - sourced by bench/recycle-cost and recycle-load:
# what molt says each recycle's two processes cost, from its error log.

# recycle_lines_take LOG DIR: append to DIR/starts each replacement's
# start ("ready" line; the first two workers started before the measure)
# and to DIR/exits each old worker's exit_cpu (recycle line), in ms.
recycle_lines_take() {
	sed -n 's/.*: worker [0-9]* ready (generation [0-9]*): pid [0-9]*, its start took \([0-9.]*\) ms of CPU$/\1/p' \
	    "$1" | tail -n +3 >>"$2/starts"
	sed -n 's/.*: recycled worker .* exit_cpu=\([0-9.]*\)ms$/\1/p' \
	    "$1" >>"$2/exits"
}

# median, min-max of a column of milliseconds, 0 (not known) left out:
# "1.23 ms (1.01-2.34, N WHAT)"
recycle_lines_mmm() {
	sort -n "$1" 2>/dev/null | awk -v what="$2" '$1 > 0 { a[++n] = $1 }
	END { if (n) printf "%.2f ms (%.2f-%.2f, %d %s)", n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2, a[1], a[n], n, what }'
}

# recycle_lines_report DIR: the "starts:" and "exits:" lines.
recycle_lines_report() {
	local starts exits
	starts=$(recycle_lines_mmm "$1/starts" starts)
	exits=$(recycle_lines_mmm "$1/exits" exits)
	if [ -n "$starts" ]; then
		echo "starts: a new worker's CPU from its fork to ready, its own count (median, min-max): $starts"
	fi
	if [ -n "$exits" ]; then
		echo "exits: the CPU of an old worker's exit, its recycle line's exit_cpu (median, min-max): $exits"
	fi
}
