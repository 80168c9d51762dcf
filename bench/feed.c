/*
 * bench/feed: a light feeder for the simulated line.  It does what
 * `sim/line feed` does (one vcard process per insertion, the card's
 * events file to tell when it is done, the reader seen empty before the
 * next card), but from one C process that blocks on inotify, a pidfd and
 * SCardGetStatusChange instead of polling files from bash: the bash
 * feeder spends 110-150 ms of CPU per card, which at 8 readers measures
 * itself.
 *
 * "Done" comes from the card's own events, never from a database, so
 * that the daemon, the C floor and a Python peer are fed alike: loaded
 * (a load, then a status read back after it), idle (a status that shows
 * the card accepted, serialValid and dateValid, and then nothing for
 * --idle ms: a card that needed no license), pulled (the card process
 * ended on its own) or timeout (--timeout s).  Unlike `sim/line feed`,
 * a status without a valid license does not start the idle clock: on a
 * busy machine one slow fsync between the status and the load would
 * otherwise get the card pulled as idle.  A card the program refuses
 * is therefore pulled at the timeout.
 *
 * usage: bench/feed --dir D [--readers 1,2,3] [--count N | --serials FILE]
 *        [--prefix P] [--pace MS] [--model M] [--pin PIN] [--timeout S]
 *        [--idle MS] [--results FILE]
 * Prints "serial reader outcome ms" per card, then a summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <PCSC/winscard.h>

#define FEED_MAX_READERS	16
#define FEED_SERIAL_MAX		16

extern char **environ;

enum feed_outcome { FEED_LOADED, FEED_IDLE, FEED_PULLED, FEED_TIMEOUT,
	FEED_FAILED, FEED_NOUTCOMES };

static const char *const feed_outcome_names[] = { "loaded", "idle",
	"pulled", "timeout", "failed" };

struct feed_card {
	char		serial[FEED_SERIAL_MAX + 1];
	int		reader;
	enum feed_outcome outcome;
	long		ms;
	char		final[40];
	int		events;
	int		done;
};

struct feed_reader {
	int		index;		/* reader k of the line */
	pthread_t	thread;
};

static char		feed_dir[PATH_MAX];
static char		feed_vcard[PATH_MAX + 32];
static char		feed_names[FEED_MAX_READERS][200];
static long		feed_port;
static int		feed_nreaders_line;
static const char	*feed_model = "SIM-MODEL-1";
static const char	*feed_pin = "1234";
static long		feed_pace_ms, feed_idle_ms = 800;
static long		feed_timeout_ms = 10000;
static struct feed_card	*feed_cards;
static int		feed_ncards, feed_next;
static pthread_mutex_t	feed_lock = PTHREAD_MUTEX_INITIALIZER;

static void
feed_die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
    noreturn));

static void
feed_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench/feed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static long
feed_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The line's env file: the socket, the first port, the reader count. */
static void
feed_read_env(void)
{
	char path[PATH_MAX + 16], line[PATH_MAX + 64], *nl;
	FILE *f;
	int i = 0;

	snprintf(path, sizeof(path), "%s/env", feed_dir);
	if ((f = fopen(path, "r")) == NULL)
		feed_die("%s: %s (is the line up?)", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		if ((nl = strchr(line, '\n')) != NULL)
			*nl = '\0';
		if (strncmp(line, "PCSCLITE_CSOCK_NAME=", 20) == 0)
			setenv("PCSCLITE_CSOCK_NAME", line + 20, 1);
		else if (strncmp(line, "SIM_LINE_PORT=", 14) == 0)
			feed_port = strtol(line + 14, NULL, 10);
		else if (strncmp(line, "SIM_LINE_READERS=", 17) == 0)
			feed_nreaders_line = atoi(line + 17);
	}
	fclose(f);
	if (feed_port <= 0 || feed_nreaders_line <= 0 ||
	    feed_nreaders_line > FEED_MAX_READERS)
		feed_die("%s: no SIM_LINE_PORT or SIM_LINE_READERS", path);
	snprintf(path, sizeof(path), "%s/readers", feed_dir);
	if ((f = fopen(path, "r")) == NULL)
		feed_die("%s: %s", path, strerror(errno));
	while (i < FEED_MAX_READERS && fgets(feed_names[i],
	    sizeof(feed_names[i]), f) != NULL) {
		if ((nl = strchr(feed_names[i], '\n')) != NULL)
			*nl = '\0';
		i++;
	}
	fclose(f);
	if (i < feed_nreaders_line)
		feed_die("%s: %d names for %d readers", path, i,
		    feed_nreaders_line);
}

/* sim/vcard, beside this program's directory. */
static void
feed_find_vcard(void)
{
	char self[PATH_MAX], *slash;
	ssize_t n;

	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
		feed_die("/proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) != NULL)
		*slash = '\0';
	snprintf(feed_vcard, sizeof(feed_vcard), "%s/../sim/vcard", self);
	if (access(feed_vcard, X_OK) != 0)
		feed_die("%s: %s (make sim)", feed_vcard, strerror(errno));
}

static void
feed_write_file(const char *path, const char *text)
{
	FILE *f;

	if ((f = fopen(path, "w")) == NULL)
		return;
	fputs(text, f);
	fclose(f);
}

/* A fresh vcard in reader k, as `sim/line insert` starts one. */
static pid_t
feed_spawn(int k, const char *serial)
{
	char port[24], state[PATH_MAX + 40], events[PATH_MAX + 40];
	char logf[PATH_MAX + 40], slot[PATH_MAX + 40], text[40];
	char *argv[] = { feed_vcard, "--port", port, "--state", state,
	    "--events", events, "--type", "target", "--serial",
	    (char *)serial, "--model", (char *)feed_model, "--pin",
	    (char *)feed_pin, NULL };
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int rc;

	snprintf(port, sizeof(port), "%ld", feed_port + k);
	snprintf(state, sizeof(state), "%s/cards/%s.state", feed_dir, serial);
	snprintf(events, sizeof(events), "%s/cards/%s.events", feed_dir,
	    serial);
	snprintf(logf, sizeof(logf), "%s/cards/%s.log", feed_dir, serial);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, logf, O_WRONLY | O_CREAT |
	    O_APPEND, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	rc = posix_spawn(&pid, feed_vcard, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "bench/feed: %s: %s\n", feed_vcard,
		    strerror(rc));
		return -1;
	}
	/* As sim/line does: `sim/line down` stops what is left. */
	snprintf(slot, sizeof(slot), "%s/slots/%d.pid", feed_dir, k);
	snprintf(text, sizeof(text), "%ld\n", (long)pid);
	feed_write_file(slot, text);
	snprintf(slot, sizeof(slot), "%s/slots/%d.card", feed_dir, k);
	snprintf(text, sizeof(text), "%s\n", serial);
	feed_write_file(slot, text);
	return pid;
}

/* What the events file says so far; new bytes are parsed as they come. */
struct feed_events {
	int		fd;
	char		buf[4096];
	size_t		len;
	int		n, load, loaded;
	int		status;		/* the card is accepted */
	long		last;	/* monotonic ms of the last event */
	char		final[40];
};

static void
feed_event_line(struct feed_events *e, const char *line)
{
	const char *ev = strchr(line, ' ');

	if (ev == NULL)
		return;
	ev++;
	e->n++;
	e->last = feed_now_ms();
	if (strcmp(ev, "load") == 0)
		e->load = 1;
	else if (strncmp(ev, "status ", 7) == 0) {
		/* "status PSD ...": serialValid and dateValid. */
		e->status = strlen(ev) > 9 && ev[8] != '0' && ev[9] != '0';
		e->loaded |= e->load;
	} else if (strncmp(ev, "final ", 6) == 0)
		snprintf(e->final, sizeof(e->final), "%s", ev + 6);
}

static void
feed_events_read(struct feed_events *e)
{
	char *nl, *p;
	ssize_t n;

	for (;;) {
		n = read(e->fd, e->buf + e->len, sizeof(e->buf) - 1 - e->len);
		if (n <= 0)
			return;
		e->len += (size_t)n;
		e->buf[e->len] = '\0';
		p = e->buf;
		while ((nl = strchr(p, '\n')) != NULL) {
			*nl = '\0';
			feed_event_line(e, p);
			p = nl + 1;
		}
		e->len -= (size_t)(p - e->buf);
		memmove(e->buf, p, e->len);
		if (e->len == sizeof(e->buf) - 1)
			e->len = 0;	/* no event is that long */
	}
}

/* Wait until the reader has no card (pcscd polls vpcd every 400 ms). */
static void
feed_wait_empty(SCARDCONTEXT ctx, int k)
{
	SCARD_READERSTATE rs;
	long end = feed_now_ms() + 3000;

	memset(&rs, 0, sizeof(rs));
	rs.szReader = feed_names[k];
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	while (feed_now_ms() < end) {
		if (SCardGetStatusChange(ctx, (DWORD)(end - feed_now_ms()),
		    &rs, 1) != SCARD_S_SUCCESS)
			return;
		if (!(rs.dwEventState & SCARD_STATE_PRESENT))
			return;
		rs.dwCurrentState = rs.dwEventState & ~SCARD_STATE_CHANGED;
	}
}

/* Stop the card as `sim/line remove` does: TERM, then KILL after 2 s. */
static void
feed_stop_card(pid_t pid, int pidfd)
{
	struct pollfd p = { pidfd, POLLIN, 0 };

	kill(pid, SIGTERM);
	if (pidfd >= 0 && poll(&p, 1, 2000) == 0)
		kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static void
feed_one(SCARDCONTEXT ctx, int ino, int k, struct feed_card *c)
{
	char path[PATH_MAX + 40], slot[PATH_MAX + 40];
	struct feed_events e;
	struct pollfd p[2];
	long t0, now, wait;
	pid_t pid;
	int wd, pidfd, fd, nfd;

	memset(&e, 0, sizeof(e));
	c->outcome = FEED_FAILED;
	snprintf(path, sizeof(path), "%s/cards/%s.events", feed_dir,
	    c->serial);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) < 0 || close(fd) != 0 ||
	    (e.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "bench/feed: %s: %s\n", path, strerror(errno));
		return;
	}
	/* Watched before the card starts: no event can be missed. */
	if ((wd = inotify_add_watch(ino, path, IN_MODIFY)) < 0) {
		fprintf(stderr, "bench/feed: inotify %s: %s\n", path,
		    strerror(errno));
		close(e.fd);
		return;
	}
	t0 = feed_now_ms();
	if ((pid = feed_spawn(k, c->serial)) < 0) {
		inotify_rm_watch(ino, wd);
		close(e.fd);
		return;
	}
	pidfd = pidfd_open(pid, 0);
	c->outcome = FEED_TIMEOUT;
	for (;;) {
		feed_events_read(&e);
		now = feed_now_ms();
		if (e.loaded) {
			c->outcome = FEED_LOADED;
			break;
		}
		if (e.status && now - e.last >= feed_idle_ms) {
			c->outcome = FEED_IDLE;
			break;
		}
		if (now - t0 >= feed_timeout_ms)
			break;
		wait = t0 + feed_timeout_ms - now;
		if (e.status && e.last + feed_idle_ms - now < wait)
			wait = e.last + feed_idle_ms - now;
		memset(p, 0, sizeof(p));
		p[0].fd = ino;
		p[0].events = POLLIN;
		p[1].fd = pidfd;
		p[1].events = POLLIN;
		nfd = pidfd >= 0 ? 2 : 1;
		if (poll(p, (nfds_t)nfd, (int)wait) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN) {
			char ib[4096];

			/* Only a wake-up: the file itself is read above. */
			while (read(ino, ib, sizeof(ib)) > 0)
				;
		}
		if (nfd == 2 && (p[1].revents & POLLIN)) {
			feed_events_read(&e);
			c->outcome = e.loaded ? FEED_LOADED : FEED_PULLED;
			now = feed_now_ms();
			break;
		}
	}
	c->ms = now - t0;
	feed_stop_card(pid, pidfd);
	if (pidfd >= 0)
		close(pidfd);
	feed_events_read(&e);	/* the "final" line, written on removal */
	inotify_rm_watch(ino, wd);
	close(e.fd);
	snprintf(slot, sizeof(slot), "%s/slots/%d.pid", feed_dir, k);
	unlink(slot);
	snprintf(slot, sizeof(slot), "%s/slots/%d.card", feed_dir, k);
	unlink(slot);
	feed_wait_empty(ctx, k);
	snprintf(c->final, sizeof(c->final), "%s", e.final[0] != '\0' ?
	    e.final : "none");
	c->events = e.n;
}

static void *
feed_reader_main(void *arg)
{
	struct feed_reader *r = arg;
	struct timespec pace = { feed_pace_ms / 1000,
	    (feed_pace_ms % 1000) * 1000000 };
	SCARDCONTEXT ctx;
	struct feed_card *c;
	int ino, i, first = 1;

	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) !=
	    SCARD_S_SUCCESS)
		feed_die("reader %d: no PC/SC context", r->index);
	if ((ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
		feed_die("inotify_init1: %s", strerror(errno));
	for (;;) {
		pthread_mutex_lock(&feed_lock);
		i = feed_next < feed_ncards ? feed_next++ : -1;
		pthread_mutex_unlock(&feed_lock);
		if (i < 0)
			break;
		if (!first && feed_pace_ms > 0)
			nanosleep(&pace, NULL);
		first = 0;
		c = &feed_cards[i];
		c->reader = r->index;
		feed_one(ctx, ino, r->index, c);
		pthread_mutex_lock(&feed_lock);
		c->done = 1;
		printf("%s %d %s %ld\n", c->serial, c->reader,
		    feed_outcome_names[c->outcome], c->ms);
		fflush(stdout);
		pthread_mutex_unlock(&feed_lock);
	}
	close(ino);
	SCardReleaseContext(ctx);
	return NULL;
}

static int
feed_cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

static double
feed_cpu_ms(const struct rusage *ru)
{
	return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000.0 +
	    (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1000.0;
}

static void
feed_load_serials(const char *file)
{
	char line[256], *p;
	size_t n;
	FILE *f;
	int cap = 0;

	if ((f = fopen(file, "r")) == NULL)
		feed_die("%s: %s", file, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		n = strcspn(p, " \t\r\n");
		if (n == 0)
			continue;
		if (n > FEED_SERIAL_MAX)
			feed_die("%s: serial '%.*s' is longer than 16 bytes",
			    file, (int)n, p);
		if (feed_ncards == cap) {
			cap = cap ? 2 * cap : 64;
			feed_cards = realloc(feed_cards, (size_t)cap *
			    sizeof(*feed_cards));
			if (feed_cards == NULL)
				feed_die("out of memory");
		}
		memset(&feed_cards[feed_ncards], 0, sizeof(*feed_cards));
		memcpy(feed_cards[feed_ncards].serial, p, n);
		feed_ncards++;
	}
	fclose(f);
	if (feed_ncards == 0)
		feed_die("%s: no serials", file);
}

static void
feed_usage(void)
{
	fprintf(stderr, "usage: bench/feed --dir D [--readers 1,2,3] "
	    "[--count N | --serials FILE] [--prefix P]\n"
	    "       [--pace MS] [--model M] [--pin PIN] [--timeout S] "
	    "[--idle MS] [--results FILE]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "readers", required_argument, NULL, 'r' },
		{ "count", required_argument, NULL, 'n' },
		{ "serials", required_argument, NULL, 's' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "pace", required_argument, NULL, 'a' },
		{ "model", required_argument, NULL, 'm' },
		{ "pin", required_argument, NULL, 'P' },
		{ "timeout", required_argument, NULL, 't' },
		{ "idle", required_argument, NULL, 'i' },
		{ "results", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 }
	};
	struct feed_reader readers[FEED_MAX_READERS];
	const char *dir = NULL, *list = NULL, *serials = NULL, *prefix = "SN";
	const char *results = NULL;
	long count = 10, t0, wall, *ms;
	int ch, i, nr = 0, nms = 0, counts[FEED_NOUTCOMES];
	struct rusage self, kids;
	char *p, *end;
	FILE *rf;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'r': list = optarg; break;
		case 'n': count = strtol(optarg, &end, 10);
			if (*end != '\0' || count < 0)
				feed_usage();
			break;
		case 's': serials = optarg; break;
		case 'p': prefix = optarg; break;
		case 'a': feed_pace_ms = strtol(optarg, NULL, 10); break;
		case 'm': feed_model = optarg; break;
		case 'P': feed_pin = optarg; break;
		case 't': feed_timeout_ms = 1000 * strtol(optarg, NULL, 10);
			break;
		case 'i': feed_idle_ms = strtol(optarg, NULL, 10); break;
		case 'R': results = optarg; break;
		default: feed_usage();
		}
	}
	if (dir == NULL || optind != argc || feed_pace_ms < 0)
		feed_usage();
	if (realpath(dir, feed_dir) == NULL)
		feed_die("%s: %s", dir, strerror(errno));
	feed_read_env();
	feed_find_vcard();
	if (list == NULL)
		for (i = 1; i < feed_nreaders_line; i++)
			readers[nr++].index = i;
	else
		for (p = (char *)list; *p != '\0'; p = *end ? end + 1 : end) {
			long k = strtol(p, &end, 10);

			if (end == p || (*end != ',' && *end != '\0') ||
			    k < 0 || k >= feed_nreaders_line ||
			    nr == FEED_MAX_READERS)
				feed_die("--readers: '%s' is not a list of "
				    "readers 0..%d", list,
				    feed_nreaders_line - 1);
			readers[nr++].index = (int)k;
		}
	if (serials != NULL)
		feed_load_serials(serials);
	else {
		if ((feed_cards = calloc((size_t)count + 1,
		    sizeof(*feed_cards))) == NULL)
			feed_die("out of memory");
		for (i = 0; i < count; i++)
			if ((size_t)snprintf(feed_cards[i].serial,
			    sizeof(feed_cards[i].serial), "%s%06d", prefix,
			    i + 1) > FEED_SERIAL_MAX)
				feed_die("--prefix '%s': serials over 16 "
				    "bytes", prefix);
		feed_ncards = (int)count;
	}
	signal(SIGPIPE, SIG_IGN);
	t0 = feed_now_ms();
	for (i = 0; i < nr; i++)
		if (pthread_create(&readers[i].thread, NULL, feed_reader_main,
		    &readers[i]) != 0)
			feed_die("pthread_create failed");
	for (i = 0; i < nr; i++)
		pthread_join(readers[i].thread, NULL);
	wall = feed_now_ms() - t0;

	memset(counts, 0, sizeof(counts));
	if ((ms = calloc((size_t)feed_ncards + 1, sizeof(*ms))) == NULL)
		feed_die("out of memory");
	rf = results != NULL ? fopen(results, "w") : NULL;
	if (results != NULL && rf == NULL)
		fprintf(stderr, "bench/feed: %s: %s\n", results,
		    strerror(errno));
	for (i = 0; i < feed_ncards; i++) {
		struct feed_card *c = &feed_cards[i];

		counts[c->outcome]++;
		if (c->outcome == FEED_LOADED)
			ms[nms++] = c->ms;
		if (rf != NULL)
			fprintf(rf, "%d\t%d\t%s\t%s\t%ld\t%s\t%d\n", i,
			    c->reader, c->serial,
			    feed_outcome_names[c->outcome], c->ms, c->final,
			    c->events);
	}
	if (rf != NULL)
		fclose(rf);
	qsort(ms, (size_t)nms, sizeof(*ms), feed_cmp_long);
	printf("fed %d cards on %d readers in %.1f s (%.1f cards/min):",
	    feed_ncards, nr, (double)wall / 1000.0, wall > 0 ?
	    60000.0 * feed_ncards / (double)wall : 0.0);
	for (i = 0; i < FEED_NOUTCOMES; i++)
		if (counts[i] > 0)
			printf(" %s %d", feed_outcome_names[i], counts[i]);
	if (nms > 0)
		printf("; insertion to read-back: median %ld ms, p95 %ld ms, "
		    "max %ld ms", ms[(nms - 1) / 2],
		    ms[(nms * 95 + 99) / 100 - 1], ms[nms - 1]);
	printf("\n");
	/* Its own CPU, without the card processes it waited for. */
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	printf("feed CPU: own %.1f ms (%.2f ms per card), card processes "
	    "%.1f ms\n", feed_cpu_ms(&self), feed_ncards > 0 ?
	    feed_cpu_ms(&self) / feed_ncards : 0.0, feed_cpu_ms(&kids));
	free(ms);
	free(feed_cards);
	return counts[FEED_LOADED] + counts[FEED_IDLE] == feed_ncards ? 0 : 1;
}
