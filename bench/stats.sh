# bench/stats.sh - sourced by bench/run: medians, ranges and ratios from
# results.tsv, the scenario 4 memory figures, the gnuplot plot, and the
# generated summary.md.

# has_rows SCENARIO: did the run measure it?
has_rows() { grep -q "^$1"$'\t' "$RESULTS"; }

# table SCENARIO REF: one markdown table per test of that scenario.
#   REF=nginx: ratio against nginx's median; REF=self: against the same
#   server's base instance (key before the "+").
#   LABEL names the ratio column (default: "x nginx" or "x no recycling").
table() {
	local sc=$1 ref=$2 label=${3:-}
	awk -F'\t' -v sc="$sc" -v ref="$ref" -v label="$label" '
	function med(s,    a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j+1] = a[j]; a[j+1] = t }
		if (n == 0) return 0
		return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	function mn(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0; return m }
	function mx(s,   a, n, i, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
	NR > 1 && $1 == sc {
		t = $2; k = $3
		if (!(t in tseen)) { tseen[t] = 1; tests[++nt] = t }
		if (!((t, k) in kseen)) { kseen[t, k] = 1; keys[t, ++nk[t]] = k }
		rps[t, k] = rps[t, k] " " $5; at[t, k, $4] = $5; rounds[t, k] = rounds[t, k] " " $4
		p50[t, k] = p50[t, k] " " $6; p99[t, k] = p99[t, k] " " $7
		err[t, k] += $8; req[t, k] += $9; runs[t, k]++; cpu[t, k] = cpu[t, k] " " $16
	}
	END {
		for (x = 1; x <= nt; x++) {
			t = tests[x]
			printf "\n**%s**\n\n", t
			if (label != "") rc = label; else if (ref == "nginx") rc = "x nginx"; else rc = "x no recycling"
			printf "| server | req/s median | req/s min-max | %s | %s, round by round: median (min-max) | server CPU us/req | p50 ms | p99 ms median | p99 ms min-max | failed / requests | runs |\n", rc, rc
			printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
			for (y = 1; y <= nk[t]; y++) {
				k = keys[t, y]
				m = med(rps[t, k])
				r = (ref == "nginx") ? "nginx" : k; sub(/\+.*/, "", r)
				# pinned servers against pinned nginx
				if (ref == "nginx" && k ~ /\+pin$/) r = "nginx+pin"
				# pinned and recycling against pinned, which is its
				# own baseline (not a variant of unpinned molt)
				if (ref != "nginx" && k ~ /\+pin-recycle$/) r = r "+pin"
				if (ref != "nginx" && k ~ /\+pin$/) r = k
				if ((t, r) in rps) { rm = med(rps[t, r]); ratio = rm > 0 ? sprintf("%.2f", m / rm) : "-" } else ratio = "-"
				# The host speed drifts over a run; two servers
				# measured in the same round share more of it than
				# their medians over all rounds do.
				pr = ""
				if ((t, r) in rps) {
					nr = split(rounds[t, k], rl, " ")
					for (i = 1; i <= nr; i++)
						if ((t, r, rl[i]) in at && at[t, r, rl[i]] > 0)
							pr = pr " " at[t, k, rl[i]] / at[t, r, rl[i]]
				}
				paired = pr != "" ? sprintf("%.2f (%.2f-%.2f)", med(pr), mn(pr), mx(pr)) : "-"
				printf "| %s | %.0f | %.0f-%.0f | %s | %s | %.1f | %.2f | %.2f | %.2f-%.2f | %d / %d | %d |\n",
					k, m, mn(rps[t, k]), mx(rps[t, k]), ratio, paired, med(cpu[t, k]), med(p50[t, k]) / 1000,
					med(p99[t, k]) / 1000, mn(p99[t, k]) / 1000, mx(p99[t, k]) / 1000,
					err[t, k], req[t, k], runs[t, k]
			}
		}
	}' "$RESULTS"
}

# mem_table OUT: one row per scenario 4 run
mem_table() {
	local out=$1 f key pfx bound
	bound=$(awk -v m="$BENCH_MAX_RSS_MB" 'BEGIN{printf "%.1f", m * 2 * 1.10}')
	echo "| run | requests | req/s | failed | recycles (sampler / log) | fleet USS peak MB | peak after 1st recycle MB | final MB | within ${bound} MB after 1st recycle |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
	for f in "$out"/mem/*.fleet.csv; do
		[ -e "$f" ] || continue
		pfx=${f%.fleet.csv}
		key=$(basename "$pfx")
		local line reqs rps failed ev logc
		line=$(grep '^BENCH ' "$pfx.wrk.txt" 2>/dev/null | tail -1)
		reqs=$(echo "$line" | tr ' ' '\n' | sed -n 's/^requests=//p')
		rps=$(echo "$line" | awk '{for(i=2;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]} if (v["duration_us"]>0) printf "%.0f", v["requests"]/(v["duration_us"]/1e6)}')
		failed=$(echo "$line" | awk '{for(i=2;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]} print v["connect"]+v["read"]+v["write"]+v["timeout"]+v["status"]}')
		ev=$(grep -c ',exit,' "$pfx.events.csv" 2>/dev/null || true)
		logc=$(sed -n 's/^log_recycles=//p' "$pfx.meta" 2>/dev/null)
		awk -F, -v key="$key" -v reqs="${reqs:-0}" -v rps="${rps:-0}" -v failed="${failed:-?}" \
			-v ev="${ev:-0}" -v logc="${logc:-?}" -v bound="$bound" -v evf="$pfx.events.csv" '
		BEGIN {
			first = -1
			while ((getline l < evf) > 0) { split(l, a, ","); if (a[2] == "exit" && first < 0) first = a[1] + 0 }
		}
		NR > 1 { t = $1 + 0; m = $2 + 0; if (m > peak) peak = m; last = m
			if (first >= 0 && t > first && m > after) after = m }
		END {
			if (first < 0) { aft = "-"; w = "no recycle" } else { aft = sprintf("%.1f", after); w = (after <= bound) ? "yes" : "no" }
			printf "| %s | %d | %d | %s | %d / %s | %.1f | %s | %.1f | %s |\n", key, reqs, rps, failed, ev, logc, peak, aft, last, w
		}' "$f"
	done
}

# plot_memory OUT: OUT/memory.png, fleet USS of every scenario 4 run over
# time, recycle events (worker exits seen by the sampler) as marks.
plot_memory() {
	local out=$1 f key plots="" marks="" i=0 bound
	command -v gnuplot >/dev/null || return 1
	bound=$(awk -v m="$BENCH_MAX_RSS_MB" 'BEGIN{printf "%.1f", m * 2 * 1.10}')
	local colors=("#1f77b4" "#2ca02c" "#d62728" "#ff7f0e" "#9467bd")
	for f in "$out"/mem/*.fleet.csv; do
		[ -e "$f" ] || continue
		key=$(basename "${f%.fleet.csv}")
		local c=${colors[$((i % ${#colors[@]}))]}
		# events at y = -8 - 6*i so the marks of each run sit on their own row
		awk -F, 'NR > 1 && $2 == "exit" {print $1}' "${f%.fleet.csv}.events.csv" >"$out/mem/$key.exits.dat"
		plots="$plots${plots:+, }'$f' using 1:2 with lines lw 2 lc rgb '$c' title '$key'"
		if [ -s "$out/mem/$key.exits.dat" ]; then
			marks="$marks, '$out/mem/$key.exits.dat' using 1:($((-8 - 6 * i))) with points pt 9 ps 1.2 lc rgb '$c' title '$key recycles'"
		fi
		i=$((i + 1))
	done
	[ -n "$plots" ] || return 0
	gnuplot <<EOF
set terminal pngcairo size 1200,700 font ",11" noenhanced
set output '$out/memory.png'
set datafile separator ','
set key top left
set grid
set title "Fleet USS (2 workers) under GET /fragment?$BENCH_FRAG_QUERY"
set xlabel 'seconds (load from 1 s to $((BENCH_MEM_DURATION + 1)) s)'
set ylabel 'fleet USS, MB'
set yrange [-8 - 6 * $i:*]
set arrow from graph 0, first $bound to graph 1, first $bound nohead dt 2 lc rgb '#555555'
set label 'max_rss x 2 workers + 10% = $bound MB' at graph 0.6, first $bound offset 0,0.7
plot $plots$marks
EOF
	# a second plot with the y axis cut at 4x the bound, for the bounded runs
	gnuplot <<EOF
set terminal pngcairo size 1200,700 font ",11" noenhanced
set output '$out/memory-bounded.png'
set datafile separator ','
set key top left
set grid
set title "Fleet USS (2 workers), zoomed to the limit: GET /fragment?$BENCH_FRAG_QUERY"
set xlabel 'seconds (load from 1 s to $((BENCH_MEM_DURATION + 1)) s)'
set ylabel 'fleet USS, MB'
set yrange [-8 - 6 * $i:$(awk -v b="$bound" 'BEGIN{print b * 2.5}')]
set arrow from graph 0, first $bound to graph 1, first $bound nohead dt 2 lc rgb '#555555'
set label 'max_rss x 2 workers + 10% = $bound MB' at graph 0.6, first $bound offset 0,0.7
plot $plots$marks
EOF
}

# paired SCENARIO TEST A B: "median (min-max)" of A/B round by round, or "-".
paired() {
	awk -F'\t' -v sc="$1" -v t="$2" -v a="$3" -v b="$4" '
	function med(s,    x, n, i, j, v) {
		n = split(s, x, " ")
		for (i = 2; i <= n; i++) { v = x[i] + 0; for (j = i - 1; j >= 1 && x[j] + 0 > v; j--) x[j+1] = x[j]; x[j+1] = v }
		return (n % 2) ? x[(n+1)/2] : (x[n/2] + x[n/2+1]) / 2
	}
	NR > 1 && $1 == sc && $2 == t && ($3 == a || $3 == b) { at[$3, $4] = $5; r[$4] = 1 }
	END {
		for (k in r)
			if ((a, k) in at && (b, k) in at && at[b, k] > 0) {
				q = at[a, k] / at[b, k]; s = s " " q
				if (n++ == 0 || q < lo) lo = q
				if (n == 1 || q > hi) hi = q
			}
		if (n) printf "%.2f (%.2f-%.2f)", med(s), lo, hi; else printf "-"
	}' "$RESULTS"
}

summarize() {
	local out=$1
	echo "# molt benchmark run $(basename "$out")"
	echo
	echo "Generated by bench/run. Raw wrk output in raw/, per-run rows in results.tsv."
	echo
	echo '```'
	cat "$out/machine.txt"
	echo '```'
	if [ -s "$out/not-measured.tsv" ]; then
		echo
		echo "## Not measured"
		echo
		awk -F'\t' '{printf "- %s: not measured: %s\n", $1, $2}' "$out/not-measured.tsv"
	fi
	if has_rows 1; then
		echo
		echo "## Scenario 1: hello world (wrk -t$BENCH_THREADS, ${BENCH_DURATION}s x $BENCH_ROUNDS rounds)"
		echo
		echo "ka = keep-alive, close = Connection: close on every request; -64/-512 = connections."
		table 1 nginx
		if grep -q $'^1\tka-64\tbare\t' "$RESULTS"; then
			echo
			echo "bare is bench/bare.c: one recv and one send a batch of requests, nothing"
			echo "parsed, the same 120 bytes as molt's hello, no balancing of connections."
			echo "Round by round, keep-alive, 64 connections:"
			echo
			echo "- molt x bare: $(paired 1 ka-64 molt bare)"
			echo "- bare x uwsgi: $(paired 1 ka-64 bare uwsgi)"
			echo "- molt x uwsgi: $(paired 1 ka-64 molt uwsgi)"
		fi
	fi
	if has_rows 2; then
		echo
		echo "## Scenario 2: static files, keep-alive, 64 connections"
		table 2 nginx
	fi
	if has_rows 3; then
		echo
		echo "## Scenario 3: recycling every $BENCH_RECYCLE_REQUESTS requests per worker (hello, keep-alive, 64 connections)"
		table 3 self
		if [ -s "$out/s3-recycles.tsv" ]; then
			echo
			echo "Recycles counted in the servers' logs over all rounds:"
			echo
			awk -F'\t' '{printf "- %s: %s\n", $1, $2}' "$out/s3-recycles.tsv"
		fi
	fi
	if has_rows 5; then
		echo
		echo "## Scenario 5: the cost of memory monitoring (keep-alive, 64 connections)"
		echo
		echo "molt samples memory every second by default; molt+nomon once an hour (as good as off)."
		echo "The overhead of monitoring is 1 - 1 / (molt+nomon x molt)."
		echo "molt+routestats also counts every malloc and free for the per-route figures"
		echo "([status] route_stats = on); its overhead is 1 - (molt+routestats x molt)."
		echo "ka-64 is /hello (no malloc); ka-64-malloc is /fragment with 100 mallocs and"
		echo "frees of 48 bytes a request, nothing kept."
		table 5 self "x molt (sampling every 1 s)"
	fi
	if [ -s "$out/s6-recycle-cost.tsv" ]; then
		echo
		echo "## Scenario 6: what one recycle costs (bench/recycle-cost)"
		echo
		echo "molt recycles each of 2 workers every 100 ms with no load, while C idle"
		echo "keep-alive connections are handed over at every recycle; CPU time and"
		echo "page faults of the whole process tree per recycle (medians of the rounds)."
		echo "$(grep -m1 '^machine:' "$out/s6-recycle-cost.txt" 2>/dev/null | sed 's/^machine: /The machine: /')"
		echo
		echo "| idle connections | recycles per round | CPU ms per recycle (min-max) | page faults per recycle |"
		echo "|---:|---:|---:|---:|"
		sort -n -k1,1 -k4,4 "$out/s6-recycle-cost.tsv" | awk -F'\t' '
		function flush() { if (n) printf "| %d | %d | %.2f (%.2f-%.2f) | %.0f |\n", c, rec, v[int((n + 1) / 2)], v[1], v[n], fl[int((n + 1) / 2)] }
		$1 != c && NR > 1 { flush(); n = 0 }
		{ c = $1; rec = $3; v[++n] = $4; fl[n] = $5 }
		END { flush() }'
		if grep -q '^starts:\|^exits:' "$out/s6-recycle-cost.txt" 2>/dev/null; then
			echo
			grep '^starts:\|^exits:' "$out/s6-recycle-cost.txt" | sed 's/^/- /'
		fi
	fi
	if grep -q '^medians:' "$out/s6-recycle-load.txt" 2>/dev/null; then
		echo
		echo "Under load (bench/recycle-load: wrk, 64 keep-alive connections on /hello;"
		echo "CPU time and page faults of the process tree per request, recycling against"
		echo "none, alternately):"
		echo
		grep '^medians:' "$out/s6-recycle-load.txt" | sed 's/^medians: /- /'
		# the least a process replacement costs here, idle and loaded
		grep '^floor:' "$out/s6-recycle-load.txt" | sed 's/^floor: /- floor: /'
		# what the 0.90x target allows a recycle here, and what a new
		# worker's start took by its own clock
		grep '^budget:\|^starts:\|^exits:' "$out/s6-recycle-load.txt" | sed 's/^/- /'
	fi
	if ls "$out"/mem/*.fleet.csv >/dev/null 2>&1; then
		echo
		echo "## Scenario 4: memory under GET /fragment?$BENCH_FRAG_QUERY (${BENCH_MEM_DURATION}s, $BENCH_MEM_CONNS connections, limit ${BENCH_MAX_RSS_MB} MB per worker)"
		echo
		mem_table "$out"
		echo
		echo "![fleet USS](memory.png)"
		echo
		echo "![fleet USS, zoomed](memory-bounded.png)"
	fi
	if [ -s "$out/notes.txt" ]; then
		echo
		echo "## Notes from the run"
		echo
		sed 's/^/- /' "$out/notes.txt"
	fi
}
