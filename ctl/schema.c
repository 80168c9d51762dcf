/*
 * The schema is part of what an auditor trusts.  The signatures cover the
 * rows' values only; a view, an index or a trigger lives beside them in
 * the file, and cardlicctl's questions go through them.  An adversary
 * with write access to the file (and no key) made reconcile say "every
 * credit spent is accounted for" by redefining the `pending` view, and
 * hid a signed `counted` row from it with an extra partial index that
 * SQLite chose to answer from.  So before any question, the file's schema
 * must be, object for object and byte for byte, what cardlicd's own
 * migrations make (or cardlicctl merge, for a merged database), at the
 * file's version.  The contents of the indexes are another matter: only
 * PRAGMA integrity_check reads them all (verify runs it).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicctl.h"

/* The schema cardlicd makes: migrations 1..upto, or merge's. */
static sqlite3 *
schema_expected(int merged, int upto, char *err, size_t len)
{
	sqlite3 *mem;
	char *e = NULL;
	int i;

	if (sqlite3_open(":memory:", &mem) != SQLITE_OK) {
		snprintf(err, len, "no memory");
		sqlite3_close(mem);
		return NULL;
	}
	if (merged) {
		if (chain_create_merged(mem, upto, err, len) == 0)
			return mem;
		sqlite3_close(mem);
		return NULL;
	}
	for (i = 0; i < upto; i++)
		if (sqlite3_exec(mem, sql_migrations[i], NULL, NULL, &e) !=
		    SQLITE_OK) {
			snprintf(err, len, "migration %d: %s", i + 1, e);
			sqlite3_free(e);
			sqlite3_close(mem);
			return NULL;
		}
	return mem;
}

static const char *
schema_col(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);

	return s != NULL ? s : "";
}

/*
 * Column i of the file's row against want, as SQLite orders them (BINARY:
 * the bytes, then the length).  Every byte counts: a name or a definition
 * with a NUL inside must not read as the text before the NUL.
 */
static int
schema_col_cmp(sqlite3_stmt *st, int i, const char *want)
{
	const char *s = schema_col(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i), w = strlen(want);
	int c;

	if ((c = memcmp(s, want, n < w ? n : w)) != 0)
		return c;
	return (n > w) - (n < w);
}

/* Column i for a message: escaped, every byte of it. */
static const char *
schema_col_esc(sqlite3_stmt *st, int i)
{
	return ctl_esc(schema_col(st, i), (size_t)sqlite3_column_bytes(st, i));
}

/*
 * mem's objects as schema_compare_rows reads them: 4 strings a row, NULL
 * after the last; free with schema_rows_free.  NULL on an error.
 */
static char **
schema_rows(sqlite3 *mem, char *msg, size_t len)
{
	sqlite3_stmt *b;
	char **rows = NULL, **more;
	size_t n = 0, i;

	if (sqlite3_prepare_v2(mem, SCHEMA_LIST, -1, &b, NULL) != SQLITE_OK) {
		snprintf(msg, len, "%s", sqlite3_errmsg(mem));
		return NULL;
	}
	for (;;) {
		if ((more = realloc(rows, (n + 5) * sizeof(*rows))) == NULL)
			break;
		rows = more;
		rows[n] = NULL;
		if (sqlite3_step(b) != SQLITE_ROW) {
			sqlite3_finalize(b);
			return rows;
		}
		for (i = 0; i < 4; i++)
			if ((rows[n] = strdup(schema_col(b, (int)i))) != NULL)
				n++;
		if (n % 4 != 0)
			break;
	}
	sqlite3_finalize(b);
	snprintf(msg, len, "no memory");
	for (i = 0; i < n; i++)
		free(rows[i]);
	free(rows);
	return NULL;
}

static void
schema_rows_free(char **rows)
{
	char **r;

	for (r = rows; *r != NULL; r++)
		free(*r);
	free(rows);
}

/*
 * 0 when db's objects are those of b, 4 strings a row, NULL at the end:
 * the rows that ctl/schemagen made at build time from the migrations
 * (build/sqlschema.c), or schema_rows of a schema made in memory.  Else 1
 * with msg naming the first object that differs, or -1 on an error.
 */
static int
schema_compare_rows(sqlite3 *db, const char *const *b, char *msg,
    size_t len)
{
	sqlite3_stmt *a = NULL;
	int ra, c, rc = -1;

	if (sqlite3_prepare_v2(db, SCHEMA_LIST, -1, &a, NULL) != SQLITE_OK) {
		snprintf(msg, len, "%s", sqlite3_errmsg(db));
		return -1;
	}
	ra = sqlite3_step(a);
	while (ra == SQLITE_ROW || *b != NULL) {
		c = ra != SQLITE_ROW ? 1 : *b == NULL ? -1 :
		    schema_col_cmp(a, 1, b[1]);
		if (c < 0) {
			snprintf(msg, len, "%s %s is not cardlicd's (added to "
			    "the file)", schema_col_esc(a, 0),
			    schema_col_esc(a, 1));
			rc = 1;
			goto out;
		}
		if (c > 0) {
			snprintf(msg, len, "%s %s is missing", b[0], b[1]);
			rc = 1;
			goto out;
		}
		if (schema_col_cmp(a, 0, b[0]) != 0 ||
		    schema_col_cmp(a, 2, b[2]) != 0 ||
		    schema_col_cmp(a, 3, b[3]) != 0) {
			snprintf(msg, len, "%s %s is not cardlicd's definition "
			    "(changed in the file)", schema_col_esc(a, 0),
			    schema_col_esc(a, 1));
			rc = 1;
			goto out;
		}
		ra = sqlite3_step(a);
		b += 4;
	}
	if (ra != SQLITE_DONE)
		snprintf(msg, len, "%s", sqlite3_errmsg(db));
	else
		rc = 0;
out:
	sqlite3_finalize(a);
	return rc;
}

static long
schema_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/*
 * 0 when the file's schema is cardlicd's at its version; 1 with msg
 * naming the first object that is not; -1 when it cannot be read.  A
 * merged database records no version: any of merge's is accepted.
 */
int
schema_check(sqlite3 *db, char *msg, size_t len)
{
	sqlite3 *mem;
	char **rows;
	long version = schema_int(db, "PRAGMA user_version");
	char other[512], *out;
	size_t olen;
	int merged, k, first, rc = 1;

	merged = schema_int(db, "SELECT count(*) FROM sqlite_schema WHERE "
	    "type = 'table' AND name = 'merges'") == 1;
	if (!merged && (version < 1 || version > sql_migrations_count)) {
		snprintf(msg, len, "its version (PRAGMA user_version %ld) is "
		    "none that cardlicd makes (1 to %d)", version,
		    sql_migrations_count);
		return 1;
	}
	first = merged ? sql_migrations_count : (int)version;
	/* A station's file: the rows made at build time (schemagen). */
	if (!merged && sql_schemas_count == sql_migrations_count)
		return schema_compare_rows(db, sql_schemas[first - 1], msg,
		    len);
	for (k = first; k >= (merged ? 1 : first); k--) {
		/* The newest version's difference is the one to tell. */
		out = k == first ? msg : other;
		olen = k == first ? len : sizeof(other);
		if ((mem = schema_expected(merged, k, out, olen)) == NULL)
			return -1;
		rows = schema_rows(mem, out, olen);
		sqlite3_close(mem);
		if (rows == NULL)
			return -1;
		rc = schema_compare_rows(db, (const char *const *)rows, out,
		    olen);
		schema_rows_free(rows);
		if (rc <= 0)
			return rc;
	}
	return rc;
}

/* PRAGMA integrity_check on db: 0 and "ok", or -1 and why, in out. */
static int
schema_integrity_run(sqlite3 *db, char *out, size_t len)
{
	sqlite3_stmt *st;
	const char *r;
	int rc = 0;

	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check(1)", -1, &st,
	    NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		snprintf(out, len, "%s", sqlite3_errmsg(db));
		rc = -2;
	} else if ((r = (const char *)sqlite3_column_text(st, 0)) == NULL ||
	    strcmp(r, "ok") != 0) {
		snprintf(out, len, "%s", r != NULL ? r : "?");
		rc = -1;
	}
	sqlite3_finalize(st);
	return rc;
}

static int
schema_integrity_say(const struct ctl *c, int rc, const char *why)
{
	if (rc == -2)
		printf("%s: BROKEN: cannot check the file: %s\n", c->db_path,
		    why);
	else if (rc != 0)
		printf("%s: BROKEN: the file's indexes or pages do not match "
		    "its rows (%s): an index was rebuilt or the file damaged; "
		    "no answer read through it can be trusted\n", c->db_path,
		    ctl_esc(why, strlen(why)));
	return rc != 0 ? -1 : 0;
}

/*
 * The answers come through the indexes, which nothing signs: an index
 * rebuilt without a row hid a forged one from a walk that used it, and
 * changed reconcile's totals.  integrity_check compares every index with
 * the table (about 9 s at 1,000,000 rows).  0: it holds; else BROKEN is
 * printed with SQLite's first words.
 */
int
schema_integrity(struct ctl *c)
{
	char why[512];

	return schema_integrity_say(c, schema_integrity_run(c->db, why,
	    sizeof(why)), why);
}

/*
 * The same check on a second connection, in a thread, while the caller
 * walks the rows on the first: on 2 cores verify takes the longer of the
 * two, not their sum (issue 12: 1,000,000 rows, about 9 s each).  The
 * caller's output waits in a temporary file until the check has spoken,
 * so that nothing said over an untrusted file is seen.
 */
struct schema_bg {
	pthread_t	 t;
	char		 uri[4200];
	char		 why[512];
	int		 rc;
	int		 saved;		/* the real standard output */
	FILE		*held;		/* what the caller printed meanwhile */
};

static void *
schema_bg_main(void *arg)
{
	struct schema_bg *b = arg;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(b->uri, &db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
		snprintf(b->why, sizeof(b->why), "%s", db != NULL ?
		    sqlite3_errmsg(db) : "cannot open");
		b->rc = -2;
	} else {
		sqlite3_busy_timeout(db, 2000);
		b->rc = schema_integrity_run(db, b->why, sizeof(b->why));
	}
	sqlite3_close(db);
	return NULL;
}

/* NULL: could not start; then the caller runs schema_integrity itself. */
struct schema_bg *
schema_integrity_start(struct ctl *c)
{
	struct schema_bg *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	snprintf(b->uri, sizeof(b->uri), "%s", c->uri);
	fflush(stdout);
	if ((b->held = tmpfile()) == NULL ||
	    (b->saved = dup(STDOUT_FILENO)) < 0) {
		if (b->held != NULL)
			fclose(b->held);
		free(b);
		return NULL;
	}
	if (pthread_create(&b->t, NULL, schema_bg_main, b) != 0) {
		close(b->saved);
		fclose(b->held);
		free(b);
		return NULL;
	}
	dup2(fileno(b->held), STDOUT_FILENO);
	return b;
}

/* The check's answer; the caller's output follows only if it held. */
int
schema_integrity_end(struct ctl *c, struct schema_bg *b)
{
	char buf[8192];
	size_t n;
	int rc;

	fflush(stdout);
	dup2(b->saved, STDOUT_FILENO);
	close(b->saved);
	pthread_join(b->t, NULL);
	rc = schema_integrity_say(c, b->rc, b->why);
	if (rc == 0) {
		rewind(b->held);
		while ((n = fread(buf, 1, sizeof(buf), b->held)) > 0)
			fwrite(buf, 1, n, stdout);
	}
	fclose(b->held);
	free(b);
	return rc;
}
