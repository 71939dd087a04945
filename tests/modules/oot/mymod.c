/*
 * mymod.c - a third-party module, built out of tree against the installed
 * header only:
 *
 *     cc -shared -fPIC $(pkg-config --cflags molt-module) mymod.c -o mymod.so
 */
#include <molt/module.h>

static int
mymod_handle(molt_request *req)
{
	return molt_reply(req, 200, "text/plain", "mymod ok\n", 9);
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "mymod",
	.version     = "1.0",
	.description = "an out-of-tree example module",
	.handle      = mymod_handle,
};
