/*
 * test_db_sql.c - unit tests for db_sql_kind (src/db_sql.c): which
 * statements leave on a pooled session what the server does not flag.
 *
 * Each text is copied into a buffer of exactly its length, with no NUL
 * after it, as db.c passes a module's SQL; so is every prefix of it and a
 * run of random texts made of the words that matter, so that the ASan
 * build catches a read past the end.  tests/integration/test_mariadb.py
 * shows the same statements on a real server.
 *
 * Build: cc -Isrc tests/unit/test_db_sql.c src/db_sql.c -o test_db_sql
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "db_sql.h"

struct vec {
	const char *sql;
	int         kind;
};

static const struct vec vecs[] = {
	/* What the server flags itself: not this file's business. */
	{ "SELECT 1", 0 },
	{ "SET @v = 1", 0 },
	{ "SET NAMES utf8mb4", 0 },
	{ "UPDATE t SET a = 1 WHERE b = 2", 0 },
	{ "INSERT INTO t VALUES (1)", 0 },
	{ "SELECT @v", 0 },
	{ "SELECT 1 INTO OUTFILE '/tmp/x'", 0 },

	/* SET TRANSACTION and LOCK, however they are dressed. */
	{ "SET TRANSACTION ISOLATION LEVEL READ COMMITTED", DB_SQL_LEAVES },
	{ "set   transaction read only", DB_SQL_LEAVES },
	{ "\n\t SET\nTRANSACTION READ ONLY", DB_SQL_LEAVES },
	{ "-- why\nSET TRANSACTION READ ONLY", DB_SQL_LEAVES },
	{ "# why\nLOCK TABLES t READ", DB_SQL_LEAVES },
	{ "/* why */ LOCK TABLES t WRITE", DB_SQL_LEAVES },
	{ "/*!40101 SET TRANSACTION READ ONLY */", DB_SQL_LEAVES },
	{ "/*M!100000 LOCK TABLES t READ */", DB_SQL_LEAVES },
	{ "/*!40101 */ LOCK TABLES t READ", DB_SQL_LEAVES },
	{ "/*!999999 x */ LOCK TABLES t READ", DB_SQL_LEAVES },
	{ "SET /*!40101 TRANSACTION */ READ ONLY", DB_SQL_LEAVES },
	{ "SELECT GET_LOCK('a', 1)", DB_SQL_LEAVES },
	{ "select get_lock('a', 1)", DB_SQL_LEAVES },
	/* Not a statement's first words. */
	{ "SET TRANSACTIONS = 1", 0 },
	{ "SELECT 'SET TRANSACTION READ ONLY'", 0 },
	{ "SELECT 1 FROM t LOCK IN SHARE MODE", 0 },
	{ "LOCKED", 0 },
	{ "--SET TRANSACTION READ ONLY", 0 },

	/* A user variable set outside SET. */
	{ "SELECT @v := 1", DB_SQL_LEAVES },
	{ "SELECT @v:=1", DB_SQL_LEAVES },
	{ "SELECT 1 INTO @v", DB_SQL_LEAVES },
	{ "SELECT 1 into   @v", DB_SQL_LEAVES },
	{ "SELECT 1 INTO/* c */@v", DB_SQL_LEAVES },
	{ "SELECT 1, 2 INTO @a, @b", DB_SQL_LEAVES },
	{ "SELECT 1 /*!50000INTO @v */", DB_SQL_LEAVES },
	{ "SELECT 1 /*M!INTO @v */", DB_SQL_LEAVES },
	{ "SELECT 1 /*!50000 INTO */ @v", DB_SQL_LEAVES },
	/* A string that ends in a backslash under NO_BACKSLASH_ESCAPES. */
	{ "SELECT 'x\\', @v := 1, 'y'", DB_SQL_LEAVES },
	{ "SELECT \"x\\\", 1 INTO @v, \"y\"", DB_SQL_LEAVES },
	{ "SELECT 'a\\' INTO @v'", DB_SQL_LEAVES },
	/* Quoted, commented, or another word. */
	{ "SELECT ':='", 0 },
	{ "SELECT \"a := b\"", 0 },
	{ "SELECT `a:=b` FROM t", 0 },
	{ "SELECT 1 -- := \n", 0 },
	{ "SELECT 1 # INTO @v\n", 0 },
	{ "SELECT 1 /* INTO @v */", 0 },
	{ "SELECT a FROM t WHERE b = 'INTO @v'", 0 },
	{ "SELECT 'it''s INTO @v'", 0 },
	{ "SELECT a_INTO @v", 0 },
	{ "SELECT xINTO @v", 0 },
	{ "SELECT 1 INTO v", 0 },
	{ "SELECT ':", 0 },
	{ "SELECT 'unclosed := 1", 0 },
	{ "SELECT 1 /* unclosed := 1", 0 },

	/* CALL: its failure may have changed the session. */
	{ "CALL p()", DB_SQL_CALL },
	{ "call p(1, 2)", DB_SQL_CALL },
	{ "/*!CALL p() */", DB_SQL_CALL },
	{ "CALLx()", 0 },
	{ "CALL p(@v := 1)", DB_SQL_CALL | DB_SQL_LEAVES },
	{ "", 0 },
	{ "   ", 0 },
	{ "/*", 0 },
	{ "/*!", 0 },
	{ "/*M!", 0 },
	{ "--", 0 },
};

/* db_sql_kind on sql's first len bytes, with nothing after them. */
static int
kind_of(const char *sql, size_t len)
{
	char *buf = malloc(len ? len : 1);
	int kind;

	if (buf == NULL) {
		perror("malloc");
		exit(2);
	}
	memcpy(buf, sql, len);
	kind = db_sql_kind(buf, len);
	free(buf);
	return kind;
}

static void
test_vectors(void)
{
	size_t i, len, n;
	int kind;

	for (i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		len = strlen(vecs[i].sql);
		kind = kind_of(vecs[i].sql, len);
		CHECK(kind == vecs[i].kind, "\"%s\": kind %d, expected %d",
		    vecs[i].sql, kind, vecs[i].kind);
		for (n = 0; n < len; n++)
			(void)kind_of(vecs[i].sql, n);
	}
}

/* The length given, not the NUL, ends the text. */
static void
test_length_bounds(void)
{
	static const char sql[] = "SELECT 1 INTO @v";

	CHECK(db_sql_kind(sql, sizeof(sql) - 1) == DB_SQL_LEAVES, "whole");
	CHECK(db_sql_kind(sql, sizeof(sql) - 3) == 0, "without the @");
	CHECK(db_sql_kind("SELECT @v := 1", 9) == 0, "cut before :=");
	CHECK(db_sql_kind("LOCK TABLES", 3) == 0, "LOC");
	CHECK(db_sql_kind("LOCKx", 4) == DB_SQL_LEAVES, "LOCK, then cut");
}

/* Random texts of the pieces that matter, for the ASan build. */
static void
test_random(void)
{
	static const char *pieces[] = {
		"'", "\"", "`", "\\", "/*", "*/", "/*!", "/*M!", "40101", "--",
		"-- ", "#", "\n", " ", ":", "=", ":=", "@", "INTO", "into",
		"SET", "TRANSACTION", "LOCK", "CALL", "GET_LOCK", "x", "_", "!",
		"*", "/", "M",
	};
	char buf[128];
	size_t len, n;
	int i, j, kind;

	srand(20261207);
	for (i = 0; i < 200000; i++) {
		len = 0;
		for (j = rand() % 12; j >= 0; j--) {
			const char *p = pieces[rand() %
			    (int)(sizeof(pieces) / sizeof(pieces[0]))];

			n = strlen(p);
			if (len + n > sizeof(buf))
				break;
			memcpy(buf + len, p, n);
			len += n;
		}
		kind = kind_of(buf, len);
		CHECK((kind & ~(DB_SQL_LEAVES | DB_SQL_CALL)) == 0,
		    "kind %d", kind);
	}
}

int
main(void)
{
	test_vectors();
	test_length_bounds();
	test_random();
	printf("test_db_sql: %u passed, %u failed\n", passed, failed);
	return failed ? 1 : 0;
}
