/*
 * The control socket: a client connects, reads the daemon's state as
 * "key: value" lines, and the daemon closes.  It carries nothing secret
 * (no PIN, no license data), so any local user may ask; cardlicctl status
 * is its client.  Served from the event loop with non-blocking calls only.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cardlicd.h"

static int		 control_fd = -1;
static struct event	*control_ev;
static char		 control_path[108];
static void		(*control_fill)(char *, size_t);

static void
control_on_accept(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096];
	ssize_t n;
	int c;

	(void)what;
	(void)arg;
	while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
	    0) {
		control_fill(buf, sizeof(buf));
		/* Small enough for any socket buffer: never blocks. */
		n = write(c, buf, strlen(buf));
		if (n < 0)
			log_debug("control: write: %s", strerror(errno));
		close(c);
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
