/*
 * scoreboard.c - the shared memory that workers report into.
 */
#include "autoconfig.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "scoreboard.h"

struct scoreboard sb;

const char *const sb_reason_names[R_MAX] = {
	"rss", "hard_rss", "fragmentation", "requests", "lifetime", "crash",
	"reload", "stall", "signal",
};

/* Prometheus's default buckets, and two below them for a fast server. */
const int64_t sb_lat_le_us[SB_LAT_BUCKETS - 1] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

const char *const sb_state_names[] = {
	"free", "starting", "idle", "busy", "draining", "exited",
};

int
scoreboard_create(void)
{
	size_t len = sizeof(struct sb_header) + SB_SLOTS * sizeof(struct sb_slot);
	size_t alen = (size_t)SB_SLOTS * SB_ACCESS_BUF;
	size_t olen = SB_OFTEN_MAX * sizeof(struct sb_often);
	void *p;

	/* Anonymous and shared: inherited by every fork, gone with the last. */
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED) {
		log_error("mmap of a %zu-byte scoreboard failed: %s", len,
		    strerror(errno));
		return -1;
	}
	sb.hdr = p;
	sb.slots = (struct sb_slot *)((char *)p + sizeof(struct sb_header));
	sb.hdr->nslots = SB_SLOTS;
	/* Address space only: a fork does not copy a shared mapping's page
	 * tables, and each worker touches just its own slot's pages. */
	p = mmap(NULL, alen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED) {
		log_error("mmap of %zu bytes for access-log buffers failed: %s",
		    alen, strerror(errno));
		goto fail;
	}
	sb.access = p;
	/*
	 * A mapping of its own, on no page of the header's or the slots'
	 * (read-only in the workers, scoreboard_protect): every worker
	 * writes here.  Made once, as the rest, so that a count and the
	 * time of its last line outlive every recycle and reload: they are
	 * the fleet's, not a worker's.
	 */
	p = mmap(NULL, olen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED) {
		log_error("mmap of %zu bytes for warning counts failed: %s", olen,
		    strerror(errno));
		goto fail;
	}
	sb.often = p;
	return 0;
fail:
	if (sb.access != NULL)
		munmap(sb.access, alen);
	sb.access = NULL;
	munmap(sb.hdr, len);
	sb.hdr = NULL;
	sb.slots = NULL;
	return -1;
}

/* The n bytes from p, read-only; nothing to do for n == 0. */
static int
scoreboard_readonly(void *p, size_t n, const char *what)
{
	if (n == 0 || mprotect(p, n, PROT_READ) == 0)
		return 0;
	log_error("mprotect (%s, %zu bytes): %s", what, n, strerror(errno));
	return -1;
}

int
scoreboard_protect(int own)
{
	long ps = sysconf(_SC_PAGESIZE);
	size_t stride = sizeof(struct sb_slot);

	/* Pages larger than a slot (64 KB on some arm64): left writable. */
	if (ps <= 0 || stride % (size_t)ps != 0 || SB_ACCESS_BUF % ps != 0 ||
	    sizeof(*sb.hdr) % (size_t)ps != 0 ||
	    own < 0 || own >= SB_SLOTS)
		return 0;
	if (scoreboard_readonly(sb.hdr, sizeof(*sb.hdr), "the header") == -1 ||
	    scoreboard_readonly(sb.slots, (size_t)own * stride,
	    "the slots below this worker's") == -1 ||
	    scoreboard_readonly(&sb.slots[own + 1],
	    (size_t)(SB_SLOTS - own - 1) * stride,
	    "the slots above this worker's") == -1 ||
	    scoreboard_readonly(sb.access, (size_t)own * SB_ACCESS_BUF,
	    "the access-log buffers below this worker's") == -1 ||
	    scoreboard_readonly(sb_access(own + 1),
	    (size_t)(SB_SLOTS - own - 1) * SB_ACCESS_BUF,
	    "the access-log buffers above this worker's") == -1)
		return -1;
	return 0;
}

int
scoreboard_read_worker(int i, struct sb_slot *out)
{
	struct sb_slot *s;
	uint32_t a, b;
	int tries;

	if (i < 0 || i >= SB_SLOTS)
		return -1;
	s = &sb.slots[i];
	for (tries = 0; tries < 100; tries++) {
		a = s->w.seq;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		memcpy(&out->w, (const void *)&s->w, sizeof(out->w));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		b = s->w.seq;
		if (a == b && !(a & 1))
			break;
	}
	if (tries == 100)
		return -1;
	memcpy(&out->m, (const void *)&s->m, sizeof(out->m));
	/* Untrusted: clamp what could index or print badly. */
	if (out->w.state > SB_EXITED)
		out->w.state = SB_EXITED;
	out->w.req_line[SB_REQ_LEN - 1] = '\0';
	if (out->w.req_route < -1 || out->w.req_route >= SB_ROUTES)
		out->w.req_route = -1;
	if (out->w.allocator > SB_ALLOC_JEMALLOC)
		out->w.allocator = SB_ALLOC_UNKNOWN;
	return 0;
}

uint64_t
scoreboard_in_use(const struct sb_slot *s, uint64_t measure)
{
	/* Connections live in the slab, outside the allocator's figures,
	 * and a chunk of them is resident whole: left out, they would read
	 * as fragmentation. */
	return s->w.heap_in_use + (s->w.conn_memory < measure ?
	    s->w.conn_memory : measure);
}
