/*
 * The record of one card's job: its rows (each with the job's timings),
 * the operator's line, and what the loop learns (struct job_result).  The
 * outcome is decided once, in rec_report: the line and the message to the
 * loop both take it from there.  job.c (a card that is not one of the
 * line's, or cannot be read) and issue.c (a target card's steps) record
 * through here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cardlicd.h"

#define REC_DB_RETRIES	3

/*
 * Per-step timings, as JSON for the audit row, in milliseconds with the
 * microseconds kept: {"token":0.612,"status":0.205}.  A step of a few
 * hundred microseconds must not read as 0 or 1.
 */
void
rec_time_us(struct rec *j, const char *step, long us)
{
	int n;

	if (us < 0)
		us = 0;
	if (j->tlen + 48 >= sizeof(j->timings))
		return;
	n = snprintf(j->timings + j->tlen, sizeof(j->timings) - j->tlen,
	    "%s\"%s\":%ld.%03ld", j->tlen == 0 ? "{" : ",", step, us / 1000,
	    us % 1000);
	j->tlen += (size_t)n;
}

void
rec_time(struct rec *j, const char *step)
{
	long now = date_mono_us();

	rec_time_us(j, step, now - j->tstep);
	j->tstep = now;
}

static const char *
rec_timings(struct rec *j)
{
	static __thread char out[460];
	long us = date_mono_us() - j->t0;

	snprintf(out, sizeof(out), "%s%s\"total\":%ld.%03ld}", j->tlen == 0 ?
	    "{" : j->timings, j->tlen == 0 ? "" : ",", us / 1000, us % 1000);
	return out;
}

void
rec_row(struct rec *j, struct db_row *r, const char *state)
{
	memset(r, 0, sizeof(*r));
	r->reader = j->c->reader;
	r->job = j->id;
	r->state = state;
	r->model = j->has_tok ? j->tok.model : NULL;
	r->serial = j->has_tok ? j->tok.serial : NULL;
	r->batch_count = -1;
	r->timings = rec_timings(j);
}

/*
 * The row, after the job's deferred `loaded` row if there is one, in one
 * transaction: the load's record costs no commit of its own.
 */
static long
rec_append(struct rec *j, const struct db_row *r, char *err, size_t len)
{
	struct db_row rows[2];
	long seq;

	if (!j->has_deferred)
		return db_append(r, err, len);
	rows[0] = j->deferred;
	rows[1] = *r;
	if ((seq = db_append_rows(rows, 2, err, len)) > 0)
		j->has_deferred = 0;
	return seq;
}

/*
 * Append a row; on failure try again a few times (a busy or briefly full
 * disk), then give up with an alert.  Returns the seq or -1.
 */
long
rec_record(struct rec *j, const struct db_row *r)
{
	char err[512];
	long seq;
	int i;

	for (i = 0; i < REC_DB_RETRIES; i++) {
		if ((seq = rec_append(j, r, err, sizeof(err))) > 0)
			return seq;
		usleep(100000);
	}
	log_alert("%s: cannot record the %s row of card %s: %s", j->c->reader,
	    r->state, j->serial, err);
	return -1;
}

/*
 * Append a row that must not be lost: a license paid for, or what became
 * of it.  Retried while the daemon runs, with an alert now and then; the
 * job (and the card's claim) stays open meanwhile.  A restart takes over
 * from the spill file or the `requested` row.
 */
long
rec_record_forever(struct rec *j, const struct db_row *r)
{
	char err[512];
	long seq, waited = 0, delay = 100;

	for (;;) {
		if ((seq = rec_append(j, r, err, sizeof(err))) > 0) {
			if (waited > 0)
				log_alert("%s: the %s row of card %s is "
				    "recorded after %ld ms", j->c->reader,
				    r->state, j->serial, waited);
			return seq;
		}
		if (waited % 30000 < delay)
			log_alert("%s: cannot record the %s row of card %s: "
			    "%s; retrying until it is recorded", j->c->reader,
			    r->state, j->serial, err);
		usleep((useconds_t)delay * 1000);
		waited += delay;
		if (delay < 2000)
			delay *= 2;
	}
}

const char *
outcome_name(enum outcome o)
{
	static const char *const names[] = { "-", "verified", "skipped",
	    "FAILED", "REJECTED", "PAUSED", "IN-DOUBT", "UNKNOWN",
	    "ignored" };

	return (size_t)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

/* The operator's line, with the outcome the loop will learn too. */
void
rec_report(struct rec *j, enum outcome outcome, const char *reason)
{
	struct card_report cr;
	char head[65];

	db_chain_head(head);
	memset(&cr, 0, sizeof(cr));
	cr.reader = j->c->reader;
	cr.serial = j->serial;
	cr.model = j->model;
	cr.outcome = outcome_name(outcome);
	j->res->outcome = outcome;
	cr.reason = reason;
	cr.end_date = j->end_date;
	cr.us = date_mono_us() - j->t0;
	cr.chain_head = head;
	log_card(&cr);
}

/* A row saying what went wrong, and the operator's line. */
void
rec_fail(struct rec *j, const char *ckr, const char *fmt, ...)
{
	struct db_row r;
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	rec_row(j, &r, "failed");
	r.reason = reason;
	r.ckr = ckr;
	if (j->res->credit_used)
		rec_record_forever(j, &r);
	else
		rec_record(j, &r);
	rec_report(j, j->paused || j->res->pin_refused || j->res->no_credit ?
	    OUTCOME_PAUSED : OUTCOME_FAILED, reason);
}

/*
 * The job is over: a `loaded` row that an outcome row was to carry is
 * recorded alone (every way after a load records a row; this is the net).
 */
void
rec_finish(struct rec *j)
{
	struct db_row r;

	if (!j->has_deferred)
		return;
	r = j->deferred;
	j->has_deferred = 0;
	rec_record_forever(j, &r);
}

/* The job's start: its context, what the loop learns, and the clock. */
void
rec_init(struct rec *j, const struct job_ctx *c, struct job_result *res)
{
	memset(j, 0, sizeof(*j));
	j->c = c;
	j->res = res;
	/* The operator's wait starts when the card was seen, not here. */
	j->t0 = j->tstep = c->seen_us > 0 ? c->seen_us : date_mono_us();
}
