/*
 * scribble.c - a test module that behaves like a module with a stray
 * pointer: it writes garbage into the shared memory its worker shares
 * with the master and with the other workers, and into the master's
 * notify pipe, so the tests can check that the master treats all of it
 * as untrusted input.  White-box: it includes molt's own headers.
 *
 *   /slot     its worker's slot index, "7\n"
 *   /hdr?slots_hi=N&seq=N   writes the scoreboard header's slots_hi or
 *             its sequence counter (which faults: the header is read-only
 *             in workers); replies with the counter, "seq=8\n"
 *   /w?FIELD=N&...    writes fields of its own slot's worker half
 *             (requests, heap_in_use, conn_memory, start_ms,
 *             req_start_ms, beat_ms, pid); with torn=1 the sequence
 *             counter is left odd, as by a writer that died halfway; with
 *             slot=N, slot N's instead of its own
 *   /line?hex=HEX     writes raw bytes (no NUL added) over req_line and
 *             sets req_start_ms, as if a request were in progress; with
 *             die=1 the worker then kills itself, so the master reads them
 *   /notify?type=T&slot=S  writes one message to the master
 *   /raw?n=N  writes N bytes (at most 8) of zeros where the master reads
 *             its messages, as a module writing to a wrong descriptor
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <molt/module.h>

#include "scoreboard.h"
#include "worker.h"

static long long
scribble_num(molt_request *req, const char *key, int *found)
{
	const char *v = molt_req_param(req, key);

	*found = v != NULL;
	return v != NULL ? (long long)strtoull(v, NULL, 0) : 0;
}

static int
scribble_w(molt_request *req, struct sb_slot *s)
{
	long long v;
	int f, torn;

	(void)scribble_num(req, "torn", &torn);
	s->w.seq |= 1;
	if ((v = scribble_num(req, "requests", &f)), f)
		s->w.requests = (uint64_t)v;
	if ((v = scribble_num(req, "heap_in_use", &f)), f)
		s->w.heap_in_use = (uint64_t)v;
	if ((v = scribble_num(req, "conn_memory", &f)), f)
		s->w.conn_memory = (uint64_t)v;
	if ((v = scribble_num(req, "start_ms", &f)), f)
		s->w.start_ms = v;
	if ((v = scribble_num(req, "req_start_ms", &f)), f)
		s->w.req_start_ms = v;
	if ((v = scribble_num(req, "beat_ms", &f)), f)
		s->w.beat_ms = v;
	if ((v = scribble_num(req, "pid", &f)), f)
		s->w.pid = (pid_t)v;
	if (!torn)
		s->w.seq++;
	return molt_reply(req, 200, "text/plain", "ok\n", 3);
}

static int
scribble_line(molt_request *req, struct sb_slot *s)
{
	const char *hex = molt_req_param(req, "hex");
	size_t i, n;
	unsigned x;

	if (hex == NULL)
		return molt_reply_error(req, 400, "scribble: no hex");
	n = strlen(hex) / 2;
	if (n > SB_REQ_LEN)
		n = SB_REQ_LEN;
	s->w.seq |= 1;
	for (i = 0; i < n; i++) {
		if (sscanf(hex + 2 * i, "%2x", &x) != 1)
			break;
		s->w.req_line[i] = (char)x;
	}
	s->w.req_start_ms = 1;
	s->w.seq++;
	if (molt_req_param(req, "die") != NULL)
		raise(SIGKILL);
	return molt_reply(req, 200, "text/plain", "ok\n", 3);
}

static int
scribble_handle(molt_request *req)
{
	struct worker *w = worker_self;
	struct sb_slot *s = &sb.slots[w->slot_index];
	const char *pi = molt_req_path_info(req);
	char buf[32];
	long long v;
	int n, f;

	if (pi == NULL)
		pi = "";
	if (strcmp(pi, "/slot") == 0) {
		n = snprintf(buf, sizeof(buf), "%d\n", w->slot_index);
		return molt_reply(req, 200, "text/plain", buf, (size_t)n);
	}
	if (strcmp(pi, "/hdr") == 0) {
		if ((v = scribble_num(req, "slots_hi", &f)), f)
			sb.hdr->slots_hi = (uint32_t)v;
		if ((v = scribble_num(req, "seq", &f)), f)
			sb.hdr->seq = (uint32_t)v;
		n = snprintf(buf, sizeof(buf), "seq=%u\n", sb.hdr->seq);
		return molt_reply(req, 200, "text/plain", buf, (size_t)n);
	}
	if (strcmp(pi, "/w") == 0) {
		if ((v = scribble_num(req, "slot", &f)), f) {
			if (v < 0 || v >= SB_SLOTS)
				return molt_reply_error(req, 400, "scribble: bad slot");
			s = &sb.slots[v];
		}
		return scribble_w(req, s);
	}
	if (strcmp(pi, "/line") == 0)
		return scribble_line(req, s);
	if (strcmp(pi, "/notify") == 0) {
		int32_t msg[2];

		msg[0] = (int32_t)scribble_num(req, "type", &f);
		msg[1] = (int32_t)scribble_num(req, "slot", &f);
		if (write(w->notify_fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
			return molt_reply_error(req, 500, "scribble: write failed");
		return molt_reply(req, 200, "text/plain", "ok\n", 3);
	}
	if (strcmp(pi, "/raw") == 0) {
		char zero[8] = { 0 };

		v = scribble_num(req, "n", &f);
		if (v < 0 || v > 8)
			return molt_reply_error(req, 400, "scribble: bad n");
		if (write(w->notify_fd, zero, (size_t)v) != (ssize_t)v)
			return molt_reply_error(req, 500, "scribble: write failed");
		return molt_reply(req, 200, "text/plain", "ok\n", 3);
	}
	return molt_reply_error(req, 404, "scribble: unknown action");
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "scribble",
	.version     = "1.0",
	.description = "writes garbage where the master reads",
	.handle      = scribble_handle,
};
