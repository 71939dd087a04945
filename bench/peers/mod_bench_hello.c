/*
 * Apache httpd peer for bench/run: the smallest honest "hello world" handler,
 * a content handler in C (built with apxs from apache2-dev), so Apache's
 * figure is the server's own cost and not a scripting language's.
 *
 *   <Location "/hello"> SetHandler bench-hello </Location>
 *   -> 200, text/plain, "hello, world\n"
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "ap_config.h"

static const char hello[] = "hello, world\n";

static int bench_hello_handler(request_rec *r)
{
	if (!r->handler || strcmp(r->handler, "bench-hello") != 0)
		return DECLINED;
	if (r->method_number != M_GET)
		return HTTP_METHOD_NOT_ALLOWED;
	ap_set_content_type(r, "text/plain");
	ap_set_content_length(r, sizeof hello - 1);
	if (!r->header_only)
		ap_rwrite(hello, sizeof hello - 1, r);
	return OK;
}

static void bench_hello_register_hooks(apr_pool_t *p)
{
	ap_hook_handler(bench_hello_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA bench_hello_module = {
	STANDARD20_MODULE_STUFF,
	NULL, NULL, NULL, NULL, NULL,
	bench_hello_register_hooks
};
