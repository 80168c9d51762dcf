/*
 * cardlicd: start-up, the one libevent loop, signals and shutdown, as in
 * ntpd.c.  The line's state lives in line.c.  Everything that can block
 * (PC/SC, PKCS#11, SQLite) runs in the watcher or job threads; the loop
 * only reads their messages and decides what happens next.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <malloc.h>
#include <pthread.h>
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
#include "sign.h"

#define MAIN_EVENTS	6	/* job, watch, HUP, TERM, INT, watchdog */

static struct event_base	*main_base;
static int			 main_job_pipe[2];
static int			 main_watch_pipe[2];
static uint64_t			 main_wd_usec;	/* 0: no watchdog */
static long			 main_wd_fed_ms = -1;
static struct event		*main_wd_ev;

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
	/*
	 * The signing key stays the one read at start-up (a root-only
	 * file may be out of reach now; a new key is a restart's).
	 */
	if ((c = conf_load(line_current()->path, CONF_NO_SIGN_KEY, err,
	    sizeof(err))) == NULL) {
		log_warnx("reload refused, the running configuration stays: "
		    "%s", err);
		sd_notify(0, "READY=1");
		return;
	}
	/* Issue 18, case 7: the rows, status and recovery keep one id. */
	if (strcmp(c->station, line_current()->station) != 0) {
		log_warnx("reload refused, the running configuration stays: "
		    "%s: id = %s, but this daemon's rows are station %s's: a "
		    "station's id cannot change in its database", conf_at(c,
		    c->station_line, err, sizeof(err)), c->station,
		    line_current()->station);
		conf_unref(c);
		sd_notify(0, "READY=1");
		return;
	}
	checkpoint_reload(c);
	line_reload(c);
	sd_notify(0, "READY=1");
}

static void
main_on_term(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	line_stop();
	sd_notify(0, "STOPPING=1");
	log_info("stopping: finishing the cards in progress");
	event_base_loopbreak(main_base);
}

/*
 * The watchdog is fed only while the watcher reports and no job hangs in
 * a card or module call.  Otherwise systemd restarts us; pending
 * licenses survive that.  The watcher's reports pace the pings (it wakes
 * every half interval, see main_events), so that an idle daemon wakes
 * once per ping and not also for a timer of its own.
 */
static void
main_watchdog_arm(void)
{
	struct timeval tv;

	/* It fires only when no ping came for 3/4 of the interval. */
	tv.tv_sec = (time_t)(main_wd_usec * 3 / 4 / 1000000);
	tv.tv_usec = (suseconds_t)(main_wd_usec * 3 / 4 % 1000000);
	event_add(main_wd_ev, &tv);
}

static void
main_watchdog_feed(void)
{
	static int warned;
	const char *why = line_watchdog_why();

	main_watchdog_arm();
	if (why == NULL) {
		sd_notify(0, "WATCHDOG=1");
		main_wd_fed_ms = job_now_ms();
		warned = 0;
		return;
	}
	if (!warned)
		log_alert("watchdog not fed: %s", why);
	warned = 1;
}

/* The watcher's messages; a report is the time to feed the watchdog. */
static void
main_on_watch(evutil_socket_t fd, short what, void *arg)
{
	line_on_watch(fd, what, arg);
	/* A busy line reports every card: a ping per quarter is plenty. */
	if (main_wd_usec > 0 && (main_wd_fed_ms < 0 ||
	    job_now_ms() - main_wd_fed_ms >= (long)(main_wd_usec / 4000)))
		main_watchdog_feed();
}

/* No ping for 3/4 of the interval: feed if we may, or say why, once. */
static void
main_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	main_watchdog_feed();
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

/*
 * The station's id names every row of its database and cannot change
 * there (db_open refuses it): -n says so before a start or a reload
 * meets it.  1 when it would be refused.
 */
static int
main_check_station(const struct conf *c)
{
	char was[300], at[4200];

	if (db_station_of(c->database, was, sizeof(was)) != 1 ||
	    strcmp(was, c->station) == 0)
		return 0;
	fprintf(stderr, "cardlicd: %s: id = %s, but %s holds the rows of "
	    "station %s: a station's id cannot change in its database; set "
	    "id = %s again, or give station %s a database of its own\n",
	    conf_at(c, c->station_line, at, sizeof(at)), c->station,
	    c->database, was, was, c->station);
	return 1;
}

/*
 * The start date is [station] timezone's day; the middleware judges a
 * license by its own clock, which reads this machine's zone.  Where the
 * two zones' offsets differ (now, or in the other half of the year), the
 * days differ for some hours of each day: the line's cards then read as
 * not yet valid (issue 18, case 13).  -n says so; it is not an error
 * (a middleware may be known to check UTC).
 */
static void
main_check_timezone(const struct conf *c)
{
	char tz[80], zone[64] = "local", *was = getenv("TZ") != NULL ?
	    strdup(getenv("TZ")) : NULL;
	time_t now = time(NULL), t;
	struct tm here, there;
	long worst = 0, d;
	int i;

	if (strcmp(c->timezone, "local") == 0)
		return;
	for (i = 0; i < 4; i++) {
		t = now + (time_t)i * 91 * 86400;
		localtime_r(&t, &here);
		snprintf(tz, sizeof(tz), ":%s", c->timezone);
		setenv("TZ", tz, 1);
		tzset();
		localtime_r(&t, &there);
		if (was != NULL)
			setenv("TZ", was, 1);
		else
			unsetenv("TZ");
		tzset();
		d = there.tm_gmtoff - here.tm_gmtoff;
		if (labs(d) > labs(worst)) {
			worst = d;
			snprintf(zone, sizeof(zone), "%s", here.tm_zone != NULL ?
			    here.tm_zone : "local");
		}
	}
	free(was);
	if (worst == 0)
		return;
	fprintf(stderr, "cardlicd: warning: timezone = %s is %ld:%02ld %s "
	    "this machine's zone (%s) at times of the year: for %ld:%02ld h of "
	    "such days, the start date that cardlicd gives is the day %s the "
	    "one that a middleware reading this machine's clock checks; unless "
	    "the middleware is known to check %s, use timezone = local\n",
	    c->timezone, labs(worst) / 3600, labs(worst) % 3600 / 60,
	    worst > 0 ? "ahead of" : "behind", zone, labs(worst) / 3600,
	    labs(worst) % 3600 / 60, worst > 0 ? "after" : "before",
	    c->timezone);
}

/*
 * cardlicd -n: the file as read, then what the unit will meet (as root:
 * before the module, whose threads must not see a fork), then the module
 * and its slots.  Every problem is shown; 2 if there was one.
 */
static int
main_check(struct conf *c, int allow_root)
{
	char err[1024];
	int bad = 0;

	conf_print(c, stdout);
	fflush(stdout);
	main_check_timezone(c);
	if (geteuid() == 0 && !allow_root)
		bad += conf_check_unit(c);
	if (conf_check_module(c, stdout, err, sizeof(err)) != 0) {
		fprintf(stderr, "cardlicd: %s\n", err);
		bad++;
	}
	bad += main_check_station(c);
	conf_unref(c);
	return bad > 0 ? 2 : 0;
}

/*
 * The modules, in order: the user, the zone, the audit store (and what a
 * crash left in it), the line's state, the middleware, the batch pool.
 * Fatal errors happen here only.
 */
static void
main_start(struct conf *c, int allow_root)
{
	char err[6000];
	uint8_t cp_head[32], pub[32];
	long cp_seq;

	main_drop_privileges(c, allow_root);
	line_apply_tz(c);
	signal(SIGPIPE, SIG_IGN);
	if (db_open(c->database, c->station, err, sizeof(err)) != 0)
		fatal_admin("%s", err);
	/*
	 * Invariant 11: the file must end where this station left it, and
	 * the rows after its note and its last checkpoint must be its own,
	 * before anything is written on top of them.
	 */
	checkpoint_load(c, &cp_seq, cp_head);
	if (c->key != NULL)
		sign_key_public(c->key, pub);
	if (recover_check_start(c->database, c->key != NULL ? pub : NULL,
	    cp_seq, cp_head, err, sizeof(err)) != 0)
		fatal_admin("%s: %s; nothing is issued from it", c->database,
		    err);
	/*
	 * The key row comes before any other row the key signs.  db takes
	 * the key: nothing else has seen this configuration yet.
	 */
	if (db_sign_start(c->key, c->key_endorsement, err, sizeof(err)) < 0)
		fatal_admin("%s: %s", c->database, err);
	c->key = NULL;
	/* Before any card: what a crash left behind is recorded first. */
	spill_init(c->database, c->station, db_signing_key());
	if (recover_run(err, sizeof(err)) < 0)
		fatalx("%s: %s", c->database, err);
	main_pipe(main_job_pipe);
	main_pipe(main_watch_pipe);
	line_init(c, main_job_pipe[1]);
	if (p11_load(c->module, err, sizeof(err)) != 0)
		fatalx("%s", err);
	batch_init();
}

/*
 * The loop's events freed, and SIGTERM, SIGINT and SIGHUP ignored from
 * then on.  Freeing a signal's event gives it back its default action,
 * so a second SIGTERM during the shutdown (an impatient admin, a test's
 * stop) killed the daemon before it closed the database (seen once in a
 * dozen runs of check_service).  They are blocked while their events go
 * (in the other threads they always are: thread_start), and a
 * pending one is dropped when it becomes ignored.
 */
static void
main_signals_quiet(struct event *ev[MAIN_EVENTS])
{
	sigset_t set, old;
	int i;

	thread_loop_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	for (i = 0; i < MAIN_EVENTS; i++)
		if (ev[i] != NULL)
			event_free(ev[i]);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * The loop's events.  Under systemd's watchdog, the watcher wakes at
 * least every half interval, as often as the watchdog wants a ping
 * (sd_watchdog_enabled(3)), and each of its reports feeds the watchdog
 * while the line is healthy.  Without one, the watcher wakes every 10 s
 * to read the reader list again.  Returns the watcher's period.
 */
static long
main_events(struct event *ev[MAIN_EVENTS])
{
	uint64_t wd_usec = 0;
	long watch_ms = 10000;
	int i;

	if ((main_base = event_base_new()) == NULL)
		fatalx("libevent: cannot create the event loop");
	ev[0] = event_new(main_base, main_job_pipe[0], EV_READ | EV_PERSIST,
	    line_on_job, NULL);
	ev[1] = event_new(main_base, main_watch_pipe[0], EV_READ | EV_PERSIST,
	    main_on_watch, NULL);
	ev[2] = evsignal_new(main_base, SIGHUP, main_on_hup, NULL);
	ev[3] = evsignal_new(main_base, SIGTERM, main_on_term, NULL);
	ev[4] = evsignal_new(main_base, SIGINT, main_on_term, NULL);
	ev[5] = NULL;
	for (i = 0; i < 5; i++)
		event_add(ev[i], NULL);
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		watch_ms = (long)(wd_usec / 2000);
		if (watch_ms < 50)
			watch_ms = 50;
		main_wd_usec = wd_usec;
		ev[5] = main_wd_ev = evtimer_new(main_base, main_on_watchdog,
		    NULL);
		line_watch_alive_now();
		main_watchdog_arm();
	}
	return watch_ms;
}

/*
 * Modules end in the reverse order of their start.  The loop is over:
 * the jobs get their time, and the last checkpoint follows their rows.
 */
static void
main_finish(struct event *ev[MAIN_EVENTS])
{
	watch_stop();
	control_close();
	job_wait_all(15);
	/*
	 * The results of the jobs that ended since the loop stopped (a
	 * refused PIN is already on disk: its job kept it, pinturn.c).
	 */
	line_on_job(main_job_pipe[0], 0, NULL);
	if (job_running() > 0)
		log_warnx("%d job(s) still running at exit; their licenses "
		    "stay pending", job_running());
	/* After the last row: the series says where the daemon stopped. */
	checkpoint_finish();
	main_signals_quiet(ev);
	event_base_free(main_base);
	if (job_running() == 0) {
		p11_unload();
		db_close();
	}
	line_finish();
}

/* The command line: the file, -n, -v and --allow-root. */
static const char *
main_options(int argc, char **argv, int *check, int *verbose,
    int *allow_root)
{
	static const struct option opts[] = {
		{ "allow-root", no_argument, NULL, 'R' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *path = CONF_DEFAULT_PATH;
	int ch;

	while ((ch = getopt_long(argc, argv, "f:nvh", opts, NULL)) != -1) {
		switch (ch) {
		case 'f': path = optarg; break;
		case 'n': *check = 1; break;
		case 'v': *verbose = 1; break;
		case 'R': *allow_root = 1; break;
		case 'V': printf("cardlicd %s\n", CARDLICD_VERSION); exit(0);
		case 'h': main_usage(stdout, 0); break;
		default: main_usage(stderr, 2);
		}
	}
	if (optind != argc)
		main_usage(stderr, 2);
	return path;
}

int
main(int argc, char **argv)
{
	struct event *ev[MAIN_EVENTS];
	struct rlimit nocore = { 0, 0 };
	struct conf *c;
	const char *path;
	long watch_ms;
	char err[1024];
	int check = 0, verbose = 0, allow_root = 0;

	path = main_options(argc, argv, &check, &verbose, &allow_root);
	/*
	 * One malloc arena for every thread.  glibc gives a thread that
	 * meets a busy arena its own (up to 8 per core), and each job's
	 * thread is a new one: on 8 readers that made 9 arenas, each
	 * keeping its share of SQLite's page cache and their free lists,
	 * 1.9 MiB after 80 cards and still growing at 800 (bench/mem).
	 * The threads spend milliseconds in card and fsync calls for every
	 * microsecond in malloc, so sharing one arena costs no card time.
	 */
	mallopt(M_ARENA_MAX, 1);
	/* Invariant 7: no core dump may carry the PIN. */
	prctl(PR_SET_DUMPABLE, 0);
	setrlimit(RLIMIT_CORE, &nocore);
	log_init(isatty(2) || getenv("JOURNAL_STREAM") == NULL, verbose);
	if ((c = conf_load(path, check ? CONF_CHECK_ONLY : 0, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "cardlicd: %s\n", err);
		return 2;
	}
	if (check)
		return main_check(c, allow_root);
	main_start(c, allow_root);
	watch_ms = main_events(ev);
	control_open(main_base, c->control, line_control_fill);
	if (watch_start(main_watch_pipe[1], watch_ms) != 0)
		fatalx("cannot start the reader watcher");
	checkpoint_init(c, main_base);
	log_info("cardlicd %s: station %s, database %s, module %s, start "
	    "policy %s", CARDLICD_VERSION, c->station, c->database, c->module,
	    conf_policy_name(c->policy));
	if (getenv("CARDLIC_TODAY") != NULL)
		log_warnx("CARDLIC_TODAY is set: \"today\" is %s for start "
		    "dates and renewals (meant for tests only)",
		    getenv("CARDLIC_TODAY"));
	conf_unref(c);		/* the line holds its own reference */
	event_base_dispatch(main_base);
	main_finish(ev);
	return 0;
}
