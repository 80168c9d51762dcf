/*
 * The reader watcher: one thread blocked in SCardGetStatusChange on its own
 * context, with the PnP entry so that readers coming and going wake it.
 * It tells the event loop what happened through a pipe; it never decides
 * anything itself.
 *
 * - The PnP entry has no counter, so the reader list is read again after
 *   every wake-up, and at least every WATCH_TIMEOUT_MS.
 * - The high 16 bits of dwEventState count insertions and removals: a card
 *   pulled and pushed back between two calls still shows as a new card.
 * - dwEventState is copied into dwCurrentState, or the call would return
 *   at once, again and again.
 * - Each insertion it reports gets a number of its own, never given twice
 *   while the daemon runs (pcscd's counters start again when it does), and
 *   the reader's current number is kept where a job can ask for it
 *   (watch_card_now): a job checks that its card is still the one it was
 *   started for (invariant 10).
 * - It wakes up at least every watch_timeout_ms and says so (WATCH_ALIVE):
 *   the loop feeds systemd's watchdog only while these keep coming.
 * - When pcscd goes away, everything is released and the thread reconnects
 *   with a growing delay; it never spins and never exits on its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <PCSC/winscard.h>
#include <PCSC/pcsclite.h>

#include "cardlicd.h"

#define WATCH_MAX		(PCSCLITE_MAX_READERS_CONTEXTS + 1)
#define WATCH_BACKOFF_MIN_MS	100
#define WATCH_BACKOFF_MAX_MS	5000

struct watch_reader {
	char		name[READER_MAX];
	DWORD		state;
	int		present;
	unsigned	counter;	/* pcscd's, for the reader */
	unsigned	card;		/* ours: the insertion's number */
};

/*
 * The card in each reader as the watcher last saw it, for the jobs: its
 * insertion's number, 0 when the reader is empty or unknown.  Written by
 * the watcher thread before it tells the loop, read by any job.
 */
struct watch_card {
	char		name[READER_MAX];
	unsigned	card;
};
static pthread_mutex_t		watch_cards_lock = PTHREAD_MUTEX_INITIALIZER;
static struct watch_card	watch_cards[WATCH_MAX];
static unsigned			watch_next_card;

static pthread_t		watch_thread;
static pthread_mutex_t		watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t		watch_cond = PTHREAD_COND_INITIALIZER;
static SCARDCONTEXT		watch_ctx;
static int			watch_has_ctx;
static int			watch_stopping;
static int			watch_fd = -1;
static long			watch_timeout_ms = 10000;
static struct watch_reader	watch_readers[WATCH_MAX];
static int			watch_n;

static void
watch_send(enum watch_event type, const char *reader, const BYTE *atr,
    DWORD atr_len, unsigned card)
{
	struct watch_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	if (reader != NULL)
		snprintf(m.reader, sizeof(m.reader), "%s", reader);
	if (atr != NULL && atr_len <= ATR_MAX) {
		memcpy(m.atr, atr, atr_len);
		m.atr_len = atr_len;
	}
	m.card = card;
	m.seen_us = date_mono_us();
	/* Under PIPE_BUF, so the write is whole; the loop drains it. */
	if (write(watch_fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		log_warnx("watcher: cannot reach the event loop: %s",
		    strerror(errno));
}

/* The reader's card is now number card (0: none). */
static void
watch_card_set(const char *reader, unsigned card)
{
	int i, free_at = -1;

	pthread_mutex_lock(&watch_cards_lock);
	for (i = 0; i < WATCH_MAX; i++) {
		if (watch_cards[i].name[0] != '\0' &&
		    strcmp(watch_cards[i].name, reader) == 0)
			break;
		if (free_at < 0 && (watch_cards[i].name[0] == '\0' ||
		    watch_cards[i].card == 0))
			free_at = i;
	}
	if (i == WATCH_MAX && card != 0 && free_at >= 0) {
		i = free_at;
		snprintf(watch_cards[i].name, READER_MAX, "%s", reader);
	}
	if (i < WATCH_MAX)
		watch_cards[i].card = card;
	pthread_mutex_unlock(&watch_cards_lock);
}

/*
 * The number of the insertion whose card is in the reader now, as the
 * watcher last saw it; 0 when there is none.  A card swapped faster than
 * the watcher wakes still shows its old number here for a moment: the
 * token's own model and serial are the other half of the check.
 */
unsigned
watch_card_now(const char *reader)
{
	unsigned card = 0;
	int i;

	pthread_mutex_lock(&watch_cards_lock);
	for (i = 0; i < WATCH_MAX; i++)
		if (watch_cards[i].name[0] != '\0' &&
		    strcmp(watch_cards[i].name, reader) == 0) {
			card = watch_cards[i].card;
			break;
		}
	pthread_mutex_unlock(&watch_cards_lock);
	return card;
}

static int
watch_service_gone(LONG rv)
{
	return rv == SCARD_E_NO_SERVICE || rv == SCARD_F_COMM_ERROR ||
	    rv == SCARD_E_INVALID_HANDLE || rv == SCARD_E_SERVICE_STOPPED;
}

/* Sleep ms, or less if asked to stop.  Returns 1 when stopping. */
static int
watch_sleep(long ms)
{
	struct timespec ts;
	int stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&watch_lock);
	while (!watch_stopping && pthread_cond_timedwait(&watch_cond,
	    &watch_lock, &ts) == 0)
		;
	stop = watch_stopping;
	pthread_mutex_unlock(&watch_lock);
	return stop;
}

/*
 * Read the reader list again.  Known readers keep their state; readers
 * that left are reported (their card, if any, is gone with them).
 */
static LONG
watch_relist(void)
{
	struct watch_reader next[WATCH_MAX];
	char *names = NULL, *p;
	DWORD len = SCARD_AUTOALLOCATE;
	LONG rv;
	int n = 0, i, j, changed = 0;

	rv = SCardListReaders(watch_ctx, NULL, (LPSTR)&names, &len);
	if (rv != SCARD_S_SUCCESS && rv != SCARD_E_NO_READERS_AVAILABLE)
		return rv;
	for (p = names; rv == SCARD_S_SUCCESS && *p != '\0' &&
	    n < WATCH_MAX - 1; p += strlen(p) + 1) {
		memset(&next[n], 0, sizeof(next[n]));
		snprintf(next[n].name, sizeof(next[n].name), "%s", p);
		next[n].state = SCARD_STATE_UNAWARE;
		for (j = 0; j < watch_n; j++)
			if (strcmp(watch_readers[j].name, p) == 0)
				next[n] = watch_readers[j];
		n++;
	}
	if (names != NULL)
		SCardFreeMemory(watch_ctx, names);
	for (j = 0; j < watch_n; j++) {
		for (i = 0; i < n; i++)
			if (strcmp(next[i].name, watch_readers[j].name) == 0)
				break;
		if (i == n) {
			watch_card_set(watch_readers[j].name, 0);
			watch_send(WATCH_READER_GONE, watch_readers[j].name,
			    NULL, 0, 0);
		}
	}
	if (n != watch_n)
		changed = 1;
	for (i = 0; i < n && !changed; i++)
		changed = strcmp(next[i].name, watch_readers[i].name) != 0;
	memcpy(watch_readers, next, sizeof(next[0]) * (size_t)n);
	watch_n = n;
	/* What a job found about the readers' slots no longer holds. */
	if (changed)
		p11_readers_changed();
	return SCARD_S_SUCCESS;
}

/* Compare what pcscd says with what we knew; report the differences. */
static void
watch_changes(SCARD_READERSTATE *rs)
{
	struct watch_reader *r;
	DWORD ev;
	unsigned counter;
	int i, present;

	for (i = 0; i < watch_n; i++) {
		r = &watch_readers[i];
		ev = rs[i + 1].dwEventState;
		if (ev & (SCARD_STATE_UNKNOWN | SCARD_STATE_IGNORE))
			continue;
		counter = (unsigned)(ev >> 16);
		present = (ev & SCARD_STATE_PRESENT) &&
		    !(ev & SCARD_STATE_MUTE);
		if (r->present && (!present || counter != r->counter)) {
			r->card = 0;
			watch_card_set(r->name, 0);
			watch_send(WATCH_REMOVE, r->name, NULL, 0, 0);
		}
		if (present && (!r->present || counter != r->counter)) {
			/* Never 0, never given twice while the daemon runs. */
			if (++watch_next_card == 0)
				watch_next_card = 1;
			r->card = watch_next_card;
			watch_card_set(r->name, r->card);
			watch_send(WATCH_INSERT, r->name, rs[i + 1].rgbAtr,
			    rs[i + 1].cbAtr, r->card);
		}
		r->present = present;
		r->counter = counter;
		r->state = ev & ~(DWORD)SCARD_STATE_CHANGED;
	}
}

static void
watch_release(void)
{
	int i;

	pthread_mutex_lock(&watch_lock);
	if (watch_has_ctx)
		SCardReleaseContext(watch_ctx);
	watch_has_ctx = 0;
	pthread_mutex_unlock(&watch_lock);
	/* When pcscd comes back, cards still inserted are seen anew. */
	for (i = 0; i < watch_n; i++) {
		watch_card_set(watch_readers[i].name, 0);
		if (watch_readers[i].present)
			watch_send(WATCH_REMOVE, watch_readers[i].name, NULL,
			    0, 0);
	}
	watch_n = 0;
	p11_readers_changed();
}

/* Whether watch_stop was called. */
static int
watch_is_stopping(void)
{
	int stop;

	pthread_mutex_lock(&watch_lock);
	stop = watch_stopping;
	pthread_mutex_unlock(&watch_lock);
	return stop;
}

/*
 * Connected to pcscd: wait for changes (or the timeout, to say it is
 * alive), report them, read the reader list again; until pcscd goes
 * away or the watcher is stopped.
 */
static void
watch_serve(void)
{
	SCARD_READERSTATE rs[WATCH_MAX];
	DWORD pnp = SCARD_STATE_UNAWARE;
	LONG rv;
	int i;

	for (;;) {
		memset(rs, 0, sizeof(rs));
		rs[0].szReader = "\\\\?PnP?\\Notification";
		rs[0].dwCurrentState = pnp;
		for (i = 0; i < watch_n; i++) {
			rs[i + 1].szReader = watch_readers[i].name;
			rs[i + 1].dwCurrentState = watch_readers[i].state;
		}
		rv = SCardGetStatusChange(watch_ctx, (DWORD)watch_timeout_ms, rs,
		    (DWORD)watch_n + 1);
		if (watch_is_stopping())
			return;
		if (rv == SCARD_S_SUCCESS) {
			pnp = rs[0].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
			watch_changes(rs);
		} else if (watch_service_gone(rv)) {
			log_warnx("pcscd went away (%s); reconnecting",
			    pcsc_stringify_error(rv));
			return;
		} else if (rv != SCARD_E_TIMEOUT && rv != SCARD_E_CANCELLED &&
		    rv != SCARD_E_UNKNOWN_READER) {
			log_warnx("SCardGetStatusChange: %s",
			    pcsc_stringify_error(rv));
			if (watch_sleep(WATCH_BACKOFF_MIN_MS))
				return;
		}
		/* Alive: the loop feeds the watchdog with this. */
		watch_send(WATCH_ALIVE, NULL, NULL, 0, 0);
		if (watch_relist() != SCARD_S_SUCCESS)
			return;
	}
}

/* A context of pcscd's, and the reader list: SCARD_S_SUCCESS or why not. */
static LONG
watch_connect(void)
{
	LONG rv;

	pthread_mutex_lock(&watch_lock);
	if (watch_stopping) {
		pthread_mutex_unlock(&watch_lock);
		return SCARD_E_CANCELLED;
	}
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &watch_ctx);
	watch_has_ctx = rv == SCARD_S_SUCCESS;
	pthread_mutex_unlock(&watch_lock);
	if (rv == SCARD_S_SUCCESS)
		rv = watch_relist();
	return rv;
}

static void *
watch_main(void *arg)
{
	long backoff = WATCH_BACKOFF_MIN_MS;
	int down_said = 0;

	(void)arg;
	while (!watch_is_stopping()) {
		if (watch_connect() != SCARD_S_SUCCESS) {
			watch_release();
			if (watch_is_stopping())
				break;
			if (!down_said) {
				watch_send(WATCH_PCSC_DOWN, NULL, NULL, 0, 0);
				down_said = 1;
			}
			if (watch_sleep(backoff))
				break;
			/* Waiting for pcscd is progress, not a hang. */
			watch_send(WATCH_ALIVE, NULL, NULL, 0, 0);
			backoff = backoff * 2;
			if (backoff > WATCH_BACKOFF_MAX_MS)
				backoff = WATCH_BACKOFF_MAX_MS;
			if (backoff > watch_timeout_ms)
				backoff = watch_timeout_ms;
			continue;
		}
		backoff = WATCH_BACKOFF_MIN_MS;
		down_said = 0;
		watch_send(WATCH_PCSC_UP, NULL, NULL, 0, 0);
		watch_serve();
		watch_release();
		if (!watch_is_stopping()) {
			watch_send(WATCH_PCSC_DOWN, NULL, NULL, 0, 0);
			down_said = 1;
			if (watch_sleep(backoff))
				break;
		}
	}
	watch_release();
	return NULL;
}

/*
 * The watcher wakes at least every timeout_ms, even with nothing to report,
 * so that the loop can tell a quiet line from a stuck watcher.
 */
int
watch_start(int fd, long timeout_ms)
{
	watch_fd = fd;
	watch_timeout_ms = timeout_ms;
	watch_stopping = 0;
	return thread_start(&watch_thread, 0, watch_main, NULL);
}

/* SCardCancel until the thread has ended: it may be between two calls. */
void
watch_stop(void)
{
	struct timespec ts = { 0, 20000000 };
	int done;

	pthread_mutex_lock(&watch_lock);
	watch_stopping = 1;
	pthread_cond_broadcast(&watch_cond);
	pthread_mutex_unlock(&watch_lock);
	for (;;) {
		pthread_mutex_lock(&watch_lock);
		if (watch_has_ctx)
			SCardCancel(watch_ctx);
		pthread_mutex_unlock(&watch_lock);
		done = pthread_tryjoin_np(watch_thread, NULL) == 0;
		if (done)
			break;
		nanosleep(&ts, NULL);
	}
}
