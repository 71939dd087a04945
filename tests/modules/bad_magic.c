/*
 * bad_magic.c - a test module whose magic word is wrong, as if molt_module
 * were some unrelated symbol.  Loading it must fail cleanly.
 */
#include <molt/module.h>

static int
bad_magic_handle(molt_request *req)
{
	return molt_reply(req, 200, "text/plain", "should never load\n", 18);
}

MOLT_EXPORT const struct molt_module molt_module = {
	.abi_major   = MOLT_ABI_MAJOR,
	.abi_minor   = MOLT_ABI_MINOR,
	.magic       = 0xdeadbeefU,
	.name        = "bad_magic",
	.version     = "1.0",
	.description = "test: wrong magic",
	.handle      = bad_magic_handle,
};
