/*
 * One job per card insertion, in its own thread: classify the card, then,
 * for a target card, the issuance steps of DESIGN.md.  Every step that
 * could cost a credit or touch the PIN is guarded by the invariants:
 *
 *  1. the license is in the database before it is loaded, and the daemon
 *     asks for one only after a row saying so was written;
 *  2. a pending license of the same card is reused;
 *  3. a card the middleware accepts costs nothing, unless due for renewal;
 *  4. the PIN is tried once, never on a card whose flags say locked or
 *     final try, and never again after it was refused;
 *  5. only a read-back with both flags and the expected dates counts.
 *
 * The job reports to the event loop through a pipe and never blocks it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "cardlicd.h"
#include "dbhash.h"

#define JOB_DB_RETRIES	3

struct job {
	struct job_ctx		c;
	struct job_result	res;
	long			id;
	long			t0;
	struct token		tok;
	char			model[FIELD_LEN + 1];	/* trimmed */
	char			serial[FIELD_LEN + 1];
	unsigned long		session;
	int			has_session;
	int			logged_in;
	char			timings[256];
	size_t			tlen;
	long			tstep;
	const char		*end_date;
};

static pthread_mutex_t	job_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * Until a configuration's PIN has been accepted once, logins take turns:
 * two cards inserted together must not both meet a wrong PIN.  Guards
 * conf->pin_state.
 */
static pthread_mutex_t	job_pin_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	job_cond = PTHREAD_COND_INITIALIZER;
static int		job_count;

static long
job_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Per-step timings, as JSON for the audit row: {"token":3,"status":2}. */
static void
job_time(struct job *j, const char *step)
{
	long now = job_now_ms();
	int n;

	if (j->tlen + 40 >= sizeof(j->timings))
		return;
	n = snprintf(j->timings + j->tlen, sizeof(j->timings) - j->tlen,
	    "%s\"%s\":%ld", j->tlen == 0 ? "{" : ",", step, now - j->tstep);
	j->tlen += (size_t)n;
	j->tstep = now;
}

static const char *
job_timings(struct job *j)
{
	static __thread char out[300];

	snprintf(out, sizeof(out), "%s%s\"total\":%ld}", j->tlen == 0 ? "{" :
	    j->timings, j->tlen == 0 ? "" : ",", job_now_ms() - j->t0);
	return out;
}

static void
job_trim(char *dst, const uint8_t *src)
{
	size_t n = FIELD_LEN;

	while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
		n--;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void
job_row_init(struct job *j, struct db_row *r, const char *state)
{
	memset(r, 0, sizeof(*r));
	r->reader = j->c.reader;
	r->job = j->id;
	r->state = state;
	r->model = j->tok.model;
	r->serial = j->tok.serial;
	r->batch_count = -1;
	r->timings = job_timings(j);
}

/*
 * Append a row; on failure try again a few times (a busy or briefly full
 * disk), then give up with an alert.  Returns the seq or -1.
 */
static long
job_record(struct job *j, const struct db_row *r)
{
	char err[512];
	long seq;
	int i;

	for (i = 0; i < JOB_DB_RETRIES; i++) {
		if ((seq = db_append(r, err, sizeof(err))) > 0)
			return seq;
		usleep(100000);
	}
	log_alert("%s: cannot record the %s row of card %s: %s", j->c.reader,
	    r->state, j->serial, err);
	return -1;
}

/* The operator's line, and the job's end. */
static void
job_report(struct job *j, const char *outcome, const char *reason)
{
	struct card_report cr;
	char head[65];

	db_chain_head(head);
	memset(&cr, 0, sizeof(cr));
	cr.reader = j->c.reader;
	cr.serial = j->serial;
	cr.model = j->model;
	cr.outcome = outcome;
	cr.reason = reason;
	cr.end_date = j->end_date;
	cr.ms = job_now_ms() - j->t0;
	cr.chain_head = head;
	log_card(&cr);
}

/* A row saying what went wrong, and the operator's line. */
static void
job_fail(struct job *j, const char *ckr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
job_fail(struct job *j, const char *ckr, const char *fmt, ...)
{
	struct db_row r;
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	job_row_init(j, &r, "failed");
	r.reason = reason;
	r.ckr = ckr;
	job_record(j, &r);
	j->res.failed = 1;
	job_report(j, j->res.paused || j->res.pause_pin || j->res.pause_credit ?
	    "PAUSED" : "FAILED", reason);
}

static void
job_end_session(struct job *j)
{
	if (j->logged_in)
		p11_logout(j->session);
	if (j->has_session)
		p11_close(j->session);
	j->logged_in = j->has_session = 0;
}

static int
job_renewal_due(const struct job *j, const uint8_t *st, long today)
{
	long end;

	if (j->c.conf->renew_days == 0 || memcmp(st + 11, "00000000", 8) == 0)
		return 0;
	if (date_parse((const char *)st + 11, 8, &end) != 0)
		return 1;
	return end - today < j->c.conf->renew_days;
}

/*
 * Get the license for the card: the pending one, or a new one from a batch
 * card after the request is on record.  0 with lic filled, -1 when the job
 * is over (already recorded and reported).
 */
static int
job_license(struct job *j, long today, struct db_pending *lic)
{
	struct batch_license bl;
	struct db_row r;
	char start[DATE_LEN + 1], reason[400], breader[READER_MAX];
	char batr[2 * ATR_MAX + 1], sw[8];
	enum batch_result br;
	long seq;
	int rc;

	rc = db_find_pending(j->tok.model, j->tok.serial, today, lic);
	job_time(j, "pending");
	if (rc < 0) {
		job_fail(j, NULL, "cannot read the audit database; no credit "
		    "spent");
		return -1;
	}
	if (rc == 1) {
		log_info("%s: %s: reusing its pending license (row %ld)",
		    j->c.reader, j->serial, lic->license_seq);
		return 0;
	}
	if (!batch_pick(breader, batr)) {
		j->res.pause_credit = 1;
		job_fail(j, NULL, "no batch card with credit is inserted; "
		    "issuance paused until one is");
		return -1;
	}
	date_format(conf_start_date(j->c.conf, today), start);
	/* Invariant 1: no credit is asked for unless this row is on disk. */
	job_row_init(j, &r, "requested");
	snprintf(reason, sizeof(reason), "asking for a license starting %s",
	    start);
	r.reason = reason;
	r.start_date = start;
	r.batch_reader = breader;
	r.batch_atr = batr;
	if (job_record(j, &r) < 0) {
		j->res.failed = 1;
		job_report(j, "FAILED", "cannot write to the audit database; "
		    "no credit spent");
		return -1;
	}
	br = batch_generate(j->tok.model, j->tok.serial, start, &bl);
	job_time(j, "generate");
	snprintf(sw, sizeof(sw), "%04X", bl.sw & 0xFFFF);
	if (br != BATCH_OK) {
		job_row_init(j, &r, "failed");
		r.reason = bl.message;
		r.start_date = start;
		r.sw = bl.sw != 0 ? sw : NULL;
		r.batch_reader = bl.reader[0] != '\0' ? bl.reader : NULL;
		r.batch_atr = bl.atr[0] != '\0' ? bl.atr : NULL;
		if (br == BATCH_NONE) {
			j->res.pause_credit = 1;
			snprintf(reason, sizeof(reason), "%s; no batch card "
			    "with credit left: issuance paused until one is "
			    "inserted", bl.message);
			r.reason = reason;
		}
		job_record(j, &r);
		j->res.failed = 1;
		job_report(j, br == BATCH_NONE ? "PAUSED" : "FAILED",
		    r.reason);
		return -1;
	}
	job_row_init(j, &r, "generated");
	r.reason = bl.message;
	r.start_date = start;
	r.end_date = bl.end_date;
	r.license = bl.license;
	r.batch_reader = bl.reader;
	r.batch_atr = bl.atr;
	r.batch_count = db_batch_count(bl.reader, bl.atr) + 1;
	r.sw = sw;
	j->res.credit_used = 1;
	seq = job_record(j, &r);
	job_time(j, "record");
	if (seq < 0) {
		char hex[2 * LICENSE_LEN + 1];

		/*
		 * The credit is spent and the row could not be written:
		 * the license is not loaded (invariant 1), and the journal
		 * keeps it, so that it can be recovered by hand.
		 */
		dbhash_hex(bl.license, LICENSE_LEN, 1, hex);
		log_alert("%s: %s: license generated (start %s, end %s) but "
		    "NOT recorded, so NOT loaded; license data %s",
		    j->c.reader, j->serial, start, bl.end_date, hex);
		j->res.failed = 1;
		job_report(j, "FAILED", "license generated but the audit "
		    "database refused it; see the alert in the log");
		return -1;
	}
	lic->license_seq = seq;
	memcpy(lic->license, bl.license, LICENSE_LEN);
	snprintf(lic->start_date, sizeof(lic->start_date), "%s", start);
	snprintf(lic->end_date, sizeof(lic->end_date), "%s", bl.end_date);
	return 0;
}

/* Load, read back, record.  The job's last steps for a target card. */
static void
job_load(struct job *j, const struct db_pending *lic)
{
	struct db_row r;
	uint8_t st[STATUS_LEN];
	char reason[300];
	unsigned long rv;

	j->end_date = lic->end_date;
	rv = p11_load_license(j->session, lic->license);
	job_time(j, "load");
	if (rv != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "loading the license failed "
		    "(%s); it stays pending for this card and will be reused",
		    p11_rv_name(rv));
		return;
	}
	job_row_init(j, &r, "loaded");
	r.reason = "C_SetAttributeValue accepted the license";
	r.license_seq = lic->license_seq;
	r.start_date = lic->start_date;
	r.end_date = lic->end_date;
	r.ckr = "CKR_OK";
	job_record(j, &r);
	rv = p11_status(j->session, st);
	job_time(j, "readback");
	if (rv != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "reading the status back failed "
		    "(%s); the license stays pending and will be reused",
		    p11_rv_name(rv));
		return;
	}
	job_row_init(j, &r, "verified");
	r.license_seq = lic->license_seq;
	r.start_date = lic->start_date;
	r.end_date = lic->end_date;
	r.status = st;
	r.ckr = "CKR_OK";
	if (st[1] == 1 && st[2] == 1 &&
	    memcmp(st + 3, lic->start_date, DATE_LEN) == 0 &&
	    memcmp(st + 11, lic->end_date, DATE_LEN) == 0) {
		r.reason = "the card reports the license valid with the "
		    "expected dates";
		job_record(j, &r);
		j->res.issued = 1;
		job_report(j, "verified", NULL);
		return;
	}
	/* Invariant 5: recorded, and no new credit for this card. */
	snprintf(reason, sizeof(reason), "the card reports licensePresent=%d"
	    " serialValid=%d dateValid=%d start=%.8s end=%.8s; expected "
	    "1 1 1 %s %s", st[0], st[1], st[2], (const char *)st + 3,
	    (const char *)st + 11, lic->start_date, lic->end_date);
	r.state = "rejected";
	r.reason = reason;
	job_record(j, &r);
	j->res.failed = 1;
	job_report(j, "REJECTED", reason);
}

/*
 * Log in, at most once per card.  CKR_FUNCTION_CANCELED (never sent to
 * the card) when this configuration's PIN has already been refused.
 */
static unsigned long
job_login(struct job *j)
{
	struct conf *c = j->c.conf;
	unsigned long rv;
	int turn;

	pthread_mutex_lock(&job_pin_lock);
	if (c->pin_state < 0) {
		pthread_mutex_unlock(&job_pin_lock);
		return CKR_FUNCTION_CANCELED;
	}
	turn = c->pin_state == 0;
	if (!turn)
		pthread_mutex_unlock(&job_pin_lock);
	rv = p11_login(j->session, c->pin, c->pin_len);
	job_time(j, "login");
	if (!turn && rv == CKR_PIN_INCORRECT)
		pthread_mutex_lock(&job_pin_lock);
	if (turn || rv == CKR_PIN_INCORRECT) {
		if (rv == CKR_PIN_INCORRECT)
			c->pin_state = -1;
		else if (rv == CKR_OK)
			c->pin_state = 1;
		pthread_mutex_unlock(&job_pin_lock);
	}
	return rv;
}

static void
job_issue(struct job *j)
{
	struct db_pending lic;
	struct db_row r;
	uint8_t st[STATUS_LEN];
	char reason[300], end[DATE_LEN + 1];
	unsigned long rv;
	long today, rejected;

	j->id = db_next_job();
	job_trim(j->model, j->tok.model);
	job_trim(j->serial, j->tok.serial);
	if ((rv = p11_open(j->tok.slot, &j->session)) != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "cannot open a session (%s)",
		    p11_rv_name(rv));
		return;
	}
	j->has_session = 1;
	rv = p11_status(j->session, st);
	job_time(j, "status");
	if (rv != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "cannot read the license status "
		    "(%s)", p11_rv_name(rv));
		return;
	}
	today = date_today(NULL);
	/* Invariant 3: an acceptable card costs nothing. */
	if (st[1] == 1 && st[2] == 1 && !job_renewal_due(j, st, today)) {
		job_row_init(j, &r, "skipped");
		memcpy(end, st + 11, DATE_LEN);
		end[DATE_LEN] = '\0';
		if (st[0])
			snprintf(reason, sizeof(reason), "already licensed "
			    "until %s", end);
		else
			snprintf(reason, sizeof(reason), "covered by a global "
			    "license: no license needed");
		r.reason = reason;
		r.status = st;
		r.ckr = "CKR_OK";
		job_record(j, &r);
		j->res.skipped = 1;
		job_report(j, "skipped", reason);
		return;
	}
	/* Invariant 4: the PIN is not tried where it could do harm. */
	if (j->c.paused_pin) {
		j->res.paused = 1;
		job_fail(j, NULL, "issuance is paused: the configured PIN was "
		    "refused; fix the configuration and reload");
		return;
	}
	if (p11_pin_locked(j->tok.flags)) {
		job_fail(j, NULL, "the card's PIN is locked; card not touched");
		return;
	}
	if (p11_pin_final_try(j->tok.flags)) {
		job_fail(j, NULL, "only one PIN try left on the card; card not "
		    "touched");
		return;
	}
	rejected = db_find_rejected(j->tok.model, j->tok.serial);
	if (rejected != 0) {
		job_fail(j, NULL, rejected > 0 ? "a license loaded on this card "
		    "was rejected before (row %ld); no new credit is spent on "
		    "it" : "cannot read the audit database (%ld)", rejected);
		return;
	}
	if (j->c.paused_credit && !batch_available()) {
		j->res.paused = 1;
		job_fail(j, NULL, "issuance is paused: no batch card with "
		    "credit; insert one");
		return;
	}
	if ((rv = job_login(j)) == CKR_FUNCTION_CANCELED) {
		j->res.paused = 1;
		job_fail(j, NULL, "issuance is paused: the configured PIN was "
		    "refused; fix the configuration and reload");
		return;
	}
	if (rv == CKR_PIN_INCORRECT) {
		j->res.pause_pin = 1;
		log_alert("the configured PIN was refused by card %s in %s; "
		    "issuance is paused: fix the PIN in %s and reload "
		    "(systemctl reload cardlicd)", j->serial, j->c.reader,
		    j->c.conf->path);
		job_fail(j, p11_rv_name(rv), "the configured PIN was refused; "
		    "issuance paused until the configuration is fixed");
		return;
	}
	if (rv != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "login failed (%s)",
		    p11_rv_name(rv));
		return;
	}
	j->logged_in = 1;
	if (job_license(j, today, &lic) != 0)
		return;
	job_load(j, &lic);
}

static void
job_classify_and_run(struct job *j)
{
	enum card_kind kind;
	unsigned long rv;
	char atr[2 * ATR_MAX + 1];
	int probe;

	dbhash_hex(j->c.atr, j->c.atr_len, 1, atr);
	kind = conf_classify(j->c.conf, j->c.reader, j->c.atr, j->c.atr_len);
	if (kind == KIND_IGNORE) {
		log_info("%s: card %s ignored by a [classify] rule",
		    j->c.reader, atr);
		j->res.kind = KIND_IGNORE;
		return;
	}
	if (kind != KIND_TARGET) {
		probe = kind == KIND_BATCH ? 1 : batch_probe(j->c.reader);
		if (probe == 1) {
			batch_add(j->c.reader, j->c.atr, j->c.atr_len);
			log_info("%s: batch card inserted (ATR %s)",
			    j->c.reader, atr);
			j->res.kind = KIND_BATCH;
			return;
		}
		if (probe < 0) {
			log_info("%s: the card left before it could be "
			    "identified", j->c.reader);
			return;
		}
	}
	j->tstep = job_now_ms();
	rv = p11_find_token(j->c.reader, &j->tok);
	job_time(j, "token");
	if (rv != CKR_OK) {
		if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED)
			log_info("%s: unknown card (ATR %s): not a batch card, "
			    "no token of the middleware; left alone",
			    j->c.reader, atr);
		else
			log_warnx("%s: cannot read the token (%s)",
			    j->c.reader, p11_rv_name(rv));
		j->res.kind = KIND_UNKNOWN;
		return;
	}
	j->res.kind = KIND_TARGET;
	job_issue(j);
	job_end_session(j);
}

static void *
job_main(void *arg)
{
	struct job *j = arg;

	job_classify_and_run(j);
	if (write(j->c.notify_fd, &j->res, sizeof(j->res)) !=
	    (ssize_t)sizeof(j->res))
		log_warnx("job: cannot reach the event loop: %s",
		    strerror(errno));
	conf_unref(j->c.conf);
	free(j);
	pthread_mutex_lock(&job_lock);
	if (--job_count == 0)
		pthread_cond_broadcast(&job_cond);
	pthread_mutex_unlock(&job_lock);
	return NULL;
}

/* Start a job; the context is copied and holds a reference on conf. */
int
job_start(struct job_ctx *c)
{
	pthread_attr_t attr;
	pthread_t t;
	struct job *j;
	int rc;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	j->c = *c;
	conf_ref(j->c.conf);
	j->t0 = j->tstep = job_now_ms();
	snprintf(j->res.reader, sizeof(j->res.reader), "%s", c->reader);
	pthread_mutex_lock(&job_lock);
	job_count++;
	pthread_mutex_unlock(&job_lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, job_main, j);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		conf_unref(j->c.conf);
		free(j);
		pthread_mutex_lock(&job_lock);
		job_count--;
		pthread_mutex_unlock(&job_lock);
		return -1;
	}
	return 0;
}

int
job_running(void)
{
	int n;

	pthread_mutex_lock(&job_lock);
	n = job_count;
	pthread_mutex_unlock(&job_lock);
	return n;
}

/* At shutdown: let the jobs finish their card, up to secs seconds. */
void
job_wait_all(int secs)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	pthread_mutex_lock(&job_lock);
	while (job_count > 0 && pthread_cond_timedwait(&job_cond, &job_lock,
	    &ts) == 0)
		;
	pthread_mutex_unlock(&job_lock);
}
