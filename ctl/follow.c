/*
 * Following the line: watch prints each card's outcome as the daemon
 * records it; status asks the running daemon over its control socket.
 */
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicctl.h"

static volatile sig_atomic_t	follow_stop;

static void
follow_on_signal(int sig)
{
	(void)sig;
	follow_stop = 1;
}

static long
follow_data_version(struct ctl *c)
{
	sqlite3_stmt *st = ctl_prepare(c, "PRAGMA data_version");
	long v = -1;

	if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
		v = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* A column, escaped: reader names and reasons may carry card bytes. */
static const char *
follow_text(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	if (s == NULL)
		return "-";
	return ctl_esc(s, (size_t)sqlite3_column_bytes(st, i));
}

/* Print the outcome rows after *last; move *last on. */
static void
follow_print(sqlite3_stmt *st, long *last, int colour)
{
	const char *state, *col;

	sqlite3_bind_int64(st, 1, *last);
	while (sqlite3_step(st) == SQLITE_ROW) {
		*last = (long)sqlite3_column_int64(st, 0);
		/* The state's exact bytes: an outcome, and nothing after it. */
		state = ctl_col_is(st, 3, "verified") ? "verified" :
		    ctl_col_is(st, 3, "skipped") ? "skipped" :
		    ctl_col_is(st, 3, "rejected") ? "rejected" :
		    ctl_col_is(st, 3, "failed") ? "failed" : NULL;
		if (state == NULL)
			continue;
		col = !colour ? "" : strcmp(state, "verified") == 0 ?
		    "\033[32m" : strcmp(state, "skipped") == 0 ? "\033[36m" :
		    "\033[1;31m";
		printf("%s  %s  ", follow_text(st, 1), follow_text(st, 2));
		if (sqlite3_column_type(st, 4) == SQLITE_NULL)
			ctl_put("-", 1, 16);
		else
			ctl_put((const char *)sqlite3_column_text(st, 4),
			    (size_t)sqlite3_column_bytes(st, 4), 16);
		printf("  %s%-8s%s  %s  %s\n", col, state, colour ?
		    "\033[0m" : "", sqlite3_column_type(st, 5) == SQLITE_NULL ?
		    "-       " : follow_text(st, 5), follow_text(st, 6));
		fflush(stdout);
	}
	sqlite3_reset(st);
}

static const char *const watch_help =
"usage: cardlicctl watch\n"
"Follows the database: one line per card as its outcome is recorded\n"
"(time, reader, serial, outcome, expiry, reason), coloured on a terminal.\n"
"It sleeps until the database changes (inotify on its WAL, then PRAGMA\n"
"data_version), so it costs nothing while the line is idle.  Ctrl-C ends.\n";

int
cmd_watch(struct ctl *c, int argc, char **argv)
{
	char sql[768], dir[4096], wal[4200];
	struct pollfd p;
	sqlite3_stmt *st, *mx;
	long last = 0, ver, nv;
	int in, colour = isatty(1);
	struct sigaction sa;

	if (argc != 1) {
		if (ctl_has_opt(argc, argv, "--help")) {
			fputs(watch_help, stdout);
			return CTL_OK;
		}
		return ctl_usage(watch_help);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = follow_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* From now on: what is already there is history, not news. */
	if ((mx = ctl_prepare(c, "SELECT coalesce(max(rowid), 0) FROM audit"))
	    == NULL)
		return CTL_USAGE;
	if (sqlite3_step(mx) == SQLITE_ROW)
		last = (long)sqlite3_column_int64(mx, 0);
	sqlite3_finalize(mx);
	/* audit_text, a view, has no rowid: its serial_text is looked up. */
	snprintf(sql, sizeof(sql), "SELECT rowid, %s, reader, state, "
	    "(SELECT serial_text FROM audit_text t WHERE t.station = "
	    "audit.station AND t.seq = audit.seq), end_date, reason FROM audit "
	    "WHERE rowid > ?1 ORDER BY rowid", ctl_time(c, "utc"));
	if ((st = ctl_prepare(c, sql)) == NULL)
		return CTL_USAGE;
	snprintf(dir, sizeof(dir), "%s", c->db_path);
	snprintf(wal, sizeof(wal), "%s", dirname(dir));
	if ((in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) < 0 ||
	    inotify_add_watch(in, wal, IN_MODIFY | IN_CREATE |
	    IN_CLOSE_WRITE) < 0) {
		sqlite3_finalize(st);
		return ctl_fail("watch: inotify on %s: %s", wal,
		    strerror(errno));
	}
	ver = follow_data_version(c);
	p.fd = in;
	p.events = POLLIN;
	while (!follow_stop) {
		/* Woken by any write in the database's directory; the
		 * timeout only guards against a missed event. */
		if (poll(&p, 1, 5000) > 0) {
			char buf[4096];

			while (read(in, buf, sizeof(buf)) > 0)
				;
		}
		nv = follow_data_version(c);
		if (nv == ver)
			continue;
		ver = nv;
		follow_print(st, &last, colour);
	}
	close(in);
	sqlite3_finalize(st);
	return CTL_OK;
}

/* One "key: value" of the daemon as a JSON member; '-' in keys as '_'. */
static void
follow_json_member(const char *key, size_t klen, const char *val,
    size_t vlen, int *first)
{
	char k[64];
	size_t i;

	if (klen >= sizeof(k))
		klen = sizeof(k) - 1;
	for (i = 0; i < klen; i++)
		k[i] = key[i] == '-' ? '_' : key[i];
	fputs(*first ? "{" : ",", stdout);
	*first = 0;
	ctl_json_str(k, klen);
	putchar(':');
	/* A count as a JSON number: digits, no leading zero, no overflow. */
	for (i = 0; i < vlen && val[i] >= '0' && val[i] <= '9'; i++)
		;
	if (i == vlen && vlen > 0 && vlen < 19 && (val[0] != '0' ||
	    vlen == 1))
		fwrite(val, 1, vlen, stdout);
	else
		ctl_json_str(val, vlen);
}

/* A batch card: "READER | ATR | state", split from the right. */
static void
follow_json_batch(const char *v, size_t n, int *first)
{
	const char *p1 = NULL, *p2 = NULL, *p;

	for (p = v; p + 3 <= v + n; p++)
		if (memcmp(p, " | ", 3) == 0) {
			p1 = p2;
			p2 = p;
		}
	fputs(*first ? "" : ",", stdout);
	*first = 0;
	if (p1 == NULL) {
		fputs("{\"reader\":", stdout);
		ctl_json_str(v, n);
		fputs(",\"atr\":null,\"state\":null}", stdout);
		return;
	}
	fputs("{\"reader\":", stdout);
	ctl_json_str(v, (size_t)(p1 - v));
	fputs(",\"atr\":", stdout);
	ctl_json_str(p1 + 3, (size_t)(p2 - p1 - 3));
	fputs(",\"state\":", stdout);
	ctl_json_str(p2 + 3, (size_t)(v + n - p2 - 3));
	putchar('}');
}

/*
 * The daemon's answer as one JSON object: its "key: value" lines as
 * members (numbers as numbers), "state: paused: why" as state and
 * pause_reason, and the "batch:" lines as the array batches.
 */
static int
follow_status_json(const char *buf, size_t len)
{
	const char *line, *end, *colon, *v;
	size_t vlen;
	int first = 1, bfirst = 1, pass;

	/* Two passes: the members, then the batch cards in their array. */
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1)
			fputs(first ? "{\"batches\":[" : ",\"batches\":[",
			    stdout);
		for (line = buf; line < buf + len; line = end + 1) {
			if ((end = memchr(line, '\n', (size_t)(buf + len -
			    line))) == NULL)
				end = buf + len;
			colon = memchr(line, ':', (size_t)(end - line));
			if (colon == NULL || colon + 1 >= end ||
			    colon[1] != ' ') {
				if (pass == 0 && end > line)
					fprintf(stderr, "cardlicctl: status: "
					    "line not understood: %s\n",
					    ctl_esc(line, (size_t)(end -
					    line)));
				continue;
			}
			v = colon + 2;
			vlen = (size_t)(end - v);
			if (colon - line == 5 && memcmp(line, "batch", 5) ==
			    0) {
				if (pass == 1)
					follow_json_batch(v, vlen, &bfirst);
			} else if (pass == 1)
				continue;
			else if (colon - line == 5 && memcmp(line, "state",
			    5) == 0 && vlen > 8 && memcmp(v, "paused: ", 8)
			    == 0) {
				follow_json_member("state", 5, "paused", 6,
				    &first);
				follow_json_member("pause-reason", 12, v + 8,
				    vlen - 8, &first);
			} else
				follow_json_member(line, (size_t)(colon -
				    line), v, vlen, &first);
		}
	}
	fputs("]}\n", stdout);
	return CTL_OK;
}

static const char *const status_help =
"usage: cardlicctl status [-s SOCKET] [--json]\n"
"The running daemon's state, from its control socket (default: [station]\n"
"control of the configuration, else /run/cardlicd/control): running or\n"
"paused and why, the counts, and each batch card and whether it is\n"
"exhausted.  --json prints one JSON object: the counts as numbers, state\n"
"(running or paused) and pause_reason, and batches, an array of reader,\n"
"atr and state.  Exit 2 when the daemon cannot be reached.\n";

int
cmd_status(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sockaddr_un sa;
	const char *path = c->control, *line, *end;
	static char buf[65536];
	size_t len = 0;
	ssize_t n;
	int fd, ch, json = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		switch (ch) {
		case 's': path = optarg; break;
		case 'j': json = 1; break;
		case 'h': fputs(status_help, stdout); return CTL_OK;
		default: return ctl_usage(status_help);
		}
	}
	if (optind != argc)
		return ctl_usage(status_help);
	if (strlen(path) >= sizeof(sa.sun_path))
		return ctl_fail("%s: path too long", path);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		return ctl_fail("cannot reach cardlicd at %s: %s (is it "
		    "running?)", path, strerror(errno));
	}
	while (len < sizeof(buf) && (n = read(fd, buf + len,
	    sizeof(buf) - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return ctl_fail("%s: %s", path, strerror(errno));
		}
		len += (size_t)n;
	}
	close(fd);
	if (len == sizeof(buf))
		return ctl_fail("%s: the answer is longer than %zu bytes",
		    path, sizeof(buf) - 1);
	if (json)
		return follow_status_json(buf, len);
	/* Reader names come from pcscd and may carry any byte. */
	for (line = buf; line < buf + len; line = end + 1) {
		if ((end = memchr(line, '\n', (size_t)(buf + len - line))) ==
		    NULL)
			end = buf + len;
		printf("%s\n", ctl_esc(line, (size_t)(end - line)));
	}
	return CTL_OK;
}
