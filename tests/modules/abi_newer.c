/*
 * abi_newer.c - a test module built for a minor ABI newer than molt's: it
 * may call functions this molt does not have, so loading it must fail
 * with both versions named, before any of its code runs.
 */
#include <molt/module.h>

static int
abi_newer_handle(molt_request *req)
{
	return molt_reply(req, 200, "text/plain", "should never load\n", 18);
}

MOLT_EXPORT const struct molt_module molt_module = {
	.abi_major   = MOLT_ABI_MAJOR,
	.abi_minor   = MOLT_ABI_MINOR + 1,
	.magic       = MOLT_MODULE_MAGIC,
	.name        = "abi_newer",
	.version     = "1.0",
	.description = "test: built for a newer minor module ABI",
	.handle      = abi_newer_handle,
};
