/*
 * The batch cards: the pool of cards that can generate licenses, and the
 * APDU exchange of the vendor text.  A job holds one batch card from its
 * `requested` row to the end of its GENERATE, so that the row names the
 * card the credit is asked of; with several batch cards, several jobs
 * generate at once, each on its own card (issue 12).  On the card, a
 * PC/SC transaction surrounds SELECT, GENERATE and the GET RESPONSE
 * pieces, so that no other program slips an APDU in between.  A card that
 * answers 6985 is marked exhausted and the next one is used.
 *
 * Each card's PC/SC connection stays open between generations (a context
 * and a connect cost pcscd trips on every card otherwise); a handle that
 * went stale (the card reset, pulled, pcscd restarted) is opened again
 * before SELECT, never after GENERATE was sent.
 *
 * Once GENERATE has been sent, only the status words that the vendor text
 * gives as refusals count as "nothing spent"; every other ending (an
 * unknown word, a broken chain, a short answer, a lost card) may follow a
 * spent credit and is reported as in doubt, for the job to record so.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <PCSC/winscard.h>
#include <PCSC/pcsclite.h>

#include "cardlicd.h"
#include "dbhash.h"

#define BATCH_CLASSIFY_WAIT_S	10	/* for other cards' class */

struct batch_card {
	int		used;
	char		reader[READER_MAX];
	char		atr[2 * ATR_MAX + 1];
	int		exhausted;
	int		broken;		/* stopped answering as a batch card */
	int		held;		/* a job generates on it */
	int		unsettled;	/* picks whose credit row is not in */
	unsigned	insertion;	/* which insertion of a card this is */
};

struct batch_conn {
	SCARDCONTEXT	ctx;
	SCARDHANDLE	card;
	DWORD		proto;
	int		has_ctx, has_card, in_tx;
	unsigned	insertion;	/* of the card it was opened to */
};

/*
 * batch_lock guards the pool table and is held only briefly, so that the
 * event loop may ask for the pool's state; a job waits on batch_cond for
 * a card to be free.  batch_conns[i] is used only by card i's holder.
 */
static pthread_mutex_t		batch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t		batch_cond = PTHREAD_COND_INITIALIZER;
static struct batch_card	batch_pool[BATCH_MAX];
static struct batch_conn	batch_conns[BATCH_MAX];
static unsigned			batch_insertions;
static int			batch_classifying;	/* cards */

static const uint8_t batch_select[] = { 0x00, 0xA4, 0x04, 0x0C, 0x09,
	0xA0, 0x00, 0x00, 0x03, 0x63, 0x4D, 0x57, 0x4C, 0x01 };

void
batch_init(void)
{
	memset(batch_pool, 0, sizeof(batch_pool));
}

/*
 * A batch card was inserted: a new card, or one that may have credit.
 * Its job adds it, once its insertion is recorded, if it is still the
 * card of that insertion in the reader (the watcher's number): a card
 * pulled meanwhile is not added, and one pulled just after is removed by
 * the loop when the watcher tells it.  1 when it was added.
 */
int
batch_add(const char *reader, const uint8_t *atr, size_t atr_len,
    unsigned insertion)
{
	struct batch_card *b = NULL;
	int i;

	pthread_mutex_lock(&batch_lock);
	if (watch_card_now(reader) != insertion) {
		pthread_mutex_unlock(&batch_lock);
		return 0;
	}
	for (i = 0; i < BATCH_MAX; i++)
		if (batch_pool[i].used &&
		    strcmp(batch_pool[i].reader, reader) == 0)
			b = &batch_pool[i];
	for (i = 0; b == NULL && i < BATCH_MAX; i++)
		if (!batch_pool[i].used)
			b = &batch_pool[i];
	if (b != NULL) {
		/* Its holder, if any, still has to let it go. */
		int held = b->held, unsettled = b->unsettled;

		memset(b, 0, sizeof(*b));
		b->used = 1;
		b->held = held;
		b->unsettled = unsettled;
		b->insertion = ++batch_insertions;
		snprintf(b->reader, sizeof(b->reader), "%s", reader);
		dbhash_hex(atr, atr_len, 1, b->atr);
	}
	pthread_cond_broadcast(&batch_cond);
	pthread_mutex_unlock(&batch_lock);
	if (b == NULL)
		log_warnx("%s: more than %d batch cards; this one is not used",
		    reader, BATCH_MAX);
	return b != NULL;
}

/*
 * A job is finding out what its card is (it may be a batch card), and
 * has found out.  A target job that finds no batch card with credit
 * waits for those first (batch_pick), so that at start-up, or when a
 * batch card comes in with the targets, nothing pauses for nothing.
 */
void
batch_classify_begin(void)
{
	pthread_mutex_lock(&batch_lock);
	batch_classifying++;
	pthread_mutex_unlock(&batch_lock);
}

void
batch_classify_end(void)
{
	pthread_mutex_lock(&batch_lock);
	batch_classifying--;
	pthread_cond_broadcast(&batch_cond);
	pthread_mutex_unlock(&batch_lock);
}

void
batch_remove(const char *reader)
{
	int i;

	pthread_mutex_lock(&batch_lock);
	for (i = 0; i < BATCH_MAX; i++)
		if (batch_pool[i].used &&
		    strcmp(batch_pool[i].reader, reader) == 0)
			batch_pool[i].used = 0;
	/* A job waiting for a card may have none left to wait for. */
	pthread_cond_broadcast(&batch_cond);
	pthread_mutex_unlock(&batch_lock);
}

static int
batch_usable(const struct batch_card *b)
{
	return b->used && !b->exhausted && !b->broken;
}

int
batch_available(void)
{
	int i, n = 0;

	pthread_mutex_lock(&batch_lock);
	for (i = 0; i < BATCH_MAX; i++)
		n += batch_usable(&batch_pool[i]);
	pthread_mutex_unlock(&batch_lock);
	return n;
}

/* For STATUS= and the log: "2 batch cards, 1 exhausted". */
void
batch_status(char *out, size_t len)
{
	int i, n = 0, ex = 0;

	pthread_mutex_lock(&batch_lock);
	for (i = 0; i < BATCH_MAX; i++) {
		n += batch_pool[i].used;
		ex += batch_pool[i].used && (batch_pool[i].exhausted ||
		    batch_pool[i].broken);
	}
	pthread_mutex_unlock(&batch_lock);
	snprintf(out, len, "%d batch card%s, %d exhausted", n,
	    n == 1 ? "" : "s", ex);
}

/* "batch: READER ATR state" lines, for the control socket. */
size_t
batch_list(char *out, size_t len)
{
	size_t n = 0;
	int i, k;

	pthread_mutex_lock(&batch_lock);
	for (i = 0; i < BATCH_MAX && n < len; i++) {
		if (!batch_pool[i].used)
			continue;
		k = snprintf(out + n, len - n, "batch: %s | %s | %s\n",
		    batch_pool[i].reader, batch_pool[i].atr,
		    batch_pool[i].exhausted ? "exhausted" :
		    batch_pool[i].broken ? "not answering" : "in use");
		if (k < 0 || (size_t)k >= len - n)
			break;
		n += (size_t)k;
	}
	pthread_mutex_unlock(&batch_lock);
	return n;
}

/* The batch cards in the pool now: how many went to ids. */
int
batch_ids(struct batch_id ids[BATCH_MAX])
{
	int i, n = 0;

	pthread_mutex_lock(&batch_lock);
	for (i = 0; i < BATCH_MAX; i++) {
		if (!batch_pool[i].used)
			continue;
		memcpy(ids[n].reader, batch_pool[i].reader, READER_MAX);
		memcpy(ids[n].atr, batch_pool[i].atr, sizeof(ids[n].atr));
		n++;
	}
	pthread_mutex_unlock(&batch_lock);
	return n;
}

/*
 * The ATR of the batch card in reader now (cardlicctl batch-count): 1, or
 * 0 with the readers that hold one listed in others ("A", "B").
 */
int
batch_find(const char *reader, char *atr, char *others, size_t len)
{
	struct batch_id ids[BATCH_MAX];
	size_t n = 0;
	int i, k, found = 0, nids = batch_ids(ids);

	if (len > 0)
		others[0] = '\0';
	for (i = 0; i < nids; i++) {
		if (strcmp(ids[i].reader, reader) == 0) {
			snprintf(atr, 2 * ATR_MAX + 1, "%s", ids[i].atr);
			found = 1;
		}
		k = snprintf(others + n, len - n, "%s\"%s\"", n > 0 ? ", " : "",
		    ids[i].reader);
		if (k > 0 && (size_t)k < len - n)
			n += (size_t)k;
		else if (n < len)
			others[n] = '\0';	/* no half a name */
	}
	return found;
}

/* Connect c, which holds no card, over its context or a new one. */
static LONG
batch_open(struct batch_conn *c, const char *reader)
{
	LONG rv;

	if (!c->has_ctx) {
		rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL,
		    &c->ctx);
		if (rv != SCARD_S_SUCCESS)
			return rv;
		c->has_ctx = 1;
	}
	rv = SCardConnect(c->ctx, reader, SCARD_SHARE_SHARED,
	    SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &c->card, &c->proto);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	c->has_card = 1;
	return rv;
}

static LONG
batch_begin(struct batch_conn *c)
{
	LONG rv;

	rv = SCardBeginTransaction(c->card);
	if (rv == SCARD_S_SUCCESS)
		c->in_tx = 1;
	return rv;
}

static LONG
batch_connect(struct batch_conn *c, const char *reader)
{
	LONG rv;

	if ((rv = batch_open(c, reader)) != SCARD_S_SUCCESS)
		return rv;
	return batch_begin(c);
}

/* The card let go; the context stays. */
static void
batch_leave(struct batch_conn *c)
{
	if (c->in_tx)
		SCardEndTransaction(c->card, SCARD_LEAVE_CARD);
	if (c->has_card)
		SCardDisconnect(c->card, SCARD_LEAVE_CARD);
	c->in_tx = c->has_card = 0;
}

static void
batch_disconnect(struct batch_conn *c)
{
	batch_leave(c);
	if (c->has_ctx)
		SCardReleaseContext(c->ctx);
	memset(c, 0, sizeof(*c));
}

/*
 * One APDU.  0 and the status word on success; the PC/SC error when the
 * exchange broke (an answer too short to hold a status word counts as
 * SCARD_F_COMM_ERROR).
 */
static long
batch_tx(struct batch_conn *c, const uint8_t *cmd, size_t len, uint8_t *out,
    size_t *outlen, unsigned *sw)
{
	uint8_t buf[258];
	DWORD n = sizeof(buf);
	LONG rv;

	rv = SCardTransmit(c->card, c->proto == SCARD_PROTOCOL_T0 ?
	    SCARD_PCI_T0 : SCARD_PCI_T1, cmd, (DWORD)len, NULL, buf, &n);
	if (rv != SCARD_S_SUCCESS || n < 2) {
		log_debug("transmit: %s, %lu bytes", pcsc_stringify_error(rv),
		    (unsigned long)n);
		/* A short answer is a broken exchange, not a card's refusal. */
		return rv != SCARD_S_SUCCESS ? (long)rv :
		    (long)SCARD_F_COMM_ERROR;
	}
	*sw = (unsigned)buf[n - 2] << 8 | buf[n - 1];
	if (out != NULL) {
		memcpy(out, buf, n - 2);
		*outlen = n - 2;
	} else if (n != 2)
		*sw = 0x10000 | *sw;	/* data where none was expected */
	return 0;
}

/*
 * PC/SC contexts kept for the probes: each new one is a new connection to
 * pcscd, and a thread there, for every card inserted (issue 12).  One
 * that pcscd no longer knows (it restarted) is dropped on its first error.
 */
static pthread_mutex_t	batch_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static SCARDCONTEXT	batch_ctxs[8];
static int		batch_nctx;

/* An error that says the context is of a pcscd that is gone. */
static int
batch_ctx_stale(long rv)
{
	return rv == (long)SCARD_E_INVALID_HANDLE ||
	    rv == (long)SCARD_E_NO_SERVICE || rv == (long)SCARD_F_COMM_ERROR;
}

static LONG
batch_probe_open(struct batch_conn *c, const char *reader)
{
	LONG rv;
	int kept;

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&batch_ctx_lock);
	if ((kept = batch_nctx > 0)) {
		c->ctx = batch_ctxs[--batch_nctx];
		c->has_ctx = 1;
	}
	pthread_mutex_unlock(&batch_ctx_lock);
	rv = batch_connect(c, reader);
	if (kept && batch_ctx_stale(rv)) {
		/* A kept context of a pcscd that is gone: a new one, once. */
		batch_disconnect(c);
		rv = batch_connect(c, reader);
	}
	return rv;
}

static void
batch_probe_close(struct batch_conn *c, long rv)
{
	int kept = 0;

	batch_leave(c);
	if (c->has_ctx && !batch_ctx_stale(rv)) {
		pthread_mutex_lock(&batch_ctx_lock);
		if (batch_nctx < (int)(sizeof(batch_ctxs) /
		    sizeof(batch_ctxs[0]))) {
			batch_ctxs[batch_nctx++] = c->ctx;
			kept = 1;
		}
		pthread_mutex_unlock(&batch_ctx_lock);
	}
	if (!kept)
		batch_disconnect(c);
	memset(c, 0, sizeof(*c));
}

/*
 * Classification: does the card answer the SELECT of the batch AID?  1 or
 * 0; -1 when it could not be asked.  A card just inserted may not answer
 * at once (still powering up, or another program in a transaction on
 * it): the question is asked again for up to a second, unless the reader
 * itself is gone.
 */
int
batch_probe(const char *reader)
{
	struct batch_conn c;
	unsigned sw = 0;
	long rv = 0;
	int tries;

	for (tries = 0; tries < 6; tries++) {
		if (tries > 0)
			usleep(200000);
		rv = batch_probe_open(&c, reader);
		if (rv == SCARD_S_SUCCESS)
			rv = batch_tx(&c, batch_select, sizeof(batch_select),
			    NULL, NULL, &sw);
		batch_probe_close(&c, rv);
		if (rv == 0)
			return sw == 0x9000;
		/*
		 * "No smart card" too can come from a card still powering
		 * up: only a reader that is gone ends the questions early.
		 */
		if (rv == (long)SCARD_E_UNKNOWN_READER)
			break;
	}
	log_info("%s: the card could not be asked what it is: %s", reader,
	    pcsc_stringify_error((LONG)rv));
	return -1;
}

static const char *
batch_sw_meaning(unsigned sw)
{
	switch (sw) {
	case 0x6999: return "wrong application AID";
	case 0x6E00: return "wrong CLA";
	case 0x6A86: return "incorrect P1-P2";
	case 0x6700: return "invalid input data length";
	case 0x6985: return "no more credit";
	case 0x6A80: return "invalid input data (date incorrectly formatted)";
	case 0x6D00: return "instruction not supported (application not "
		    "selected)";
	default: return NULL;
	}
}

/*
 * The status words after which the vendor text says GENERATE spent
 * nothing.  Every other word, after GENERATE was sent, may follow a spent
 * credit: it is in doubt, never a plain failure.  6D00 (no such command)
 * would mean the application was not selected; GENERATE is only sent
 * after SELECT answered 9000, so here it is not in the vendor's table.
 */
static int
batch_sw_spends_nothing(unsigned sw)
{
	switch (sw) {
	case 0x6700: case 0x6A80: case 0x6A86: case 0x6E00: case 0x6985:
		return 1;
	default:
		return 0;
	}
}

/*
 * PC/SC errors that pcscd gives only before the command reaches the card:
 * the card was gone or reset as we sent.  Anything else (the reader's
 * driver failed mid-exchange, pcscd died) may follow a command the card
 * got.  SCARD_E_NO_SMARTCARD is not proof: pcsc-lite's IFDTransmit also
 * returns it when the driver finds the card gone during the exchange.
 */
static int
batch_not_sent(long rv)
{
	return rv == (long)SCARD_W_REMOVED_CARD ||
	    rv == (long)SCARD_W_RESET_CARD ||
	    rv == (long)SCARD_E_INVALID_HANDLE;
}

/*
 * The answer to GENERATE, once the exchange is over: sw is the last status
 * word, all[0..total) the data collected.  Pure, for the fuzzer.
 */
enum batch_result
batch_parse(unsigned sw, const uint8_t *all, size_t total, const char *start,
    struct batch_license *out)
{
	const char *what;
	long s, e;

	out->sw = sw & 0xFFFF;
	if (sw == 0x6985) {
		snprintf(out->message, sizeof(out->message), "batch card in "
		    "%s has no credit left (6985)", out->reader);
		return BATCH_EXHAUSTED;
	}
	if (sw != 0x9000) {
		what = batch_sw_meaning(sw & 0xFFFF);
		if (batch_sw_spends_nothing(sw)) {
			snprintf(out->message, sizeof(out->message), "batch "
			    "card in %s refused GENERATE: %04X (%s); no credit "
			    "spent", out->reader, sw, what);
			return BATCH_REFUSED;
		}
		snprintf(out->message, sizeof(out->message), "batch card in %s "
		    "answered GENERATE with %04X%s%s%s: a credit may have been "
		    "spent", out->reader, sw & 0xFFFF, sw > 0xFFFF ?
		    " with unexpected data" : "", what != NULL ? ", " : "",
		    what != NULL ? what : "");
		return BATCH_DOUBT;
	}
	if (total != LIC_RESPONSE_LEN) {
		snprintf(out->message, sizeof(out->message), "batch card in "
		    "%s answered %zu bytes instead of %d: a credit may have "
		    "been spent", out->reader, total, LIC_RESPONSE_LEN);
		return BATCH_DOUBT;
	}
	/* The license bytes are kept as evidence, even if not loaded. */
	memcpy(out->license, all + DATE_LEN, LICENSE_LEN);
	out->has_license = 1;
	if (memcmp(all, "00000000", DATE_LEN) != 0 &&
	    (date_parse((const char *)all, DATE_LEN, &e) != 0 ||
	    date_parse(start, DATE_LEN, &s) != 0 || e < s)) {
		char hex[2 * DATE_LEN + 1];

		dbhash_hex(all, DATE_LEN, 1, hex);
		snprintf(out->message, sizeof(out->message), "batch card in "
		    "%s answered an expiry (hex %s) that is not a date on or "
		    "after the start %s: a credit was spent, the license is "
		    "not loaded", out->reader, hex, start);
		return BATCH_DOUBT;
	}
	memcpy(out->end_date, all, DATE_LEN);
	out->end_date[DATE_LEN] = '\0';
	snprintf(out->message, sizeof(out->message), "generated by the batch "
	    "card in %s", out->reader);
	return BATCH_OK;
}

/*
 * GENERATE and its GET RESPONSE chain, over any transmit function (the
 * fuzzer gives its own).  61XX means success with more to come: the chain
 * is followed until another word, however many pieces the card uses, as
 * long as the data fits what a license answer can be.
 */
enum batch_result
batch_exchange(const struct batch_io *io, const uint8_t *model,
    const uint8_t *serial, const char *start, struct batch_license *out)
{
	uint8_t cmd[5 + 40 + 1], resp[258], all[LIC_RESPONSE_MAX];
	uint8_t get[5] = { 0x00, 0xC0, 0x00, 0x00, 0x00 };
	size_t n = 0, total = 0;
	unsigned sw = 0;
	long rv;
	int pieces = 0;

	cmd[0] = 0x00;
	cmd[1] = 0xF8;
	cmd[2] = 0x00;
	cmd[3] = 0x00;
	cmd[4] = 0x28;
	memcpy(cmd + 5, model, FIELD_LEN);
	memcpy(cmd + 21, serial, FIELD_LEN);
	memcpy(cmd + 37, start, DATE_LEN);
	cmd[45] = 0x88;
	fault_point("generate");
	if ((rv = io->tx(io->arg, cmd, sizeof(cmd), resp, &n, &sw)) != 0) {
		if (batch_not_sent(rv)) {
			snprintf(out->message, sizeof(out->message), "batch "
			    "card in %s was gone before GENERATE reached it "
			    "(%s); no credit spent", out->reader,
			    pcsc_stringify_error((LONG)rv));
			return BATCH_GONE;
		}
		snprintf(out->message, sizeof(out->message), "batch card in %s"
		    " stopped answering during GENERATE (%s): a credit may "
		    "have been spent", out->reader,
		    pcsc_stringify_error((LONG)rv));
		return BATCH_DOUBT;
	}
	if ((sw == 0x9000 || (sw & 0xFF00) == 0x6100) && n <= sizeof(resp)) {
		memcpy(all, resp, n);
		total = n;
	} else if (n > 0)
		sw |= 0x10000;	/* a refusal with data is not the vendor's */
	while ((sw & 0xFF00) == 0x6100 && total <= LIC_RESPONSE_LEN) {
		/* A piece that carries nothing still counts against a bound. */
		if (++pieces > LIC_RESPONSE_MAX) {
			snprintf(out->message, sizeof(out->message), "batch "
			    "card in %s sent more than %d GET RESPONSE "
			    "pieces: a credit was spent, no license came",
			    out->reader, LIC_RESPONSE_MAX);
			return BATCH_DOUBT;
		}
		get[4] = (uint8_t)(sw & 0xFF);
		fault_point("getresp");
		if ((rv = io->tx(io->arg, get, sizeof(get), resp, &n, &sw)) !=
		    0) {
			snprintf(out->message, sizeof(out->message), "batch "
			    "card in %s stopped answering during GET RESPONSE "
			    "(%s): a credit was spent, no license came",
			    out->reader, pcsc_stringify_error((LONG)rv));
			return BATCH_DOUBT;
		}
		if (n > sizeof(resp) || total + n > sizeof(all)) {
			total += n;
			break;
		}
		memcpy(all + total, resp, n);
		total += n;
	}
	fault_point("generated");
	/* After 61XX the credit is spent: a later refusal is in doubt too. */
	if (pieces > 0 && sw != 0x9000) {
		snprintf(out->message, sizeof(out->message), "batch card in %s "
		    "answered GET RESPONSE with %04X after %d piece(s): a "
		    "credit was spent, no license came", out->reader,
		    sw & 0xFFFF, pieces);
		out->sw = sw & 0xFFFF;
		return BATCH_DOUBT;
	}
	return batch_parse(sw, all, total, start, out);
}

static long
batch_pcsc_tx(void *arg, const uint8_t *cmd, size_t len, uint8_t *out,
    size_t *outlen, unsigned *sw)
{
	return batch_tx(arg, cmd, len, out, outlen, sw);
}

/* The end of one generation: the connection stays for the next one. */
static void
batch_done(struct batch_conn *c, int keep)
{
	if (!keep) {
		batch_disconnect(c);
		return;
	}
	if (c->in_tx && SCardEndTransaction(c->card, SCARD_LEAVE_CARD) !=
	    SCARD_S_SUCCESS)
		batch_disconnect(c);
	c->in_tx = 0;
}

/*
 * The card's kept connection, in a transaction, with the batch AID
 * selected.  A kept handle that fails before GENERATE (the card was reset
 * or pulled and put back, pcscd restarted) is opened afresh once: nothing
 * was asked of the card yet.
 */
static long
batch_ready(struct batch_conn *c, const struct batch_card *b, unsigned *sw)
{
	long rv;
	int fresh, tries;

	if (c->has_card && c->insertion != b->insertion)
		batch_disconnect(c);
	for (tries = 0; tries < 2; tries++) {
		fresh = !c->has_card;
		if (fresh) {
			if ((rv = batch_open(c, b->reader)) != SCARD_S_SUCCESS)
				return rv;
			c->insertion = b->insertion;
		}
		rv = batch_begin(c);
		if (rv == SCARD_S_SUCCESS)
			rv = batch_tx(c, batch_select, sizeof(batch_select),
			    NULL, NULL, sw);
		if (rv == 0 || fresh)
			return rv;
		log_debug("%s: kept connection failed (%s); connecting again",
		    b->reader, pcsc_stringify_error((LONG)rv));
		batch_disconnect(c);
	}
	return rv;
}

/*
 * GENERATE on one card.  BATCH_OK; BATCH_EXHAUSTED or BATCH_GONE (try
 * the next card); BATCH_REFUSED (the card said no, nothing spent);
 * BATCH_DOUBT (a credit may be spent with no license to show for it).
 */
static enum batch_result
batch_one(int idx, struct batch_card *b, const uint8_t *model,
    const uint8_t *serial, const char *start, struct batch_license *out)
{
	struct batch_conn *c = &batch_conns[idx];
	struct batch_io io = { batch_pcsc_tx, c };
	enum batch_result r;
	const char *what;
	unsigned sw = 0;
	long rv;

	snprintf(out->reader, sizeof(out->reader), "%s", b->reader);
	snprintf(out->atr, sizeof(out->atr), "%s", b->atr);
	out->sw = 0;
	fault_point("select");
	if ((rv = batch_ready(c, b, &sw)) != 0) {
		batch_disconnect(c);
		b->broken = 1;
		snprintf(out->message, sizeof(out->message), "batch card in "
		    "%s did not answer SELECT (%s); no credit spent; not used "
		    "until it is inserted again", b->reader,
		    pcsc_stringify_error((LONG)rv));
		log_warnx("%s", out->message);
		return BATCH_GONE;
	}
	if (sw != 0x9000) {
		batch_disconnect(c);
		b->broken = 1;
		out->sw = sw & 0xFFFF;
		what = batch_sw_meaning(out->sw);
		snprintf(out->message, sizeof(out->message), "batch card in "
		    "%s refused SELECT: %04X (%s); not used any more",
		    b->reader, out->sw, what != NULL ? what : "unexpected");
		log_alert("%s", out->message);
		return BATCH_GONE;
	}
	r = batch_exchange(&io, model, serial, start, out);
	/* Only an exchange that ended as the vendor says keeps the line. */
	batch_done(c, r == BATCH_OK || r == BATCH_REFUSED ||
	    r == BATCH_EXHAUSTED);
	if (r == BATCH_EXHAUSTED) {
		b->exhausted = 1;
		log_alert("%s", out->message);
	} else if (r == BATCH_GONE)
		b->broken = 1;
	return r;
}

/*
 * Hold a batch card for one generation: the first usable card that no
 * other job holds, waiting while every usable card is held, and while
 * there is none but cards are still being classified (at most
 * BATCH_CLASSIFY_WAIT_S).  *waited is set when it waited: the job checks
 * that its card is still there.  Its reader and ATR are for the
 * `requested` row.  Returns a hold (> 0), or 0 when no batch card is
 * usable.
 */
int
batch_pick(char *reader, char *atr, int *waited)
{
	struct timespec until;
	int i, any, pick = -1;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += BATCH_CLASSIFY_WAIT_S;
	pthread_mutex_lock(&batch_lock);
	for (;;) {
		for (i = 0, any = 0; i < BATCH_MAX && pick < 0; i++) {
			if (!batch_usable(&batch_pool[i]))
				continue;
			any = 1;
			if (!batch_pool[i].held)
				pick = i;
		}
		if (pick >= 0)
			break;
		*waited = 1;
		if (any)
			pthread_cond_wait(&batch_cond, &batch_lock);
		else if (batch_classifying == 0 || pthread_cond_timedwait(
		    &batch_cond, &batch_lock, &until) != 0)
			break;	/* none, and none coming */
	}
	if (pick >= 0) {
		batch_pool[pick].held = 1;
		batch_pool[pick].unsettled++;
		snprintf(reader, READER_MAX, "%s", batch_pool[pick].reader);
		snprintf(atr, 2 * ATR_MAX + 1, "%s", batch_pool[pick].atr);
	}
	pthread_mutex_unlock(&batch_lock);
	return pick + 1;
}

/* A hold given back with no generation (the job ended before it). */
void
batch_unpick(int hold)
{
	if (hold <= 0 || hold > BATCH_MAX)
		return;
	pthread_mutex_lock(&batch_lock);
	batch_pool[hold - 1].held = 0;
	if (batch_pool[hold - 1].unsettled > 0)
		batch_pool[hold - 1].unsettled--;
	pthread_cond_broadcast(&batch_cond);
	pthread_mutex_unlock(&batch_lock);
}

/*
 * The insertions of a batch card (issue 18, case 8): a card has no
 * identity that the station can read, so the audit rows name insertions,
 * a `batch-in` row for each, and every credit row of a reader belongs to
 * the insertion of that reader before it.  For that to hold, a new
 * insertion's row waits until the rows of every credit asked of the
 * reader's last card are in: a pick is unsettled until its job has
 * written the `generated` or `in-doubt` row (batch_settle), or nothing
 * was spent.
 */
void
batch_settle(const char *reader)
{
	int i;

	pthread_mutex_lock(&batch_lock);
	for (i = 0; i < BATCH_MAX; i++)
		if (strcmp(batch_pool[i].reader, reader) == 0 &&
		    batch_pool[i].unsettled > 0) {
			batch_pool[i].unsettled--;
			break;
		}
	pthread_cond_broadcast(&batch_cond);
	pthread_mutex_unlock(&batch_lock);
}

/* Before a new insertion of a batch card in reader is recorded. */
void
batch_wait_settled(const char *reader)
{
	int i, busy;

	pthread_mutex_lock(&batch_lock);
	for (;;) {
		for (i = 0, busy = 0; i < BATCH_MAX; i++)
			busy |= strcmp(batch_pool[i].reader, reader) == 0 &&
			    batch_pool[i].unsettled > 0;
		if (!busy)
			break;
		pthread_cond_wait(&batch_cond, &batch_lock);
	}
	pthread_mutex_unlock(&batch_lock);
}

/*
 * GENERATE on the held card, and on the next usable ones while a card
 * turns out gone or exhausted before it spent anything.  Every hold is
 * given back.  out->wait_us: how long this job waited for another card.
 */
enum batch_result
batch_generate(int hold, const uint8_t *model, const uint8_t *serial,
    const char *start, struct batch_license *out)
{
	enum batch_result r = BATCH_NONE;
	struct batch_card card;
	char reader[READER_MAX], atr[2 * ATR_MAX + 1];
	long t0;
	int i, k, tries, waited = 0;

	memset(out, 0, sizeof(*out));
	snprintf(out->message, sizeof(out->message), "no batch card with "
	    "credit is inserted");
	for (tries = 0; hold > 0 && hold <= BATCH_MAX && tries < BATCH_MAX;
	    tries++) {
		i = hold - 1;
		pthread_mutex_lock(&batch_lock);
		card = batch_pool[i];
		pthread_mutex_unlock(&batch_lock);
		r = batch_usable(&card) ? batch_one(i, &card, model, serial,
		    start, out) : BATCH_GONE;
		/* The card may have been pulled and replaced meanwhile. */
		pthread_mutex_lock(&batch_lock);
		for (k = 0; k < BATCH_MAX; k++)
			if (batch_pool[k].used && strcmp(batch_pool[k].reader,
			    card.reader) == 0 && strcmp(batch_pool[k].atr,
			    card.atr) == 0) {
				batch_pool[k].exhausted |= card.exhausted;
				batch_pool[k].broken |= card.broken;
			}
		batch_pool[i].held = 0;
		/* Nothing spent on it: its credit row is not awaited. */
		if (r != BATCH_OK && r != BATCH_DOUBT &&
		    batch_pool[i].unsettled > 0)
			batch_pool[i].unsettled--;
		pthread_cond_broadcast(&batch_cond);
		pthread_mutex_unlock(&batch_lock);
		if (r != BATCH_GONE && r != BATCH_EXHAUSTED)
			break;
		t0 = date_mono_us();
		hold = batch_pick(reader, atr, &waited);
		out->wait_us += date_mono_us() - t0;
	}
	/* A last pick that the tries ran out before: given back. */
	if (tries >= BATCH_MAX && hold > 0 && hold <= BATCH_MAX)
		batch_unpick(hold);
	/* No card could be used, and none was asked to spend: no credit. */
	return r == BATCH_GONE || r == BATCH_EXHAUSTED ? BATCH_NONE : r;
}
