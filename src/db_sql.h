/*
 * db_sql.h - what a statement's text says of the session it runs in.
 *
 * src/db.c asks once, when it prepares a statement, whether the statement
 * leaves state on the pooled session that the server's answer does not
 * flag; src/db_sql.c reads the text.
 */
#ifndef MOLT_DB_SQL_H
#define MOLT_DB_SQL_H

#include <stddef.h>

enum {
	DB_SQL_LEAVES = 1,    /* leaves what the server does not flag: SET
	                         TRANSACTION, LOCK TABLES, GET_LOCK, a user
	                         variable set outside SET */
	DB_SQL_CALL   = 2     /* a CALL: its failure may have changed the session */
};

/* The DB_SQL_* that the text of sql (len bytes, not NUL-ended) shows. */
int db_sql_kind(const char *sql, size_t len);

#endif
