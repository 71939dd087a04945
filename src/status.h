/*
 * status.h - the status page (JSON) and its Prometheus twin.
 */
#ifndef MOLT_STATUS_H
#define MOLT_STATUS_H

struct worker;
struct wroute;

/* Makes r the built-in status route at [status] path. */
void status_fill_route(struct worker *w, struct wroute *r);

#endif
