/*
 * cardlicd: start-up, the one libevent loop, signals, and the bookkeeping
 * of readers, jobs and pauses.  Everything that can block (PC/SC, PKCS#11,
 * SQLite) runs in the watcher or job threads; the loop only reads their
 * messages and decides what happens next.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "cardlicd.h"

#define MAIN_MAX_READERS	32
#define MAIN_JOB_STUCK_MS	90000	/* a job this old is hung */

struct main_reader {
	int		 used;
	char		 name[READER_MAX];
	int		 present;
	uint8_t		 atr[ATR_MAX];
	size_t		 atr_len;
	int		 busy;		/* a job runs on it */
	int		 classified;	/* its job knows what the card is */
	unsigned	 insertion;	/* the watcher's event counter */
	int		 queued;	/* a newer card waits for that job */
	int		 paused;	/* its card waits for issuance to resume */
	int		 batch;
	long		 busy_since;	/* ms, monotonic */
	struct conf	*job_conf;	/* the configuration its job uses */
};

static struct event_base	*main_base;
static struct conf		*main_conf;
static struct conf		*main_refused;	/* conf whose PIN was refused */
static struct main_reader	 main_readers[MAIN_MAX_READERS];
static int			 main_paused_credit;
static int			 main_ready;
static int			 main_stopping;
static int			 main_job_pipe[2];
static int			 main_watch_pipe[2];
static long			 main_issued, main_skipped, main_failed;
static long			 main_credits, main_doubts;
static int			 main_watch_alive;
static int			 main_wd_warned;

static void	main_pin_refusal_save(const struct conf *);
static void	main_pin_refusal_clear(void);
static void	main_tz_settle(void);

/* --help: on stdout, status 0; a wrong command line: on stderr, 2. */
static void
main_usage(FILE *f, int rc)
{
	fprintf(f, "usage: cardlicd [-nv] [-f file] [--allow-root]\n"
	    "       cardlicd --help | --version\n"
	    "  -f file       configuration (default " CONF_DEFAULT_PATH ")\n"
	    "  -n            check the configuration, print it normalized,\n"
	    "                load the PKCS#11 module and list its slots; as\n"
	    "                root, also check what [station] user may read\n"
	    "  -v            verbose: debug messages\n"
	    "  --allow-root  stay root instead of dropping to [station] user\n"
	    "                (with -n: check for a daemon that stays root)\n"
	    "  --help        this text\n"
	    "  --version     print the version\n");
	exit(rc);
}

static long
main_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Why issuance is paused, or NULL while it runs. */
static const char *
main_pause_reason(void)
{
	if (main_refused != NULL)
		return "the PIN was refused; fix the configuration and reload";
	if (main_paused_credit)
		return "no batch card with credit";
	return NULL;
}

static void
main_status(void)
{
	const char *why = main_pause_reason();
	char batch[96];

	batch_status(batch, sizeof(batch));
	sd_notifyf(0, "STATUS=%s%s%s: issued %ld, skipped %ld, failed %ld, "
	    "credits used %ld, in doubt %ld; %s", why != NULL ? "PAUSED (" :
	    "running", why != NULL ? why : "", why != NULL ? ")" : "",
	    main_issued, main_skipped, main_failed, main_credits, main_doubts,
	    batch);
}

static struct main_reader *
main_reader(const char *name, int create)
{
	int i, free_slot = -1;

	for (i = 0; i < MAIN_MAX_READERS; i++) {
		if (main_readers[i].used &&
		    strcmp(main_readers[i].name, name) == 0)
			return &main_readers[i];
		if (!main_readers[i].used && free_slot < 0)
			free_slot = i;
	}
	if (!create || free_slot < 0)
		return NULL;
	memset(&main_readers[free_slot], 0, sizeof(main_readers[0]));
	main_readers[free_slot].used = 1;
	snprintf(main_readers[free_slot].name, READER_MAX, "%s", name);
	return &main_readers[free_slot];
}

/* Tell the jobs how many inserted cards are not classified yet. */
static void
main_gate(void)
{
	int i, n = 0;

	for (i = 0; i < MAIN_MAX_READERS; i++)
		n += main_readers[i].used && main_readers[i].busy &&
		    !main_readers[i].classified;
	job_gate_set(n);
}

static void
main_start_job(struct main_reader *r)
{
	struct job_ctx c;

	if (main_stopping)
		return;
	if (r->busy) {
		r->queued = 1;
		return;
	}
	main_tz_settle();
	memset(&c, 0, sizeof(c));
	c.conf = main_conf;
	snprintf(c.reader, sizeof(c.reader), "%s", r->name);
	memcpy(c.atr, r->atr, r->atr_len);
	c.atr_len = r->atr_len;
	c.insertion = r->insertion;
	/* Only the loop sets TZ; jobs get the day, not the clock. */
	c.today = date_today(NULL);
	c.paused_pin = main_refused != NULL;
	c.paused_credit = main_paused_credit;
	c.notify_fd = main_job_pipe[1];
	r->queued = 0;
	r->paused = 0;
	if (job_start(&c) != 0) {
		log_warnx("%s: cannot start a job: %s", r->name,
		    strerror(errno));
		return;
	}
	r->busy = 1;
	r->classified = 0;
	r->busy_since = main_now_ms();
	r->job_conf = conf_ref(main_conf);
	main_gate();
}

/* Issuance resumes: the cards that waited in their readers go first. */
static void
main_resume(const char *why)
{
	int i;

	log_info("issuance resumes: %s", why);
	for (i = 0; i < MAIN_MAX_READERS; i++)
		if (main_readers[i].used && main_readers[i].present &&
		    main_readers[i].paused)
			main_start_job(&main_readers[i]);
	main_status();
}

/* What cardlicctl status shows: one "key: value" per line. */
static void
main_control_fill(char *buf, size_t len)
{
	const char *why = main_pause_reason();
	size_t n;
	int i, readers = 0, busy = 0;

	for (i = 0; i < MAIN_MAX_READERS; i++) {
		readers += main_readers[i].used;
		busy += main_readers[i].used && main_readers[i].busy;
	}
	n = (size_t)snprintf(buf, len, "station: %s\nstate: %s%s\n"
	    "issued: %ld\nskipped: %ld\nfailed: %ld\ncredits-used: %ld\n"
	    "in-doubt: %ld\nreaders: %d\njobs-running: %d\n",
	    main_conf->station, why != NULL ? "paused: " : "running",
	    why != NULL ? why : "", main_issued, main_skipped, main_failed,
	    main_credits, main_doubts, readers, busy);
	if (n < len)
		batch_list(buf + n, len - n);
}

static void
main_on_job(evutil_socket_t fd, short what, void *arg)
{
	struct job_result res;
	struct main_reader *r;
	struct conf *used;

	(void)what;
	(void)arg;
	while (read(fd, &res, sizeof(res)) == (ssize_t)sizeof(res)) {
		if ((r = main_reader(res.reader, 0)) == NULL)
			continue;
		if (res.interim) {
			r->classified = 1;
			main_gate();
			continue;
		}
		used = r->job_conf;
		r->job_conf = NULL;
		r->busy = 0;
		main_issued += res.issued;
		main_skipped += res.skipped;
		main_failed += res.failed && !res.paused;
		main_credits += res.credit_used;
		main_doubts += res.doubt;
		r->paused = res.paused || res.pause_pin || res.pause_credit;
		/*
		 * The loop alone owns the pool: a batch card that was pulled
		 * while its job looked at it is not added.
		 */
		if (res.kind == KIND_BATCH && r->present &&
		    r->insertion == res.insertion) {
			batch_add(r->name, r->atr, r->atr_len);
			r->batch = 1;
			if (main_paused_credit) {
				main_paused_credit = 0;
				main_resume("a batch card was inserted");
			}
		}
		if (res.pause_pin && main_refused == NULL && used != NULL) {
			main_refused = used;
			used = NULL;
			main_pin_refusal_save(main_refused);
		}
		if (res.pause_credit && !main_paused_credit) {
			if (batch_available() > 0) {
				/*
				 * A batch card arrived while this job looked:
				 * its probe finished after the job's look at
				 * the pool.  Try the card again, no pause.
				 */
				log_info("%s: a batch card arrived meanwhile; "
				    "trying the card again", r->name);
				r->queued = 1;
			} else {
				main_paused_credit = 1;
				log_alert("issuance paused: no batch card with "
				    "credit; insert one to resume");
			}
		}
		conf_unref(used);
		main_gate();
		main_tz_settle();
		if (r->queued && r->present)
			main_start_job(r);
		main_status();
	}
}

static void
main_on_watch(evutil_socket_t fd, short what, void *arg)
{
	struct watch_msg m;
	struct main_reader *r;

	(void)what;
	(void)arg;
	while (read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) {
		main_watch_alive = 1;
		switch (m.type) {
		case WATCH_PCSC_UP:
			log_info("connected to pcscd");
			if (!main_ready) {
				main_ready = 1;
				sd_notify(0, "READY=1");
				main_status();
			}
			break;
		case WATCH_PCSC_DOWN:
			log_warnx("pcscd is not reachable; waiting for it");
			break;
		case WATCH_INSERT:
			if (!conf_reader_wanted(main_conf, m.reader)) {
				log_debug("%s: not a reader of ours",
				    m.reader);
				break;
			}
			if ((r = main_reader(m.reader, 1)) == NULL) {
				log_warnx("%s: too many readers", m.reader);
				break;
			}
			r->present = 1;
			r->insertion = m.counter;
			log_debug("%s: card inserted (event %u)", m.reader,
			    m.counter);
			memcpy(r->atr, m.atr, m.atr_len);
			r->atr_len = m.atr_len;
			main_start_job(r);
			break;
		case WATCH_REMOVE:
		case WATCH_READER_GONE:
			if ((r = main_reader(m.reader, 0)) == NULL)
				break;
			r->present = 0;
			r->queued = 0;
			r->paused = 0;
			r->insertion = m.counter;
			if (r->batch) {
				batch_remove(r->name);
				r->batch = 0;
				log_info("%s: batch card removed", r->name);
				main_status();
			}
			break;
		case WATCH_ALIVE:
			break;
		}
	}
}

static void
main_apply_tz(const struct conf *c)
{
	char tz[80];

	if (strcmp(c->timezone, "local") == 0) {
		unsetenv("TZ");
		tzset();
		return;
	}
	snprintf(tz, sizeof(tz), ":%s", c->timezone);
	setenv("TZ", tz, 1);
	tzset();
}

/*
 * setenv may move the environment under a thread that reads it (PC/SC and
 * the module call getenv), so a new zone is applied only while no job
 * runs: at once if the line is idle, else when the last job ends.
 */
static int	main_tz_pending;

static void
main_tz_settle(void)
{
	int i;

	if (!main_tz_pending)
		return;
	for (i = 0; i < MAIN_MAX_READERS; i++)
		if (main_readers[i].used && main_readers[i].busy)
			return;
	main_apply_tz(main_conf);
	main_tz_pending = 0;
}

/*
 * Invariant 4 across restarts: a refused PIN stays refused until the
 * configuration or the PIN's source changes.  What is kept on disk is
 * where the PIN came from and the files' identity (device, inode, size,
 * modification time), never anything derived from the PIN itself.
 */
static void
main_pin_identity(const struct conf *c, char *out, size_t len)
{
	struct stat st;
	char path[4200];
	const char *cred;
	size_t n;

	memset(&st, 0, sizeof(st));
	stat(c->path, &st);
	n = (size_t)snprintf(out, len, "conf %s %lu %lu %lld %lld.%09ld\n",
	    c->path, (unsigned long)st.st_dev, (unsigned long)st.st_ino,
	    (long long)st.st_size, (long long)st.st_mtim.tv_sec,
	    st.st_mtim.tv_nsec);
	path[0] = '\0';
	if (c->pin_source == PIN_FILE)
		snprintf(path, sizeof(path), "%s", c->pin_where);
	else if (c->pin_source == PIN_CREDENTIAL &&
	    (cred = getenv("CREDENTIALS_DIRECTORY")) != NULL)
		snprintf(path, sizeof(path), "%s/%s", cred, c->pin_where);
	memset(&st, 0, sizeof(st));
	if (path[0] != '\0')
		stat(path, &st);
	if (n < len)
		snprintf(out + n, len - n, "pin %d %s %lu %lu %lld %lld.%09ld\n",
		    (int)c->pin_source, c->pin_where,
		    (unsigned long)st.st_dev, (unsigned long)st.st_ino,
		    (long long)st.st_size, (long long)st.st_mtim.tv_sec,
		    st.st_mtim.tv_nsec);
}

static void
main_pin_refusal_path(char *out, size_t len)
{
	snprintf(out, len, "%s.pin-refused", main_conf->database);
}

static void
main_pin_refusal_save(const struct conf *c)
{
	char path[4200], tmp[4300], id[8400];
	int fd;

	main_pin_refusal_path(path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	main_pin_identity(c, id, sizeof(id));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0 || write(fd, id, strlen(id)) != (ssize_t)strlen(id) ||
	    fsync(fd) != 0 || rename(tmp, path) != 0)
		log_alert("%s: cannot keep the PIN's refusal across a restart:"
		    " %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void
main_pin_refusal_clear(void)
{
	char path[4200];

	main_pin_refusal_path(path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT)
		log_warnx("%s: %s", path, strerror(errno));
}

/* At start-up: is the PIN we were given the one refused before? */
static void
main_pin_refusal_load(void)
{
	char path[4200], id[8400], was[8400];
	ssize_t n;
	int fd;

	main_pin_refusal_path(path, sizeof(path));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return;
	n = read(fd, was, sizeof(was) - 1);
	close(fd);
	was[n > 0 ? n : 0] = '\0';
	main_pin_identity(main_conf, id, sizeof(id));
	if (strcmp(id, was) != 0) {
		log_info("the configuration or the PIN changed since the PIN "
		    "was refused; issuance is not paused");
		main_pin_refusal_clear();
		return;
	}
	main_refused = conf_ref(main_conf);
	log_alert("the configured PIN was refused before the restart, and "
	    "neither the configuration nor the PIN changed since; issuance "
	    "stays paused: fix the PIN in %s and reload", main_conf->path);
}

/* SIGHUP: a new configuration, or the old one if the new one is wrong. */
static void
main_on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct conf *c;
	struct timespec now;
	char err[1024];

	(void)sig;
	(void)what;
	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &now);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)now.tv_sec * 1000000ULL +
	    (unsigned long long)now.tv_nsec / 1000ULL);
	if ((c = conf_load(main_conf->path, 0, err, sizeof(err))) == NULL) {
		log_warnx("reload refused, the running configuration stays: "
		    "%s", err);
		sd_notify(0, "READY=1");
		return;
	}
	if (strcmp(c->database, main_conf->database) != 0 ||
	    strcmp(c->module, main_conf->module) != 0)
		log_warnx("database and module changes take effect at the "
		    "next restart");
	main_tz_pending |= strcmp(c->timezone, main_conf->timezone) != 0;
	conf_unref(main_conf);
	main_conf = c;
	main_tz_settle();
	log_info("configuration reloaded from %s", c->path);
	if (main_refused != NULL) {
		if (c->pin_len == main_refused->pin_len &&
		    memcmp(c->pin, main_refused->pin, c->pin_len) == 0) {
			log_alert("the PIN in the new configuration is the one "
			    "that was refused; issuance stays paused");
		} else {
			conf_unref(main_refused);
			main_refused = NULL;
			main_pin_refusal_clear();
			main_resume("the PIN was changed");
		}
	}
	sd_notify(0, "READY=1");
	main_status();
}

static void
main_on_term(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	main_stopping = 1;
	sd_notify(0, "STOPPING=1");
	log_info("stopping: finishing the cards in progress");
	event_base_loopbreak(main_base);
}

/*
 * The watchdog is fed only while the watcher reports (it wakes at least
 * every quarter of the interval) and no job hangs in a card or module
 * call.  Otherwise systemd restarts us; pending licenses survive that.
 */
static void
main_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	long now = main_now_ms();
	const char *why = NULL;
	int i;

	(void)fd;
	(void)what;
	(void)arg;
	if (!main_watch_alive)
		why = "the reader watcher has stopped reporting";
	for (i = 0; i < MAIN_MAX_READERS && why == NULL; i++)
		if (main_readers[i].used && main_readers[i].busy &&
		    now - main_readers[i].busy_since > MAIN_JOB_STUCK_MS)
			why = "a job has been stuck for more than 90 s";
	main_watch_alive = 0;
	if (why == NULL) {
		sd_notify(0, "WATCHDOG=1");
		main_wd_warned = 0;
		return;
	}
	if (!main_wd_warned)
		log_alert("watchdog not fed: %s", why);
	main_wd_warned = 1;
}

/*
 * Started as root outside systemd: become the service user once the
 * configuration and the PIN are read, before anything else is opened.
 */
static void
main_drop_privileges(const struct conf *c, int allow_root)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return;
	if (allow_root) {
		log_warnx("running as root (--allow-root)");
		return;
	}
	if ((pw = getpwnam(c->user)) == NULL)
		fatalx("refusing to run as root, and user \"%s\" ([station] "
		    "user) does not exist: create it (systemd-sysusers) or "
		    "pass --allow-root", c->user);
	if (pw->pw_uid == 0)
		fatalx("[station] user \"%s\" is root; pass --allow-root to "
		    "run as root", c->user);
	if (initgroups(pw->pw_name, pw->pw_gid) != 0 ||
	    setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
		fatalx("cannot become user %s: %s", c->user, strerror(errno));
	if (setuid(0) == 0)
		fatalx("could get root back after dropping it");
	/* Changing credentials resets it; keep the PIN out of cores. */
	prctl(PR_SET_DUMPABLE, 0);
	log_info("running as user %s", c->user);
}

static void
main_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) != 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) != 0)
		fatalx("pipe: %s", strerror(errno));
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "allow-root", no_argument, NULL, 'R' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *path = CONF_DEFAULT_PATH;
	struct event *ev_job, *ev_watch, *ev_hup, *ev_term, *ev_int;
	struct event *ev_wd = NULL;
	struct rlimit nocore = { 0, 0 };
	struct timeval wd_tv;
	uint64_t wd_usec = 0;
	long watch_ms = 10000;
	char err[1024];
	int ch, check = 0, verbose = 0, allow_root = 0, i;

	while ((ch = getopt_long(argc, argv, "f:nvh", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': path = optarg; break;
		case 'n': check = 1; break;
		case 'v': verbose = 1; break;
		case 'R': allow_root = 1; break;
		case 'V': printf("cardlicd %s\n", CARDLICD_VERSION); return 0;
		case 'h': main_usage(stdout, 0); break;
		default: main_usage(stderr, 2);
		}
	}
	if (optind != argc)
		main_usage(stderr, 2);
	/* Invariant 7: no core dump may carry the PIN. */
	prctl(PR_SET_DUMPABLE, 0);
	setrlimit(RLIMIT_CORE, &nocore);
	log_init(isatty(2) || getenv("JOURNAL_STREAM") == NULL, verbose);

	if ((main_conf = conf_load(path, check ? CONF_CHECK_ONLY : 0, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "cardlicd: %s\n", err);
		return 2;
	}
	if (check) {
		/*
		 * The file as read, then what the unit will meet (as root:
		 * before the module, whose threads must not see a fork),
		 * then the module and its slots.  Every problem is shown.
		 */
		conf_print(main_conf, stdout);
		fflush(stdout);
		i = 0;
		if (geteuid() == 0 && !allow_root)
			i += conf_check_unit(main_conf);
		if (conf_check_module(main_conf, stdout, err, sizeof(err)) !=
		    0) {
			fprintf(stderr, "cardlicd: %s\n", err);
			i++;
		}
		conf_unref(main_conf);
		return i > 0 ? 2 : 0;
	}
	main_drop_privileges(main_conf, allow_root);
	main_apply_tz(main_conf);
	signal(SIGPIPE, SIG_IGN);
	if (db_open(main_conf->database, main_conf->station, err,
	    sizeof(err)) != 0)
		fatalx("%s", err);
	/* Before any card: what a crash left behind is recorded first. */
	if (db_recover(err, sizeof(err)) < 0)
		fatalx("%s: %s", main_conf->database, err);
	main_pin_refusal_load();
	/* The counts go on from what the audit rows say, across restarts. */
	if (db_totals(&main_issued, &main_skipped, &main_failed, &main_credits,
	    &main_doubts) != 0)
		log_warnx("%s: cannot count the audit rows; the counts start "
		    "from 0", main_conf->database);
	if (p11_load(main_conf->module, err, sizeof(err)) != 0)
		fatalx("%s", err);
	batch_init();
	main_pipe(main_job_pipe);
	main_pipe(main_watch_pipe);

	if ((main_base = event_base_new()) == NULL)
		fatalx("libevent: cannot create the event loop");
	ev_job = event_new(main_base, main_job_pipe[0], EV_READ | EV_PERSIST,
	    main_on_job, NULL);
	ev_watch = event_new(main_base, main_watch_pipe[0],
	    EV_READ | EV_PERSIST, main_on_watch, NULL);
	ev_hup = evsignal_new(main_base, SIGHUP, main_on_hup, NULL);
	ev_term = evsignal_new(main_base, SIGTERM, main_on_term, NULL);
	ev_int = evsignal_new(main_base, SIGINT, main_on_term, NULL);
	event_add(ev_job, NULL);
	event_add(ev_watch, NULL);
	event_add(ev_hup, NULL);
	event_add(ev_term, NULL);
	event_add(ev_int, NULL);
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		watch_ms = (long)(wd_usec / 4000);
		if (watch_ms > 10000)
			watch_ms = 10000;
		if (watch_ms < 50)
			watch_ms = 50;
		wd_tv.tv_sec = (time_t)(wd_usec / 2 / 1000000);
		wd_tv.tv_usec = (suseconds_t)(wd_usec / 2 % 1000000);
		ev_wd = event_new(main_base, -1, EV_PERSIST, main_on_watchdog,
		    NULL);
		event_add(ev_wd, &wd_tv);
		main_watch_alive = 1;
	}
	control_open(main_base, main_conf->control, main_control_fill);
	if (watch_start(main_watch_pipe[1], watch_ms) != 0)
		fatalx("cannot start the reader watcher");
	log_info("cardlicd %s: station %s, database %s, module %s, start "
	    "policy %s", CARDLICD_VERSION, main_conf->station,
	    main_conf->database, main_conf->module,
	    conf_policy_name(main_conf->policy));
	if (getenv("CARDLIC_TODAY") != NULL)
		log_warnx("CARDLIC_TODAY is set: \"today\" is %s for start "
		    "dates and renewals (meant for tests only)",
		    getenv("CARDLIC_TODAY"));

	event_base_dispatch(main_base);

	/* Modules end in the reverse order of their start. */
	watch_stop();
	control_close();
	job_wait_all(15);
	if (job_running() > 0)
		log_warnx("%d job(s) still running at exit; their licenses "
		    "stay pending", job_running());
	event_free(ev_job);
	event_free(ev_watch);
	event_free(ev_hup);
	event_free(ev_term);
	event_free(ev_int);
	if (ev_wd != NULL)
		event_free(ev_wd);
	event_base_free(main_base);
	for (i = 0; i < MAIN_MAX_READERS; i++)
		conf_unref(main_readers[i].job_conf);
	if (job_running() == 0) {
		p11_unload();
		db_close();
	}
	conf_unref(main_refused);
	conf_unref(main_conf);
	log_info("stopped: issued %ld, skipped %ld, failed %ld, credits used "
	    "%ld, in doubt %ld", main_issued, main_skipped, main_failed,
	    main_credits, main_doubts);
	return 0;
}
