/*
 * The questions auditors ask: list, show, export, stats (reconcile is
 * ctl/reconcile.c).
 * All of them read the views of sql/002-views.sql or the audit rows.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardlicctl.h"
#include "../daemon/auditrow.h"

/* A column for a human: escaped (card bytes may be anything), "-" if NULL. */
static const char *
q_text(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	if (s == NULL)
		return "-";
	return ctl_esc(s, (size_t)sqlite3_column_bytes(st, i));
}

/* The same, padded to width columns. */
static void
q_put(sqlite3_stmt *st, int i, int width)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	if (s == NULL)
		ctl_put("-", 1, width);
	else
		ctl_put((const char *)s, (size_t)sqlite3_column_bytes(st, i),
		    width);
}

/*
 * Normalize YYYYMMDD or YYYY-MM-DD into YYYY-MM-DD; NULL unless it names
 * a day of the calendar (2026-02-30 does not).
 */
static const char *
q_day(const char *in, char out[11])
{
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30,
	    31, 30, 31 };
	size_t n = strlen(in), i;
	int y, m, d;

	if (n == 8 && strspn(in, "0123456789") == 8)
		snprintf(out, 11, "%.4s-%.2s-%.2s", in, in + 4, in + 6);
	else if (n == 10 && in[4] == '-' && in[7] == '-') {
		for (i = 0; i < n; i++)
			if (i != 4 && i != 7 && (in[i] < '0' || in[i] > '9'))
				return NULL;
		memcpy(out, in, 11);
	} else
		return NULL;
	y = atoi(out);
	m = atoi(out + 5);
	d = atoi(out + 8);
	if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] ||
	    (m == 2 && d == 29 && (y % 4 != 0 || (y % 100 == 0 &&
	    y % 400 != 0))))
		return NULL;
	return out;
}

/*
 * An argument naming card bytes, as list and show print them (\xNN for
 * what a terminal cannot show), bound as those bytes.  *buf is freed by
 * the caller.
 */
static size_t
q_bind_bytes(sqlite3_stmt *st, int i, const char *arg, char **buf)
{
	size_t n;

	*buf = NULL;
	if (arg == NULL) {
		sqlite3_bind_null(st, i);
		return 0;
	}
	/* Not NULL: that would match every card. */
	if ((*buf = malloc(strlen(arg) + 1)) == NULL) {
		ctl_fail("out of memory");
		exit(CTL_USAGE);
	}
	n = ctl_unescape(arg, *buf);
	sqlite3_bind_text(st, i, *buf, (int)n, SQLITE_STATIC);
	return n;
}

/*
 * A serial's text S: serial_text = S, which audit_serial_text (migration
 * 6) answers, since it indexes serial_text's own expression; on an older
 * database, without the index, the same term scans.
 */
#define Q_SERIAL(p)	"serial_text = " p

/* 1 when the database has the schema object name (a newer migration). */
static int
q_has(struct ctl *c, const char *name)
{
	sqlite3_stmt *st;
	int rc = 0;

	if (sqlite3_prepare_v2(c->db, "SELECT 1 FROM sqlite_schema WHERE name "
	    "= ?1", -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return rc;
}

/*
 * list --since/--until through issuance_rows (migration 6): the rows whose
 * UTC day is in [since, until] (found through audit_utc) bound the row_seq
 * of every line whose last change is in it: that last change is one of
 * those rows, and its seq or its license_seq is the line's row_seq.  The
 * bound is pushed into each branch of the view as a range of rowids.
 * 0 with lo..hi, 1 when no row is in the days (nothing to list), -1.
 */
static int
q_row_bounds(struct ctl *c, const char *since, const char *until,
    long long *lo, long long *hi)
{
	sqlite3_stmt *st;
	char sql[400];
	int rc = -1;

	snprintf(sql, sizeof(sql), "SELECT min(seq), max(seq), "
	    "min(license_seq), max(license_seq) FROM audit WHERE %s%s%s",
	    since != NULL ? "utc >= ?1" : "",
	    since != NULL && until != NULL ? " AND " : "",
	    until != NULL ? "utc < date(?2, '+1 day')" : "");
	if ((st = ctl_prepare(c, sql)) == NULL)
		return -1;
	sqlite3_bind_text(st, 1, since, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, until, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		rc = 1;
		if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
			*lo = sqlite3_column_int64(st, 0);
			*hi = sqlite3_column_int64(st, 1);
			if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
				if (sqlite3_column_int64(st, 2) < *lo)
					*lo = sqlite3_column_int64(st, 2);
				if (sqlite3_column_int64(st, 3) > *hi)
					*hi = sqlite3_column_int64(st, 3);
			}
			rc = 0;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static const char *const list_help =
"usage: cardlicctl list [--since DATE] [--until DATE] [--serial S]\n"
"                       [--model M] [--batch B] [--outcome O] [--station ID]\n"
"One line per license (a credit spent), per card that needed none, and per\n"
"insertion that failed before a credit was spent, oldest first.  DATE is\n"
"YYYY-MM-DD or YYYYMMDD (UTC day of the last change); --batch matches the\n"
"batch card's reader or ATR; O is generated, loaded, verified, rejected,\n"
"failed or skipped.  Bytes that cannot be shown are printed as \\xNN (and\n"
"a backslash as \\\\); S, M, B and ID may be given in that form.  Exit 1\n"
"when nothing matches.\n";

int
cmd_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "serial", required_argument, NULL, 'n' },
		{ "model", required_argument, NULL, 'm' },
		{ "batch", required_argument, NULL, 'b' },
		{ "outcome", required_argument, NULL, 'o' },
		{ "station", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char *const outcomes[] = { "generated", "loaded",
	    "verified", "rejected", "failed", "skipped", NULL };
	static const int widths[7] = { 20, 10, 16, 16, 9, 8, 8 };
	const char *since = NULL, *until = NULL, *serial = NULL, *model = NULL;
	const char *batch = NULL, *outcome = NULL, *station = NULL;
	char sql[2048], d1[11], d2[11], *b_serial, *b_model, *b_batch;
	char *b_station;
	sqlite3_stmt *st;
	long long lo = 0, hi = 0;
	int ch, n = 0, i, rows, bounded = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's': since = optarg; break;
		case 'u': until = optarg; break;
		case 'n': serial = optarg; break;
		case 'm': model = optarg; break;
		case 'b': batch = optarg; break;
		case 'o': outcome = optarg; break;
		case 't': station = optarg; break;
		case 'h': fputs(list_help, stdout); return CTL_OK;
		default: return ctl_usage(list_help);
		}
	}
	if (optind != argc)
		return ctl_usage(list_help);
	if (since != NULL && q_day(since, d1) == NULL)
		return ctl_fail("list: --since %s: not a date (want a real "
		    "day as YYYY-MM-DD or YYYYMMDD)", ctl_esc(since,
		    strlen(since)));
	if (until != NULL && q_day(until, d2) == NULL)
		return ctl_fail("list: --until %s: not a date (want a real "
		    "day as YYYY-MM-DD or YYYYMMDD)", ctl_esc(until,
		    strlen(until)));
	if (outcome != NULL) {
		for (i = 0; outcomes[i] != NULL; i++)
			if (strcmp(outcome, outcomes[i]) == 0)
				break;
		if (outcomes[i] == NULL)
			return ctl_fail("list: --outcome is one of generated, "
			    "loaded, verified, rejected, failed, skipped");
	}
	/*
	 * Only the filters given, each a plain term that SQLite can push
	 * into the view's branches and answer from an index.
	 */
	if ((rows = q_has(c, "issuance_rows")) && (since != NULL ||
	    until != NULL)) {
		if ((i = q_row_bounds(c, since != NULL ? d1 : NULL,
		    until != NULL ? d2 : NULL, &lo, &hi)) < 0)
			return CTL_USAGE;
		if (i > 0)
			return CTL_NOTHING;
		bounded = 1;
	}
	snprintf(sql, sizeof(sql), "SELECT %s, station, serial_text, "
	    "model_text, state, start_date, end_date, batch_reader FROM %s "
	    "WHERE 1%s%s%s%s%s%s%s%s ORDER BY last_utc, station",
	    ctl_time(c, "last_utc"), rows ? "issuance_rows" : "issuance",
	    since != NULL ? " AND last_utc >= ?1" : "",
	    until != NULL ? " AND last_utc < date(?2, '+1 day')" : "",
	    serial != NULL ? " AND " Q_SERIAL("?3") : "",
	    model != NULL ? " AND model_text = ?4" : "",
	    batch != NULL ? " AND (batch_reader = ?5 OR batch_atr = "
	    "upper(?5))" : "",
	    outcome != NULL ? " AND state = ?6" : "",
	    station != NULL ? " AND station = ?7" : "",
	    bounded ? " AND row_seq BETWEEN ?8 AND ?9" : "");
	if ((st = ctl_prepare(c, sql)) == NULL)
		return CTL_USAGE;
	sqlite3_bind_int64(st, 8, lo);
	sqlite3_bind_int64(st, 9, hi);
	sqlite3_bind_text(st, 1, since != NULL ? d1 : NULL, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, until != NULL ? d2 : NULL, -1, SQLITE_STATIC);
	q_bind_bytes(st, 3, serial, &b_serial);
	q_bind_bytes(st, 4, model, &b_model);
	q_bind_bytes(st, 5, batch, &b_batch);
	sqlite3_bind_text(st, 6, outcome, -1, SQLITE_STATIC);
	q_bind_bytes(st, 7, station, &b_station);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == 0)
			printf("%-20s  %-10s  %-16s  %-16s  %-9s  %-8s  %-8s  "
			    "%s\n", "TIME", "STATION", "SERIAL", "MODEL",
			    "OUTCOME", "START", "END", "BATCH");
		for (i = 0; i < 7; i++) {
			q_put(st, i, widths[i]);
			fputs("  ", stdout);
		}
		q_put(st, 7, 0);
		putchar('\n');
	}
	sqlite3_finalize(st);
	free(b_serial);
	free(b_model);
	free(b_batch);
	free(b_station);
	return n > 0 ? CTL_OK : CTL_NOTHING;
}

static const char *const show_help =
"usage: cardlicctl show SERIAL\n"
"Every audit row of the card whose serial (trimmed of its padding) is\n"
"SERIAL, oldest first: time, station and row, reader, state, dates, status\n"
"words, PKCS#11 results, per-step timings and reason.  SERIAL may be given\n"
"as list prints it (\\xNN for bytes that cannot be shown).  Exit 1 if\n"
"none.\n";

int
cmd_show(struct ctl *c, int argc, char **argv)
{
	char sql[1024], *want;
	sqlite3_stmt *st;
	size_t len;
	int n = 0;

	if (ctl_has_opt(argc, argv, "--help")) {
		fputs(show_help, stdout);
		return CTL_OK;
	}
	if (argc != 2)
		return ctl_usage(show_help);
	snprintf(sql, sizeof(sql), "SELECT %s, station, seq, job, reader, "
	    "state, start_date, end_date, sw, ckr, nullif(hex(status), ''), "
	    "timings, reason, model_text, license_seq, serial_text FROM "
	    "audit_text WHERE " Q_SERIAL("?1") " ORDER BY station, seq",
	    ctl_time(c, "utc"));
	if ((st = ctl_prepare(c, sql)) == NULL)
		return CTL_USAGE;
	len = q_bind_bytes(st, 1, argv[1], &want);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == 0)
			printf("card %s, model %s\n", q_text(st, 15),
			    q_text(st, 13));
		printf("%s  %s #%s job %s  %s  ", q_text(st, 0),
		    q_text(st, 1), q_text(st, 2), q_text(st, 3), q_text(st, 4));
		q_put(st, 5, 9);
		if (sqlite3_column_type(st, 6) != SQLITE_NULL)
			printf("  %s..%s", q_text(st, 6), q_text(st, 7));
		if (sqlite3_column_type(st, 14) != SQLITE_NULL)
			printf("  license #%s", q_text(st, 14));
		if (sqlite3_column_type(st, 8) != SQLITE_NULL)
			printf("  sw %s", q_text(st, 8));
		if (sqlite3_column_type(st, 9) != SQLITE_NULL)
			printf("  %s", q_text(st, 9));
		if (sqlite3_column_type(st, 10) != SQLITE_NULL)
			printf("  status %s", q_text(st, 10));
		printf("\n    %s\n    ms %s\n", q_text(st, 12), q_text(st, 11));
	}
	sqlite3_finalize(st);
	if (n == 0)
		fprintf(stderr, "cardlicctl: no card with serial \"%s\"\n",
		    want != NULL ? ctl_esc(want, len) : "?");
	free(want);
	return n > 0 ? CTL_OK : CTL_NOTHING;
}

/*
 * The columns of an export, for every format: auditrow.h says which and
 * in what order, over the view audit_text (its model_text and serial_text
 * are the card's text, trimmed as everywhere else).
 */
static void
q_export_sql(char *sql, size_t len, int sig, const char *order)
{
	const struct auditrow_col *c;
	size_t o;
	int at, i;

	o = (size_t)snprintf(sql, len, "SELECT ");
	for (at = 0; at < AUDITROW_EXPORTS; at++)
		for (i = 0; i < AUDITROW_NCOLS && o < len; i++) {
			c = &auditrow_cols[i];
			if (i == AUDITROW_sig && !sig)
				continue;
			if (c->export_at == at)
				o += (size_t)snprintf(sql + o, len - o, "%s, ",
				    c->export != NULL ? c->export : c->name);
			else if (c->hex_at == at)
				o += (size_t)snprintf(sql + o, len - o,
				    "hex(%s) AS %s_hex, ", c->name, c->name);
		}
	/*
	 * --signed: what verify --export needs to recompute each hash with
	 * no database.  Text is escaped for CSV and JSON, so every hashed
	 * text column also comes as its exact bytes (NAME_hex, unless it
	 * has one already), and types gives each hashed column's SQLite
	 * type, one letter each (i, t, b, n for NULL), in the hash's order.
	 */
	for (i = 0; sig && i < AUDITROW_HASHED && o < len; i++) {
		c = &auditrow_cols[i];
		if (c->sqlite_type == SQLITE_TEXT && c->hex_at < 0)
			o += (size_t)snprintf(sql + o, len - o, "hex(%s) AS "
			    "%s_hex, ", c->name, c->name);
	}
	for (i = 0; sig && i < AUDITROW_HASHED && o < len; i++)
		o += (size_t)snprintf(sql + o, len - o, "%ssubstr(typeof(%s), "
		    "1, 1)%s", i == 0 ? "" : "|| ", auditrow_cols[i].name,
		    i == AUDITROW_HASHED - 1 ? " AS types, " : " ");
	/* The last column says whether timings is JSON, for JSON's sake. */
	if (o < len)
		snprintf(sql + o, len - o, "json_valid(timings) FROM "
		    "audit_text ORDER BY %s", order);
}

/* One value of a one-row query (the text of column 0), or "". */
static void
q_value(struct ctl *c, const char *sql, char *out, size_t len)
{
	sqlite3_stmt *st;
	const unsigned char *t;

	out[0] = '\0';
	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
		return;
	if (sqlite3_step(st) == SQLITE_ROW &&
	    (t = sqlite3_column_text(st, 0)) != NULL)
		snprintf(out, len, "%s", (const char *)t);
	sqlite3_finalize(st);
}

/*
 * The order of an export, station then seq: on a station's own database
 * whose rows all carry one station id, that is the rowid's order, read
 * straight from the table; otherwise SQLite sorts.  min() and max() each
 * read one end of audit_job.
 */
static const char *
q_export_order(struct ctl *c)
{
	char one[8];

	if (q_has(c, "merges"))
		return "station, seq";
	q_value(c, "SELECT (SELECT min(station) FROM audit) IS (SELECT "
	    "max(station) FROM audit)", one, sizeof(one));
	return strcmp(one, "1") == 0 ? "seq" : "station, seq";
}

/*
 * One CSV field, one record per line whatever the bytes: text is escaped
 * as for a terminal (no CR or LF is left to quote), then quoted as RFC
 * 4180 says when it holds a quote or a comma.  Text that a spreadsheet
 * would run as a formula (= + - @ first) gets a leading apostrophe; the
 * exact card bytes are in the _hex columns.
 */
static void
csv_field(sqlite3_stmt *st, int i, int last)
{
	const char *s = "";
	int quote;

	if (sqlite3_column_type(st, i) != SQLITE_NULL)
		s = ctl_esc(sqlite3_column_text(st, i),
		    (size_t)sqlite3_column_bytes(st, i));
	quote = strpbrk(s, "\",") != NULL;
	if (quote)
		putchar('"');
	if (sqlite3_column_type(st, i) == SQLITE_TEXT && s[0] != '\0' &&
	    strchr("=+-@", s[0]) != NULL)
		putchar('\'');
	/* Most fields have no quote to double: one write (issue 12). */
	if (!quote || strchr(s, '"') == NULL)
		fputs(s, stdout);
	else
		for (; *s != '\0'; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
	if (quote)
		putchar('"');
	fputs(last ? "\r\n" : ",", stdout);
}

/* One JSON value: numbers as numbers, text as valid UTF-8 strings. */
static void
json_value(sqlite3_stmt *st, int i, int raw_ok)
{
	const unsigned char *s;
	size_t n, k;

	switch (sqlite3_column_type(st, i)) {
	case SQLITE_NULL:
		fputs("null", stdout);
		return;
	case SQLITE_INTEGER:
		printf("%lld", sqlite3_column_int64(st, i));
		return;
	}
	s = sqlite3_column_text(st, i);
	n = (size_t)sqlite3_column_bytes(st, i);
	/* The timings are JSON already: as they are if plainly so. */
	for (k = 0; raw_ok && k < n; k++)
		if (s[k] < 0x20 || s[k] > 0x7E)
			raw_ok = 0;
	if (raw_ok)
		fwrite(s, 1, n, stdout);
	else
		ctl_json_str(s, n);
}

static const char *const export_help =
"usage: cardlicctl export --format csv|json|jsonl [--signed]\n"
"Every audit row, oldest first, streamed.  CSV follows RFC 4180 (quotes\n"
"doubled, CRLF), one record per line: text is escaped as list prints it\n"
"(\\xNN), and text starting with = + - @ gets a leading '.  JSON is one\n"
"array (json) or one object per line (jsonl), valid UTF-8 whatever the\n"
"card said: bytes that are not UTF-8 become U+FFFD.  Model and serial come\n"
"trimmed and as their exact bytes in hex; the license, status and hash in\n"
"hex.  --signed adds what cardlicctl verify --export needs to check the\n"
"file with no database: each row's signature (sig), every text column's\n"
"exact bytes (NAME_hex) and the columns' types; the key rows' reason\n"
"holds the station's public keys.\n";

int
cmd_export(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "signed", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *fmt = NULL, *name;
	char sql[4096];
	sqlite3_stmt *st;
	int ch, i, n, rc, cols, csv, jsonl, sig = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': fmt = optarg; break;
		case 's': sig = 1; break;
		case 'h': fputs(export_help, stdout); return CTL_OK;
		default: return ctl_usage(export_help);
		}
	}
	if (fmt == NULL || optind != argc || (strcmp(fmt, "csv") != 0 &&
	    strcmp(fmt, "json") != 0 && strcmp(fmt, "jsonl") != 0))
		return ctl_usage(export_help);
	csv = strcmp(fmt, "csv") == 0;
	jsonl = strcmp(fmt, "jsonl") == 0;
	q_export_sql(sql, sizeof(sql), sig, q_export_order(c));
	if ((st = ctl_prepare(c, sql)) == NULL)
		return CTL_USAGE;
	cols = sqlite3_column_count(st) - 1;
	if (csv)
		for (i = 0; i < cols; i++) {
			fputs(sqlite3_column_name(st, i), stdout);
			fputs(i == cols - 1 ? "\r\n" : ",", stdout);
		}
	if (!csv && !jsonl)
		fputs("[", stdout);
	for (n = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; n++) {
		if (csv) {
			for (i = 0; i < cols; i++)
				csv_field(st, i, i == cols - 1);
			continue;
		}
		if (!jsonl)
			fputs(n == 0 ? "\n" : ",\n", stdout);
		putchar('{');
		for (i = 0; i < cols; i++) {
			name = sqlite3_column_name(st, i);
			if (i > 0)
				putchar(',');
			ctl_json_str(name, strlen(name));
			putchar(':');
			json_value(st, i, strcmp(name, "timings") == 0 &&
			    sqlite3_column_int(st, cols) == 1);
		}
		putchar('}');
		if (jsonl)
			putchar('\n');
	}
	if (!csv && !jsonl)
		fputs("\n]\n", stdout);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return ctl_fail("export: %s", sqlite3_errmsg(c->db));
	return CTL_OK;
}

static void
q_table(struct ctl *c, const char *title, const char *sql, const char *key,
    long long *val)
{
	sqlite3_stmt *st = ctl_prepare(c, sql);
	int i, cols, n = 0;

	if (st == NULL)
		return;
	printf("%s\n", title);
	cols = sqlite3_column_count(st);
	for (i = 0; i < cols; i++)
		printf("  %-*s", i == 0 ? 28 : 10, sqlite3_column_name(st, i));
	putchar('\n');
	while (sqlite3_step(st) == SQLITE_ROW) {
		/* The count on the row whose first column is key. */
		if (key != NULL && ctl_col_is(st, 0, key))
			*val = sqlite3_column_int64(st, 1);
		for (i = 0; i < cols; i++)
			printf("  %-*s", i == 0 ? 28 : 10, q_text(st, i));
		putchar('\n');
		n++;
	}
	if (n == 0)
		printf("  (none)\n");
	putchar('\n');
	sqlite3_finalize(st);
}

/* One line of q_days, as q_table prints it. */
static void
q_day_line(const char *day, size_t len, const long long n[5])
{
	char num[24];
	int i;

	printf("  %-28s", ctl_esc(day, len));
	for (i = 0; i < 5; i++) {
		snprintf(num, sizeof(num), "%lld", n[i]);
		printf("  %-10s", num);
	}
	putchar('\n');
}

/*
 * stats per day, as q_table printed "SELECT substr(utc, 1, 10) AS day,
 * sum(state = 'generated') ... GROUP BY day ORDER BY day": the rows in
 * utc's order through audit_utc (migration 6), one day after the other,
 * counted as they stream by, with no sort of the whole table.
 */
static int
q_days(struct ctl *c)
{
	static const char *const states[5] = { "generated", "verified",
	    "skipped", "rejected", "failed" };
	sqlite3_stmt *st;
	const char *s;
	/* Ten characters of UTF-8: at most 40 bytes. */
	char day[48] = "";
	const void *d;
	size_t dlen = 0, len;
	long long n[5] = { 0, 0, 0, 0, 0 };
	int i, rc, lines = 0;

	if ((st = ctl_prepare(c, "SELECT substr(utc, 1, 10), state FROM audit "
	    "ORDER BY utc")) == NULL)
		return -1;
	printf("per day\n  %-28s  %-10s  %-10s  %-10s  %-10s  %-10s\n", "day",
	    "credits", "verified", "skipped", "rejected", "failed");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		d = sqlite3_column_text(st, 0);
		len = (size_t)sqlite3_column_bytes(st, 0);
		if (len > sizeof(day))
			len = sizeof(day);
		if (lines == 0 || len != dlen || memcmp(d, day, len) != 0) {
			if (lines++ > 0)
				q_day_line(day, dlen, n);
			memcpy(day, d, len);
			dlen = len;
			memset(n, 0, sizeof(n));
		}
		/* The state's exact bytes, read once for the five. */
		s = sqlite3_column_blob(st, 1);
		len = (size_t)sqlite3_column_bytes(st, 1);
		for (i = 0; s != NULL && i < 5; i++)
			if (strlen(states[i]) == len &&
			    memcmp(s, states[i], len) == 0)
				n[i]++;
	}
	if (lines > 0)
		q_day_line(day, dlen, n);
	else
		printf("  (none)\n");
	putchar('\n');
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		ctl_fail("stats: %s", sqlite3_errmsg(c->db));
	return rc == SQLITE_DONE ? 0 : -1;
}

static const char *const stats_help =
"usage: cardlicctl stats\n"
"Counts per day (UTC), per batch card and per outcome, then the credits\n"
"spent against the licenses verified.\n";

int
cmd_stats(struct ctl *c, int argc, char **argv)
{
	sqlite3_stmt *st;
	long long verified = 0;
	int rc = CTL_OK;

	if (argc != 1) {
		if (ctl_has_opt(argc, argv, "--help")) {
			fputs(stats_help, stdout);
			return CTL_OK;
		}
		return ctl_usage(stats_help);
	}
	if (!q_has(c, "issuance_rows")) {
		q_table(c, "per day", "SELECT substr(utc, 1, 10) AS day, "
		    "sum(state = 'generated') AS credits, sum(state = "
		    "'verified') AS verified, sum(state = 'skipped') AS "
		    "skipped, sum(state = 'rejected') AS rejected, sum(state = "
		    "'failed') AS failed FROM audit GROUP BY day ORDER BY day",
		    NULL, NULL);
		/* An older database: its views, as before migration 6. */
		q_table(c, "per batch card", "SELECT station || ' ' || "
		    "batch_reader AS batch_card, sum(credits) AS credits, "
		    "max(licenses_on_card) AS on_card, batch_atr AS atr FROM "
		    "batch_usage GROUP BY station, batch_reader, batch_atr "
		    "ORDER BY 1", NULL, NULL);
		q_table(c, "per outcome", "SELECT state AS outcome, count(*) AS "
		    "count FROM issuance GROUP BY state ORDER BY state", NULL,
		    NULL);
		st = ctl_prepare(c, "SELECT (SELECT count(*) FROM audit WHERE "
		    "state = 'generated'), (SELECT count(*) FROM issuance WHERE "
		    "state = 'verified')");
		if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
			printf("credits spent: %lld, licenses verified: %lld\n",
			    sqlite3_column_int64(st, 0),
			    sqlite3_column_int64(st, 1));
		else
			rc = CTL_USAGE;
		sqlite3_finalize(st);
		return rc;
	}
	if (q_days(c) != 0)
		return CTL_USAGE;
	/*
	 * batch_usage summed over its days is the count and the highest
	 * batch_count of each batch card's `generated` rows (audit_batch).
	 */
	q_table(c, "per batch card", "SELECT station || ' ' || batch_reader AS "
	    "batch_card, count(*) AS credits, max(batch_count) AS on_card, "
	    "batch_atr AS atr FROM audit WHERE state = 'generated' GROUP BY "
	    "station, batch_reader, batch_atr ORDER BY 1", NULL, NULL);
	/*
	 * issuance's outcomes: a license's is the state of its last row,
	 * read from audit_license alone (the bare column of max() is the
	 * max row's), or `generated`; the other branches are the view's,
	 * through audit_state.  The verified count comes with them.
	 */
	q_table(c, "per outcome", "SELECT state AS outcome, count(*) AS count "
	    "FROM (SELECT coalesce((SELECT s FROM (SELECT x.state AS s, "
	    "max(x.seq) FROM audit x WHERE x.license_seq = g.seq AND "
	    "x.station = g.station)), 'generated') AS state FROM audit g "
	    "WHERE g.state = 'generated' UNION ALL SELECT state FROM "
	    "issuance_other) GROUP BY state ORDER BY state", "verified",
	    &verified);
	st = ctl_prepare(c, "SELECT count(*) FROM audit WHERE state = "
	    "'generated'");
	if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
		printf("credits spent: %lld, licenses verified: %lld\n",
		    sqlite3_column_int64(st, 0), verified);
	else
		rc = CTL_USAGE;
	sqlite3_finalize(st);
	return rc;
}
