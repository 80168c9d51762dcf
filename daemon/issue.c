/*
 * The issuance steps of one target card (DESIGN.md), run by its job's
 * thread once the card is known to be a target card and claimed (job.c).
 * Every step that could cost a credit or touch the PIN is guarded by the
 * invariants:
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
 *     admin decides.
 *
 * A generated license is never held only in memory: its spill file is
 * reserved before GENERATE, written as soon as the answer is in, and its
 * row is committed with retries that do not give up while the daemon
 * runs (the job stays open meanwhile).
 *
 * What the job records and says goes through its record (record.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "cardlicd.h"
#include "dbhash.h"

/* One target card's issuance: its record, and its session. */
struct issue {
	struct rec	*r;
	unsigned long	 session;
	int		 has_session;
	int		 logged_in;
	int		 waited;	/* for another reader's job */
};

static void
issue_end_session(struct issue *j)
{
	if (j->logged_in)
		p11_logout(j->session);
	if (j->has_session)
		p11_close(j->session);
	j->logged_in = j->has_session = 0;
}

static int	issue_card_check(struct issue *, const char *, int);

/*
 * Invariant 10: the card in the reader is still the one this job is for.
 * Two witnesses: the watcher's number of the reader's card (a card pulled
 * and put back is a new insertion, whose own job comes next), and the
 * token's model and serial as the middleware reads them now (a swap that
 * the watcher has not seen yet shows there first).  The token's flags are
 * taken anew, for the PIN's checks.  0 when it is the job's card; else
 * the job is over: the operator's line names the card that is there now,
 * nothing was sent to it, and nothing is recorded against the one that
 * left (its license, if one was made, stays pending for it).
 */
static int
issue_still_here(struct issue *j, const char *when)
{
	return issue_card_check(j, when, 0);
}

/*
 * After the read-back: what was read through the card's session is the
 * card's, even when it has left since (an operator takes the card as
 * soon as it is done); only another card, seen in its place, says that
 * the session may have read that one.
 */
static int
issue_not_replaced(struct issue *j, const char *when)
{
	return issue_card_check(j, when, 1);
}

static int
issue_card_check(struct issue *j, const char *when, int gone_ok)
{
	struct token t;
	char now[4 * FIELD_LEN + 1], reason[600];
	const char *kept;
	unsigned long rv;
	unsigned card;

	card = watch_card_now(j->r->c->reader);
	rv = p11_token_now(j->r->tok.slot, &t);
	if (rv == CKR_OK && card == j->r->c->insertion &&
	    memcmp(t.model, j->r->tok.model, FIELD_LEN) == 0 &&
	    memcmp(t.serial, j->r->tok.serial, FIELD_LEN) == 0) {
		j->r->tok.flags = t.flags;
		return 0;
	}
	if (gone_ok && (card == 0 || card == j->r->c->insertion) && (rv != CKR_OK ||
	    (memcmp(t.model, j->r->tok.model, FIELD_LEN) == 0 &&
	    memcmp(t.serial, j->r->tok.serial, FIELD_LEN) == 0)))
		return 0;
	kept = j->r->res->credit_used ? "; its license stays pending for it and "
	    "is loaded when it comes back" : "";
	if (rv == CKR_OK && memcmp(t.model, j->r->tok.model, FIELD_LEN) == 0 &&
	    memcmp(t.serial, j->r->tok.serial, FIELD_LEN) == 0)
		snprintf(reason, sizeof(reason), "the card was taken out and "
		    "put back %s: its new insertion is taken from the start%s",
		    when, kept);
	else if (rv == CKR_OK) {
		dbhash_text(t.serial, dbhash_trimmed(t.serial, FIELD_LEN),
		    now, sizeof(now));
		snprintf(reason, sizeof(reason), "card %s left the reader %s; "
		    "card %s is in it now and gets a turn of its own: nothing "
		    "was sent to it by this job%s", j->r->serial, when, now,
		    kept);
	} else
		snprintf(reason, sizeof(reason), "card %s left the reader %s "
		    "(%s): nothing more was sent%s", j->r->serial, when,
		    p11_rv_name(rv), kept);
	log_info("%s: card %s: %s", j->r->c->reader, j->r->serial, reason);
	rec_report(j->r, OUTCOME_FAILED, reason);
	return -1;
}

static int
issue_renewal_due(const struct issue *j, const uint8_t *st, long today)
{
	long end;

	if (j->r->c->conf->renew_days == 0 || memcmp(st + 11, "00000000", 8) == 0)
		return 0;
	if (date_parse((const char *)st + 11, 8, &end) != 0)
		return 1;
	return end - today < j->r->c->conf->renew_days;
}

/* A credit may be spent with no license to show: say so, durably. */
static void
issue_doubt(struct issue *j, const char *start, const struct batch_license *bl,
    const char *sw)
{
	struct db_row r;
	char reason[700];
	long seq;

	snprintf(reason, sizeof(reason), "%s; no new credit for this card "
	    "until an admin decides (cardlicctl resolve)", bl->message);
	rec_row(j->r, &r, "in-doubt");
	r.reason = reason;
	r.start_date = start;
	r.sw = bl->sw != 0 ? sw : NULL;
	r.batch_reader = bl->reader[0] != '\0' ? bl->reader : NULL;
	r.batch_atr = bl->atr[0] != '\0' ? bl->atr : NULL;
	/* The bytes that came, as evidence, when a whole answer came. */
	r.license = bl->has_license ? bl->license : NULL;
	j->r->res->credit_used = 1;
	seq = rec_record_forever(j->r, &r);
	batch_settle(bl->reader);
	log_alert("%s: card %s: a credit may have been spent (row %ld): %s",
	    j->r->c->reader, j->r->serial, seq, bl->message);
	rec_report(j->r, OUTCOME_IN_DOUBT, reason);
}

/*
 * Get the license for the card: the pending one, or a new one from a batch
 * card after the request is on record.  0 with lic filled, -1 when the job
 * is over (already recorded and reported).
 */
/*
 * The license is paid for: durable in the spill file first, then its
 * `generated` row, retried until it is in (invariant 1).
 */
static int
issue_keep_license(struct issue *j, int spill, const char *start,
    const struct batch_license *bl, const char *sw, struct db_pending *lic)
{
	struct spill_license sl;
	struct db_row r;
	char reason[300];
	long seq;

	j->r->res->credit_used = 1;
	/* The license is paid for: first durable in the spill file. */
	memset(&sl, 0, sizeof(sl));
	memcpy(sl.model, j->r->tok.model, FIELD_LEN);
	memcpy(sl.serial, j->r->tok.serial, FIELD_LEN);
	snprintf(sl.start, sizeof(sl.start), "%s", start);
	snprintf(sl.end, sizeof(sl.end), "%s", bl->end_date);
	memcpy(sl.license, bl->license, LICENSE_LEN);
	snprintf(sl.reader, sizeof(sl.reader), "%s", j->r->c->reader);
	snprintf(sl.batch_reader, sizeof(sl.batch_reader), "%s", bl->reader);
	snprintf(sl.batch_atr, sizeof(sl.batch_atr), "%s", bl->atr);
	snprintf(sl.sw, sizeof(sl.sw), "%s", sw);
	if (spill_write(spill, j->r->id, &sl, reason, sizeof(reason)) != 0)
		log_alert("%s: %s: %s; the license is recorded in the database"
		    " only", j->r->c->reader, j->r->serial, reason);
	fault_point("commit-generated");
	rec_row(j->r, &r, "generated");
	r.reason = bl->message;
	r.start_date = start;
	r.end_date = bl->end_date;
	r.license = bl->license;
	r.batch_reader = bl->reader;
	r.batch_atr = bl->atr;
	r.batch_count = db_batch_count(bl->reader, bl->atr) + 1;
	r.sw = sw;
	if ((seq = db_append(&r, reason, sizeof(reason))) <= 0) {
		/* The file may have to hold the license for a while now. */
		if (spill_sync(spill, j->r->id, reason, sizeof(reason)) != 0)
			log_alert("%s: %s: %s", j->r->c->reader, j->r->serial,
			    reason);
		seq = rec_record_forever(j->r, &r);
	}
	batch_settle(bl->reader);
	spill_release(spill, j->r->id);
	rec_time(j->r, "generated");
	lic->license_seq = seq;
	memcpy(lic->license, bl->license, LICENSE_LEN);
	snprintf(lic->start_date, sizeof(lic->start_date), "%s", start);
	snprintf(lic->end_date, sizeof(lic->end_date), "%s", bl->end_date);
	return 0;
}

/*
 * A new license from a batch card: room reserved, the request on record,
 * then GENERATE.  0 with lic filled, -1 when the job is over.
 */
static int
issue_generate(struct issue *j, const char *start, int hold,
    const char *breader, const char *batr, struct db_pending *lic)
{
	struct batch_license bl;
	struct db_row r;
	char reason[700], sw[8];
	enum batch_result br;
	int spill;

	/* Invariant 1: room for the license before a credit is asked for. */
	if ((spill = spill_reserve(reason, sizeof(reason))) < 0) {
		batch_unpick(hold);
		rec_fail(j->r, NULL, "cannot reserve room to record a license "
		    "(%s); no credit spent", reason);
		return -1;
	}
	/* Invariant 1: no credit is asked for unless this row is on disk. */
	rec_row(j->r, &r, "requested");
	snprintf(reason, sizeof(reason), "asking for a license starting %s",
	    start);
	r.reason = reason;
	r.start_date = start;
	r.batch_reader = breader;
	r.batch_atr = batr;
	if (rec_record(j->r, &r) < 0) {
		batch_unpick(hold);
		spill_release(spill, j->r->id);
		rec_report(j->r, OUTCOME_FAILED, "cannot write to the audit "
		    "database; no credit spent");
		return -1;
	}
	rec_time(j->r, "requested");
	fault_point("requested");
	br = batch_generate(hold, j->r->tok.model, j->r->tok.serial, start, &bl);
	if (bl.wait_us > 0) {
		/* It waited for another card: the first was gone or spent. */
		rec_time_us(j->r, "batchwait2", bl.wait_us);
		j->r->tstep += bl.wait_us;
	}
	rec_time(j->r, "generate");
	snprintf(sw, sizeof(sw), "%04X", bl.sw & 0xFFFF);
	if (br == BATCH_DOUBT) {
		spill_release(spill, j->r->id);
		issue_doubt(j, start, &bl, sw);
		return -1;
	}
	if (br != BATCH_OK) {
		spill_release(spill, j->r->id);
		rec_row(j->r, &r, "failed");
		r.reason = bl.message;
		r.start_date = start;
		r.sw = bl.sw != 0 ? sw : NULL;
		r.batch_reader = bl.reader[0] != '\0' ? bl.reader : NULL;
		r.batch_atr = bl.atr[0] != '\0' ? bl.atr : NULL;
		if (br == BATCH_NONE) {
			j->r->res->no_credit = 1;
			snprintf(reason, sizeof(reason), "%s; no batch card "
			    "with credit left: issuance paused until one is "
			    "inserted", bl.message);
			r.reason = reason;
		}
		rec_record(j->r, &r);
		rec_report(j->r, br == BATCH_NONE ? OUTCOME_PAUSED :
		    OUTCOME_FAILED, r.reason);
		return -1;
	}
	return issue_keep_license(j, spill, start, &bl, sw, lic);
}

/*
 * The database could not answer, or the daemon refuses it from now on
 * (db_refusing: a row or an index is not as this station wrote it).
 * Nothing is recorded against the card in the second case: nothing can.
 */
static void
issue_db_failed(struct issue *j)
{
	const char *db = db_refusing();
	char reason[800];

	if (db == NULL) {
		rec_fail(j->r, NULL, "cannot read the audit database; no credit "
		    "spent");
		return;
	}
	snprintf(reason, sizeof(reason), "issuance is stopped: the audit "
	    "database is not as this daemon left it (%s); card not touched",
	    db);
	j->r->paused = 1;
	rec_report(j->r, OUTCOME_PAUSED, reason);
}

static int
issue_license(struct issue *j, long today, struct db_pending *lic)
{
	char start[DATE_LEN + 1], breader[READER_MAX];
	char batr[2 * ATR_MAX + 1];
	long seq;
	int rc, hold, waited = 0;

	/*
	 * Invariant 2, and more: a license this card was given, pending or
	 * verified once and lost since, is loaded again at no cost.
	 */
	rc = db_find_pending(j->r->tok.model, j->r->tok.serial, today, 1, lic);
	rec_time(j->r, "pending");
	if (rc < 0) {
		issue_db_failed(j);
		return -1;
	}
	if (rc == 1) {
		log_info("%s: %s: loading the license it was given before "
		    "(row %ld): no new credit", j->r->c->reader, j->r->serial,
		    lic->license_seq);
		return 0;
	}
	seq = db_find_doubt(j->r->tok.model, j->r->tok.serial);
	rec_time(j->r, "doubt");
	if (seq != 0) {
		rec_fail(j->r, NULL, seq > 0 ? "a credit for this card is in "
		    "doubt (row %ld); no new credit until an admin decides: "
		    "cardlicctl resolve %ld spent|unspent REASON" : "cannot "
		    "read the audit database (%ld); no credit spent", seq,
		    seq);
		return -1;
	}
	/* A batch card may be among the cards still being classified. */
	if ((hold = batch_pick(breader, batr, &waited)) == 0) {
		j->r->res->no_credit = 1;
		rec_fail(j->r, NULL, "no batch card with credit is inserted; "
		    "issuance paused until one is");
		return -1;
	}
	/* Held from here: the `requested` row names the card asked. */
	rec_time(j->r, "batchwait");
	/* Invariant 10: no credit is asked for a card that left meanwhile. */
	if (waited && issue_still_here(j, "while its job waited for a batch "
	    "card") != 0) {
		batch_unpick(hold);
		return -1;
	}
	date_format(conf_start_date(j->r->c->conf, today), start);
	return issue_generate(j, start, hold, breader, batr, lic);
}

/*
 * The flags are C chars: true is any non-zero byte.  Only both flags and
 * the expected dates count (invariant 5).
 */
static int
issue_status_valid(const uint8_t *st)
{
	return st[1] != 0 && st[2] != 0;
}

/*
 * A license whose start is still to come: the middleware says dateValid
 * is false until that day, though the card holds the right license (a
 * start policy of today-plus, next-month, or a fixed date ahead).  Today
 * included: the day the middleware checks is its clock's, which may be a
 * day behind [station] timezone's (a zone set to UTC on a station west of
 * it, in the evening), and then a license that starts today by ours is
 * still to come by its (issue 18, case 13).
 */
static int
issue_status_later(const uint8_t *st, long today)
{
	long start;

	return st[1] != 0 && st[2] == 0 &&
	    date_parse((const char *)st + 3, DATE_LEN, &start) == 0 &&
	    start >= today;
}

/* The middleware accepts the license now, or will from its start. */
static int
issue_status_ok(const uint8_t *st, long today)
{
	return issue_status_valid(st) || issue_status_later(st, today);
}

static int
issue_status_matches(const uint8_t *st, const struct db_pending *lic,
    long today)
{
	return issue_status_ok(st, today) &&
	    memcmp(st + 3, lic->start_date, DATE_LEN) == 0 &&
	    memcmp(st + 11, lic->end_date, DATE_LEN) == 0;
}

/* A status date: YYYYMMDD, or 00000000 for no limit. */
static int
issue_status_date_ok(const uint8_t *d)
{
	long days;

	return memcmp(d, "00000000", DATE_LEN) == 0 ||
	    date_parse((const char *)d, DATE_LEN, &days) == 0;
}

/* ", 18 bytes instead of 19", for a status of the wrong size. */
static const char *
issue_status_len(unsigned long rv, unsigned long len)
{
	static __thread char out[64];

	out[0] = '\0';
	if (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_BUFFER_TOO_SMALL)
		snprintf(out, sizeof(out), ": %lu bytes instead of %d", len,
		    STATUS_LEN);
	return out;
}

/*
 * The status read back, judged (invariant 5: only both flags, or a start
 * still to come, with the expected dates, count), and recorded with the
 * outcome.  A rejection is recorded, and the card gets no new credit.
 */
static void
issue_judge(struct issue *j, const struct db_pending *lic,
    const uint8_t st[STATUS_LEN])
{
	struct db_row r;
	char reason[400], sd[4 * DATE_LEN + 1], ed[4 * DATE_LEN + 1];

	rec_row(j->r, &r, "verified");
	r.license_seq = lic->license_seq;
	r.start_date = lic->start_date;
	r.end_date = lic->end_date;
	r.status = st;
	r.ckr = "CKR_OK";
	fault_point("commit-final");
	if (issue_status_matches(st, lic, j->r->c->today)) {
		r.reason = issue_status_valid(st) ? "the card reports the "
		    "license valid with the expected dates" : "the card "
		    "reports the license with the expected dates, valid from "
		    "its start";
		rec_record_forever(j->r, &r);
		rec_report(j->r, OUTCOME_VERIFIED, NULL);
		return;
	}
	/* Invariant 9: the card's bytes, escaped. */
	dbhash_text(st + 3, DATE_LEN, sd, sizeof(sd));
	dbhash_text(st + 11, DATE_LEN, ed, sizeof(ed));
	snprintf(reason, sizeof(reason), "the card reports licensePresent=%u "
	    "serialValid=%u dateValid=%u start=%s end=%s; expected 1 1 1 %s "
	    "%s", st[0], st[1], st[2], sd, ed, lic->start_date, lic->end_date);
	r.state = "rejected";
	r.reason = reason;
	rec_record_forever(j->r, &r);
	rec_report(j->r, OUTCOME_REJECTED, reason);
}

/*
 * The `loaded` row, kept to be committed with the outcome's (its time is
 * the commit's, as every row's, so that time and seq keep one order): a
 * crash before that leaves the license pending (its `generated` row),
 * found on the card or loaded again at no cost (invariant 2).
 */
static void
issue_loaded(struct issue *j, const struct db_pending *lic)
{
	struct db_row *d = &j->r->deferred;

	rec_row(j->r, d, "loaded");
	snprintf(j->r->deferred_timings, sizeof(j->r->deferred_timings), "%s",
	    d->timings);
	d->timings = j->r->deferred_timings;
	d->reason = "C_SetAttributeValue accepted the license";
	d->license_seq = lic->license_seq;
	d->start_date = lic->start_date;
	d->end_date = lic->end_date;
	d->ckr = "CKR_OK";
	j->r->has_deferred = 1;
}

/* Load, read back, record.  The job's last steps for a target card. */
static void
issue_load(struct issue *j, const struct db_pending *lic)
{
	uint8_t st[STATUS_LEN];
	unsigned long rv, stlen;

	j->r->end_date = lic->end_date;
	/* Invariant 10: the license goes to its own card, or nowhere. */
	if (issue_still_here(j, "before its license was loaded") != 0)
		return;
	rec_time(j->r, "loadcheck");
	fault_point("load");
	rv = p11_load_license(j->session, lic->license);
	rec_time(j->r, "load");
	if (rv != CKR_OK) {
		rec_fail(j->r, p11_rv_name(rv), "loading the license failed "
		    "(%s); it stays pending for this card and will be reused",
		    p11_rv_name(rv));
		return;
	}
	issue_loaded(j, lic);
	fault_point("readback");
	rv = p11_status(j->session, st, &stlen);
	rec_time(j->r, "readback");
	if (rv != CKR_OK) {
		rec_fail(j->r, p11_rv_name(rv), "reading the status back failed "
		    "(%s%s); the license stays pending and will be reused",
		    p11_rv_name(rv), issue_status_len(rv, stlen));
		return;
	}
	/*
	 * Invariant 10: the status read back is the card's own, or it says
	 * nothing of the license (the `loaded` row is still recorded: the
	 * load was the card's).
	 */
	if (issue_not_replaced(j, "before its license was read back") != 0)
		return;
	issue_judge(j, lic, st);
}

/*
 * Log in, at most once per card.  CKR_FUNCTION_CANCELED (never sent to
 * the card) when this configuration's PIN has already been refused.
 * *over when the job ended before the login (reported): the card is not
 * the job's any more, or its flags, read just before, forbid a try.
 */
static unsigned long
issue_login(struct issue *j, int *over)
{
	struct conf *c = j->r->c->conf;
	enum pinturn how;
	unsigned long rv;

	*over = 0;
	/* Invariant 4: a refused PIN is not tried; an untried one alone. */
	if ((how = pinturn_begin(c->generation)) == PINTURN_REFUSED)
		return CKR_FUNCTION_CANCELED;
	/*
	 * Invariant 10: the turn may have been waited for, and the card may
	 * have changed since its flags were read; they are read again here.
	 */
	if (issue_still_here(j, "before the login") != 0 ||
	    p11_pin_locked(j->r->tok.flags) || p11_pin_final_try(j->r->tok.flags)) {
		pinturn_end(c->generation, how, 0, 0);
		if (j->r->res->outcome == OUTCOME_NONE)
			rec_fail(j->r, NULL, "the card's PIN %s (its flags, read "
			    "just before the login); card not touched",
			    p11_pin_locked(j->r->tok.flags) ? "is locked" :
			    "has only one try left");
		*over = 1;
		return CKR_OK;
	}
	if (how == PINTURN_ALONE)
		pinturn_trying(c, &j->r->tok);
	rec_time(j->r, "checks");
	rv = p11_login(j->session, c->pin, c->pin_len);
	rec_time(j->r, "login");
	if (how == PINTURN_ALONE || rv == CKR_PIN_INCORRECT)
		pinturn_tried(c, rv == CKR_PIN_INCORRECT);
	pinturn_end(c->generation, how, rv == CKR_OK,
	    rv == CKR_PIN_INCORRECT);
	return rv;
}

/* A session, and the 19-byte status: 0, or -1 when the job is over. */
static int
issue_read_status(struct issue *j, uint8_t st[STATUS_LEN])
{
	struct db_row r;
	char reason[300], sd[4 * DATE_LEN + 1], ed[4 * DATE_LEN + 1];
	unsigned long rv, stlen;

	if ((rv = p11_open(j->r->tok.slot, &j->session)) != CKR_OK) {
		rec_fail(j->r, p11_rv_name(rv), "cannot open a session (%s)",
		    p11_rv_name(rv));
		return -1;
	}
	j->has_session = 1;
	fault_point("status");
	rv = p11_status(j->session, st, &stlen);
	rec_time(j->r, "status");
	if (rv != CKR_OK) {
		rec_fail(j->r, p11_rv_name(rv), "cannot read the license status "
		    "(%s%s); no credit spent", p11_rv_name(rv),
		    issue_status_len(rv, stlen));
		return -1;
	}
	/*
	 * Invariant 10: the session, and the status read through it, are of
	 * the job's card: not of one put in its place while the job waited
	 * for another reader's job to end, or before the session opened.
	 */
	if (issue_still_here(j, j->waited ? "while its job waited for the "
	    "job in the other reader" : "before its session opened") != 0)
		return -1;
	rec_time(j->r, "statuscheck");
	if (!issue_status_valid(st) || (issue_status_date_ok(st + 3) &&
	    issue_status_date_ok(st + 11)))
		return 0;
	dbhash_text(st + 3, DATE_LEN, sd, sizeof(sd));
	dbhash_text(st + 11, DATE_LEN, ed, sizeof(ed));
	rec_row(j->r, &r, "failed");
	snprintf(reason, sizeof(reason), "the middleware calls the card's "
	    "license valid, with dates that are not YYYYMMDD (start %s, end "
	    "%s); card left alone, no credit spent", sd, ed);
	r.reason = reason;
	r.status = st;
	r.ckr = "CKR_OK";
	rec_record(j->r, &r);
	rec_report(j->r, OUTCOME_FAILED, reason);
	return -1;
}

/*
 * A card the middleware accepts: it shows the license pending for it
 * (the load had worked, only its answer or the read-back was lost), or
 * it needs none (invariant 3).  1 when that ends the job.
 */
static int
issue_needs_none(struct issue *j, const uint8_t *st)
{
	struct db_pending lic;
	struct db_row r;
	char reason[300], end[4 * DATE_LEN + 1];
	int rc;

	if (!issue_status_ok(st, j->r->c->today))
		return 0;
	if ((rc = db_find_pending(j->r->tok.model, j->r->tok.serial,
	    j->r->c->today, 0, &lic)) < 0) {
		issue_db_failed(j);
		return 1;
	}
	if (rc == 1 && issue_status_matches(st, &lic, j->r->c->today)) {
		rec_row(j->r, &r, "verified");
		snprintf(reason, sizeof(reason), "the card shows its pending "
		    "license (row %ld) valid with the expected dates: it had "
		    "been loaded before", lic.license_seq);
		r.reason = reason;
		r.license_seq = lic.license_seq;
		r.start_date = lic.start_date;
		r.end_date = lic.end_date;
		r.status = st;
		r.ckr = "CKR_OK";
		rec_record_forever(j->r, &r);
		j->r->end_date = lic.end_date;
		rec_report(j->r, OUTCOME_VERIFIED, NULL);
		return 1;
	}
	if (issue_renewal_due(j, st, j->r->c->today))
		return 0;
	rec_row(j->r, &r, "skipped");
	dbhash_text(st + 11, DATE_LEN, end, sizeof(end));
	if (!issue_status_valid(st))
		snprintf(reason, sizeof(reason), "already licensed from %.8s "
		    "until %s", (const char *)st + 3, end);
	else if (st[0])
		snprintf(reason, sizeof(reason), "already licensed until %s",
		    end);
	else
		snprintf(reason, sizeof(reason), "covered by a global license: "
		    "no license needed");
	r.reason = reason;
	r.status = st;
	r.ckr = "CKR_OK";
	rec_record(j->r, &r);
	rec_report(j->r, OUTCOME_SKIPPED, reason);
	return 1;
}

/*
 * After a stop that cut short the first try of the PIN (line.c): only the
 * card it was tried on may settle it, by its flags.  A wrong PIN entered
 * since its flags were kept is ours; none means the try was accepted, or
 * never reached the card, and trying again (alone) costs nothing more.
 * 0: log in.
 */
static int
issue_pin_doubt(struct issue *j)
{
	const struct pin_doubt *d = &j->r->c->pin_doubt;
	char serial[4 * FIELD_LEN + 1];

	if (!d->known) {
		j->r->paused = 1;
		rec_fail(j->r, NULL, "issuance is paused: a stop cut short the "
		    "PIN's first try; check the PIN and reload");
		return -1;
	}
	if (memcmp(d->model, j->r->tok.model, FIELD_LEN) != 0 ||
	    memcmp(d->serial, j->r->tok.serial, FIELD_LEN) != 0) {
		dbhash_text(d->serial, dbhash_trimmed(d->serial, FIELD_LEN),
		    serial, sizeof(serial));
		j->r->paused = 1;
		rec_fail(j->r, NULL, "issuance is paused: a stop cut short the "
		    "PIN's first try, on card %s; insert that card again, or "
		    "check the PIN and reload", serial);
		return -1;
	}
	if (!p11_pin_tried_wrong(j->r->tok.flags))
		return 0;
	if (p11_pin_tried_wrong(d->flags)) {
		j->r->paused = 1;
		rec_fail(j->r, NULL, "issuance is paused: this card had a wrong "
		    "PIN try before the one a stop cut short, so it cannot "
		    "tell whether the configured PIN is right; check the PIN "
		    "and reload");
		return -1;
	}
	pinturn_tried(j->r->c->conf, 1);
	pinturn_end(j->r->c->conf->generation, PINTURN_FREE, 0, 1);
	j->r->res->pin_refused = 1;
	log_alert("card %s in %s shows a wrong PIN try since the login that a "
	    "stop cut short: the configured PIN was refused; issuance is "
	    "paused: fix the PIN in %s and reload (systemctl reload cardlicd)",
	    j->r->serial, j->r->c->reader, j->r->c->conf->path);
	rec_fail(j->r, NULL, "the configured PIN was refused (the card counts "
	    "a wrong try since the restart's cause); issuance paused until the "
	    "configuration is fixed");
	return -1;
}

/* Invariant 4: the PIN is not tried where it could do harm.  0: go on. */
static int
issue_may_log_in(struct issue *j)
{
	long rejected;

	if (j->r->c->paused_pin && j->r->c->pin_doubt.on) {
		if (issue_pin_doubt(j) != 0)
			return -1;
	} else if (j->r->c->paused_pin) {
		j->r->paused = 1;
		rec_fail(j->r, NULL, "issuance is paused: the configured PIN "
		    "was refused; fix the configuration and reload");
		return -1;
	}
	if (p11_pin_locked(j->r->tok.flags)) {
		rec_fail(j->r, NULL, "the card's PIN is locked; card not "
		    "touched");
		return -1;
	}
	fault_point("login");
	if (p11_pin_final_try(j->r->tok.flags)) {
		rec_fail(j->r, NULL, "only one PIN try left on the card; card "
		    "not touched");
		return -1;
	}
	rejected = db_find_rejected(j->r->tok.model, j->r->tok.serial);
	if (rejected != 0) {
		rec_fail(j->r, NULL, rejected > 0 ? "a license loaded on this "
		    "card was rejected before (row %ld); no new credit is "
		    "spent on it" : "cannot read the audit database (%ld)",
		    rejected);
		return -1;
	}
	if (j->r->c->paused_credit && !batch_available()) {
		j->r->paused = 1;
		rec_fail(j->r, NULL, "issuance is paused: no batch card with "
		    "credit; insert one");
		return -1;
	}
	return 0;
}

/* The login and what its refusal means.  0: logged in. */
static int
issue_log_in(struct issue *j)
{
	unsigned long rv;
	int over;

	rv = issue_login(j, &over);
	if (over)
		return -1;
	if (rv == CKR_FUNCTION_CANCELED) {
		j->r->paused = 1;
		rec_fail(j->r, NULL, "issuance is paused: the configured PIN "
		    "was refused; fix the configuration and reload");
		return -1;
	}
	if (rv == CKR_PIN_INCORRECT) {
		j->r->res->pin_refused = 1;
		log_alert("the configured PIN was refused by card %s in %s; "
		    "issuance is paused: fix the PIN in %s and reload "
		    "(systemctl reload cardlicd)", j->r->serial, j->r->c->reader,
		    j->r->c->conf->path);
		rec_fail(j->r, p11_rv_name(rv), "the configured PIN was "
		    "refused; issuance paused until the configuration is "
		    "fixed");
		return -1;
	}
	if (rv != CKR_OK) {
		rec_fail(j->r, p11_rv_name(rv), "login failed (%s)",
		    p11_rv_name(rv));
		return -1;
	}
	j->logged_in = 1;
	j->r->res->pin_settled = j->r->c->pin_doubt.on;
	return 0;
}

static void
issue_issue(struct issue *j)
{
	struct db_pending lic;
	uint8_t st[STATUS_LEN];

	/*
	 * Invariant 11: nothing is done that could not be recorded, nor on
	 * top of a row that this daemon did not write.
	 */
	if (db_refusing() != NULL || (db_tail_ok() != 0 &&
	    db_refusing() != NULL)) {
		issue_db_failed(j);
		return;
	}
	j->r->id = db_next_job();
	if (issue_read_status(j, st) != 0 || issue_needs_none(j, st) ||
	    issue_may_log_in(j) != 0 || issue_log_in(j) != 0 ||
	    issue_license(j, j->r->c->today, &lic) != 0)
		return;
	issue_load(j, &lic);
}

/*
 * A claimed target card, from its session to its outcome.  waited: the
 * job waited for another reader's job on the same card (its card is
 * checked again for that).
 */
void
issue_card(struct rec *r, int waited)
{
	struct issue j;

	memset(&j, 0, sizeof(j));
	j.r = r;
	j.waited = waited;
	issue_issue(&j);
	issue_end_session(&j);
	rec_finish(r);
}
