/*
 * confkeys.c - a test module with one key of every type, for the config
 * checker's tests:
 *
 *   greeting STRING "hi"   count INT 3 (check: 0..100)   limit SIZE 1k
 *   wait DURATION 2s       loud BOOL off                 token STRING,
 *                                                        required, route
 *
 * handle replies {"greeting":..,"count":..,"limit":..,"wait_ms":..,
 * "loud":true|false,"token":..} with the route's effective values.
 */
#include <stdio.h>
#include <string.h>

#include <molt/module.h>

#define ANY (MOLT_CONF_MODULE | MOLT_CONF_ROUTE)

static const struct molt_conf_key confkeys_keys[] = {
	{ "greeting", MOLT_CONF_STRING, ANY, "hi", "a string" },
	{ "count", MOLT_CONF_INT, ANY, "3", "an integer from 0 to 100" },
	{ "limit", MOLT_CONF_SIZE, ANY, "1k", "a size" },
	{ "wait", MOLT_CONF_DURATION, ANY, "2s", "a duration" },
	{ "loud", MOLT_CONF_BOOL, ANY, "off", "a boolean" },
	{ "token", MOLT_CONF_STRING, MOLT_CONF_ROUTE | MOLT_CONF_REQUIRED,
	  NULL, "a required per-route string" },
	{ NULL, 0, 0, NULL, NULL },
};

static int
confkeys_check(const molt_conf *conf, char *err, size_t errlen)
{
	long long count = molt_conf_int(conf, "count");

	if (count < 0 || count > 100) {
		snprintf(err, errlen, "count must be from 0 to 100, not %lld",
		    count);
		return -1;
	}
	return 0;
}

/* s as a JSON string in the pool; NULL stays NULL (shown as null). */
static char *
json_str(molt_pool *pool, const char *s)
{
	size_t len;
	char *d;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	d = molt_palloc(pool, 6 * len + 3);
	if (d == NULL)
		return NULL;
	d[0] = '"';
	len = 1 + molt_json_escape(d + 1, s, len);
	d[len++] = '"';
	d[len] = '\0';
	return d;
}

static int
confkeys_handle(molt_request *req)
{
	const molt_conf *conf = molt_req_conf(req);
	molt_pool *pool = molt_req_pool(req);
	char *greeting, *token, *body;

	greeting = json_str(pool, molt_conf_str(conf, "greeting"));
	token = json_str(pool, molt_conf_str(conf, "token"));
	body = molt_psprintf(pool, "{\"greeting\":%s,\"count\":%lld,"
	    "\"limit\":%lld,\"wait_ms\":%lld,\"loud\":%s,\"token\":%s}\n",
	    greeting ? greeting : "null", molt_conf_int(conf, "count"),
	    molt_conf_int(conf, "limit"), molt_conf_int(conf, "wait"),
	    molt_conf_bool(conf, "loud") ? "true" : "false",
	    token ? token : "null");
	if (body == NULL)
		return MOLT_ERROR;
	return molt_reply(req, 200, "application/json", body, strlen(body));
}

MOLT_EXPORT const struct molt_module molt_module = {
	MOLT_MODULE_HEADER,
	.name        = "confkeys",
	.version     = "1.0",
	.description = "test: one config key of every type",
	.conf_keys   = confkeys_keys,
	.check       = confkeys_check,
	.handle      = confkeys_handle,
};
