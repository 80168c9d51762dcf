/*
 * Following the line: watch prints each card's outcome as the daemon
 * records it; status asks the running daemon over its control socket.
 */
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
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

/* Print the outcome rows after *last; move *last on. */
static void
follow_print(struct ctl *c, sqlite3_stmt *st, long *last, int colour)
{
	const char *state, *col;

	sqlite3_bind_int64(st, 1, *last);
	while (sqlite3_step(st) == SQLITE_ROW) {
		*last = (long)sqlite3_column_int64(st, 0);
		state = (const char *)sqlite3_column_text(st, 3);
		if (strcmp(state, "verified") != 0 &&
		    strcmp(state, "skipped") != 0 &&
		    strcmp(state, "rejected") != 0 &&
		    strcmp(state, "failed") != 0)
			continue;
		col = !colour ? "" : strcmp(state, "verified") == 0 ?
		    "\033[32m" : strcmp(state, "skipped") == 0 ? "\033[36m" :
		    "\033[1;31m";
		printf("%s  %s  %-16s  %s%-8s%s  %s  %s\n",
		    sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
		    sqlite3_column_text(st, 4), col, state, colour ?
		    "\033[0m" : "", sqlite3_column_type(st, 5) == SQLITE_NULL ?
		    "-       " : (const char *)sqlite3_column_text(st, 5),
		    sqlite3_column_text(st, 6));
		fflush(stdout);
	}
	sqlite3_reset(st);
	(void)c;
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
	snprintf(sql, sizeof(sql), "SELECT rowid, %s, reader, state, "
	    "rtrim(CAST(serial AS TEXT), ' '), end_date, reason FROM audit "
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
		follow_print(c, st, &last, colour);
	}
	close(in);
	sqlite3_finalize(st);
	return CTL_OK;
}

static const char *const status_help =
"usage: cardlicctl status [-s SOCKET]\n"
"The running daemon's state, from its control socket (default: [station]\n"
"control of the configuration, else /run/cardlicd/control): running or\n"
"paused and why, the counts, and each batch card and whether it is\n"
"exhausted.  Exit 2 when the daemon cannot be reached.\n";

int
cmd_status(struct ctl *c, int argc, char **argv)
{
	struct sockaddr_un sa;
	const char *path = c->control;
	char buf[4096];
	ssize_t n;
	int fd;

	if (ctl_has_opt(argc, argv, "--help")) {
		fputs(status_help, stdout);
		return CTL_OK;
	}
	if (argc == 3 && strcmp(argv[1], "-s") == 0)
		path = argv[2];
	else if (argc != 1)
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
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	return n < 0 ? ctl_fail("%s: %s", path, strerror(errno)) : CTL_OK;
}
