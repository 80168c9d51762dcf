/*
 * The batch card's answer to GENERATE, and its GET RESPONSE chain, from
 * a hostile card: the input scripts each answer (status word and data, or
 * a PC/SC error), batch_exchange runs over it, and the result is checked
 * against a model of the vendor text written here, apart from batch.c:
 *
 *  - OK only for a chain of 61XX ending in 9000 whose data are exactly
 *    136 bytes, with an expiry that is 00000000 or a date on or after the
 *    start; then the license and the end date are those bytes;
 *  - REFUSED or EXHAUSTED only for a bare vendor refusal word answering
 *    GENERATE itself, never after a 61XX; GONE only for a PC/SC error
 *    that proves GENERATE was not sent; anything else is DOUBT;
 *  - the APDUs sent are GENERATE, then GET RESPONSE 00 C0 00 00 XX with
 *    XX from the 61XX before it, and their number is bounded;
 *  - the message is a NUL-terminated string.
 *
 * Input: byte 0 flags (bits 0-1 the start date, bit 2 the last answer
 * repeats for ever, bit 3 the data are a pattern with a good expiry
 * instead of input bytes); then answers, each a control byte (bit 7: a
 * PC/SC error, the next byte picks it; else bit 0 adds 256 to the length)
 * then SW1 SW2 LEN and, unless bit 3, LEN data bytes.
 */
#include "../../daemon/batch.c"
#include "stubs.h"

/* The watcher: the card is always the one that was inserted. */
unsigned
watch_card_now(const char *reader)
{
	(void)reader;
	return 0;
}

#define FB_MAX_ANSWERS	600
#define FB_MAX_TX	(LIC_RESPONSE_MAX + 2)

struct fb_answer {
	long		err;	/* 0: an answer */
	unsigned	sw;
	size_t		len;
	const uint8_t	*data;	/* NULL: the pattern */
	size_t		pos;	/* where the pattern starts */
};

struct fb_script {
	struct fb_answer a[FB_MAX_ANSWERS];
	int		n;
	int		repeat;
	int		next;		/* answers given */
	uint8_t		sent[FB_MAX_TX][5];	/* GET RESPONSE headers */
	int		ntx;
	size_t		gen_len;
	uint8_t		gen[64];
};

static const long fb_errors[] = {
	SCARD_W_REMOVED_CARD, SCARD_W_RESET_CARD, SCARD_E_NO_SMARTCARD,
	SCARD_E_INVALID_HANDLE, SCARD_E_NOT_TRANSACTED, SCARD_E_TIMEOUT,
	SCARD_F_COMM_ERROR, SCARD_E_NO_SERVICE, SCARD_E_READER_UNAVAILABLE,
	SCARD_E_INSUFFICIENT_BUFFER, SCARD_W_UNPOWERED_CARD,
	SCARD_W_UNRESPONSIVE_CARD, SCARD_E_PROTO_MISMATCH,
	SCARD_E_SHARING_VIOLATION, SCARD_F_INTERNAL_ERROR,
	SCARD_E_UNKNOWN_READER, SCARD_E_CANCELLED, SCARD_E_INVALID_VALUE,
	SCARD_E_INVALID_PARAMETER, SCARD_F_UNKNOWN_ERROR, 1, -1
};

static const char *const fb_starts[] = {
	"20260101", "20261231", "20240229", "20991231"
};

static const char fb_expiry[] = "20300101";

static uint8_t
fb_pattern(size_t k)
{
	return k < DATE_LEN ? (uint8_t)fb_expiry[k] : (uint8_t)(k * 7 + 3);
}

/* The errors that prove GENERATE never reached the card. */
static int
fb_not_sent(long rv)
{
	return rv == (long)SCARD_W_REMOVED_CARD ||
	    rv == (long)SCARD_W_RESET_CARD ||
	    rv == (long)SCARD_E_INVALID_HANDLE;
}

static int
fb_refusal(unsigned sw)
{
	return sw == 0x6700 || sw == 0x6A80 || sw == 0x6A86 ||
	    sw == 0x6E00;
}

static const struct fb_answer *
fb_get(const struct fb_script *s, int i)
{
	static const struct fb_answer end = { SCARD_F_COMM_ERROR, 0, 0, NULL,
	    0 };

	if (i < s->n)
		return &s->a[i];
	if (s->repeat && s->n > 0)
		return &s->a[s->n - 1];
	return &end;	/* the script is over: the card went quiet */
}

static long
fb_tx(void *arg, const uint8_t *cmd, size_t len, uint8_t *out, size_t *outlen,
    unsigned *sw)
{
	struct fb_script *s = arg;
	const struct fb_answer *a;
	size_t k;

	FUZZ_CHECK(s->ntx < FB_MAX_TX, "more than %d APDUs", FB_MAX_TX);
	if (s->ntx == 0) {
		FUZZ_CHECK(len <= sizeof(s->gen), "GENERATE of %zu bytes", len);
		memcpy(s->gen, cmd, len);
		s->gen_len = len;
	} else {
		FUZZ_CHECK(len == 5, "GET RESPONSE of %zu bytes", len);
		memcpy(s->sent[s->ntx], cmd, 5);
	}
	s->ntx++;
	a = fb_get(s, s->next++);
	if (a->err != 0)
		return a->err;
	/* pcscd with the 258-byte buffer of batch_tx. */
	if (a->len > 256)
		return SCARD_E_INSUFFICIENT_BUFFER;
	for (k = 0; k < a->len; k++)
		out[k] = a->data != NULL ? a->data[k] : fb_pattern(a->pos + k);
	*outlen = a->len;
	*sw = a->sw;
	return 0;
}

/* What the vendor text says this script must give. */
static enum batch_result
fb_expect(const struct fb_script *s, const char *start, uint8_t *all,
    size_t *total)
{
	const struct fb_answer *a = fb_get(s, 0);
	size_t k;
	long e, st;
	int i = 0;

	*total = 0;
	if (a->err != 0)
		return fb_not_sent(a->err) ? BATCH_GONE : BATCH_DOUBT;
	if (a->len > 256)
		return BATCH_DOUBT;
	if (a->sw == 0x6985 && a->len == 0)
		return BATCH_EXHAUSTED;
	if (fb_refusal(a->sw) && a->len == 0)
		return BATCH_REFUSED;
	for (;;) {
		if (a->err != 0 || a->len > 256)
			return BATCH_DOUBT;
		for (k = 0; k < a->len && *total + k < LIC_RESPONSE_LEN; k++)
			all[*total + k] = a->data != NULL ? a->data[k] :
			    fb_pattern(a->pos + k);
		*total += a->len;
		if ((a->sw & 0xFF00) != 0x6100 || *total > LIC_RESPONSE_LEN)
			break;
		if (++i > LIC_RESPONSE_MAX)
			return BATCH_DOUBT;
		a = fb_get(s, i);
	}
	if (a->sw != 0x9000 || *total != LIC_RESPONSE_LEN)
		return BATCH_DOUBT;
	if (memcmp(all, "00000000", DATE_LEN) == 0)
		return BATCH_OK;
	if (date_parse((const char *)all, DATE_LEN, &e) != 0 ||
	    date_parse(start, DATE_LEN, &st) != 0 || e < st)
		return BATCH_DOUBT;
	return BATCH_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fb_script s;
	static const uint8_t model[FIELD_LEN] = "MODEL-X         ";
	static const uint8_t serial[FIELD_LEN] = "SERIAL\xFF\x01       ";
	struct batch_io io = { fb_tx, &s };
	struct batch_license out;
	uint8_t all[LIC_RESPONSE_LEN];
	enum batch_result r, want;
	const char *start;
	size_t p = 1, pos = 0, total, len;
	int pattern, i;

	if (size < 1)
		return 0;
	memset(&s, 0, sizeof(s));
	start = fb_starts[data[0] & 3];
	s.repeat = (data[0] & 4) != 0;
	pattern = (data[0] & 8) != 0;
	while (p < size && s.n < FB_MAX_ANSWERS) {
		struct fb_answer *a = &s.a[s.n++];
		uint8_t ctl = data[p++];

		if (ctl & 0x80) {
			a->err = fb_errors[(p < size ? data[p++] : 0) %
			    (sizeof(fb_errors) / sizeof(fb_errors[0]))];
			continue;
		}
		if (p + 3 > size) {
			s.n--;
			break;
		}
		a->sw = (unsigned)data[p] << 8 | data[p + 1];
		len = data[p + 2] + ((ctl & 1) ? 256u : 0u);
		p += 3;
		a->len = len;
		if (pattern) {
			a->pos = pos;
			pos += len;
		} else {
			if (len > size - p)
				a->len = len = size - p;
			a->data = data + p;
			p += len;
		}
	}
	memset(&out, 0xA5, sizeof(out));
	snprintf(out.reader, sizeof(out.reader), "Fuzz Reader 00");
	out.has_license = 0;
	r = batch_exchange(&io, model, serial, start, &out);
	want = fb_expect(&s, start, all, &total);
	FUZZ_CHECK(r == want, "result %d, the vendor text says %d", r, want);
	FUZZ_CHECK(memchr(out.message, '\0', sizeof(out.message)) != NULL,
	    "message not terminated");
	/* GENERATE, byte for byte. */
	FUZZ_CHECK(s.gen_len == 46 && memcmp(s.gen, "\x00\xF8\x00\x00\x28",
	    5) == 0 && memcmp(s.gen + 5, model, 16) == 0 &&
	    memcmp(s.gen + 21, serial, 16) == 0 &&
	    memcmp(s.gen + 37, start, 8) == 0 && s.gen[45] == 0x88,
	    "GENERATE APDU");
	/* Each GET RESPONSE follows a 61XX and asks for XX. */
	for (i = 1; i < s.ntx; i++) {
		const struct fb_answer *prev = fb_get(&s, i - 1);

		FUZZ_CHECK(prev->err == 0 && (prev->sw & 0xFF00) == 0x6100,
		    "APDU %d sent after %04X", i, prev->sw);
		FUZZ_CHECK(memcmp(s.sent[i], "\x00\xC0\x00\x00", 4) == 0 &&
		    s.sent[i][4] == (prev->sw & 0xFF), "GET RESPONSE %d", i);
	}
	if (r == BATCH_REFUSED || r == BATCH_EXHAUSTED || r == BATCH_GONE)
		FUZZ_CHECK(s.ntx == 1, "%d APDUs before a clean refusal",
		    s.ntx);
	if (r == BATCH_OK) {
		FUZZ_CHECK(total == LIC_RESPONSE_LEN, "OK with %zu bytes",
		    total);
		FUZZ_CHECK(memcmp(out.end_date, all, DATE_LEN) == 0 &&
		    out.end_date[DATE_LEN] == '\0', "end date");
		FUZZ_CHECK(memcmp(out.license, all + DATE_LEN, LICENSE_LEN) ==
		    0 && out.has_license, "license bytes");
		FUZZ_CHECK(out.sw == 0x9000, "sw %04X on OK", out.sw);
	}
	return 0;
}
