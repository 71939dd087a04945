/*
 * dblib.c - loads the MariaDB client library on first need (see dblib.h).
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "dblib.h"

struct dblib dblib;

static int dblib_loaded;

int
dblib_load(char *err, size_t errlen)
{
	void *h, *sym;

	if (dblib_loaded)
		return 0;
	/*
	 * RTLD_LOCAL: nothing else should bind to it by accident.  A module
	 * that links libmariadb itself gets this same copy (same SONAME).
	 * Never dlclose'd: OpenSSL's and the library's exit handlers expect
	 * their code to be there at exit.
	 */
	if ((h = dlopen(MOLT_MARIADB_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(err, errlen, "cannot load the MariaDB client library: %s "
		    "(Debian package libmariadb3)", dlerror());
		return -1;
	}
#define DBLIB_RESOLVE(f) \
	if ((sym = dlsym(h, #f)) == NULL) { \
		snprintf(err, errlen, "the MariaDB client library %s has no " \
		    "function %s; molt was built against Connector/C %s", \
		    MOLT_MARIADB_SONAME, #f, MARIADB_PACKAGE_VERSION); \
		goto fail; \
	} \
	dblib.f = (__typeof__(dblib.f))sym;
	DBLIB_FUNCS(DBLIB_RESOLVE)
#undef DBLIB_RESOLVE
	dblib_loaded = 1;
	return 0;
fail:
	memset(&dblib, 0, sizeof(dblib));
	dlclose(h);
	return -1;
}
