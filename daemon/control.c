/*
 * The control socket: a client connects, reads the daemon's state as
 * "key: value" lines, and the daemon closes.  It carries nothing secret
 * (no PIN, no license data), so any local user may ask; cardlicctl status
 * is its client.  Served from the event loop with non-blocking calls only.
 *
 * Two requests change something, taken only from root or the daemon's own
 * user (SO_PEERCRED): "resolve SEQ spent|unspent REASON\n", an admin's
 * decision on a credit in doubt (cardlicctl resolve), and "batch-count N
 * LEN READER LABEL REASON\n", a batch card's counter as an admin read it
 * with the vendor's tool, and the label written on the card (cardlicctl
 * batch-count; LEN is the reader name's length in bytes, as a name may
 * hold spaces).  A client that sends
 * nothing within CONTROL_WAIT_MS gets the status.  The row is written by
 * a thread of its own, as it waits for the disk.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cardlicd.h"

static int		 control_fd = -1;
static struct event	*control_ev;
static char		 control_path[108];
static void		(*control_fill)(char *, size_t);

#define CONTROL_WAIT_MS	150

static struct event_base	*control_base;

struct control_req {
	int		 fd;
	long		 seq;		/* resolve: the in-doubt row */
	int		 spent;
	long		 count;		/* batch-count: the count */
	char		 reader[READER_MAX];
	char		 atr[2 * ATR_MAX + 1];
	char		 label[FIELD_LEN + 1];	/* batch-count: the card's */
	char		 why[400];
	uid_t		 uid;
};

/* The longest count: the vendor's counter as a signed 32-bit number. */
#define CONTROL_COUNT_MAX	2147483647L

static void
control_reply(int c, const char *text)
{
	/* Small enough for any socket buffer: never blocks. */
	if (write(c, text, strlen(text)) < 0)
		log_debug("control: write: %s", strerror(errno));
	close(c);
}

static void *
control_resolve(void *arg)
{
	struct control_req *q = arg;
	char err[600], why[520], out[700];
	long seq;

	snprintf(why, sizeof(why), "%s (by uid %lu)", q->why,
	    (unsigned long)q->uid);
	seq = db_resolve(q->seq, q->spent, why, err, sizeof(err));
	if (seq > 0) {
		log_alert("credit in doubt of row %ld resolved as %s by uid "
		    "%lu (row %ld)", q->seq, q->spent ? "spent" : "not spent",
		    (unsigned long)q->uid, seq);
		snprintf(out, sizeof(out), "ok: row %ld records the decision\n",
		    seq);
	} else
		snprintf(out, sizeof(out), "error: %s\n", err);
	control_reply(q->fd, out);
	free(q);
	return NULL;
}

static void *
control_count(void *arg)
{
	struct control_req *q = arg;
	char err[600], why[520], out[700];
	long seq;

	snprintf(why, sizeof(why), "%s (by uid %lu)", q->why,
	    (unsigned long)q->uid);
	seq = db_count(q->reader, q->atr, q->label, q->count, why, err,
	    sizeof(err));
	if (seq > 0) {
		log_alert("%s: batch card %s: its counter says %ld licenses "
		    "emitted, as uid %lu read it (row %ld)", q->reader,
		    q->label, q->count, (unsigned long)q->uid, seq);
		snprintf(out, sizeof(out), "ok: row %ld records the count %ld "
		    "of batch card %s, in %s (ATR %s)\n", seq, q->count,
		    q->label, q->reader, q->atr);
	} else
		snprintf(out, sizeof(out), "error: %s\n", err);
	control_reply(q->fd, out);
	free(q);
	return NULL;
}

/*
 * "batch-count N LEN READER LABEL REASON" into q: NULL, or what is wrong.
 * The batch card is the one in READER now; its ATR is read here, on the
 * loop, from the pool (a brief lock), so the row names the card the admin
 * saw.  LABEL is what identifies the card (issue 18, case 8): 1 to 16 of
 * letters, digits, '.', '_', '-', as written on it.
 */
static const char *
control_parse_count(struct control_req *q, char *line, char *msg,
    size_t len)
{
	char others[600], *p = line + 12, *end;
	size_t llen;
	long rlen;

	errno = 0;
	q->count = strtol(p, &end, 10);
	if (*p < '0' || *p > '9' || errno != 0 ||
	    q->count > CONTROL_COUNT_MAX || *end != ' ') {
		snprintf(msg, len, "the count must be a number from 0 to %ld",
		    CONTROL_COUNT_MAX);
		return msg;
	}
	p = end + 1;
	rlen = strtol(p, &end, 10);
	if (*p < '0' || *p > '9' || *end != ' ' || rlen <= 0 ||
	    rlen >= (long)sizeof(q->reader) || (long)strlen(end + 1) <= rlen ||
	    end[1 + rlen] != ' ' || end[2 + rlen] == '\0')
		return "want: batch-count N LEN READER LABEL REASON";
	memcpy(q->reader, end + 1, (size_t)rlen);
	q->reader[rlen] = '\0';
	p = end + 2 + rlen;
	llen = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._-");
	if (llen == 0 || llen > FIELD_LEN || p[llen] != ' ' ||
	    p[llen + 1] == '\0')
		return "want: batch-count N LEN READER LABEL REASON, with a "
		    "LABEL of 1 to 16 letters, digits, '.', '_', '-'";
	memcpy(q->label, p, llen);
	q->label[llen] = '\0';
	snprintf(q->why, sizeof(q->why), "%s", p + llen + 1);
	if (!batch_find(q->reader, q->atr, others, sizeof(others))) {
		snprintf(msg, len, "no batch card in reader \"%s\"; %s%s",
		    q->reader, others[0] != '\0' ? "batch cards are in " :
		    "no reader holds a batch card", others);
		return msg;
	}
	return NULL;
}

/* The row is written by a thread of its own, which answers the client. */
static void
control_spawn(struct control_req *q, void *(*fn)(void *))
{
	pthread_t t;

	if (thread_start(&t, 1, fn, q) != 0) {
		control_reply(q->fd, "error: cannot start a thread\n");
		free(q);
	}
}

/*
 * "resolve SEQ spent|unspent REASON" or "batch-count N LEN READER
 * REASON": checked, then handed to a thread.
 */
static void
control_request(int c, char *line)
{
	struct control_req *q;
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	char word[16], msg[800], out[900], *end;
	const char *bad;
	int n = 0, k, count = strncmp(line, "batch-count ", 12) == 0;

	line[strcspn(line, "\n")] = '\0';
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
	    (cr.uid != 0 && cr.uid != geteuid())) {
		control_reply(c, count ? "error: only root or the daemon's "
		    "user may record a batch card's count\n" : "error: only "
		    "root or the daemon's user may resolve a credit in "
		    "doubt\n");
		return;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		control_reply(c, "error: out of memory\n");
		return;
	}
	q->fd = c;
	q->uid = cr.uid;
	if (count) {
		if ((bad = control_parse_count(q, line, msg, sizeof(msg))) !=
		    NULL) {
			free(q);
			snprintf(out, sizeof(out), "error: %s\n", bad);
			control_reply(c, out);
		} else
			control_spawn(q, control_count);
		return;
	}
	q->seq = strtol(line + 8, &end, 10);
	k = sscanf(end, " %15s %n", word, &n);
	if (q->seq <= 0 || k != 1 || (strcmp(word, "spent") != 0 &&
	    strcmp(word, "unspent") != 0) || end[n] == '\0') {
		free(q);
		control_reply(c, "error: want: resolve SEQ spent|unspent "
		    "REASON\n");
		return;
	}
	q->spent = strcmp(word, "spent") == 0;
	snprintf(q->why, sizeof(q->why), "%s", end + n);
	control_spawn(q, control_resolve);
}

static void
control_on_client(evutil_socket_t c, short what, void *arg)
{
	struct event *ev = arg;
	char buf[4096];
	ssize_t n = 0;

	if (what & EV_READ)
		n = read(c, buf, sizeof(buf) - 1);
	event_free(ev);
	if ((n > 8 && strncmp(buf, "resolve ", 8) == 0) ||
	    (n > 12 && strncmp(buf, "batch-count ", 12) == 0)) {
		buf[n] = '\0';
		/* Card bytes never come here; still, no control bytes. */
		for (ssize_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] < 0x20 && buf[i] != '\n')
				buf[i] = ' ';
		control_request(c, buf);
		return;
	}
	control_fill(buf, sizeof(buf));
	control_reply(c, buf);
}

static void
control_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, CONTROL_WAIT_MS * 1000 };
	struct event *ev;
	int c;

	(void)what;
	(void)arg;
	while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
	    0) {
		if ((ev = event_new(control_base, c, EV_READ, control_on_client,
		    event_self_cbarg())) == NULL || event_add(ev, &tv) != 0) {
			if (ev != NULL)
				event_free(ev);
			close(c);
		}
	}
}

/* 0, or -1 with a warning: the daemon runs without it. */
int
control_open(struct event_base *base, const char *path,
    void (*fill)(char *, size_t))
{
	struct sockaddr_un sa;
	char dir[108], *slash;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_warnx("control socket %s: path too long", path);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		(void)mkdir(dir, 0755);
	}
	control_fill = fill;
	control_base = base;
	control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	(void)unlink(path);
	if (control_fd < 0 || bind(control_fd, (struct sockaddr *)&sa,
	    sizeof(sa)) != 0 || chmod(path, 0666) != 0 ||
	    listen(control_fd, 8) != 0) {
		log_warnx("control socket %s: %s; cardlicctl status will not "
		    "work", path, strerror(errno));
		if (control_fd >= 0)
			close(control_fd);
		control_fd = -1;
		return -1;
	}
	snprintf(control_path, sizeof(control_path), "%s", path);
	control_ev = event_new(base, control_fd, EV_READ | EV_PERSIST,
	    control_on_accept, NULL);
	event_add(control_ev, NULL);
	return 0;
}

void
control_close(void)
{
	if (control_ev != NULL)
		event_free(control_ev);
	control_ev = NULL;
	if (control_fd >= 0) {
		close(control_fd);
		unlink(control_path);
	}
	control_fd = -1;
}
