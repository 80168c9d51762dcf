/*
 * One job per card insertion, in its own thread: classify the card (a
 * batch card joins the pool; a target card is claimed and handed to the
 * issuance steps, issue.c).
 *
 *  8. one card (model + serial) has one job at a time, across readers:
 *     the claim table below.
 *
 * While a card is being classified, batch.c knows it (a target job that
 * finds no batch card waits for those first, in batch_pick).  The job
 * reports to the event loop through a pipe and never blocks it.
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

#define JOB_MAX_CARDS	64

/* One card's job: what the loop gave it, what it tells the loop. */
struct job {
	struct job_ctx		c;
	struct job_result	res;
	struct rec		rec;		/* its rows and its line */
	int			claimed;	/* holds its card's claim */
};

static pthread_mutex_t	job_lock = PTHREAD_MUTEX_INITIALIZER;
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

/* Milliseconds, monotonic: for the loop's stuck-job check. */
long
job_now_ms(void)
{
	return date_mono_us() / 1000;
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
	while ((i = job_card_find(&j->rec.tok)) >= 0 ||
	    job_ncards == JOB_MAX_CARDS) {
		if (!said && i >= 0)
			log_info("%s: card %s is in a job in %s; waiting for "
			    "it to end", j->c.reader, j->rec.serial,
			    job_cards[i].reader);
		said = 1;
		pthread_cond_wait(&job_card_cond, &job_card_lock);
	}
	memcpy(job_cards[job_ncards].model, j->rec.tok.model, FIELD_LEN);
	memcpy(job_cards[job_ncards].serial, j->rec.tok.serial, FIELD_LEN);
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
	if ((i = job_card_find(&j->rec.tok)) >= 0)
		job_cards[i] = job_cards[--job_ncards];
	pthread_cond_broadcast(&job_card_cond);
	pthread_mutex_unlock(&job_card_lock);
	j->claimed = 0;
}

/*
 * A batch card: its insertion is recorded (a `batch-in` row) once the
 * rows of every credit asked of the reader's last card are in, so that
 * each credit row follows the insertion it was spent on (batch.c); then
 * it joins the pool, if it is still the card in the reader.  A card whose
 * insertion cannot be recorded is not used.
 */
static void
job_batch_in(struct job *j, const char *atr)
{
	struct db_row r;
	char reason[200], err[600];

	batch_wait_settled(j->c.reader);
	memset(&r, 0, sizeof(r));
	snprintf(reason, sizeof(reason), "batch card inserted (ATR %s)", atr);
	r.reader = j->c.reader;
	r.job = 0;	/* no card of the line's */
	r.state = "batch-in";
	r.reason = reason;
	r.batch_reader = j->c.reader;
	r.batch_atr = atr;
	r.batch_count = -1;
	if (db_append(&r, err, sizeof(err)) <= 0) {
		snprintf(reason, sizeof(reason), "a batch card, not used: its "
		    "insertion cannot be recorded");
		log_alert("%s: batch card inserted (ATR %s), but its insertion "
		    "cannot be recorded (%s): it is not used", j->c.reader, atr,
		    err);
		j->res.kind = KIND_UNKNOWN;
		rec_report(&j->rec, OUTCOME_FAILED, reason);
		return;
	}
	if (!batch_add(j->c.reader, j->c.atr, j->c.atr_len, j->c.insertion)) {
		log_info("%s: a batch card, pulled before it could be used",
		    j->c.reader);
		return;
	}
	log_info("%s: batch card inserted (ATR %s)", j->c.reader, atr);
	j->res.kind = KIND_BATCH;
}

/* Recorded with no model or serial: the token could not be read. */
static void
job_token_failed(struct job *j, unsigned long rv, const char *why)
{
	struct db_row r;

	j->rec.id = db_next_job();
	rec_row(&j->rec, &r, "failed");
	r.reason = why;
	r.ckr = p11_rv_name(rv);
	rec_record(&j->rec, &r);
	rec_report(&j->rec, OUTCOME_FAILED, why);
}

/*
 * What the card is: ignored by a rule, a batch card, not one of the
 * line's, or a target card whose token is read into the record.  1 for
 * a target card; 0 when the job is over.
 */
static int
job_classify(struct job *j)
{
	enum card_kind kind;
	unsigned long rv;
	char atr[2 * ATR_MAX + 1], err[600];
	int probe;

	rec_time(&j->rec, "start");
	dbhash_hex(j->c.atr, j->c.atr_len, 1, atr);
	kind = classify_card(j->c.conf, j->c.reader, j->c.atr, j->c.atr_len);
	if (kind == KIND_IGNORE) {
		j->res.kind = KIND_IGNORE;
		snprintf(err, sizeof(err), "card with ATR %s ignored by a "
		    "[classify] rule", atr);
		rec_report(&j->rec, OUTCOME_IGNORED, err);
		return 0;
	}
	if (kind != KIND_TARGET) {
		fault_point("probe");
		probe = kind == KIND_BATCH ? 1 : batch_probe(j->c.reader);
		if (probe == 1) {
			fault_point("probed");
			job_batch_in(j, atr);
			return 0;
		}
		if (probe < 0) {
			rec_report(&j->rec, OUTCOME_FAILED, "the card left "
			    "before it could be identified");
			return 0;
		}
	}
	rec_time(&j->rec, "classify");
	fault_point("token");
	rv = p11_find_token(j->c.conf, j->c.reader, &j->rec.tok, err,
	    sizeof(err));
	if (rv == CKR_TOKEN_NOT_PRESENT) {
		/*
		 * PC/SC says a card is in: the middleware may not have seen
		 * it yet.  Look once more before calling it unknown.
		 */
		usleep(200000);
		rv = p11_find_token(j->c.conf, j->c.reader, &j->rec.tok, err,
		    sizeof(err));
	}
	rec_time(&j->rec, "token");
	if (rv != CKR_OK) {
		j->res.kind = KIND_UNKNOWN;
		if (rv == CKR_TOKEN_NOT_PRESENT ||
		    rv == CKR_TOKEN_NOT_RECOGNIZED) {
			snprintf(err, sizeof(err), "unknown card (ATR %s): not "
			    "a batch card, no token of the middleware; left "
			    "alone", atr);
			rec_report(&j->rec, OUTCOME_UNKNOWN, err);
			return 0;
		}
		/* A card we could not read, or a slot we could not tell. */
		job_token_failed(j, rv, err);
		return 0;
	}
	j->res.kind = KIND_TARGET;
	j->rec.has_tok = 1;
	/* Invariant 9: card bytes are escaped before any text use. */
	dbhash_text(j->rec.tok.model, FIELD_LEN, j->rec.model,
	    sizeof(j->rec.model));
	dbhash_text(j->rec.tok.serial, FIELD_LEN, j->rec.serial,
	    sizeof(j->rec.serial));
	return 1;
}

static void
job_classify_and_run(struct job *j)
{
	int target, waited;

	/* batch.c: a target job that finds no batch card waits for it. */
	batch_classify_begin();
	target = job_classify(j);
	batch_classify_end();
	if (!target)
		return;
	if ((waited = job_claim(j)))
		log_info("%s: card %s: the other job has ended; going on",
		    j->c.reader, j->rec.serial);
	issue_card(&j->rec, waited);
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
	pthread_t t;
	struct job *j;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	j->c = *c;
	conf_ref(j->c.conf);
	rec_init(&j->rec, &j->c, &j->res);
	snprintf(j->res.reader, sizeof(j->res.reader), "%s", c->reader);
	j->res.insertion = c->insertion;
	pthread_mutex_lock(&job_lock);
	job_count++;
	pthread_mutex_unlock(&job_lock);
	if (thread_start(&t, 1, job_main, j) != 0) {
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
