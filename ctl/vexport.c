/*
 * verify --export FILE: check a file made by cardlicctl export --signed
 * (CSV or JSONL) on a machine with no database.  Every row is rebuilt
 * from the file's exact columns (NAME_hex, the integers, types), in an
 * audit table in memory; the chain and the signatures are then checked
 * by the same walk as verify (chain.c), and the rows are exported again
 * and compared with the file, byte for byte, so that a column that an
 * auditor reads (reason, model, ...) cannot say other than the bytes the
 * station signed.  Every failure names the file's line and the row.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicctl.h"
#include "../daemon/dbhash.h"

#define VX_MAX_COLS	64

struct vx_field {
	const char	*name;
	size_t		 name_len;
	const char	*p;		/* unquoted; NULL: JSON null */
	size_t		 len;
};

struct vx {
	int		 jsonl;
	struct vx_field	 head[VX_MAX_COLS];	/* CSV: the header's names */
	char		*head_line;
	int		 n_head;
	struct vx_field	 f[VX_MAX_COLS];
	int		 n;
	char		*unq;		/* CSV: unquoted fields, per line */
};

/* CSV: one record (RFC 4180 quoting, no line break inside). */
static int
vx_csv(struct vx *x, char *line, struct vx_field *f, int *n)
{
	char *s = line, *o = x->unq;

	*n = 0;
	for (;;) {
		if (*n == VX_MAX_COLS)
			return -1;
		f[*n].p = o;
		if (*s == '"') {
			for (s++; *s != '\0'; s++) {
				if (*s == '"' && s[1] == '"')
					*o++ = *s++;
				else if (*s == '"')
					break;
				else
					*o++ = *s;
			}
			if (*s++ != '"')
				return -1;
		} else
			while (*s != '\0' && *s != ',')
				*o++ = *s++;
		f[*n].len = (size_t)(o - f[*n].p);
		*o++ = '\0';
		(*n)++;
		if (*s == '\0')
			return 0;
		if (*s++ != ',')
			return -1;
	}
}

/* JSON: a string at *s (past its quote), left escaped; end after it. */
static int
vx_json_str(char **s, const char **p, size_t *len)
{
	char *t = *s;

	*p = t;
	for (; *t != '"'; t++) {
		if (*t == '\0')
			return -1;
		if (*t == '\\' && *++t == '\0')
			return -1;
	}
	*len = (size_t)(t - *p);
	*s = t + 1;
	return 0;
}

/* JSON: an object or array at *s, skipped whole; end after it. */
static int
vx_json_nested(char **s)
{
	const char *p;
	size_t len;
	char *t = *s;
	int depth = 0;

	do {
		if (*t == '"') {
			t++;
			if (vx_json_str(&t, &p, &len) != 0)
				return -1;
			continue;
		}
		if (*t == '\0')
			return -1;
		if (*t == '{' || *t == '[')
			depth++;
		else if (*t == '}' || *t == ']')
			depth--;
		t++;
	} while (depth > 0);
	*s = t;
	return 0;
}

/* JSONL: one object of strings, numbers, nulls (and raw JSON values). */
static int
vx_jsonl(char *s, struct vx_field *f, int *n)
{
	*n = 0;
	if (*s++ != '{')
		return -1;
	while (*s != '}') {
		if (*n == VX_MAX_COLS || *s++ != '"' ||
		    vx_json_str(&s, &f[*n].name, &f[*n].name_len) != 0 ||
		    *s++ != ':')
			return -1;
		if (*s == '"') {
			s++;
			if (vx_json_str(&s, &f[*n].p, &f[*n].len) != 0)
				return -1;
		} else if (*s == '{' || *s == '[') {
			/* Raw JSON (timings): kept whole, as text. */
			f[*n].p = s;
			if (vx_json_nested(&s) != 0)
				return -1;
			f[*n].len = (size_t)(s - f[*n].p);
		} else if (strncmp(s, "null", 4) == 0) {
			f[*n].p = NULL;
			f[*n].len = 0;
			s += 4;
		} else {
			f[*n].p = s;
			s += strspn(s, "-0123456789");
			f[*n].len = (size_t)(s - f[*n].p);
			if (f[*n].len == 0)
				return -1;
		}
		(*n)++;
		if (*s == ',')
			s++;
		else if (*s != '}')
			return -1;
	}
	return s[1] == '\0' ? 0 : -1;
}

static const struct vx_field *
vx_get(const struct vx *x, const char *name)
{
	size_t n = strlen(name);
	int i;

	for (i = 0; i < x->n; i++) {
		if (x->jsonl ? x->f[i].name_len == n &&
		    memcmp(x->f[i].name, name, n) == 0 :
		    i < x->n_head && x->head[i].name_len == n &&
		    memcmp(x->head[i].name, name, n) == 0)
			return &x->f[i];
	}
	return NULL;
}

/* A value's bytes from hex (either case), in buf; -1 if not hex. */
static int
vx_hex(const struct vx_field *f, uint8_t *buf, size_t max, size_t *n)
{
	if (f == NULL || f->p == NULL) {
		*n = 0;
		return f == NULL ? -1 : 0;
	}
	if (f->len % 2 != 0 || f->len / 2 > max)
		return -1;
	*n = f->len / 2;
	return dbhash_unhex(f->p, f->len, buf, *n);
}

/*
 * One row of the file into the table in memory.  0, or -1 with msg
 * saying which column cannot be read.
 */
static int
vx_insert(struct vx *x, sqlite3_stmt *ins, uint8_t *buf, size_t max,
    char *msg, size_t len)
{
	const struct vx_field *types = vx_get(x, "types"), *f;
	char name[64], num[32];
	size_t o = 0, n;
	long long v;
	char *end;
	int i, rc;

	sqlite3_reset(ins);
	sqlite3_clear_bindings(ins);
	if (types == NULL || types->p == NULL || types->len !=
	    AUDITROW_HASHED) {
		snprintf(msg, len, "no types column of %d letters (is it an "
		    "export --signed?)", AUDITROW_HASHED);
		return -1;
	}
	for (i = 0; i < AUDITROW_NCOLS; i++) {
		const char *col = auditrow_cols[i].name;
		char t = i < AUDITROW_HASHED ? types->p[i] : 'b';

		if (i >= AUDITROW_HASHED || t == 'i')
			snprintf(name, sizeof(name), "%s", col);
		else
			snprintf(name, sizeof(name), "%s_hex", col);
		f = vx_get(x, name);
		if (t == 'n' || (i == AUDITROW_sig && (f == NULL ||
		    f->p == NULL || f->len == 0)))
			rc = sqlite3_bind_null(ins, i + 1);
		else if (t == 'i') {
			if (f == NULL || f->p == NULL || f->len == 0 ||
			    f->len >= sizeof(num))
				goto bad;
			memcpy(num, f->p, f->len);
			num[f->len] = '\0';
			errno = 0;
			v = strtoll(num, &end, 10);
			if (errno != 0 || *end != '\0')
				goto bad;
			rc = sqlite3_bind_int64(ins, i + 1, v);
		} else if (t == 't' || t == 'b') {
			if (vx_hex(f, buf + o, max - o, &n) != 0)
				goto bad;
			rc = t == 't' ? sqlite3_bind_text(ins, i + 1,
			    (const char *)buf + o, (int)n, SQLITE_STATIC) :
			    sqlite3_bind_blob(ins, i + 1, buf + o, (int)n,
			    SQLITE_STATIC);
			o += n;
		} else {
			snprintf(msg, len, "types: '%c' for %s is not a type",
			    t, col);
			return -1;
		}
		if (rc != SQLITE_OK)
			goto bad;
	}
	if (sqlite3_step(ins) != SQLITE_DONE) {
		snprintf(msg, len, "it cannot be an audit row: %s",
		    sqlite3_errmsg(sqlite3_db_handle(ins)));
		return -1;
	}
	return 0;
bad:
	snprintf(msg, len, "column %s cannot be read", name);
	return -1;
}

/* "station S row N", from the file's own columns, for messages. */
static const char *
vx_row_name(const struct vx *x)
{
	static char out[200];
	const struct vx_field *s = vx_get(x, "station"), *q = vx_get(x, "seq");

	snprintf(out, sizeof(out), "station %.*s row %.*s",
	    s != NULL && s->p != NULL ? (int)(s->len < 64 ? s->len : 64) : 1,
	    s != NULL && s->p != NULL ? s->p : "?",
	    q != NULL && q->p != NULL ? (int)(q->len < 20 ? q->len : 20) : 1,
	    q != NULL && q->p != NULL ? q->p : "?");
	return out;
}

/* The rows in memory, exported again as the file was, into out. */
static int
vx_export_again(sqlite3 *db, int jsonl, FILE *out)
{
	struct ctl c;
	char *argv[] = { "export", "--format", jsonl ? "jsonl" : "csv",
	    "--signed", NULL };
	int saved, rc;

	memset(&c, 0, sizeof(c));
	c.db = db;
	c.db_path = ":memory:";
	fflush(stdout);
	if ((saved = dup(1)) < 0 || dup2(fileno(out), 1) < 0)
		return -1;
	rc = cmd_export(&c, 4, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	return rc;
}

/*
 * The file and the export of its rows, line by line: the first change.
 * x holds the CSV header's names, to name the row of a changed line.
 */
static int
vx_compare(const char *path, FILE *in, FILE *again, struct vx *x)
{
	char *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;
	ssize_t la, lb;
	long line = 0;

	rewind(in);
	rewind(again);
	for (;;) {
		la = getline(&a, &na, in);
		lb = getline(&b, &nb, again);
		line++;
		if (la < 0 && lb < 0)
			break;
		if (la == lb && memcmp(a, b, (size_t)la) == 0)
			continue;
		printf("%s: BROKEN at line %ld", path, line);
		/* Which row: the file's line, read as a record. */
		if (la > 0) {
			a[strcspn(a, "\r\n")] = '\0';
			free(x->unq);
			x->unq = malloc((size_t)la + 1);
			if ((x->jsonl ? vx_jsonl(a, x->f, &x->n) :
			    x->unq == NULL ? -1 : vx_csv(x, a, x->f, &x->n)) ==
			    0)
				printf(" (%s)", vx_row_name(x));
		}
		printf(": %s\n", la < 0 ? "the file ends before its rows do" :
		    lb < 0 ? "a line that is no row of the export" :
		    "its columns are not what the row's exact values (the "
		    "_hex columns, types) give: a field was edited, or the "
		    "lines were moved");
		free(a);
		free(b);
		return -1;
	}
	free(a);
	free(b);
	return 0;
}

/* Every index of the schema but audit_job: 0, or -1 with *e. */
static int
vx_drop_indexes(sqlite3 *db, char **e)
{
	sqlite3_stmt *st;
	char *drop;
	int rc = 0;

	if (sqlite3_prepare_v2(db, "SELECT group_concat('DROP INDEX \"' || "
	    "name || '\";', ' ') FROM sqlite_schema WHERE type = 'index' AND "
	    "sql IS NOT NULL AND name <> 'audit_job'", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	drop = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) !=
	    NULL ? sqlite3_mprintf("%s", sqlite3_column_text(st, 0)) : NULL;
	/* Done reading the schema before it changes. */
	sqlite3_finalize(st);
	if (drop != NULL)
		rc = sqlite3_exec(db, drop, NULL, NULL, e) == SQLITE_OK ? 0 :
		    -1;
	sqlite3_free(drop);
	return rc;
}

int
vexport_verify(const char *path, const uint8_t (*keys)[32], int n_keys)
{
	struct vx x;
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL;
	FILE *in, *again = NULL;
	char *line = NULL, *e = NULL, msg[600];
	uint8_t *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	long lineno = 0, total = 0;
	int i, rc = CTL_NOTHING;

	memset(&x, 0, sizeof(x));
	if ((in = fopen(path, "re")) == NULL)
		return ctl_fail("%s: %s", path, strerror(errno));
	/*
	 * A temporary database on disk (SQLite's name ""), not in memory:
	 * 1,000,000 rows held 739 MiB there (issue 12); its page cache is
	 * bounded, the rest goes to a file that SQLite deletes on close.
	 */
	if (sqlite3_open("", &db) != SQLITE_OK) {
		fclose(in);
		return ctl_fail("sqlite: cannot open a temporary database");
	}
	/* The station's own schema; no append-only rule between stations. */
	for (i = 0; i < sql_migrations_count; i++)
		if (sqlite3_exec(db, sql_migrations[i], NULL, NULL, &e) !=
		    SQLITE_OK)
			break;
	/*
	 * Its indexes only slow the inserts down: the walk reads the table,
	 * and the export again reads it in seq order (audit_job, kept,
	 * tells whether the file holds one station).
	 */
	if (i == sql_migrations_count && vx_drop_indexes(db, &e) != 0)
		i = -1;
	if (i < sql_migrations_count || sqlite3_exec(db, "DROP TRIGGER "
	    "audit_append_only; BEGIN", NULL, NULL, &e) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, AUDITROW_INSERT, -1, &ins, NULL) !=
	    SQLITE_OK) {
		rc = ctl_fail("sqlite: %s", e != NULL ? e :
		    sqlite3_errmsg(db));
		goto out;
	}
	while ((n = getline(&line, &cap, in)) > 0) {
		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (lineno == 1 && line[0] == '[') {
			rc = ctl_fail("%s: a JSON array; verify --export reads "
			    "export --signed --format csv or jsonl", path);
			goto out;
		}
		if (lineno == 1)
			x.jsonl = line[0] == '{';
		free(buf);
		buf = malloc((size_t)n + 1);
		if (!x.jsonl) {
			free(x.unq);
			x.unq = malloc((size_t)n + 1);
		}
		if (buf == NULL || (!x.jsonl && x.unq == NULL)) {
			rc = ctl_fail("out of memory");
			goto out;
		}
		if (!x.jsonl && lineno == 1) {
			/* The header's names stay in head_line. */
			x.head_line = x.unq;
			if (vx_csv(&x, line, x.head, &x.n_head) != 0) {
				x.unq = NULL;
				printf("%s: BROKEN at line 1: not a CSV "
				    "header\n", path);
				goto out;
			}
			x.unq = NULL;
			for (i = 0; i < x.n_head; i++) {
				x.head[i].name = x.head[i].p;
				x.head[i].name_len = x.head[i].len;
			}
			continue;
		}
		if ((x.jsonl ? vx_jsonl(line, x.f, &x.n) : vx_csv(&x, line,
		    x.f, &x.n)) != 0 || (!x.jsonl && x.n != x.n_head)) {
			printf("%s: BROKEN at line %ld: not a record of the "
			    "export\n", path, lineno);
			goto out;
		}
		if (vx_insert(&x, ins, buf, (size_t)n, msg, sizeof(msg)) !=
		    0) {
			printf("%s: BROKEN at line %ld (%s): %s\n", path,
			    lineno, vx_row_name(&x), msg);
			goto out;
		}
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		rc = ctl_fail("sqlite: %s", sqlite3_errmsg(db));
		goto out;
	}
	/* The chain and the signatures, as verify walks a database. */
	if (chain_verify_all(db, path, 0, &total, keys, n_keys) != 0) {
		printf("%ld rows checked\n", total);
		goto out;
	}
	/* The columns that people read say what the signed bytes say. */
	if ((again = tmpfile()) == NULL) {
		rc = ctl_fail("tmpfile: %s", strerror(errno));
		goto out;
	}
	if (vx_export_again(db, x.jsonl, again) != CTL_OK) {
		rc = ctl_fail("%s: cannot export the rows again", path);
		goto out;
	}
	if (vx_compare(path, in, again, &x) != 0)
		goto out;
	printf("%ld rows checked; every column matches the signed rows\n",
	    total);
	rc = CTL_OK;
out:
	sqlite3_free(e);
	sqlite3_finalize(ins);
	sqlite3_close(db);
	if (again != NULL)
		fclose(again);
	fclose(in);
	free(line);
	free(buf);
	free(x.unq);
	free(x.head_line);
	return rc;
}
