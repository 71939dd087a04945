/*
 * json.h - what molt itself uses of json.c besides the module API
 * (molt_json_escape and molt_base64, in molt/module.h).
 */
#ifndef MOLT_JSON_H
#define MOLT_JSON_H

#include <stddef.h>

/* Bytes in the well-formed UTF-8 character at s[0..len), 0 if none. */
size_t json_utf8_len(const char *s, size_t len);

#endif
