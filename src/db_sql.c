/*
 * db_sql.c - reading a statement's text for what it leaves on a session.
 *
 * A pooled connection goes from one request to the next, so a statement
 * that changes its session would reach whoever borrows it next.  The
 * server flags most changes in its answer (SET, USE, temporary tables:
 * see db_conn_session_changed in src/db.c); the few it does not are found
 * here, in the text, once per prepared statement.  This is a reader of
 * words, quotes and comments, not a parser: it errs towards finding a
 * change, which costs a connect, never towards missing one.
 */
#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "db_sql.h"

/*
 * p past white space and comments, up to end.  An executable comment (a
 * comment opened with "!" or "M!" after the slash and star, with or
 * without a version) is code the server runs, or a comment when its
 * version is above the server's; with exec, only its opening and its
 * close are skipped, and what it holds is read as code.
 */
static const char *
db_sql_skip(const char *p, const char *end, int exec)
{
	for (;;) {
		while (p < end && isspace((unsigned char)*p))
			p++;
		if (exec && ((end - p >= 3 && memcmp(p, "/*!", 3) == 0) ||
		    (end - p >= 4 && memcmp(p, "/*M!", 4) == 0))) {
			for (p += p[2] == '!' ? 3 : 4;
			    p < end && isdigit((unsigned char)*p); p++)
				;
		} else if (exec && end - p >= 2 && p[0] == '*' && p[1] == '/') {
			p += 2;
		} else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
			for (p += 2; end - p >= 2 && !(p[0] == '*' && p[1] == '/'); p++)
				;
			p = end - p >= 2 ? p + 2 : end;
		} else if (p < end && (*p == '#' || (end - p >= 3 &&
		    p[0] == '-' && p[1] == '-' && isspace((unsigned char)p[2])))) {
			while (p < end && *p != '\n')
				p++;
		} else {
			return p;
		}
	}
}

/* Whether sql has word anywhere, in any case (a string literal too). */
static int
db_sql_has(const char *sql, size_t len, const char *word)
{
	size_t i, n = strlen(word);

	for (i = 0; i + n <= len; i++)
		if (strncasecmp(sql + i, word, n) == 0)
			return 1;
	return 0;
}

/*
 * Whether sql's first words are w1 and (if not NULL) w2, in any case,
 * with its executable comments read either way (db_sql_skip).
 */
static int
db_sql_begins(const char *sql, size_t len, const char *w1, const char *w2)
{
	const char *p, *end = sql + len, *w[2] = { w1, w2 };
	size_t i, n;
	int exec;

	for (exec = 0; exec < 2; exec++) {
		for (p = sql, i = 0; i < 2 && w[i] != NULL; i++) {
			p = db_sql_skip(p, end, exec);
			n = strlen(w[i]);
			if ((size_t)(end - p) < n || strncasecmp(p, w[i], n) != 0 ||
			    (end - p > (ptrdiff_t)n &&
			    (isalnum((unsigned char)p[n]) || p[n] == '_')))
				break;
			p += n;
		}
		if (i == 2 || w[i] == NULL)
			return 1;
	}
	return 0;
}

/*
 * Whether sql assigns a user variable other than by SET (which the
 * server flags): "@v := x" anywhere, or INTO @v, outside quotes and
 * comments, executable comments read as code.  Backslash escapes a quote
 * in a string unless the server's sql_mode has NO_BACKSLASH_ESCAPES,
 * which molt does not know: so the text is read both ways.  An UPDATE
 * written with := is taken for one too: it costs a connect, not a leak.
 */
static int
db_sql_assigns(const char *sql, size_t len)
{
	const char *p, *end = sql + len, *n, *word;
	int esc;
	char q;

	for (esc = 0; esc < 2; esc++) {
		for (p = word = sql; p < end; ) {
			if (*p == '\'' || *p == '"' || *p == '`') {
				for (q = *p++; p < end && *p != q; p++)
					if (esc && *p == '\\' && q != '`' &&
					    end - p >= 2)
						p++;
				p = p < end ? p + 1 : end;
				continue;
			}
			if ((n = db_sql_skip(p, end, 1)) != p) {
				p = word = n;
				continue;
			}
			if (end - p >= 2 && p[0] == ':' && p[1] == '=')
				return 1;
			if (end - p >= 4 && strncasecmp(p, "INTO", 4) == 0 &&
			    (p == word || !(isalnum((unsigned char)p[-1]) ||
			    p[-1] == '_')) &&
			    (n = db_sql_skip(p + 4, end, 1)) < end && *n == '@')
				return 1;
			p++;
		}
	}
	return 0;
}

/*
 * Changes of session the server's answer does not flag, known by the
 * statement's text: once when it is prepared, not at each run.  SET
 * TRANSACTION sets the next transaction's isolation or access: the next
 * request's statement, if the connection went back.  A lock a session
 * takes (LOCK TABLES, GET_LOCK) would be held by the pool for good if
 * its module did not release it on every path; closed, the session
 * releases it.  A CALL that failed may have changed the session first,
 * and its error carries no flag to say so.  A user variable set in a
 * SELECT would reach the next request like one SET.
 */
int
db_sql_kind(const char *sql, size_t len)
{
	int kind = 0;

	if (db_sql_begins(sql, len, "SET", "TRANSACTION") ||
	    db_sql_begins(sql, len, "LOCK", NULL) ||
	    db_sql_has(sql, len, "GET_LOCK") || db_sql_assigns(sql, len))
		kind |= DB_SQL_LEAVES;
	if (db_sql_begins(sql, len, "CALL", NULL))
		kind |= DB_SQL_CALL;
	return kind;
}
