/*
 * The line's state, owned by the event loop alone: the readers and their
 * cards, the jobs in flight, the pauses (no batch card with credit, a
 * refused PIN, kept across restarts), the counts, the batch pool's
 * membership, the time zone and the current configuration.  Jobs learn
 * of it only through what job_start hands them, and tell it what became
 * of a card only through their message (struct job_result).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "cardlicd.h"
#include "dbhash.h"

#define LINE_MAX_READERS	32
#define LINE_JOB_STUCK_MS	90000	/* a job this old is hung */

struct line_reader {
	int		 used;
	char		 name[READER_MAX];
	int		 present;
	uint8_t		 atr[ATR_MAX];
	size_t		 atr_len;
	int		 busy;		/* a job runs on it */
	unsigned	 insertion;	/* the watcher's number of the card */
	long		 seen_us;	/* when the watcher saw it */
	int		 queued;	/* a newer card waits for that job */
	int		 paused;	/* its card waits for issuance */
	int		 batch;
	long		 busy_since;	/* ms, monotonic */
	struct conf	*job_conf;	/* the configuration its job uses */
	int		 job_paused;	/* its job started while paused */
};

static struct conf		*line_conf;
static struct conf		*line_refused;	/* conf whose PIN was refused */
static int			 line_refused_unsure;	/* or maybe refused */
static struct pin_doubt		 line_doubt;	/* when unsure: the card */
static struct line_reader	 line_readers[LINE_MAX_READERS];
static int			 line_paused_credit;
static int			 line_ready;
static int			 line_stopping;
static int			 line_job_fd;
static long			 line_issued, line_skipped, line_failed;
static long			 line_credits, line_doubts;
static int			 line_watch_alive;

static void	line_tz_settle(void);
static void	line_pin_refusal_load(void);
static void	line_pin_trying_load(void);
static void	line_pin_doubt_end(void);

/*
 * setenv may move the environment under a thread that reads it (PC/SC and
 * the module call getenv), so a new zone is applied only while no job
 * runs: at once if the line is idle, else when the last job ends.
 */
static int	line_tz_pending;

/* Why issuance is paused, or NULL while it runs. */
static const char *
line_pause_reason(void)
{
	static char why[700];
	const char *db = db_refusing();

	if (db != NULL) {
		snprintf(why, sizeof(why), "the audit database is not as this "
		    "daemon left it: %s; check it (cardlicctl verify --key) "
		    "and restart", db);
		return why;
	}
	if (line_refused_unsure)
		return "a stop cut short the PIN's first try; insert that card "
		    "again, or check the PIN and reload";
	if (line_refused != NULL)
		return "the PIN was refused; fix the configuration and reload";
	if (line_paused_credit)
		return "no batch card with credit";
	return NULL;
}

void
line_status(void)
{
	const char *why = line_pause_reason();
	char batch[96];

	batch_status(batch, sizeof(batch));
	sd_notifyf(0, "STATUS=%s%s%s: issued %ld, skipped %ld, failed %ld, "
	    "credits used %ld, in doubt %ld; %s", why != NULL ? "PAUSED (" :
	    "running", why != NULL ? why : "", why != NULL ? ")" : "",
	    line_issued, line_skipped, line_failed, line_credits, line_doubts,
	    batch);
}

static struct line_reader *
line_reader(const char *name, int create)
{
	int i, free_slot = -1;

	for (i = 0; i < LINE_MAX_READERS; i++) {
		if (line_readers[i].used &&
		    strcmp(line_readers[i].name, name) == 0)
			return &line_readers[i];
		if (!line_readers[i].used && free_slot < 0)
			free_slot = i;
	}
	if (!create || free_slot < 0)
		return NULL;
	memset(&line_readers[free_slot], 0, sizeof(line_readers[0]));
	line_readers[free_slot].used = 1;
	snprintf(line_readers[free_slot].name, READER_MAX, "%s", name);
	return &line_readers[free_slot];
}

static void
line_start_job(struct line_reader *r)
{
	struct job_ctx c;

	if (line_stopping)
		return;
	if (r->busy) {
		r->queued = 1;
		return;
	}
	line_tz_settle();
	memset(&c, 0, sizeof(c));
	c.conf = line_conf;
	snprintf(c.reader, sizeof(c.reader), "%s", r->name);
	memcpy(c.atr, r->atr, r->atr_len);
	c.atr_len = r->atr_len;
	c.insertion = r->insertion;
	c.seen_us = r->seen_us;
	/* Only the loop sets TZ; jobs get the day, not the clock. */
	c.today = date_today(NULL);
	c.paused_pin = line_refused != NULL;
	if (line_refused_unsure)
		c.pin_doubt = line_doubt;
	c.paused_credit = line_paused_credit;
	c.notify_fd = line_job_fd;
	r->queued = 0;
	r->paused = 0;
	if (job_start(&c) != 0) {
		log_warnx("%s: cannot start a job: %s", r->name,
		    strerror(errno));
		return;
	}
	r->busy = 1;
	/* A job started again (a resume, a requeue) times from its start. */
	r->seen_us = 0;
	r->job_paused = c.paused_pin || c.paused_credit;
	r->busy_since = job_now_ms();
	r->job_conf = conf_ref(line_conf);
}

/* Issuance resumes: the cards that waited in their readers go first. */
static void
line_resume(const char *why)
{
	int i;

	log_info("issuance resumes: %s", why);
	for (i = 0; i < LINE_MAX_READERS; i++)
		if (line_readers[i].used && line_readers[i].present &&
		    line_readers[i].paused)
			line_start_job(&line_readers[i]);
	line_status();
}

/* What cardlicctl status shows: one "key: value" per line. */
void
line_control_fill(char *buf, size_t len)
{
	const char *why = line_pause_reason();
	size_t n;
	int i, readers = 0, busy = 0;

	for (i = 0; i < LINE_MAX_READERS; i++) {
		readers += line_readers[i].used;
		busy += line_readers[i].used && line_readers[i].busy;
	}
	n = (size_t)snprintf(buf, len, "station: %s\nstate: %s%s\n"
	    "issued: %ld\nskipped: %ld\nfailed: %ld\ncredits-used: %ld\n"
	    "in-doubt: %ld\nreaders: %d\njobs-running: %d\n",
	    line_conf->station, why != NULL ? "paused: " : "running",
	    why != NULL ? why : "", line_issued, line_skipped, line_failed,
	    line_credits, line_doubts, readers, busy);
	if (n < len)
		batch_list(buf + n, len - n);
}

void
line_on_job(evutil_socket_t fd, short what, void *arg)
{
	struct job_result res;
	struct line_reader *r;
	struct conf *used;

	(void)what;
	(void)arg;
	while (read(fd, &res, sizeof(res)) == (ssize_t)sizeof(res)) {
		if ((r = line_reader(res.reader, 0)) == NULL)
			continue;
		used = r->job_conf;
		r->job_conf = NULL;
		r->busy = 0;
		line_issued += res.outcome == OUTCOME_VERIFIED;
		line_skipped += res.outcome == OUTCOME_SKIPPED;
		line_failed += res.outcome == OUTCOME_FAILED ||
		    res.outcome == OUTCOME_REJECTED;
		line_credits += res.credit_used;
		line_doubts += res.outcome == OUTCOME_IN_DOUBT;
		r->paused = res.outcome == OUTCOME_PAUSED;
		/*
		 * Its job added the card to the pool (batch.c), if it was
		 * still there; a pull is the watcher's news, not the job's.
		 */
		if (res.kind == KIND_BATCH && r->present &&
		    r->insertion == res.insertion) {
			r->batch = 1;
			if (line_paused_credit) {
				line_paused_credit = 0;
				line_resume("a batch card was inserted");
			}
		}
		/* The job kept the refusal on disk (pinturn.c). */
		if (res.pin_refused && line_refused == NULL && used != NULL) {
			line_refused = used;
			used = NULL;
		} else if (res.pin_refused && line_refused_unsure)
			line_pin_doubt_end();
		if (res.pin_settled && line_refused_unsure) {
			line_pin_doubt_end();
			conf_unref(line_refused);
			line_refused = NULL;
			line_resume("the card whose first try of the PIN was cut "
			    "short accepted it");
		}
		if (res.no_credit && !line_paused_credit) {
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
				line_paused_credit = 1;
				log_alert("issuance paused: no batch card with "
				    "credit; insert one to resume");
			}
		}
		/*
		 * The pause that this job started under was lifted while it
		 * ran (a reload, a batch card, a PIN settled): the card goes
		 * on now, not at its next insertion.  A job that met a pause
		 * the loop has not heard of yet (another job's refusal of the
		 * PIN, on its way) is not one.
		 */
		if (r->paused && r->job_paused && line_pause_reason() == NULL)
			r->queued = 1;
		conf_unref(used);
		line_tz_settle();
		if (r->queued && r->present)
			line_start_job(r);
		line_status();
	}
}

void
line_on_watch(evutil_socket_t fd, short what, void *arg)
{
	struct watch_msg m;
	struct line_reader *r;

	(void)what;
	(void)arg;
	while (read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) {
		line_watch_alive = 1;
		switch (m.type) {
		case WATCH_PCSC_UP:
			log_info("connected to pcscd");
			if (!line_ready) {
				line_ready = 1;
				sd_notify(0, "READY=1");
				line_status();
			}
			break;
		case WATCH_PCSC_DOWN:
			log_warnx("pcscd is not reachable; waiting for it");
			break;
		case WATCH_INSERT:
			if (!classify_reader_wanted(line_conf, m.reader)) {
				log_debug("%s: not a reader of ours",
				    m.reader);
				break;
			}
			if ((r = line_reader(m.reader, 1)) == NULL) {
				log_warnx("%s: too many readers", m.reader);
				break;
			}
			r->present = 1;
			r->insertion = m.card;
			r->seen_us = m.seen_us;
			log_debug("%s: card inserted (insertion %u)", m.reader,
			    m.card);
			memcpy(r->atr, m.atr, m.atr_len);
			r->atr_len = m.atr_len;
			line_start_job(r);
			break;
		case WATCH_REMOVE:
		case WATCH_READER_GONE:
			if ((r = line_reader(m.reader, 0)) == NULL)
				break;
			r->present = 0;
			r->queued = 0;
			r->paused = 0;
			r->insertion = m.card;
			/* Also a batch card whose job has not told us yet. */
			batch_remove(r->name);
			if (r->batch) {
				r->batch = 0;
				log_info("%s: batch card removed", r->name);
				line_status();
			}
			break;
		case WATCH_ALIVE:
			break;
		}
	}
}

void
line_apply_tz(const struct conf *c)
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

static void
line_tz_settle(void)
{
	int i;

	if (!line_tz_pending)
		return;
	for (i = 0; i < LINE_MAX_READERS; i++)
		if (line_readers[i].used && line_readers[i].busy)
			return;
	line_apply_tz(line_conf);
	line_tz_pending = 0;
}

/*
 * Invariant 4 across restarts: a refused PIN stays refused until the
 * configuration or the PIN's source changes.  What is kept on disk, by
 * pinturn.c, is where the PIN came from and the files' identity (device,
 * inode, size, modification time), never anything derived from the PIN
 * itself.
 */

/*
 * At start-up: the daemon stopped while a card was trying a PIN that no
 * card had accepted yet.  If it was wrong, trying it on another card would
 * cost that card a try too.  So issuance waits for the card it was tried
 * on: its token flags then say whether a wrong PIN was entered since its
 * flags were kept (issue.c).  A reload also ends the wait: the admin says
 * the PIN is to be tried.
 */
static void
line_pin_trying_load(void)
{
	char rest[256], serial[4 * FIELD_LEN + 1];

	if (pinturn_mark_read(line_conf, "pin-trying", rest, sizeof(rest)) !=
	    1)
		return;
	line_refused = conf_ref(line_conf);
	line_refused_unsure = 1;
	if (pinturn_doubt_parse(rest, &line_doubt) != 0) {
		log_alert("the daemon stopped while a card was trying the "
		    "configured PIN for the first time, so whether it is right "
		    "is not known; issuance is paused so that no other card "
		    "loses a try: check the PIN in %s, then reload (systemctl "
		    "reload cardlicd)", line_conf->path);
		return;
	}
	dbhash_text(line_doubt.serial, dbhash_trimmed(line_doubt.serial,
	    FIELD_LEN), serial, sizeof(serial));
	log_alert("the daemon stopped while card %s was trying the configured "
	    "PIN for the first time, so whether it is right is not known; "
	    "issuance waits for that card, whose PIN counter will tell, so "
	    "that no other card loses a try.  Insert card %s again, or check "
	    "the PIN in %s and reload (systemctl reload cardlicd)", serial,
	    serial, line_conf->path);
}

/* The doubt is over: the loop forgets it. */
static void
line_pin_doubt_end(void)
{
	line_refused_unsure = 0;
	memset(&line_doubt, 0, sizeof(line_doubt));
}

/* At start-up: is the PIN we were given the one refused before? */
static void
line_pin_refusal_load(void)
{
	switch (pinturn_mark_read(line_conf, "pin-refused", NULL, 0)) {
	case -1:
		line_pin_trying_load();
		return;
	case 0:
		log_info("the configuration or the PIN changed since the PIN "
		    "was refused; issuance is not paused");
		pinturn_clear(line_conf);
		return;
	}
	line_refused = conf_ref(line_conf);
	log_alert("the configured PIN was refused before the restart, and "
	    "neither the configuration nor the PIN changed since; issuance "
	    "stays paused: fix the PIN in %s and reload", line_conf->path);
}

/* Start-up: the configuration, what the audit rows say, the job pipe. */
void
line_init(struct conf *c, int job_fd)
{
	line_conf = conf_ref(c);
	line_job_fd = job_fd;
	line_pin_refusal_load();
	/* The counts go on from what the audit rows say, across restarts. */
	if (db_totals(&line_issued, &line_skipped, &line_failed,
	    &line_credits, &line_doubts) != 0)
		log_warnx("%s: cannot count the audit rows; the counts start "
		    "from 0", c->database);
}

const struct conf *
line_current(void)
{
	return line_conf;
}

/* SIGHUP with a good file: it runs from now on.  Takes c's reference. */
void
line_reload(struct conf *c)
{
	if (strcmp(c->database, line_conf->database) != 0 ||
	    strcmp(c->module, line_conf->module) != 0)
		log_warnx("database and module changes take effect at the "
		    "next restart");
	line_tz_pending |= strcmp(c->timezone, line_conf->timezone) != 0;
	conf_unref(line_conf);
	line_conf = c;
	line_tz_settle();
	log_info("configuration reloaded from %s", c->path);
	if (line_refused != NULL) {
		/* A reload confirms a PIN whose first try was cut short. */
		if (!line_refused_unsure &&
		    c->pin_len == line_refused->pin_len &&
		    memcmp(c->pin, line_refused->pin, c->pin_len) == 0) {
			log_alert("the PIN in the new configuration is the one "
			    "that was refused; issuance stays paused");
		} else {
			conf_unref(line_refused);
			line_refused = NULL;
			line_pin_doubt_end();
			pinturn_clear(line_conf);
			line_resume("the PIN was changed");
		}
	}
	line_status();
}

void
line_stop(void)
{
	line_stopping = 1;
}

/*
 * For the watchdog: why the daemon is not healthy, or NULL.  The watcher
 * must have reported since the last call, and no job may hang in a card
 * or module call.
 */
const char *
line_watchdog_why(void)
{
	long now = job_now_ms();
	const char *why = NULL;
	int i;

	if (!line_watch_alive)
		why = "the reader watcher has stopped reporting";
	for (i = 0; i < LINE_MAX_READERS && why == NULL; i++)
		if (line_readers[i].used && line_readers[i].busy &&
		    now - line_readers[i].busy_since > LINE_JOB_STUCK_MS)
			why = "a job has been stuck for more than 90 s";
	line_watch_alive = 0;
	return why;
}

/* The watcher is taken as alive from the start (the watchdog's first). */
void
line_watch_alive_now(void)
{
	line_watch_alive = 1;
}

/* Shutdown, after the jobs were given their time. */
void
line_finish(void)
{
	int i;

	for (i = 0; i < LINE_MAX_READERS; i++)
		conf_unref(line_readers[i].job_conf);
	conf_unref(line_refused);
	conf_unref(line_conf);
	line_refused = line_conf = NULL;
	log_info("stopped: issued %ld, skipped %ld, failed %ld, credits used "
	    "%ld, in doubt %ld", line_issued, line_skipped, line_failed,
	    line_credits, line_doubts);
}
