/*
 * The control socket: a client connects, reads the daemon's state as
 * "key: value" lines, and the daemon closes.  It carries nothing secret
 * (no PIN, no license data), so any local user may ask; cardlicctl status
 * is its client.  Served from the event loop with non-blocking calls only.
 *
 * One request changes something: "resolve SEQ spent|unspent REASON\n",
 * an admin's decision on a credit in doubt (cardlicctl resolve), taken
 * only from root or the daemon's own user (SO_PEERCRED).  A client that
 * sends nothing within CONTROL_WAIT_MS gets the status.  The decision is
 * written by a thread of its own, as it waits for the disk.
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
	long		 seq;
	int		 spent;
	char		 why[400];
	uid_t		 uid;
};

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

/* "resolve SEQ spent|unspent REASON": checked, then handed to a thread. */
static void
control_request(int c, char *line)
{
	struct control_req *q;
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	pthread_attr_t attr;
	pthread_t t;
	char word[16], *end;
	int n = 0, k;

	line[strcspn(line, "\n")] = '\0';
	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
	    (cr.uid != 0 && cr.uid != geteuid())) {
		control_reply(c, "error: only root or the daemon's user may "
		    "resolve a credit in doubt\n");
		return;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		control_reply(c, "error: out of memory\n");
		return;
	}
	q->fd = c;
	q->uid = cr.uid;
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
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, control_resolve, q) != 0) {
		free(q);
		control_reply(c, "error: cannot start a thread\n");
	}
	pthread_attr_destroy(&attr);
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
	if (n > 8 && strncmp(buf, "resolve ", 8) == 0) {
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
