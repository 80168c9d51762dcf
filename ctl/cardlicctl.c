/*
 * cardlicctl: query, export, verify, reconcile and merge cardlicd's audit
 * databases, follow the line live, and ask the daemon for its state.
 * Databases are opened read-only (except merge's output): in WAL mode a
 * reader never blocks the daemon's writes.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "cardlicctl.h"
#include "../daemon/version.h"

static char	ctl_db_buf[4096];
static char	ctl_station_buf[64];	/* [station] id, for keygen --rotate */
static char	ctl_control_buf[108];

int
ctl_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cardlicctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CTL_USAGE;
}

static const char *const ctl_help =
"usage: cardlicctl [-d DB] [-c CONF] [--utc | --local] COMMAND [ARGS]\n"
"       cardlicctl --help | --version\n"
"\n"
"  list [--since DATE] [--until DATE] [--serial S] [--model M]\n"
"       [--batch B] [--outcome O] [--station ID]\n"
"                        one line per license, or per card that needed\n"
"                        none or failed before a credit was spent\n"
"  show SERIAL           the whole history of one card\n"
"  export --format csv|json|jsonl [--signed]\n"
"                        every audit row, streamed\n"
"  stats                 per day, per batch card, per outcome\n"
"  verify [--key [STATION=]PUB]... [--head HASH]\n"
"                        walk the hash chain, the sequence numbers and\n"
"                        the signatures\n"
"  verify --export FILE [--key PUB]...   check an export --signed file\n"
"  verify [--key PUB]... --checkpoints FILE|journal... [--station ID]\n"
"                        also against cardlicd's signed checkpoints\n"
"  keygen PRIV PUB       make the station's signing key (Ed25519)\n"
"  keygen --rotate OLDPRIV NEWPRIV NEWPUB   a new key, endorsed by the old\n"
"  pubkey                the station's public key, as PEM\n"
"  reconcile             credits spent against cards licensed, per batch\n"
"  resolve SEQ spent|unspent REASON   decide on a credit in doubt (admins)\n"
"  batch-count READER N REASON   record a batch card's counter (admins)\n"
"  watch                 follow new cards live\n"
"  status [--json]       the running daemon's state\n"
"  merge OUT.db IN.db... consolidate several stations' databases\n"
"  backup FILE           a consistent copy of the database, verified\n"
"\n"
"  -d DB      the database (default: [station] database of the\n"
"             configuration, else " CTL_DB_DEFAULT ")\n"
"  -c CONF    the daemon's configuration (default " CTL_CONF_DEFAULT ")\n"
"  --utc      times in UTC (default)\n"
"  --local    times in the local zone\n"
"  --version  print the version\n"
"\n"
"Exit status: 0 found or passed, 1 found nothing or check failed,\n"
"2 usage or I/O error.  COMMAND --help describes each command.\n";

/*
 * One UTF-8 sequence at p: its length (1 to 4) and code point, or 0 when
 * the bytes are not valid UTF-8 (overlong forms and surrogates included).
 */
static size_t
ctl_utf8(const unsigned char *p, size_t n, uint32_t *cp)
{
	static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t len, i;
	uint32_t c;

	if (n == 0)
		return 0;
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		len = 2;
		c = p[0] & 0x1F;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		len = 3;
		c = p[0] & 0x0F;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		len = 4;
		c = p[0] & 0x07;
	} else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3F);
	}
	if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

/*
 * Code points that a terminal may act on although they are valid UTF-8:
 * C1 controls (U+009B is CSI on some terminals), line and paragraph
 * separators, and the invisible and bidirectional formatting marks that
 * can make one serial look like another.
 */
static int
ctl_invisible(uint32_t c)
{
	return c < 0xA0 || c == 0x061C || (c >= 0x200B && c <= 0x200F) ||
	    (c >= 0x2028 && c <= 0x202E) || (c >= 0x2060 && c <= 0x206F) ||
	    c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || c == 0xFFFE ||
	    c == 0xFFFF || (c >= 0xE0000 && c <= 0xE007F);
}

/*
 * Text for a human, from bytes that may come from a card: printable ASCII
 * and printable UTF-8 as they are, a backslash as \\, and every other
 * byte (controls, DEL, C1, invalid UTF-8, NUL) as \xNN.  Nothing in the
 * result can move the cursor or end a line, and ctl_unescape takes it
 * back to the bytes.  The result lives until 16 more calls.
 */
const char *
ctl_esc(const void *v, size_t n)
{
	static struct { char *p; size_t cap; } buf[16];
	static int k;
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = v;
	size_t i, o = 0, len, j;
	uint32_t cp;
	char *out;

	k = (k + 1) % 16;
	if (buf[k].cap < 4 * n + 1) {
		if ((out = realloc(buf[k].p, 4 * n + 1)) == NULL)
			return "(out of memory)";
		buf[k].p = out;
		buf[k].cap = 4 * n + 1;
	}
	out = buf[k].p;
	for (i = 0; i < n; i += len) {
		/*
		 * A run of plain ASCII, most of any text, in one copy: export
		 * spent a third of its time here a character at a time.
		 */
		for (len = 0; i + len < n && s[i + len] >= 0x20 &&
		    s[i + len] < 0x7F && s[i + len] != '\\'; len++)
			;
		if (len > 0) {
			memcpy(out + o, s + i, len);
			o += len;
			continue;
		}
		len = ctl_utf8(s + i, n - i, &cp);
		if (len == 0)
			len = 1;
		else if (cp == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
			continue;
		} else if ((cp >= 0x20 && cp < 0x7F) || !ctl_invisible(cp)) {
			memcpy(out + o, s + i, len);
			o += len;
			continue;
		}
		for (j = i; j < i + len; j++) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[s[j] >> 4];
			out[o++] = hex[s[j] & 0x0F];
		}
	}
	out[o] = '\0';
	return out;
}

/* s, escaped, padded with spaces to width columns (one per character). */
void
ctl_put(const char *s, size_t n, int width)
{
	const char *e = ctl_esc(s, n);
	int cols = 0;

	fputs(e, stdout);
	for (; *e != '\0'; e++)
		cols += ((unsigned char)*e & 0xC0) != 0x80;
	for (; cols < width; cols++)
		putchar(' ');
}

/*
 * The bytes that ctl_esc shows: \xNN and \\ are undone, anything else
 * is taken as typed.  out holds strlen(in) + 1; returns the length.
 */
size_t
ctl_unescape(const char *in, char *out)
{
	size_t o = 0;
	unsigned int b;

	while (*in != '\0') {
		if (in[0] == '\\' && in[1] == '\\') {
			out[o++] = '\\';
			in += 2;
		} else if (in[0] == '\\' && in[1] == 'x' &&
		    isxdigit((unsigned char)in[2]) &&
		    isxdigit((unsigned char)in[3]) &&
		    sscanf(in + 2, "%2x", &b) == 1) {
			out[o++] = (char)b;
			in += 4;
		} else
			out[o++] = *in++;
	}
	out[o] = '\0';
	return o;
}

/*
 * A JSON string that is valid UTF-8 whatever the bytes: controls and the
 * code points that ctl_esc would not show as \uXXXX (the same text, but
 * safe to print on a terminal, and U+2028 safe for JavaScript), and each
 * byte that is not UTF-8 as U+FFFD (the exact bytes of a BLOB go out in
 * hex beside).
 */
void
ctl_json_str(const void *v, size_t n)
{
	const unsigned char *s = v;
	size_t i, len;
	uint32_t cp;

	putchar('"');
	for (i = 0; i < n; i += len) {
		/* A run of plain ASCII in one write (export, issue 12). */
		for (len = 0; i + len < n && s[i + len] >= 0x20 &&
		    s[i + len] < 0x7F && s[i + len] != '"' &&
		    s[i + len] != '\\'; len++)
			;
		if (len > 0) {
			fwrite(s + i, 1, len, stdout);
			continue;
		}
		if ((len = ctl_utf8(s + i, n - i, &cp)) == 0) {
			fputs("\\ufffd", stdout);
			len = 1;
		} else if (cp == '"' || cp == '\\') {
			putchar('\\');
			putchar((int)cp);
		} else if (cp == '\n')
			fputs("\\n", stdout);
		else if (cp == '\t')
			fputs("\\t", stdout);
		else if (cp == '\r')
			fputs("\\r", stdout);
		else if (cp < 0x20 || (cp >= 0x7F && ctl_invisible(cp))) {
			if (cp > 0xFFFF)
				printf("\\u%04x\\u%04x", (unsigned int)(0xD800 +
				    ((cp - 0x10000) >> 10)), (unsigned int)
				    (0xDC00 + ((cp - 0x10000) & 0x3FF)));
			else
				printf("\\u%04x", (unsigned int)cp);
		} else
			fwrite(s + i, 1, len, stdout);
	}
	putchar('"');
}

/*
 * 1 when column i of st is the text want, byte for byte: a value read
 * from the file is never cut at a NUL byte that it holds.
 */
int
ctl_col_is(sqlite3_stmt *st, int i, const char *want)
{
	const void *p = sqlite3_column_blob(st, i);
	size_t n = strlen(want);

	return sqlite3_column_type(st, i) == SQLITE_TEXT &&
	    (size_t)sqlite3_column_bytes(st, i) == n &&
	    (n == 0 || memcmp(p, want, n) == 0);
}

int
ctl_usage(const char *cmd_help)
{
	fputs(cmd_help != NULL ? cmd_help : ctl_help, stderr);
	return CTL_USAGE;
}

int
ctl_has_opt(int argc, char **argv, const char *opt)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], opt) == 0)
			return 1;
	return 0;
}

/* Only [station] database and control matter here; the rest is the daemon's. */
static int
ctl_conf_handler(void *arg, const char *section, const char *key,
    const char *value)
{
	(void)arg;
	if (strcmp(section, "station") != 0)
		return 1;
	if (strcmp(key, "database") == 0)
		snprintf(ctl_db_buf, sizeof(ctl_db_buf), "%s", value);
	else if (strcmp(key, "control") == 0)
		snprintf(ctl_control_buf, sizeof(ctl_control_buf), "%s", value);
	else if (strcmp(key, "id") == 0)
		snprintf(ctl_station_buf, sizeof(ctl_station_buf), "%s", value);
	return 1;
}

static int
ctl_open_uri(struct ctl *c, const char *uri)
{
	sqlite3_stmt *st;
	int rc;

	snprintf(c->uri, sizeof(c->uri), "%s", uri);
	/*
	 * NOMUTEX: this connection is only ever used by the main thread (a
	 * check beside it opens its own), and the per-call mutex was a
	 * tenth of a pass over 1,000,000 rows (issue 12).
	 */
	if (sqlite3_open_v2(uri, &c->db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		return sqlite3_extended_errcode(c->db);
	sqlite3_busy_timeout(c->db, 2000);
	rc = sqlite3_prepare_v2(c->db, "SELECT 1 FROM audit LIMIT 1", -1, &st,
	    NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st) == SQLITE_ERROR ? SQLITE_ERROR :
		    SQLITE_OK;
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? SQLITE_OK : sqlite3_extended_errcode(c->db);
}

int
ctl_open(struct ctl *c)
{
	char uri[4200], wal[4200], msg[512];
	int rc;

	/* The path goes in a URI: escape what URIs would read otherwise. */
	if (strpbrk(c->db_path, "?#%") != NULL)
		return ctl_fail("%s: '?', '#' and '%%' are not supported in "
		    "database paths", c->db_path);
	snprintf(uri, sizeof(uri), "file:%s?mode=ro", c->db_path);
	snprintf(wal, sizeof(wal), "%s-wal", c->db_path);
	rc = ctl_open_uri(c, uri);
	/*
	 * An auditor may read the directory but not create files in it.
	 * With no -wal file, no daemon is writing (it would have made one),
	 * and the file on disk is the whole database: read it as it is.
	 */
	if (((rc & 0xFF) == SQLITE_CANTOPEN ||
	    (rc & 0xFF) == SQLITE_READONLY) &&
	    access(c->db_path, R_OK) == 0 &&
	    access(wal, F_OK) != 0 && errno == ENOENT) {
		ctl_close(c);
		snprintf(uri, sizeof(uri), "file:%s?mode=ro&immutable=1",
		    c->db_path);
		if ((rc = ctl_open_uri(c, uri)) == SQLITE_OK)
			fprintf(stderr, "cardlicctl: %s: no -wal file, and no "
			    "right to make one: read as it is on disk (no "
			    "daemon is writing to it)\n", c->db_path);
	}
	if (rc != SQLITE_OK) {
		ctl_fail("%s: %s%s", c->db_path, c->db != NULL ?
		    sqlite3_errmsg(c->db) : "cannot open", (rc & 0xFF) ==
		    SQLITE_CANTOPEN || (rc & 0xFF) == SQLITE_READONLY ? "" :
		    " (not a cardlicd audit database?)");
		ctl_close(c);
		return -1;
	}
	/* Every answer goes through the views and indexes: ours only. */
	c->broken[0] = '\0';
	if (schema_check(c->db, msg, sizeof(msg)) != 0) {
		snprintf(c->broken, sizeof(c->broken), "the schema is not "
		    "cardlicd's: %s", msg);
		ctl_fail("%s: BROKEN: %s; cardlicctl answers nothing from it",
		    c->db_path, c->broken);
		ctl_close(c);
		return -1;
	}
	return 0;
}

void
ctl_close(struct ctl *c)
{
	if (c->db != NULL)
		sqlite3_close(c->db);
	c->db = NULL;
}

static void	ctl_explain(struct ctl *, const char *);

sqlite3_stmt *
ctl_prepare(struct ctl *c, const char *sql)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) {
		ctl_fail("%s: %s", c->db_path, sqlite3_errmsg(c->db));
		return NULL;
	}
	/*
	 * CARDLICCTL_EXPLAIN set: each statement's query plan on stderr,
	 * so that tests/check_ctl.c can see which index answers (issue 12).
	 */
	if (getenv("CARDLICCTL_EXPLAIN") != NULL)
		ctl_explain(c, sql);
	return st;
}

/* "plan: SEARCH a USING INDEX ..." lines, one per step of the plan. */
static void
ctl_explain(struct ctl *c, const char *sql)
{
	sqlite3_stmt *st;
	char *q;

	if ((q = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql)) == NULL)
		return;
	if (sqlite3_prepare_v2(c->db, q, -1, &st, NULL) == SQLITE_OK) {
		fprintf(stderr, "plan of: %s\n", sql);
		while (sqlite3_step(st) == SQLITE_ROW)
			fprintf(stderr, "plan: %s\n", (const char *)
			    sqlite3_column_text(st, 3));
		sqlite3_finalize(st);
	}
	sqlite3_free(q);
}

/* An SQL expression showing the UTC column col in the chosen zone. */
const char *
ctl_time(const struct ctl *c, const char *col)
{
	static char buf[4][128];
	static int k;

	k = (k + 1) % 4;
	if (c->local)
		snprintf(buf[k], sizeof(buf[k]), "strftime('%%Y-%%m-%%d "
		    "%%H:%%M:%%S', %s, 'localtime')", col);
	else
		snprintf(buf[k], sizeof(buf[k]), "replace(substr(%s, 1, 19), "
		    "'T', ' ') || 'Z'", col);
	return buf[k];
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "utc", no_argument, NULL, 'U' },
		{ "local", no_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	static const struct {
		const char *name;
		int (*fn)(struct ctl *, int, char **);
		int needs_db;
	} cmds[] = {
		{ "list", cmd_list, 1 }, { "show", cmd_show, 1 },
		{ "export", cmd_export, 1 }, { "stats", cmd_stats, 1 },
		{ "verify", cmd_verify, 0 }, { "reconcile", cmd_reconcile, 1 },
		{ "watch", cmd_watch, 1 }, { "status", cmd_status, 0 },
		{ "merge", cmd_merge, 0 }, { "backup", cmd_backup, 1 },
		{ "resolve", cmd_resolve, 0 },
		{ "keygen", cmd_keygen, 0 }, { "pubkey", cmd_pubkey, 1 },
		{ "batch-count", cmd_batch_count, 0 }
	};
	const char *conf = CTL_CONF_DEFAULT, *db = NULL;
	struct ctl c;
	size_t i;
	int ch, rc;

	memset(&c, 0, sizeof(c));
	/*
	 * Only this thread writes to stdout (verify's index check beside it
	 * never prints): no lock per putchar, which export makes tens of
	 * millions of at 1,000,000 rows (issue 12).
	 */
	__fsetlocking(stdout, FSETLOCKING_BYCALLER);
	/* Nothing reads SQLite's memory statistics: no mutex per malloc. */
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	/* "+": options after the command belong to the command. */
	while ((ch = getopt_long(argc, argv, "+d:c:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': db = optarg; break;
		case 'c': conf = optarg; break;
		case 'U': c.local = 0; break;
		case 'L': c.local = 1; break;
		case 'h': fputs(ctl_help, stdout); return CTL_OK;
		case 'V': printf("cardlicctl %s\n", CARDLICD_VERSION);
			return CTL_OK;
		default: return ctl_usage(NULL);
		}
	}
	if (optind >= argc)
		return ctl_usage(NULL);
	snprintf(ctl_db_buf, sizeof(ctl_db_buf), "%s", CTL_DB_DEFAULT);
	snprintf(ctl_control_buf, sizeof(ctl_control_buf), "%s",
	    CTL_CONTROL_DEFAULT);
	/* The daemon's file may be unreadable to auditors: then defaults. */
	(void)ini_parse(conf, ctl_conf_handler, NULL);
	c.db_path = db != NULL ? db : ctl_db_buf;
	c.station = ctl_station_buf[0] != '\0' ? ctl_station_buf : NULL;
	c.control = ctl_control_buf;
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[optind], cmds[i].name) != 0)
			continue;
		if (cmds[i].needs_db && !ctl_has_opt(argc - optind,
		    argv + optind, "--help") && ctl_open(&c) != 0)
			return CTL_USAGE;
		optind++;
		rc = cmds[i].fn(&c, argc - optind + 1, argv + optind - 1);
		ctl_close(&c);
		if (fflush(stdout) != 0 && errno != EPIPE)
			return ctl_fail("stdout: %s", strerror(errno));
		return rc;
	}
	ctl_fail("unknown command \"%s\"", argv[optind]);
	return ctl_usage(NULL);
}
