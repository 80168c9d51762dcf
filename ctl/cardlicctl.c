/*
 * cardlicctl: query, export, verify, reconcile and merge cardlicd's audit
 * databases, follow the line live, and ask the daemon for its state.
 * Databases are opened read-only (except merge's output): in WAL mode a
 * reader never blocks the daemon's writes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "cardlicctl.h"

static char	ctl_db_buf[4096];
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
"\n"
"  list [--since DATE] [--until DATE] [--serial S] [--model M]\n"
"       [--batch B] [--outcome O] [--station ID]\n"
"                        one line per license, or per card that needed\n"
"                        none or failed before a credit was spent\n"
"  show SERIAL           the whole history of one card\n"
"  export --format csv|json|jsonl\n"
"                        every audit row, streamed\n"
"  stats                 per day, per batch card, per outcome\n"
"  verify [--head HASH]  walk the hash chain and the sequence numbers\n"
"  reconcile             credits spent against cards licensed, per batch\n"
"  resolve SEQ spent|unspent REASON   decide on a credit in doubt (admins)\n"
"  watch                 follow new cards live\n"
"  status                the running daemon's state\n"
"  merge OUT.db IN.db... consolidate several stations' databases\n"
"\n"
"  -d DB      the database (default: [station] database of the\n"
"             configuration, else " CTL_DB_DEFAULT ")\n"
"  -c CONF    the daemon's configuration (default " CTL_CONF_DEFAULT ")\n"
"  --utc      times in UTC (default)\n"
"  --local    times in the local zone\n"
"\n"
"Exit status: 0 found or passed, 1 found nothing or check failed,\n"
"2 usage or I/O error.  COMMAND --help describes each command.\n";

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
	return 1;
}

int
ctl_open(struct ctl *c)
{
	char uri[4200];
	sqlite3_stmt *st;
	int ok;

	/* The path goes in a URI: escape what URIs would read otherwise. */
	if (strpbrk(c->db_path, "?#%") != NULL)
		return ctl_fail("%s: '?', '#' and '%%' are not supported in "
		    "database paths", c->db_path);
	snprintf(uri, sizeof(uri), "file:%s?mode=ro", c->db_path);
	if (sqlite3_open_v2(uri, &c->db, SQLITE_OPEN_READONLY |
	    SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
		ctl_fail("%s: %s", c->db_path, sqlite3_errmsg(c->db));
		sqlite3_close(c->db);
		c->db = NULL;
		return -1;
	}
	sqlite3_busy_timeout(c->db, 2000);
	ok = sqlite3_prepare_v2(c->db, "SELECT 1 FROM audit LIMIT 1", -1, &st,
	    NULL) == SQLITE_OK;
	sqlite3_finalize(st);
	if (!ok) {
		ctl_fail("%s: not a cardlicd audit database (%s)", c->db_path,
		    sqlite3_errmsg(c->db));
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

sqlite3_stmt *
ctl_prepare(struct ctl *c, const char *sql)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) {
		ctl_fail("%s: %s", c->db_path, sqlite3_errmsg(c->db));
		return NULL;
	}
	return st;
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
		{ NULL, 0, NULL, 0 }
	};
	static const struct {
		const char *name;
		int (*fn)(struct ctl *, int, char **);
		int needs_db;
	} cmds[] = {
		{ "list", cmd_list, 1 }, { "show", cmd_show, 1 },
		{ "export", cmd_export, 1 }, { "stats", cmd_stats, 1 },
		{ "verify", cmd_verify, 1 }, { "reconcile", cmd_reconcile, 1 },
		{ "watch", cmd_watch, 1 }, { "status", cmd_status, 0 },
		{ "merge", cmd_merge, 0 }, { "resolve", cmd_resolve, 0 }
	};
	const char *conf = CTL_CONF_DEFAULT, *db = NULL;
	struct ctl c;
	size_t i;
	int ch, rc;

	memset(&c, 0, sizeof(c));
	/* "+": options after the command belong to the command. */
	while ((ch = getopt_long(argc, argv, "+d:c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': db = optarg; break;
		case 'c': conf = optarg; break;
		case 'U': c.local = 0; break;
		case 'L': c.local = 1; break;
		case 'h': fputs(ctl_help, stdout); return CTL_OK;
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
