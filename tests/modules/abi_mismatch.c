/*
 * abi_mismatch.c - a test module built for an ABI major version molt does
 * not speak (99).  Loading it must fail with a clear message, before any of
 * its code runs.
 */
#include <molt/module.h>

static int
abi_mismatch_handle(molt_request *req)
{
	return molt_reply(req, 200, "text/plain", "should never load\n", 18);
}

/* Spelled out instead of MOLT_MODULE_HEADER, to get the wrong major. */
MOLT_EXPORT const struct molt_module molt_module = {
	.abi_major   = 99,
	.abi_minor   = 0,
	.magic       = MOLT_MODULE_MAGIC,
	.name        = "abi_mismatch",
	.version     = "1.0",
	.description = "test: claims module ABI 99.0",
	.handle      = abi_mismatch_handle,
};
