/*
 * status.c - the status page: what every worker is doing and holding.
 *
 * Served by the workers themselves from the scoreboard, so a busy master
 * never delays it.  Everything read from the scoreboard was written by
 * other processes and is clamped before use.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "alloc.h"
#include "config.h"
#include "conn.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "pool.h"
#include "realip.h"
#include "scoreboard.h"
#include "status.h"
#include "worker.h"

struct sbuf {
	molt_pool *pool;
	char      *p;
	size_t     len, cap;
	int        oom;
};

static void
sbuf_printf(struct sbuf *b, const char *fmt, ...) MOLT_PRINTF(2, 3);

static void
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t cap = b->cap * 2 + (size_t)n;
			char *np = molt_palloc(b->pool, cap);

			if (np == NULL) {
				b->oom = 1;
				return;
			}
			memcpy(np, b->p, b->len);
			b->p = np;
			b->cap = cap;
		}
	}
}

static int64_t
status_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* The client, as [server] real_ip_from may have named it (realip.c). */
static int
status_allowed(const struct molt_config *cfg, const molt_request *req)
{
	return realip_match(cfg->status.allow, realip_client(req));
}

struct status_totals {
	int      workers;
	uint64_t requests, rss, uss, pss, heap_in_use, heap_held;
};

/*
 * The worker wrote heap_in_use: a sum that wraps to 0 would print "inf",
 * and the page would no longer be JSON.
 */
static double
status_frag(const struct sb_slot *s, uint64_t measure)
{
	uint64_t in_use = scoreboard_in_use(s, measure);

	return s->w.heap_in_use != 0 && in_use != 0 ?
	    (double)measure / (double)in_use : 0;
}

static uint64_t
status_measure(const struct molt_config *cfg, const struct sb_slot *s)
{
	return cfg->recycle.measure == MEASURE_RSS ? s->m.rss :
	    cfg->recycle.measure == MEASURE_PSS ? s->m.pss : s->m.uss;
}

/*
 * How long a page waits, in all, for figures a writer holds.  A worker
 * preempted in the few stores of a slot update, or the master in a move
 * of counts, holds its sequence odd for a scheduler slice, longer than
 * any number of spins: past them the page sleeps, so that on a busy
 * machine the writer gets a CPU to finish on.  Not waiting left that
 * worker off the page, the fleet a worker short.  A sequence a module
 * wrote odd stays so until the master or the slot's next worker puts it
 * right, so the wait is the page's, not each read's.
 */
#define STATUS_PATIENCE_MS  200

static int64_t status_deadline;     /* for the page being built */

static int
status_wait(void)
{
	static const struct timespec nap = { 0, 100 * 1000 };

	if (sb_clock_ms() >= status_deadline)
		return 0;
	nanosleep(&nap, NULL);
	return 1;
}

/*
 * The fleet's totals are the retired workers' (in the header) plus the
 * live ones' (in their slots); a reap moves a worker's counts from one to
 * the other under the header's sequence.  These read both in one pass
 * that the sequence did not see change, so that a counter never counts
 * a worker twice, or goes down at the next read.
 */
#define STATUS_HDR_SPINS    100

struct status_hdr_read {
	uint32_t seq;
	int      tries;
};

static void
status_hdr_begin(struct status_hdr_read *r)
{
	r->seq = sb.hdr->seq;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
}

static int
status_hdr_retry(struct status_hdr_read *r)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (!(r->seq & 1) && r->seq == sb.hdr->seq)
		return 0;
	if (++r->tries < STATUS_HDR_SPINS)
		return 1;
	return status_wait();
}

/*
 * A count in a slot, read alone.  The slot's own sequence is no use
 * here: a worker preempted while it updates its slot holds that odd too,
 * and a reader that gave up on the slot left its requests out of the
 * totals, which then went down by a worker's worth.  One aligned word is
 * read whole, and the reap zeroes a free slot's counts under the header's
 * sequence, so every slot can simply be added.
 */
static uint64_t
status_count(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static int
status_nroutes(void)
{
	int n = (int)sb.hdr->nroutes;

	return n > SB_ROUTES ? SB_ROUTES : n;
}

/* The fleet's counters, as of one moment. */
struct status_fleet {
	uint64_t              requests;     /* since the master started */
	uint64_t              moved;        /* connections passed to their client's CPU */
	uint64_t              covered;      /* taken from another CPU's socket */
	uint64_t              starts;       /* workers that got ready */
	uint64_t              start_cpu_us; /* the CPU their starts took */
	uint64_t              exits;        /* workers reaped after exit */
	uint64_t              exit_cpu_us;  /* the CPU their exits took */
	struct sb_latency     lat;          /* their durations */
	int                   nroutes;
	struct sb_route_stats routes[SB_ROUTES];
	int                   ndbs;         /* this worker's databases */
	struct sb_db_stats    dbs[SB_DBS];  /* gauges: live workers' only */
};

/* The databases this worker has, as many as the scoreboard counts. */
static int
status_ndbs(void)
{
	int n = 0;

	while (n < SB_DBS && db_name(n) != NULL)
		n++;
	return n;
}

static void
status_add_db(struct sb_db_stats *o, const struct sb_db_stats *d)
{
#define ADD(f) o->f += __atomic_load_n(&d->f, __ATOMIC_RELAXED);
	SB_DB_COUNTERS(ADD)
	SB_DB_GAUGES(ADD)
#undef ADD
}

/*
 * One pass for every counter a page shows, so that a header held odd (a
 * preempted master, a scribbling worker) costs the page one wait, not one
 * per route.
 */
static void
status_fleet_sum(struct status_fleet *f)
{
	struct status_hdr_read hr = { 0, 0 };
	int i, r;

	do {
		status_hdr_begin(&hr);
		f->nroutes = status_nroutes();
		f->requests = sb.hdr->retired_requests;
		f->moved = sb.hdr->moved;
		f->covered = sb.hdr->covered;
		f->starts = sb.hdr->starts;
		f->start_cpu_us = sb.hdr->start_cpu_us;
		f->exits = sb.hdr->exits;
		f->exit_cpu_us = sb.hdr->exit_cpu_us;
		f->lat = sb.hdr->retired_lat;
		memcpy(f->routes, sb.hdr->retired_routes,
		    (size_t)f->nroutes * sizeof(f->routes[0]));
		f->ndbs = status_ndbs();
		memset(f->dbs, 0, sizeof(f->dbs));
		for (r = 0; r < f->ndbs; r++)
			status_add_db(&f->dbs[r], &sb.hdr->retired_dbs[r]);
		for (i = 0; i < SB_SLOTS; i++) {
			const struct sb_slot *s = &sb.slots[i];

			f->requests += status_count(&s->w.requests);
			f->moved += status_count(&s->w.moved);
			f->covered += status_count(&s->w.covered);
			for (r = 0; r < SB_LAT_BUCKETS; r++)
				f->lat.count[r] += status_count(&s->lat.count[r]);
			f->lat.sum_us += status_count(&s->lat.sum_us);
			/* Another generation numbers its routes otherwise. */
			if (s->m.generation != sb.hdr->generation)
				continue;
			for (r = 0; r < f->ndbs; r++)
				status_add_db(&f->dbs[r], &s->dbs[r]);
			for (r = 0; r < f->nroutes; r++) {
				const struct sb_route_stats *rs = &s->routes[r];
				struct sb_route_stats *o = &f->routes[r];
				int64_t growth;

				o->requests += status_count(&rs->requests);
				o->time_us += status_count(&rs->time_us);
				o->allocs += status_count(&rs->allocs);
				o->alloc_bytes += status_count(&rs->alloc_bytes);
				growth = __atomic_load_n(&rs->max_growth,
				    __ATOMIC_RELAXED);
				if (growth > o->max_growth)
					o->max_growth = growth;
			}
		}
	} while (status_hdr_retry(&hr));
}

/* A route name as the pages show it: each of its bytes may become 3. */
#define STATUS_NAME_LEN  (3 * (sizeof(sb.hdr->route_names[0]) - 1) + 1)

/*
 * Route i's name, as UTF-8 text.  A prefix may hold any byte but NUL (a
 * config file saved in Latin-1 gives "/caf\xe9"), and the names are in
 * shared memory a worker wrote.  One label value that is not UTF-8 fails
 * Prometheus's whole scrape ("invalid label value"), and the JSON showed
 * every such byte as U+FFFD, so that two prefixes could read the same.
 * So bytes outside well-formed UTF-8, and control bytes, are written %HH,
 * as in a URL: never the text of a prefix, which cannot hold %HH
 * (config_route_prefix_problem).  Each format then escapes the rest.  -1
 * while a reload has cleared the names and the new workers have not
 * written theirs yet.
 */
static int
status_route_name(int i, char name[STATUS_NAME_LEN])
{
	static const char hex[] = "0123456789ABCDEF";
	char raw[sizeof(sb.hdr->route_names[0])];
	size_t len, in, out = 0, n;

	memcpy(raw, sb.hdr->route_names[i], sizeof(raw));
	raw[sizeof(raw) - 1] = '\0';
	len = strlen(raw);
	for (in = 0; in < len; in += n) {
		unsigned char c = (unsigned char)raw[in];

		n = json_utf8_len(raw + in, len - in);
		if (n == 0 || c < 0x20 || c == 0x7f) {
			name[out++] = '%';
			name[out++] = hex[c >> 4];
			name[out++] = hex[c & 0xf];
			n = 1;
			continue;
		}
		memcpy(name + out, raw + in, n);
		out += n;
	}
	name[out] = '\0';
	return out == 0 ? -1 : 0;
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static const char *
status_label(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	for (; *s != '\0' && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n')
			buf[o++] = '\\';
		buf[o++] = *s == '\n' ? 'n' : *s;
	}
	buf[o] = '\0';
	return buf;
}

/*
 * Slot i's worker, if the slot holds one.  The master records a worker's
 * pid only when fork returns in the parent, and a busy master may run
 * that line after the worker is already serving, this very page perhaps;
 * until then the pid the worker wrote for itself stands in.
 */
static int
status_worker(int i, struct sb_slot *s)
{
	while (scoreboard_read_worker(i, s) == -1)
		if (!status_wait())
			return -1;
	if (s->w.state == SB_FREE)
		return -1;
	if (s->m.pid > 0)
		return 0;
	if (s->w.pid <= 0 || s->w.state == SB_EXITED)
		return -1;
	s->m.pid = s->w.pid;
	return 0;
}

/*
 * Milliseconds since t (0: never), clamped: the worker's clock read after
 * ours.  t was written by another process, and one from before the epoch
 * would overflow the subtraction: it counts as never.
 */
static long long
status_ago(int64_t now, int64_t t)
{
	if (t <= 0)
		return -1;
	return now > t ? (long long)(now - t) : 0;
}

/* A bucket's bound in seconds, as Prometheus writes it: "0.0025". */
static void
status_le(char *buf, size_t len, int i)
{
	if (i >= SB_LAT_BUCKETS - 1) {
		snprintf(buf, len, "+Inf");
		return;
	}
	snprintf(buf, len, "%g", (double)sb_lat_le_us[i] / 1e6);
}

/*
 * "request_duration": the fleet's histogram since the master started,
 * with cumulative counts as in Prometheus; the last bucket, unbounded,
 * is "count".
 */
/* One [database]: its pool's figures over the fleet. */
static void
status_json_db(struct sbuf *b, const struct sb_db_stats *d, const char *name,
    int first)
{
	char esc[6 * 256];
	size_t len = strlen(name);

	if (len > 255)
		len = 255;
	molt_json_escape(esc, name, len);
	sbuf_printf(b, "%s\n {\"name\":\"%s\",\"queries\":%llu,\"rows\":%llu,"
	    "\"query_seconds\":%.6f,\"unavailable\":%llu,\"timeouts\":%llu,"
	    "\"errors\":%llu,\"connects\":%llu,\"connect_failures\":%llu,"
	    "\"transactions\":%llu,\"transactions_rolled_back_by_molt\":%llu,"
	    "\"sessions_closed\":%llu,\"connections\":%u,\"busy\":%u,"
	    "\"held\":%u,\"queued\":%u}",
	    first ? "" : ",", esc, (unsigned long long)d->queries,
	    (unsigned long long)d->rows, (double)d->query_us / 1e6,
	    (unsigned long long)d->unavailable, (unsigned long long)d->timeouts,
	    (unsigned long long)d->errors, (unsigned long long)d->connects,
	    (unsigned long long)d->connect_failures, (unsigned long long)d->txns,
	    (unsigned long long)d->txn_rollbacks,
	    (unsigned long long)d->sessions_closed, d->live, d->busy, d->held,
	    d->queued);
}

static void
status_json_durations(struct sbuf *b, const struct sb_latency *lat)
{
	uint64_t cum = 0;
	char le[32];
	int i;

	sbuf_printf(b, "\"request_duration\":{\"buckets\":[");
	for (i = 0; i < SB_LAT_BUCKETS - 1; i++) {
		cum += lat->count[i];
		status_le(le, sizeof(le), i);
		sbuf_printf(b, "%s{\"le\":%s,\"count\":%llu}", i ? "," : "", le,
		    (unsigned long long)cum);
	}
	cum += lat->count[i];
	sbuf_printf(b, "],\"count\":%llu,\"sum\":%.6f}",
	    (unsigned long long)cum, (double)lat->sum_us / 1e6);
}

static void
status_json(struct sbuf *b, const struct molt_config *cfg)
{
	struct status_totals t;
	struct status_fleet f;
	struct sb_slot s;
	int64_t now = status_now_ms();
	int i, first = 1;

	memset(&t, 0, sizeof(t));
	sbuf_printf(b, "{\"server\":{\"version\":\"%s\",\"abi\":\"%d.%d\","
	    "\"master_pid\":%d,\"uptime_s\":%.1f,\"generation\":%u,"
	    "\"measure\":\"%s\",\"allocator\":\"%s\"},\n\"workers\":[",
	    PACKAGE_VERSION, MOLT_ABI_MAJOR, MOLT_ABI_MINOR,
	    (int)sb.hdr->master_pid,
	    sb.hdr->master_start_ms > 0 ?
	    status_ago(now, sb.hdr->master_start_ms) / 1000.0 : 0.0,
	    sb.hdr->generation,
	    cfg->recycle.measure == MEASURE_RSS ? "rss" :
	    cfg->recycle.measure == MEASURE_PSS ? "pss" : "uss", alloc_name());
	for (i = 0; i < SB_SLOTS; i++) {
		if (status_worker(i, &s) == -1)
			continue;
		sbuf_printf(b, "%s\n {\"slot\":%d,\"id\":%d,\"pid\":%d,"
		    "\"generation\":%u,\"state\":\"%s\",\"retiring\":%s,"
		    "\"age_s\":%.1f,\"requests\":%llu,\"connections\":%u,"
		    "\"active\":%u,\"rss\":%llu,\"uss\":%llu,\"pss\":%llu,"
		    "\"heap_in_use\":%llu,\"heap_held\":%llu,\"heap_free\":%llu,"
		    "\"conn_memory\":%llu,"
		    "\"fragmentation\":%.2f,\"trims\":%llu,\"trim_reclaimed\":%llu,"
		    "\"allocator\":\"%s\",\"mallocs\":%lld,\"measured_ms_ago\":%lld,"
		    "\"sampled_ms_ago\":%lld,\"cpu\":%d,\"moved\":%llu,"
		    "\"covered\":%llu,\"start_cpu_us\":%llu}",
		    first ? "" : ",", i, s.m.id, (int)s.m.pid, s.m.generation,
		    sb_state_names[s.w.state], s.m.retiring ? "true" : "false",
		    s.w.start_ms > 0 ? status_ago(now, s.w.start_ms) / 1000.0 : 0.0,
		    (unsigned long long)s.w.requests, s.w.connections, s.w.active,
		    (unsigned long long)s.m.rss, (unsigned long long)s.m.uss,
		    (unsigned long long)s.m.pss,
		    (unsigned long long)s.w.heap_in_use,
		    (unsigned long long)s.w.heap_held,
		    (unsigned long long)s.w.heap_free,
		    (unsigned long long)s.w.conn_memory,
		    status_frag(&s, status_measure(cfg, &s)),
		    (unsigned long long)s.w.trims,
		    (unsigned long long)s.w.trim_reclaimed,
		    s.w.allocator == SB_ALLOC_JEMALLOC ? "jemalloc" : "glibc",
		    (long long)s.w.mallocs,
		    status_ago(now, s.m.measured_ms),
		    status_ago(now, s.w.sampled_ms), (int)s.w.cpu,
		    (unsigned long long)s.w.moved,
		    (unsigned long long)s.w.covered,
		    (unsigned long long)s.w.start_cpu_us);
		first = 0;
		t.workers++;
		t.requests += s.w.requests;
		t.rss += s.m.rss;
		t.uss += s.m.uss;
		t.pss += s.m.pss;
		t.heap_in_use += s.w.heap_in_use;
		t.heap_held += s.w.heap_held;
	}
	sbuf_printf(b, "\n],\n\"recycles\":{");
	for (i = 0; i < R_MAX; i++)
		sbuf_printf(b, "%s\"%s\":%llu", i ? "," : "", sb_reason_names[i],
		    (unsigned long long)sb.hdr->recycles[i]);
	sbuf_printf(b, "},\n\"trims\":{\"count\":%llu,\"reclaimed_bytes\":%llu},"
	    "\n\"routes\":[", (unsigned long long)sb.hdr->trims,
	    (unsigned long long)sb.hdr->trim_reclaimed);
	/* After the rows: the totals then hold at least what they add up. */
	status_fleet_sum(&f);
	for (i = 0, first = 1; i < f.nroutes; i++) {
		const struct sb_route_stats *rs = &f.routes[i];
		char name[STATUS_NAME_LEN], esc[6 * STATUS_NAME_LEN];

		if (status_route_name(i, name) == -1)
			continue;
		molt_json_escape(esc, name, strlen(name));
		sbuf_printf(b, "%s\n {\"prefix\":\"%s\",\"requests\":%llu,"
		    "\"seconds\":%.6f,"
		    "\"allocs_per_request\":%.1f,\"bytes_per_request\":%.1f,"
		    "\"max_growth\":%lld,\"recycles\":%llu}", first ? "" : ",", esc,
		    (unsigned long long)rs->requests, (double)rs->time_us / 1e6,
		    rs->requests ? (double)rs->allocs / rs->requests : 0.0,
		    rs->requests ? (double)rs->alloc_bytes / rs->requests : 0.0,
		    (long long)rs->max_growth,
		    (unsigned long long)rs->recycles);
		first = 0;
	}
	sbuf_printf(b, "\n],\n\"databases\":[");
	for (i = 0; i < f.ndbs; i++)
		status_json_db(b, &f.dbs[i], db_name(i), i == 0);
	sbuf_printf(b, "\n],\n");
	status_json_durations(b, &f.lat);
	sbuf_printf(b, ",\n\"totals\":{\"workers\":%d,\"requests\":%llu,"
	    "\"requests_all_time\":%llu,\"connections_handed_over\":%llu,"
	    "\"connections_moved\":%llu,\"connections_covered\":%llu,"
	    "\"worker_starts\":%llu,\"worker_start_cpu_seconds\":%.6f,"
	    "\"worker_exits\":%llu,\"worker_exit_cpu_seconds\":%.6f,"
	    "\"rss\":%llu,\"uss\":%llu,\"pss\":%llu,"
	    "\"heap_in_use\":%llu,\"heap_held\":%llu,\"route_stats\":%s}}\n",
	    t.workers, (unsigned long long)t.requests,
	    (unsigned long long)f.requests,
	    (unsigned long long)sb.hdr->handed_over,
	    (unsigned long long)f.moved, (unsigned long long)f.covered,
	    (unsigned long long)f.starts, (double)f.start_cpu_us / 1e6,
	    (unsigned long long)f.exits, (double)f.exit_cpu_us / 1e6,
	    (unsigned long long)t.rss, (unsigned long long)t.uss,
	    (unsigned long long)t.pss, (unsigned long long)t.heap_in_use,
	    (unsigned long long)t.heap_held,
	    worker_self->route_stats ? "true" : "false");
}

/*
 * The pools' figures, summed over the workers.  Counters go on across
 * recycles (the master keeps a gone worker's) but start afresh at a
 * reload, as the routes' do; the gauges are the live workers' last sample.
 */
static void
status_metrics_dbs(struct sbuf *b, const struct status_fleet *f)
{
	static const struct {
		const char *name, *help;
		size_t off;
		int seconds;
	} fam[] = {
#define DBF(n, h, field, sec) { n, h, offsetof(struct sb_db_stats, field), sec }
		DBF("molt_db_queries_total", "Statements asked for, a "
		    "transaction's included", queries, 0),
		DBF("molt_db_rows_total", "Rows delivered to modules", rows, 0),
		DBF("molt_db_query_seconds_total", "Time the statements took "
		    "from the call, the wait for a connection included, added up",
		    query_us, 1),
		DBF("molt_db_unavailable_total", "Statements that ended with 503 "
		    "(database down, pool queue full, connection lost)",
		    unavailable, 0),
		DBF("molt_db_timeouts_total", "Statements that ended with 504 "
		    "(query_timeout, read_timeout)", timeouts, 0),
		DBF("molt_db_errors_total", "Statements the server refused (500)",
		    errors, 0),
		DBF("molt_db_connects_total", "Connections opened", connects, 0),
		DBF("molt_db_connect_failures_total", "Connection attempts that "
		    "failed", connect_failures, 0),
		DBF("molt_db_transactions_total", "Transactions begun", txns, 0),
		DBF("molt_db_transactions_rolled_back_by_molt_total", "Transactions "
		    "molt rolled back because their request ended with them open",
		    txn_rollbacks, 0),
		DBF("molt_db_sessions_closed_total", "Connections closed rather "
		    "than lent on: a statement changed the session, took a lock "
		    "or left a transaction open", sessions_closed, 0),
#undef DBF
	};
	char esc[2 * 256 + 1];
	size_t k;
	int i;

	if (f->ndbs == 0)
		return;
	for (k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		sbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", fam[k].name,
		    fam[k].help, fam[k].name);
		for (i = 0; i < f->ndbs; i++) {
			uint64_t v;

			memcpy(&v, (const char *)&f->dbs[i] + fam[k].off, sizeof(v));
			sbuf_printf(b, "%s{database=\"%s\"} ", fam[k].name,
			    status_label(db_name(i), esc, sizeof(esc)));
			if (fam[k].seconds)
				sbuf_printf(b, "%.6f\n", (double)v / 1e6);
			else
				sbuf_printf(b, "%llu\n", (unsigned long long)v);
		}
	}
	sbuf_printf(b, "# HELP molt_db_connections Connections of the pools, by "
	    "what they do (idle, running a statement, held by a transaction "
	    "between its statements)\n# TYPE molt_db_connections gauge\n");
	for (i = 0; i < f->ndbs; i++) {
		const struct sb_db_stats *d = &f->dbs[i];
		unsigned idle = d->live - d->busy - d->held;

		status_label(db_name(i), esc, sizeof(esc));
		if (d->busy + d->held > d->live)
			idle = 0;       /* summed from untrusted slots */
		sbuf_printf(b, "molt_db_connections{database=\"%s\",state=\"idle\"}"
		    " %u\nmolt_db_connections{database=\"%s\",state=\"busy\"} %u\n"
		    "molt_db_connections{database=\"%s\",state=\"held\"} %u\n",
		    esc, idle, esc, d->busy, esc, d->held);
	}
	sbuf_printf(b, "# HELP molt_db_queued Statements waiting for a "
	    "connection\n# TYPE molt_db_queued gauge\n");
	for (i = 0; i < f->ndbs; i++)
		sbuf_printf(b, "molt_db_queued{database=\"%s\"} %u\n",
		    status_label(db_name(i), esc, sizeof(esc)), f->dbs[i].queued);
}

static void
status_metrics_durations(struct sbuf *b, const struct sb_latency *lat)
{
	uint64_t cum = 0;
	char le[32];
	int i;

	sbuf_printf(b, "# HELP molt_request_duration_seconds Time from a "
	    "request's head to its reply handed to the connection, every "
	    "worker since the master started\n"
	    "# TYPE molt_request_duration_seconds histogram\n");
	for (i = 0; i < SB_LAT_BUCKETS; i++) {
		cum += lat->count[i];
		status_le(le, sizeof(le), i);
		sbuf_printf(b, "molt_request_duration_seconds_bucket{le=\"%s\"} "
		    "%llu\n", le, (unsigned long long)cum);
	}
	sbuf_printf(b, "molt_request_duration_seconds_sum %.6f\n"
	    "molt_request_duration_seconds_count %llu\n",
	    (double)lat->sum_us / 1e6, (unsigned long long)cum);
}

/* One counter per route: its requests, or (seconds) their durations. */
static void
status_route_family(struct sbuf *b, const struct status_fleet *f,
    const char *family, const char *help, int seconds)
{
	char name[STATUS_NAME_LEN], esc[2 * STATUS_NAME_LEN];
	int i;

	sbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", family, help,
	    family);
	for (i = 0; i < f->nroutes; i++) {
		if (status_route_name(i, name) == -1)
			continue;
		sbuf_printf(b, "%s{route=\"%s\"} ", family,
		    status_label(name, esc, sizeof(esc)));
		if (seconds)
			sbuf_printf(b, "%.6f\n", (double)f->routes[i].time_us / 1e6);
		else
			sbuf_printf(b, "%llu\n",
			    (unsigned long long)f->routes[i].requests);
	}
}

/*
 * Per-worker series are labelled by the worker's number and its scoreboard
 * slot, not its pid: a recycle would otherwise start a new set of series,
 * and at one recycle every few seconds a Prometheus server drowns in dead
 * ones.  The slot tells a draining worker from its replacement, which has
 * the same number; the pairs stay few (workers times the slots in use at
 * once).  A recycle looks like a counter reset, which rate() expects.
 */
static void
status_metrics(struct sbuf *b)
{
	enum { M_RSS, M_USS, M_PSS, M_HEAP_IN_USE, M_HEAP_HELD, M_REQUESTS,
	       M_CONNECTIONS, M_TRIMS, M_CONN_MEMORY, M_PID, M_GENERATION,
	       M_START, M_START_CPU, M_DRAINING };
	static const struct {
		const char *name, *help;
		int what;
	} gauges[] = {
		{ "molt_worker_rss_bytes", "Resident set size of the worker", M_RSS },
		{ "molt_worker_uss_bytes", "Unique (private) memory of the worker",
		  M_USS },
		{ "molt_worker_pss_bytes", "Proportional set size of the worker",
		  M_PSS },
		{ "molt_worker_heap_in_use_bytes", "Bytes the allocator handed out",
		  M_HEAP_IN_USE },
		{ "molt_worker_heap_held_bytes", "Bytes the allocator holds",
		  M_HEAP_HELD },
		{ "molt_worker_requests_total", "Requests served by the worker",
		  M_REQUESTS },
		{ "molt_worker_connections", "Open connections of the worker",
		  M_CONNECTIONS },
		{ "molt_worker_trims_total", "Trims done by the worker", M_TRIMS },
		{ "molt_worker_conn_memory_bytes",
		  "Bytes mapped for the worker's connections", M_CONN_MEMORY },
		{ "molt_worker_pid", "Process id of the worker", M_PID },
		{ "molt_worker_generation",
		  "Configuration generation the worker runs", M_GENERATION },
		{ "molt_worker_start_time_seconds",
		  "Start of the worker process since the Unix epoch", M_START },
		/* Not molt_worker_start_cpu_seconds: OpenMetrics names the
		 * family of the counter below so, without its _total. */
		{ "molt_worker_startup_cpu_seconds",
		  "CPU the worker used from its fork until it was ready",
		  M_START_CPU },
		{ "molt_worker_draining",
		  "1 while the worker finishes its requests before it exits",
		  M_DRAINING },
	};
	struct status_fleet f;
	struct sb_slot s;
	size_t g;
	int i, nworkers;

	for (g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
		sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", gauges[g].name,
		    gauges[g].help, gauges[g].name,
		    strstr(gauges[g].name, "_total") ? "counter" : "gauge");
		for (i = 0; i < SB_SLOTS; i++) {
			unsigned long long v = 0;

			if (status_worker(i, &s) == -1)
				continue;
			switch (gauges[g].what) {
			case M_RSS: v = s.m.rss; break;
			case M_USS: v = s.m.uss; break;
			case M_PSS: v = s.m.pss; break;
			case M_HEAP_IN_USE: v = s.w.heap_in_use; break;
			case M_HEAP_HELD: v = s.w.heap_held; break;
			case M_REQUESTS: v = s.w.requests; break;
			case M_CONNECTIONS: v = s.w.connections; break;
			case M_TRIMS: v = s.w.trims; break;
			case M_CONN_MEMORY: v = s.w.conn_memory; break;
			case M_PID: v = (unsigned long long)s.m.pid; break;
			case M_GENERATION: v = s.m.generation; break;
			case M_START:
				/* The worker wrote it: a negative one is unknown. */
				v = s.w.start_ms > 0 ? (unsigned long long)s.w.start_ms : 0;
				break;
			case M_START_CPU: v = s.w.start_cpu_us; break;
			case M_DRAINING:
				v = s.m.retiring != SB_RETIRE_NONE ||
				    s.w.state == SB_DRAINING;
				break;
			}
			sbuf_printf(b, "%s{worker=\"%d\",slot=\"%d\"} ",
			    gauges[g].name, s.m.id, i);
			if (gauges[g].what == M_START)
				sbuf_printf(b, "%llu.%03llu\n", v / 1000, v % 1000);
			else if (gauges[g].what == M_START_CPU)
				sbuf_printf(b, "%.6f\n", (double)v / 1e6);
			else
				sbuf_printf(b, "%llu\n", v);
		}
	}
	/* Summed here, so that a rate over it survives the recycles that end
	 * the per-worker series. */
	status_fleet_sum(&f);
	sbuf_printf(b, "# HELP molt_requests_total Requests served by every "
	    "worker since the master started\n# TYPE molt_requests_total "
	    "counter\nmolt_requests_total %llu\n", (unsigned long long)f.requests);
	status_metrics_durations(b, &f.lat);
	for (i = 0, nworkers = 0; i < SB_SLOTS; i++)
		if (status_worker(i, &s) == 0)
			nworkers++;
	sbuf_printf(b, "# HELP molt_workers Worker processes, draining ones "
	    "included\n# TYPE molt_workers gauge\nmolt_workers %d\n", nworkers);
	sbuf_printf(b, "# HELP molt_recycles_total Worker recycles by reason\n"
	    "# TYPE molt_recycles_total counter\n");
	for (i = 0; i < R_MAX; i++)
		sbuf_printf(b, "molt_recycles_total{reason=\"%s\"} %llu\n",
		    sb_reason_names[i], (unsigned long long)sb.hdr->recycles[i]);
	sbuf_printf(b, "# HELP molt_trims_total Trims the master asked for\n"
	    "# TYPE molt_trims_total counter\nmolt_trims_total %llu\n"
	    "# HELP molt_trim_reclaimed_bytes_total Memory given back by trims\n"
	    "# TYPE molt_trim_reclaimed_bytes_total counter\n"
	    "molt_trim_reclaimed_bytes_total %llu\n",
	    (unsigned long long)sb.hdr->trims,
	    (unsigned long long)sb.hdr->trim_reclaimed);
	sbuf_printf(b, "# HELP molt_connections_handed_over_total Keep-alive "
	    "connections recycled workers passed to others instead of closing\n"
	    "# TYPE molt_connections_handed_over_total counter\n"
	    "molt_connections_handed_over_total %llu\n"
	    "# HELP molt_connections_moved_total Keep-alive connections passed "
	    "to the worker on their client's CPU (listen_per_cpu)\n"
	    "# TYPE molt_connections_moved_total counter\n"
	    "molt_connections_moved_total %llu\n"
	    "# HELP molt_connections_covered_total Connections taken from "
	    "another CPU's socket while no worker there took them "
	    "(listen_per_cpu)\n"
	    "# TYPE molt_connections_covered_total counter\n"
	    "molt_connections_covered_total %llu\n",
	    (unsigned long long)sb.hdr->handed_over,
	    (unsigned long long)f.moved, (unsigned long long)f.covered);
	/* Over the starts and the exits: what a recycle's two processes cost
	 * here, besides the master's fork. */
	sbuf_printf(b, "# HELP molt_worker_starts_total Workers that got "
	    "ready since the master started\n"
	    "# TYPE molt_worker_starts_total counter\n"
	    "molt_worker_starts_total %llu\n"
	    "# HELP molt_worker_start_cpu_seconds_total CPU those workers used "
	    "from their fork until they were ready\n"
	    "# TYPE molt_worker_start_cpu_seconds_total counter\n"
	    "molt_worker_start_cpu_seconds_total %.6f\n"
	    "# HELP molt_worker_exits_total Workers reaped after they called "
	    "exit (not killed, not crashed)\n"
	    "# TYPE molt_worker_exits_total counter\n"
	    "molt_worker_exits_total %llu\n"
	    "# HELP molt_worker_exit_cpu_seconds_total CPU their exit took them, "
	    "the kernel's teardown included\n"
	    "# TYPE molt_worker_exit_cpu_seconds_total counter\n"
	    "molt_worker_exit_cpu_seconds_total %.6f\n",
	    (unsigned long long)f.starts, (double)f.start_cpu_us / 1e6,
	    (unsigned long long)f.exits, (double)f.exit_cpu_us / 1e6);
	status_route_family(b, &f, "molt_route_requests_total", "Requests per "
	    "route", 0);
	status_route_family(b, &f, "molt_route_request_seconds_total", "Time "
	    "the requests of each route took, added up (over the requests: the "
	    "mean)", 1);
	status_metrics_dbs(b, &f);
}

static int
status_handle(molt_request *req)
{
	struct worker *w = worker_self;
	struct sbuf b;
	const char *pi = molt_req_path_info(req);

	if (!status_allowed(w->cfg, req))
		return molt_reply_error(req, 403, "forbidden");
	b.pool = molt_req_pool(req);
	b.cap = 16384;
	b.len = 0;
	b.oom = 0;
	if ((b.p = molt_palloc(b.pool, b.cap)) == NULL)
		return MOLT_ERROR;
	molt_resp_header(req, "Cache-Control", "no-store");
	status_deadline = sb_clock_ms() + STATUS_PATIENCE_MS;
	/*
	 * This worker's database figures as of now, not of its last sample:
	 * a client that had a reply from it and then asks sees the reply's
	 * statement counted and its connection free.  The other workers'
	 * are as they last sampled.
	 */
	if (w->slot != NULL)
		db_publish(w->slot->dbs, SB_DBS);
	if (*pi == '\0' || strcmp(pi, "/") == 0) {
		status_json(&b, w->cfg);
		if (b.oom)
			return MOLT_ERROR;
		return molt_reply(req, 200, "application/json", b.p, b.len);
	}
	if (strcmp(pi, "/metrics") == 0) {
		status_metrics(&b);
		if (b.oom)
			return MOLT_ERROR;
		return molt_reply(req, 200, "text/plain; version=0.0.4", b.p, b.len);
	}
	return molt_reply_error(req, 404, "not found");
}

static const struct molt_module status_module = {
	MOLT_MODULE_HEADER,
	.name = "status",
	.version = PACKAGE_VERSION,
	.description = "built-in status page",
	.handle = status_handle,
};

void
status_fill_route(struct worker *w, struct wroute *r)
{
	r->prefix = w->cfg->status.path;
	r->prefix_len = strlen(r->prefix);
	r->methods = METHOD_GET | METHOD_HEAD;
	r->mod = &status_module;
	r->conf = NULL;
	r->data = NULL;
}
