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
 *  5. only a read-back with both flags and the expected dates counts;
 *  6. a credit that may have been spent with no license to show ends in
 *     a durable in-doubt row, and the card gets no new credit until an
 *     admin decides;
 *  8. one card (model + serial) has one job at a time, across readers.
 *
 * A generated license is never held only in memory: its spill file is
 * reserved before GENERATE, written as soon as the answer is in, and its
 * row is committed with retries that do not give up while the daemon
 * runs (the job stays open meanwhile).
 *
 * The job reports to the event loop through a pipe and never blocks it;
 * it reads the loop's state (the classification gate) only through the
 * functions below, under their lock.
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
#define JOB_GATE_MS	10000	/* longest wait for other cards' class */
#define JOB_MAX_CARDS	64

struct job {
	struct job_ctx		c;
	struct job_result	res;
	long			id;
	long			t0;
	struct token		tok;
	char			model[4 * FIELD_LEN + 1];	/* text */
	char			serial[4 * FIELD_LEN + 1];
	int			claimed;	/* holds its card's claim */
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

/*
 * Invariant 8: the cards (model + serial) that have a job now.  A card
 * moved to another reader mid-job waits there for the first job to end,
 * then finds its license pending and reuses it.
 */
struct job_card {
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	char		reader[READER_MAX];
};
static pthread_mutex_t	job_card_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	job_card_cond = PTHREAD_COND_INITIALIZER;
static struct job_card	job_cards[JOB_MAX_CARDS];
static int		job_ncards;

/*
 * The classification gate, written by the loop only: how many inserted
 * cards are not yet known to be batch or target cards.  A target job that
 * finds no batch card waits for those first, so that at start-up (or when
 * a batch card comes in with the targets) nothing pauses for nothing.
 */
static pthread_mutex_t	job_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	job_gate_cond = PTHREAD_COND_INITIALIZER;
static int		job_gate_open_n;

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

/*
 * Append a row that must not be lost: a license paid for, or what became
 * of it.  Retried while the daemon runs, with an alert now and then; the
 * job (and the card's claim) stays open meanwhile.  A restart takes over
 * from the spill file or the `requested` row.
 */
static long
job_record_forever(struct job *j, const struct db_row *r)
{
	char err[512];
	long seq, waited = 0, delay = 100;

	for (;;) {
		if ((seq = db_append(r, err, sizeof(err))) > 0) {
			if (waited > 0)
				log_alert("%s: the %s row of card %s is "
				    "recorded after %ld ms", j->c.reader,
				    r->state, j->serial, waited);
			return seq;
		}
		if (waited % 30000 < delay)
			log_alert("%s: cannot record the %s row of card %s: "
			    "%s; retrying until it is recorded", j->c.reader,
			    r->state, j->serial, err);
		usleep((useconds_t)delay * 1000);
		waited += delay;
		if (delay < 2000)
			delay *= 2;
	}
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
	if (j->res.credit_used)
		job_record_forever(j, &r);
	else
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

/* The loop: how many inserted cards are not classified yet. */
void
job_gate_set(int unclassified)
{
	pthread_mutex_lock(&job_gate_lock);
	job_gate_open_n = unclassified;
	pthread_cond_broadcast(&job_gate_cond);
	pthread_mutex_unlock(&job_gate_lock);
}

/* Wait until every inserted card is classified, up to JOB_GATE_MS. */
static void
job_gate_wait(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += JOB_GATE_MS / 1000;
	pthread_mutex_lock(&job_gate_lock);
	while (job_gate_open_n > 0 && pthread_cond_timedwait(&job_gate_cond,
	    &job_gate_lock, &ts) == 0)
		;
	pthread_mutex_unlock(&job_gate_lock);
}

static int
job_card_find(const struct token *t)
{
	int i;

	for (i = 0; i < job_ncards; i++)
		if (memcmp(job_cards[i].model, t->model, FIELD_LEN) == 0 &&
		    memcmp(job_cards[i].serial, t->serial, FIELD_LEN) == 0)
			return i;
	return -1;
}

/* Invariant 8: wait until no other job holds this card, then hold it. */
static int
job_claim(struct job *j)
{
	int i, said = 0;

	pthread_mutex_lock(&job_card_lock);
	while ((i = job_card_find(&j->tok)) >= 0 ||
	    job_ncards == JOB_MAX_CARDS) {
		if (!said && i >= 0)
			log_info("%s: card %s is in a job in %s; waiting for "
			    "it to end", j->c.reader, j->serial,
			    job_cards[i].reader);
		said = 1;
		pthread_cond_wait(&job_card_cond, &job_card_lock);
	}
	memcpy(job_cards[job_ncards].model, j->tok.model, FIELD_LEN);
	memcpy(job_cards[job_ncards].serial, j->tok.serial, FIELD_LEN);
	snprintf(job_cards[job_ncards].reader, READER_MAX, "%s", j->c.reader);
	job_ncards++;
	j->claimed = 1;
	pthread_mutex_unlock(&job_card_lock);
	return said;
}

static void
job_unclaim(struct job *j)
{
	int i;

	if (!j->claimed)
		return;
	pthread_mutex_lock(&job_card_lock);
	if ((i = job_card_find(&j->tok)) >= 0)
		job_cards[i] = job_cards[--job_ncards];
	pthread_cond_broadcast(&job_card_cond);
	pthread_mutex_unlock(&job_card_lock);
	j->claimed = 0;
}

/* A credit may be spent with no license to show: say so, durably. */
static void
job_doubt(struct job *j, const char *start, const struct batch_license *bl,
    const char *sw)
{
	struct db_row r;
	char reason[700];
	long seq;

	snprintf(reason, sizeof(reason), "%s; no new credit for this card "
	    "until an admin decides (cardlicctl resolve)", bl->message);
	job_row_init(j, &r, "in-doubt");
	r.reason = reason;
	r.start_date = start;
	r.sw = bl->sw != 0 ? sw : NULL;
	r.batch_reader = bl->reader[0] != '\0' ? bl->reader : NULL;
	r.batch_atr = bl->atr[0] != '\0' ? bl->atr : NULL;
	/* The bytes that came, as evidence, when a whole answer came. */
	r.license = bl->has_license ? bl->license : NULL;
	j->res.credit_used = 1;
	j->res.doubt = 1;
	seq = job_record_forever(j, &r);
	log_alert("%s: card %s: a credit may have been spent (row %ld): %s",
	    j->c.reader, j->serial, seq, bl->message);
	job_report(j, "IN-DOUBT", reason);
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
	struct spill_license sl;
	struct db_row r;
	char start[DATE_LEN + 1], reason[700], breader[READER_MAX];
	char batr[2 * ATR_MAX + 1], sw[8];
	enum batch_result br;
	long seq;
	int rc, spill;

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
	if ((seq = db_find_doubt(j->tok.model, j->tok.serial)) != 0) {
		job_fail(j, NULL, seq > 0 ? "a credit for this card is in doubt "
		    "(row %ld); no new credit until an admin decides: "
		    "cardlicctl resolve %ld spent|unspent REASON" : "cannot "
		    "read the audit database (%ld); no credit spent", seq,
		    seq);
		return -1;
	}
	if (!batch_pick(breader, batr)) {
		/* A batch card may be among the cards still unclassified. */
		job_gate_wait();
		if (!batch_pick(breader, batr)) {
			j->res.pause_credit = 1;
			job_fail(j, NULL, "no batch card with credit is "
			    "inserted; issuance paused until one is");
			return -1;
		}
	}
	date_format(conf_start_date(j->c.conf, today), start);
	/* Invariant 1: room for the license before a credit is asked for. */
	if ((spill = spill_reserve(j->id, reason, sizeof(reason))) < 0) {
		job_fail(j, NULL, "cannot reserve room to record a license "
		    "(%s); no credit spent", reason);
		return -1;
	}
	/* Invariant 1: no credit is asked for unless this row is on disk. */
	job_row_init(j, &r, "requested");
	snprintf(reason, sizeof(reason), "asking for a license starting %s",
	    start);
	r.reason = reason;
	r.start_date = start;
	r.batch_reader = breader;
	r.batch_atr = batr;
	if (job_record(j, &r) < 0) {
		spill_release(spill, j->id);
		j->res.failed = 1;
		job_report(j, "FAILED", "cannot write to the audit database; "
		    "no credit spent");
		return -1;
	}
	fault_point("requested");
	br = batch_generate(j->tok.model, j->tok.serial, start, &bl);
	job_time(j, "generate");
	snprintf(sw, sizeof(sw), "%04X", bl.sw & 0xFFFF);
	if (br == BATCH_DOUBT) {
		spill_release(spill, j->id);
		job_doubt(j, start, &bl, sw);
		return -1;
	}
	if (br != BATCH_OK) {
		spill_release(spill, j->id);
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
	j->res.credit_used = 1;
	/* The license is paid for: first durable in the spill file. */
	memset(&sl, 0, sizeof(sl));
	memcpy(sl.model, j->tok.model, FIELD_LEN);
	memcpy(sl.serial, j->tok.serial, FIELD_LEN);
	snprintf(sl.start, sizeof(sl.start), "%s", start);
	snprintf(sl.end, sizeof(sl.end), "%s", bl.end_date);
	memcpy(sl.license, bl.license, LICENSE_LEN);
	snprintf(sl.reader, sizeof(sl.reader), "%s", j->c.reader);
	snprintf(sl.batch_reader, sizeof(sl.batch_reader), "%s", bl.reader);
	snprintf(sl.batch_atr, sizeof(sl.batch_atr), "%s", bl.atr);
	snprintf(sl.sw, sizeof(sl.sw), "%s", sw);
	if (spill_write(spill, j->id, &sl, reason, sizeof(reason)) != 0)
		log_alert("%s: %s: %s; the license is recorded in the database"
		    " only", j->c.reader, j->serial, reason);
	fault_point("commit-generated");
	job_row_init(j, &r, "generated");
	r.reason = bl.message;
	r.start_date = start;
	r.end_date = bl.end_date;
	r.license = bl.license;
	r.batch_reader = bl.reader;
	r.batch_atr = bl.atr;
	r.batch_count = db_batch_count(bl.reader, bl.atr) + 1;
	r.sw = sw;
	seq = job_record_forever(j, &r);
	spill_release(spill, j->id);
	job_time(j, "record");
	lic->license_seq = seq;
	memcpy(lic->license, bl.license, LICENSE_LEN);
	snprintf(lic->start_date, sizeof(lic->start_date), "%s", start);
	snprintf(lic->end_date, sizeof(lic->end_date), "%s", bl.end_date);
	return 0;
}

/*
 * The flags are C chars: true is any non-zero byte.  Only both flags and
 * the expected dates count (invariant 5).
 */
static int
job_status_valid(const uint8_t *st)
{
	return st[1] != 0 && st[2] != 0;
}

static int
job_status_matches(const uint8_t *st, const struct db_pending *lic)
{
	return job_status_valid(st) &&
	    memcmp(st + 3, lic->start_date, DATE_LEN) == 0 &&
	    memcmp(st + 11, lic->end_date, DATE_LEN) == 0;
}

/* A status date: YYYYMMDD, or 00000000 for no limit. */
static int
job_status_date_ok(const uint8_t *d)
{
	long days;

	return memcmp(d, "00000000", DATE_LEN) == 0 ||
	    date_parse((const char *)d, DATE_LEN, &days) == 0;
}

/* ", 18 bytes instead of 19", for a status of the wrong size. */
static const char *
job_status_len(unsigned long rv, unsigned long len)
{
	static __thread char out[64];

	out[0] = '\0';
	if (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_BUFFER_TOO_SMALL)
		snprintf(out, sizeof(out), ": %lu bytes instead of %d", len,
		    STATUS_LEN);
	return out;
}

/* Load, read back, record.  The job's last steps for a target card. */
static void
job_load(struct job *j, const struct db_pending *lic)
{
	struct db_row r;
	uint8_t st[STATUS_LEN];
	char reason[400];
	unsigned long rv, stlen;

	j->end_date = lic->end_date;
	fault_point("load");
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
	job_record_forever(j, &r);
	fault_point("readback");
	rv = p11_status(j->session, st, &stlen);
	job_time(j, "readback");
	if (rv != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "reading the status back failed "
		    "(%s%s); the license stays pending and will be reused",
		    p11_rv_name(rv), job_status_len(rv, stlen));
		return;
	}
	job_row_init(j, &r, "verified");
	r.license_seq = lic->license_seq;
	r.start_date = lic->start_date;
	r.end_date = lic->end_date;
	r.status = st;
	r.ckr = "CKR_OK";
	fault_point("commit-final");
	if (job_status_matches(st, lic)) {
		r.reason = "the card reports the license valid with the "
		    "expected dates";
		job_record_forever(j, &r);
		j->res.issued = 1;
		job_report(j, "verified", NULL);
		return;
	}
	/* Invariant 5: recorded, and no new credit for this card. */
	{
		char sd[4 * DATE_LEN + 1], ed[4 * DATE_LEN + 1];

		/* Invariant 9: the card's bytes, escaped. */
		dbhash_text(st + 3, DATE_LEN, sd, sizeof(sd));
		dbhash_text(st + 11, DATE_LEN, ed, sizeof(ed));
		snprintf(reason, sizeof(reason), "the card reports "
		    "licensePresent=%u serialValid=%u dateValid=%u start=%s "
		    "end=%s; expected 1 1 1 %s %s", st[0], st[1], st[2], sd,
		    ed, lic->start_date, lic->end_date);
	}
	r.state = "rejected";
	r.reason = reason;
	job_record_forever(j, &r);
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
	char reason[300], end[4 * DATE_LEN + 1];
	unsigned long rv, stlen;
	long today, rejected;

	j->id = db_next_job();
	if ((rv = p11_open(j->tok.slot, &j->session)) != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "cannot open a session (%s)",
		    p11_rv_name(rv));
		return;
	}
	j->has_session = 1;
	fault_point("status");
	rv = p11_status(j->session, st, &stlen);
	job_time(j, "status");
	if (rv != CKR_OK) {
		job_fail(j, p11_rv_name(rv), "cannot read the license status "
		    "(%s%s); no credit spent", p11_rv_name(rv),
		    job_status_len(rv, stlen));
		return;
	}
	if (job_status_valid(st) && (!job_status_date_ok(st + 3) ||
	    !job_status_date_ok(st + 11))) {
		char sd[4 * DATE_LEN + 1], ed[4 * DATE_LEN + 1];

		dbhash_text(st + 3, DATE_LEN, sd, sizeof(sd));
		dbhash_text(st + 11, DATE_LEN, ed, sizeof(ed));
		job_row_init(j, &r, "failed");
		snprintf(reason, sizeof(reason), "the middleware calls the "
		    "card's license valid, with dates that are not YYYYMMDD "
		    "(start %s, end %s); card left alone, no credit spent",
		    sd, ed);
		r.reason = reason;
		r.status = st;
		r.ckr = "CKR_OK";
		job_record(j, &r);
		j->res.failed = 1;
		job_report(j, "FAILED", reason);
		return;
	}
	today = j->c.today;
	/*
	 * The card already shows the license that is pending for it: the
	 * load had worked, and only its answer or the read-back was lost.
	 */
	if (job_status_valid(st) && db_find_pending(j->tok.model,
	    j->tok.serial, today, &lic) == 1 && job_status_matches(st, &lic)) {
		job_row_init(j, &r, "verified");
		snprintf(reason, sizeof(reason), "the card shows its pending "
		    "license (row %ld) valid with the expected dates: it had "
		    "been loaded before", lic.license_seq);
		r.reason = reason;
		r.license_seq = lic.license_seq;
		r.start_date = lic.start_date;
		r.end_date = lic.end_date;
		r.status = st;
		r.ckr = "CKR_OK";
		job_record_forever(j, &r);
		j->res.issued = 1;
		j->end_date = lic.end_date;
		job_report(j, "verified", NULL);
		return;
	}
	/* Invariant 3: an acceptable card costs nothing. */
	if (job_status_valid(st) && !job_renewal_due(j, st, today)) {
		job_row_init(j, &r, "skipped");
		dbhash_text(st + 11, DATE_LEN, end, sizeof(end));
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
	fault_point("login");
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

/* Recorded with no model or serial: the token could not be read. */
static void
job_token_failed(struct job *j, unsigned long rv, const char *why)
{
	struct db_row r;

	j->id = db_next_job();
	job_row_init(j, &r, "failed");
	r.model = r.serial = NULL;
	r.reason = why;
	r.ckr = p11_rv_name(rv);
	job_record(j, &r);
	j->res.failed = 1;
	job_report(j, "FAILED", why);
}

static void
job_classify_and_run(struct job *j)
{
	struct job_result interim;
	enum card_kind kind;
	unsigned long rv;
	char atr[2 * ATR_MAX + 1], err[600];
	int probe;

	dbhash_hex(j->c.atr, j->c.atr_len, 1, atr);
	kind = conf_classify(j->c.conf, j->c.reader, j->c.atr, j->c.atr_len);
	if (kind == KIND_IGNORE) {
		j->res.kind = KIND_IGNORE;
		snprintf(err, sizeof(err), "card with ATR %s ignored by a "
		    "[classify] rule", atr);
		job_report(j, "ignored", err);
		return;
	}
	if (kind != KIND_TARGET) {
		fault_point("probe");
		probe = kind == KIND_BATCH ? 1 : batch_probe(j->c.reader);
		if (probe == 1) {
			fault_point("probed");
			/* The loop adds it to the pool: it owns the pool. */
			log_info("%s: batch card inserted (ATR %s)",
			    j->c.reader, atr);
			j->res.kind = KIND_BATCH;
			return;
		}
		if (probe < 0) {
			job_report(j, "FAILED", "the card left before it could "
			    "be identified");
			return;
		}
	}
	j->tstep = job_now_ms();
	fault_point("token");
	rv = p11_find_token(j->c.conf, j->c.reader, &j->tok, err,
	    sizeof(err));
	if (rv == CKR_TOKEN_NOT_PRESENT) {
		/*
		 * PC/SC says a card is in: the middleware may not have seen
		 * it yet.  Look once more before calling it unknown.
		 */
		usleep(200000);
		rv = p11_find_token(j->c.conf, j->c.reader, &j->tok, err,
		    sizeof(err));
	}
	job_time(j, "token");
	if (rv != CKR_OK) {
		j->res.kind = KIND_UNKNOWN;
		if (rv == CKR_TOKEN_NOT_PRESENT ||
		    rv == CKR_TOKEN_NOT_RECOGNIZED) {
			snprintf(err, sizeof(err), "unknown card (ATR %s): not "
			    "a batch card, no token of the middleware; left "
			    "alone", atr);
			job_report(j, "UNKNOWN", err);
			return;
		}
		/* A card we could not read, or a slot we could not tell. */
		job_token_failed(j, rv, err);
		return;
	}
	j->res.kind = KIND_TARGET;
	/* Invariant 9: card bytes are escaped before any text use. */
	dbhash_text(j->tok.model, FIELD_LEN, j->model, sizeof(j->model));
	dbhash_text(j->tok.serial, FIELD_LEN, j->serial, sizeof(j->serial));
	/* Tell the loop early: a target job may wait on the others' class. */
	interim = j->res;
	interim.interim = 1;
	if (write(j->c.notify_fd, &interim, sizeof(interim)) !=
	    (ssize_t)sizeof(interim))
		log_warnx("job: cannot reach the event loop: %s",
		    strerror(errno));
	if (job_claim(j))
		log_info("%s: card %s: the other job has ended; going on",
		    j->c.reader, j->serial);
	job_issue(j);
	job_end_session(j);
	job_unclaim(j);
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
	j->res.insertion = c->insertion;
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
