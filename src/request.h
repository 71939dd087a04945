/*
 * request.h - the request as modules see it, and the replies they give.
 */
#ifndef MOLT_REQUEST_H
#define MOLT_REQUEST_H

#include "conn.h"

/*
 * Stream flow control: molt_stream_write says MOLT_AGAIN above the high
 * mark, and on_drain runs once the queue is below the low mark.
 */
#define REQ_HIGH_WATER (64 * 1024)
#define REQ_LOW_WATER  (16 * 1024)
/* Queued beyond this, a stream's module has ignored MOLT_AGAIN: cut off. */
#define REQ_STREAM_LIMIT (16 * REQ_HIGH_WATER)

/* Sets up a freshly parsed request: strings, path, route.  -1: close. */
int  req_prepare(molt_request *req);
/* Forgets the previous request before a core error reply. */
void req_clear(molt_request *req);
/* A JSON error reply from the core, possibly with Connection: close. */
void req_reply_core_error(molt_request *req, int status, const char *msg, int close);

#endif /* MOLT_REQUEST_H */
