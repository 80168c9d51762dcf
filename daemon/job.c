/*
 * One job per card insertion, in its own thread: classify the card, then,
 * for a target card, claim it and hand it to the issuance steps (issue.c).
 *
 *  8. one card (model + serial) has one job at a time, across readers:
 *     the claim table below;
 *  - a target job that finds no batch card waits first for the cards not
 *    yet classified: the gate below, whose count the loop alone writes.
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

#define JOB_GATE_MS	10000	/* longest wait for other cards' class */
#define JOB_MAX_CARDS	64

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

/*
 * The classification gate, written by the loop only: how many inserted
 * cards are not yet known to be batch or target cards.  A target job that
 * finds no batch card waits for those first, so that at start-up (or when
 * a batch card comes in with the targets) nothing pauses for nothing.
 */
static pthread_mutex_t	job_gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	job_gate_cond = PTHREAD_COND_INITIALIZER;
static int		job_gate_open_n;

/* Milliseconds, monotonic: for the loop's stuck-job check. */
long
job_now_ms(void)
{
	return date_mono_us() / 1000;
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
void
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

/*
 * A batch card: its insertion is recorded (a `batch-in` row) once the
 * rows of every credit asked of the reader's last card are in, so that
 * each credit row follows the insertion it was spent on (batch.c).  Then
 * the loop adds it to the pool: it owns the pool.  A card whose
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
		issue_report(j, OUTCOME_FAILED, reason);
		return;
	}
	log_info("%s: batch card inserted (ATR %s)", j->c.reader, atr);
	j->res.kind = KIND_BATCH;
}

static void
job_classify_and_run(struct job *j)
{
	struct job_result interim;
	enum card_kind kind;
	unsigned long rv;
	char atr[2 * ATR_MAX + 1], err[600];
	int probe;

	issue_time(j, "start");
	dbhash_hex(j->c.atr, j->c.atr_len, 1, atr);
	kind = classify_card(j->c.conf, j->c.reader, j->c.atr, j->c.atr_len);
	if (kind == KIND_IGNORE) {
		j->res.kind = KIND_IGNORE;
		snprintf(err, sizeof(err), "card with ATR %s ignored by a "
		    "[classify] rule", atr);
		issue_report(j, OUTCOME_IGNORED, err);
		return;
	}
	if (kind != KIND_TARGET) {
		fault_point("probe");
		probe = kind == KIND_BATCH ? 1 : batch_probe(j->c.reader);
		if (probe == 1) {
			fault_point("probed");
			job_batch_in(j, atr);
			return;
		}
		if (probe < 0) {
			issue_report(j, OUTCOME_FAILED, "the card left before "
			    "it could be identified");
			return;
		}
	}
	issue_time(j, "classify");
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
	issue_time(j, "token");
	if (rv != CKR_OK) {
		j->res.kind = KIND_UNKNOWN;
		if (rv == CKR_TOKEN_NOT_PRESENT ||
		    rv == CKR_TOKEN_NOT_RECOGNIZED) {
			snprintf(err, sizeof(err), "unknown card (ATR %s): not "
			    "a batch card, no token of the middleware; left "
			    "alone", atr);
			issue_report(j, OUTCOME_UNKNOWN, err);
			return;
		}
		/* A card we could not read, or a slot we could not tell. */
		issue_token_failed(j, rv, err);
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
	if ((j->waited = job_claim(j)))
		log_info("%s: card %s: the other job has ended; going on",
		    j->c.reader, j->serial);
	issue_card(j);
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
	/* The operator's wait starts when the card was seen, not here. */
	j->t0 = j->tstep = c->seen_us > 0 ? c->seen_us : date_mono_us();
	snprintf(j->res.reader, sizeof(j->res.reader), "%s", c->reader);
	j->res.insertion = c->insertion;
	pthread_mutex_lock(&job_lock);
	job_count++;
	pthread_mutex_unlock(&job_lock);
	if (main_thread_start(&t, 1, job_main, j) != 0) {
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
