/*
 * abi_older.c - a test module built for module ABI 1.0, before
 * molt_stream_abort existed.  A minor release only adds, so it must load
 * into every molt 1.x and serve.
 */
#include <molt/module.h>

static int
abi_older_handle(molt_request *req)
{
	return molt_reply(req, 200, "text/plain", "built for 1.0\n", 14);
}

/* Spelled out instead of MOLT_MODULE_HEADER: the ABI it was built for. */
MOLT_EXPORT const struct molt_module molt_module = {
	.abi_major   = 1,
	.abi_minor   = 0,
	.magic       = MOLT_MODULE_MAGIC,
	.name        = "abi_older",
	.version     = "1.0",
	.description = "test: built for module ABI 1.0",
	.handle      = abi_older_handle,
};
