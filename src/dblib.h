/*
 * dblib.h - the MariaDB client library, loaded when a database needs it.
 *
 * molt is compiled against <mysql.h> but not linked with libmariadb.  A
 * server without [database] sections therefore maps neither it nor the
 * OpenSSL and zlib behind it, and every fork, start and exit of a worker
 * is that much cheaper (on the bench machine about 1 ms and 17 page
 * faults of each recycle; doc/benchmarks-history.md).  A process that needs the
 * database calls dblib_load() once and then calls the library through
 * the table below.  Each entry has the type of the function in <mysql.h>,
 * so a call through it is checked like a direct call.
 */
#ifndef MOLT_DBLIB_H
#define MOLT_DBLIB_H

#include <stddef.h>
#include <mysql.h>

/* mysql_library_init/end are macros for mysql_server_init/end. */
#define DBLIB_FUNCS(X) \
	X(mysql_server_init) X(mysql_server_end) \
	X(mysql_init) X(mysql_options) X(mysql_close) \
	X(mysql_real_connect_start) X(mysql_real_connect_cont) \
	X(mysql_get_socket) X(mysql_get_timeout_value_ms) \
	X(mysql_get_ssl_cipher) X(mysql_errno) X(mysql_error) \
	X(mysql_thread_id) X(mysql_real_query_start) X(mysql_real_query_cont) \
	X(mysql_fetch_fields) X(mysql_free_result) \
	X(mysql_stmt_init) X(mysql_stmt_close) \
	X(mysql_stmt_prepare_start) X(mysql_stmt_prepare_cont) \
	X(mysql_stmt_execute_start) X(mysql_stmt_execute_cont) \
	X(mysql_stmt_fetch_start) X(mysql_stmt_fetch_cont) \
	X(mysql_stmt_fetch_column) X(mysql_stmt_bind_param) \
	X(mysql_stmt_bind_result) X(mysql_stmt_result_metadata) \
	X(mysql_stmt_param_count) X(mysql_stmt_field_count) \
	X(mysql_stmt_more_results) X(mysql_stmt_affected_rows) \
	X(mysql_stmt_errno) X(mysql_stmt_error) X(mariadb_get_infov) \
	X(mysql_session_track_get_first)

struct dblib {
#define DBLIB_FIELD(f) __typeof__(f) *f;
	DBLIB_FUNCS(DBLIB_FIELD)
#undef DBLIB_FIELD
};

extern struct dblib dblib;

/*
 * Loads the library named at build time (MARIADB_SONAME) and resolves
 * the table; 0 on success, or -1 with the reason in err.  Once loaded it
 * stays: later calls return 0 at once.
 */
int dblib_load(char *err, size_t errlen);

#endif /* MOLT_DBLIB_H */
