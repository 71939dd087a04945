/*
 * hello.c - replies "hello, world\n" as text/plain.
 *
 * The benchmark module: it is measured against nginx's `return 200`, so
 * its path must cost nothing beyond the core's own work.  It allocates
 * nothing per request; the body is prepared once per route in route_init.
 *
 * Route key `text` replaces the greeting.  The body is the text plus a
 * newline, because an INI value can never end in one.
 */
#include <stdlib.h>
#include <string.h>

#include <molt/module.h>

#define HELLO_DEFAULT "hello, world"

struct hello_route {
	size_t len;
	char   body[];          /* text + "\n", not NUL-terminated */
};

static const char hello_default_body[] = HELLO_DEFAULT "\n";

static const struct molt_conf_key hello_keys[] = {
	{ "text", MOLT_CONF_STRING, MOLT_CONF_MODULE | MOLT_CONF_ROUTE,
	  HELLO_DEFAULT, "the greeting; a newline is appended" },
	{ NULL, 0, 0, NULL, NULL },
};

static int
hello_route_init(molt_worker *w, const molt_conf *conf, void **data)
{
	struct hello_route *r;
	const char *text;
	size_t len;

	(void)w;
	text = molt_conf_str(conf, "text");
	if (text == NULL)
		text = HELLO_DEFAULT;
	len = strlen(text);

	/* Once per route and worker, not per request: malloc is fine here. */
	r = malloc(sizeof(*r) + len + 1);
	if (r == NULL) {
		molt_log(MOLT_LOG_ERROR, "hello: out of memory");
		return -1;
	}
	memcpy(r->body, text, len);
	r->body[len] = '\n';
	r->len = len + 1;
	*data = r;
	return 0;
}

static void
hello_route_exit(molt_worker *w, void *data)
{
	(void)w;
	free(data);
}

static int
hello_handle(molt_request *req)
{
	const struct hello_route *r = molt_req_route_data(req);

	if (r == NULL)
		return molt_reply(req, 200, "text/plain", hello_default_body,
		    sizeof(hello_default_body) - 1);
	return molt_reply(req, 200, "text/plain", r->body, r->len);
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "hello",
	.version     = "1.0",
	.description = "replies hello, world (the benchmark baseline)",
	.conf_keys   = hello_keys,
	.route_init  = hello_route_init,
	.route_exit  = hello_route_exit,
	.handle      = hello_handle,
};
