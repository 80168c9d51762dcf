/*
 * The questions auditors ask: list, show, export, stats, reconcile.
 * All of them read the views of sql/002-views.sql or the audit rows.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardlicctl.h"

static const char *
q_text(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return s != NULL ? (const char *)s : "-";
}

/* Normalize YYYYMMDD or YYYY-MM-DD into YYYY-MM-DD; NULL if neither. */
static const char *
q_day(const char *in, char out[11])
{
	size_t n = strlen(in), i;

	if (n == 8 && strspn(in, "0123456789") == 8) {
		snprintf(out, 11, "%.4s-%.2s-%.2s", in, in + 4, in + 6);
		return out;
	}
	if (n == 10 && in[4] == '-' && in[7] == '-') {
		for (i = 0; i < n; i++)
			if (i != 4 && i != 7 && (in[i] < '0' || in[i] > '9'))
				return NULL;
		memcpy(out, in, 11);
		return out;
	}
	return NULL;
}

static const char *const list_help =
"usage: cardlicctl list [--since DATE] [--until DATE] [--serial S]\n"
"                       [--model M] [--batch B] [--outcome O] [--station ID]\n"
"One line per license (a credit spent), per card that needed none, and per\n"
"insertion that failed before a credit was spent, oldest first.  DATE is\n"
"YYYY-MM-DD or YYYYMMDD (UTC day of the last change); --batch matches the\n"
"batch card's reader or ATR; O is generated, loaded, verified, rejected,\n"
"failed or skipped.  Exit 1 when nothing matches.\n";

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
	const char *since = NULL, *until = NULL, *serial = NULL, *model = NULL;
	const char *batch = NULL, *outcome = NULL, *station = NULL;
	char sql[2048], d1[11], d2[11];
	sqlite3_stmt *st;
	int ch, n = 0, i;

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
	if (since != NULL && (since = q_day(since, d1)) == NULL)
		return ctl_fail("list: --since wants YYYY-MM-DD or YYYYMMDD");
	if (until != NULL && (until = q_day(until, d2)) == NULL)
		return ctl_fail("list: --until wants YYYY-MM-DD or YYYYMMDD");
	if (outcome != NULL) {
		for (i = 0; outcomes[i] != NULL; i++)
			if (strcmp(outcome, outcomes[i]) == 0)
				break;
		if (outcomes[i] == NULL)
			return ctl_fail("list: --outcome is one of generated, "
			    "loaded, verified, rejected, failed, skipped");
	}
	snprintf(sql, sizeof(sql), "SELECT %s, station, serial_text, "
	    "model_text, state, start_date, end_date, batch_reader FROM "
	    "issuance WHERE (?1 IS NULL OR last_utc >= ?1) AND (?2 IS NULL OR "
	    "last_utc < date(?2, '+1 day')) AND (?3 IS NULL OR serial_text = "
	    "?3) AND (?4 IS NULL OR model_text = ?4) AND (?5 IS NULL OR "
	    "batch_reader = ?5 OR batch_atr = upper(?5)) AND (?6 IS NULL OR "
	    "state = ?6) AND (?7 IS NULL OR station = ?7) ORDER BY last_utc, "
	    "station", ctl_time(c, "last_utc"));
	if ((st = ctl_prepare(c, sql)) == NULL)
		return CTL_USAGE;
	sqlite3_bind_text(st, 1, since, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, until, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, model, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, batch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, outcome, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, station, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == 0)
			printf("%-20s  %-10s  %-16s  %-16s  %-9s  %-8s  %-8s  "
			    "%s\n", "TIME", "STATION", "SERIAL", "MODEL",
			    "OUTCOME", "START", "END", "BATCH");
		printf("%-20s  %-10s  %-16s  %-16s  %-9s  %-8s  %-8s  %s\n",
		    q_text(st, 0), q_text(st, 1), q_text(st, 2),
		    q_text(st, 3), q_text(st, 4), q_text(st, 5),
		    q_text(st, 6), q_text(st, 7));
	}
	sqlite3_finalize(st);
	return n > 0 ? CTL_OK : CTL_NOTHING;
}

static const char *const show_help =
"usage: cardlicctl show SERIAL\n"
"Every audit row of the card whose serial (trimmed of its padding) is\n"
"SERIAL, oldest first: time, station and row, reader, state, dates, status\n"
"words, PKCS#11 results, per-step timings and reason.  Exit 1 if none.\n";

int
cmd_show(struct ctl *c, int argc, char **argv)
{
	char sql[1024];
	sqlite3_stmt *st;
	int n = 0;

	if (argc != 2 || ctl_has_opt(argc, argv, "--help")) {
		if (argc == 2)
			fputs(show_help, stdout);
		return argc == 2 ? CTL_OK : ctl_usage(show_help);
	}
	snprintf(sql, sizeof(sql), "SELECT %s, station, seq, job, reader, "
	    "state, start_date, end_date, sw, ckr, nullif(hex(status), ''), timings, "
	    "reason, rtrim(CAST(model AS TEXT), ' '), license_seq FROM audit "
	    "WHERE rtrim(CAST(serial AS TEXT), ' ') = ?1 ORDER BY station, seq",
	    ctl_time(c, "utc"));
	if ((st = ctl_prepare(c, sql)) == NULL)
		return CTL_USAGE;
	sqlite3_bind_text(st, 1, argv[1], -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == 0)
			printf("card %s, model %s\n", argv[1], q_text(st, 13));
		printf("%s  %s #%s job %s  %s  %-9s", q_text(st, 0),
		    q_text(st, 1), q_text(st, 2), q_text(st, 3), q_text(st, 4),
		    q_text(st, 5));
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
		    argv[1]);
	return n > 0 ? CTL_OK : CTL_NOTHING;
}

/* The columns of an export, in this order, for every format. */
#define EXPORT_COLS \
	"station, seq, utc, job, reader, state, reason," \
	" rtrim(CAST(model AS TEXT), ' ') AS model," \
	" rtrim(CAST(serial AS TEXT), ' ') AS serial," \
	" hex(model) AS model_hex, hex(serial) AS serial_hex, start_date," \
	" end_date, license_seq, nullif(hex(license), '') AS license_hex," \
	" batch_reader," \
	" batch_atr, batch_count, sw, ckr, nullif(hex(status), '') AS status_hex," \
	" timings, hex(hash) AS hash"

/* RFC 4180: quote when needed, double the quotes, CRLF line ends. */
static void
csv_field(const unsigned char *s, int len, int last)
{
	int i, quote = 0;

	for (i = 0; i < len && !quote; i++)
		quote = s[i] == '"' || s[i] == ',' || s[i] == '\r' ||
		    s[i] == '\n';
	if (quote)
		putchar('"');
	for (i = 0; i < len; i++) {
		if (s[i] == '"')
			putchar('"');
		putchar(s[i]);
	}
	if (quote)
		putchar('"');
	fputs(last ? "\r\n" : ",", stdout);
}

static const char *const export_help =
"usage: cardlicctl export --format csv|json|jsonl\n"
"Every audit row, oldest first, streamed.  CSV follows RFC 4180 (quotes\n"
"doubled, CRLF).  JSON is built by SQLite's JSON functions: one array\n"
"(json) or one object per line (jsonl).  Model and serial come trimmed\n"
"and as the exact bytes in hex; the license, status and hash in hex.\n";

int
cmd_export(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *fmt = NULL;
	sqlite3_stmt *st;
	int ch, i, n, rc, cols;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': fmt = optarg; break;
		case 'h': fputs(export_help, stdout); return CTL_OK;
		default: return ctl_usage(export_help);
		}
	}
	if (fmt == NULL || optind != argc || (strcmp(fmt, "csv") != 0 &&
	    strcmp(fmt, "json") != 0 && strcmp(fmt, "jsonl") != 0))
		return ctl_usage(export_help);
	if (strcmp(fmt, "csv") == 0) {
		st = ctl_prepare(c, "SELECT " EXPORT_COLS " FROM audit ORDER "
		    "BY station, seq");
		if (st == NULL)
			return CTL_USAGE;
		cols = sqlite3_column_count(st);
		for (i = 0; i < cols; i++) {
			const char *name = sqlite3_column_name(st, i);

			csv_field((const unsigned char *)name,
			    (int)strlen(name), i == cols - 1);
		}
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			for (i = 0; i < cols; i++)
				csv_field(sqlite3_column_text(st, i),
				    sqlite3_column_bytes(st, i), i == cols - 1);
	} else {
		/* json_object per row: SQLite does the quoting and escapes. */
		st = ctl_prepare(c, "SELECT json_object('station', station, "
		    "'seq', seq, 'utc', utc, 'job', job, 'reader', reader, "
		    "'state', state, 'reason', reason, 'model', "
		    "rtrim(CAST(model AS TEXT), ' '), 'serial', "
		    "rtrim(CAST(serial AS TEXT), ' '), 'model_hex', hex(model), "
		    "'serial_hex', hex(serial), 'start_date', start_date, "
		    "'end_date', end_date, 'license_seq', license_seq, "
		    "'license_hex', nullif(hex(license), ''), 'batch_reader', batch_reader, "
		    "'batch_atr', batch_atr, 'batch_count', batch_count, 'sw', "
		    "sw, 'ckr', ckr, 'status_hex', nullif(hex(status), ''), 'timings', "
		    "json(timings), 'hash', hex(hash)) FROM audit ORDER BY "
		    "station, seq");
		if (st == NULL)
			return CTL_USAGE;
		if (strcmp(fmt, "json") == 0)
			fputs("[", stdout);
		for (n = 0; (rc = sqlite3_step(st)) == SQLITE_ROW; n++) {
			if (strcmp(fmt, "json") == 0)
				fputs(n == 0 ? "\n" : ",\n", stdout);
			fputs(q_text(st, 0), stdout);
			if (strcmp(fmt, "jsonl") == 0)
				putchar('\n');
		}
		if (strcmp(fmt, "json") == 0)
			fputs("\n]\n", stdout);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return ctl_fail("export: %s", sqlite3_errmsg(c->db));
	return CTL_OK;
}

static void
q_table(struct ctl *c, const char *title, const char *sql)
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

static const char *const stats_help =
"usage: cardlicctl stats\n"
"Counts per day (UTC), per batch card and per outcome, then the credits\n"
"spent against the licenses verified.\n";

int
cmd_stats(struct ctl *c, int argc, char **argv)
{
	sqlite3_stmt *st;
	int rc = CTL_OK;

	if (argc != 1) {
		if (ctl_has_opt(argc, argv, "--help")) {
			fputs(stats_help, stdout);
			return CTL_OK;
		}
		return ctl_usage(stats_help);
	}
	q_table(c, "per day", "SELECT substr(utc, 1, 10) AS day, "
	    "sum(state = 'generated') AS credits, sum(state = 'verified') AS "
	    "verified, sum(state = 'skipped') AS skipped, sum(state = "
	    "'rejected') AS rejected, sum(state = 'failed') AS failed FROM "
	    "audit GROUP BY day ORDER BY day");
	q_table(c, "per batch card", "SELECT station || ' ' || batch_reader "
	    "AS batch_card, sum(credits) AS credits, max(licenses_on_card) AS "
	    "on_card, batch_atr AS atr FROM batch_usage GROUP BY station, "
	    "batch_reader, batch_atr ORDER BY 1");
	q_table(c, "per outcome", "SELECT state AS outcome, count(*) AS count "
	    "FROM issuance GROUP BY state ORDER BY state");
	st = ctl_prepare(c, "SELECT (SELECT count(*) FROM audit WHERE state = "
	    "'generated'), (SELECT count(*) FROM issuance WHERE state = "
	    "'verified')");
	if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
		printf("credits spent: %lld, licenses verified: %lld\n",
		    sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
	else
		rc = CTL_USAGE;
	sqlite3_finalize(st);
	return rc;
}

static const char *const reconcile_help =
"usage: cardlicctl reconcile\n"
"For each batch card: credits spent against what became of them.  SPENT\n"
"counts the licenses generated, the credits in doubt nobody has decided on,\n"
"and those an admin resolved as spent; a batch card's own counter should\n"
"say the same.  Then every credit with no card to show for it is listed: a\n"
"license still pending (its card has not come back), and a credit in doubt\n"
"(decide with cardlicctl resolve).  The exit status is 1 while any is\n"
"listed.\n";

int
cmd_reconcile(struct ctl *c, int argc, char **argv)
{
	sqlite3_stmt *st;
	long flags = 0;

	if (argc != 1) {
		if (ctl_has_opt(argc, argv, "--help")) {
			fputs(reconcile_help, stdout);
			return CTL_OK;
		}
		return ctl_usage(reconcile_help);
	}
	st = ctl_prepare(c, "SELECT station, batch_reader, batch_atr, "
	    "sum(state IN ('generated', 'loaded', 'failed', 'verified', "
	    "'rejected')) + sum(state = 'in-doubt') + sum(state = 'resolved' "
	    "AND last_reason LIKE 'spent:%'), sum(state = 'verified'), "
	    "sum(state IN ('generated', 'loaded', 'failed')), "
	    "sum(state = 'rejected'), sum(state = 'in-doubt'), "
	    "sum(state = 'resolved' AND last_reason LIKE 'spent:%') FROM "
	    "issuance WHERE license_seq IS NOT NULL OR state IN ('in-doubt', "
	    "'resolved') GROUP BY station, batch_reader, batch_atr "
	    "ORDER BY 1, 2, 3");
	if (st == NULL)
		return CTL_USAGE;
	printf("%-10s  %-20s  %-28s  %5s  %8s  %7s  %8s  %8s  %4s\n",
	    "STATION", "BATCH READER", "BATCH ATR", "SPENT", "VERIFIED",
	    "PENDING", "REJECTED", "IN-DOUBT", "LOST");
	while (sqlite3_step(st) == SQLITE_ROW) {
		printf("%-10s  %-20s  %-28s  %5lld  %8lld  %7lld  %8lld  %8lld"
		    "  %4lld\n", q_text(st, 0), q_text(st, 1), q_text(st, 2),
		    sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
		    sqlite3_column_int64(st, 5), sqlite3_column_int64(st, 6),
		    sqlite3_column_int64(st, 7), sqlite3_column_int64(st, 8));
	}
	sqlite3_finalize(st);
	st = ctl_prepare(c, "SELECT station, license_seq, serial_text, "
	    "batch_reader, generated_utc FROM pending ORDER BY station, "
	    "license_seq");
	if (st == NULL)
		return CTL_USAGE;
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (flags++ == 0)
			printf("\ncredits with no card to show for them:\n");
		printf("  %s #%s: license for %s from %s (%s) still pending: "
		    "the card has not come back\n", q_text(st, 0),
		    q_text(st, 1), q_text(st, 2), q_text(st, 3),
		    q_text(st, 4));
	}
	sqlite3_finalize(st);
	st = ctl_prepare(c, "SELECT station, seq, serial_text, batch_reader, "
	    "reason FROM in_doubt WHERE resolved_seq IS NULL ORDER BY "
	    "station, seq");
	if (st == NULL)
		return CTL_USAGE;
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (flags++ == 0)
			printf("\ncredits with no card to show for them:\n");
		printf("  %s #%s: credit in doubt for card %s, batch card in "
		    "%s: %s\n    decide: cardlicctl resolve %s spent|unspent "
		    "REASON\n", q_text(st, 0), q_text(st, 1), q_text(st, 2),
		    q_text(st, 3), q_text(st, 4), q_text(st, 1));
	}
	sqlite3_finalize(st);
	if (flags == 0)
		printf("\nevery credit spent is accounted for\n");
	return flags == 0 ? CTL_OK : CTL_NOTHING;
}
