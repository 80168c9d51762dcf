/*
 * The batch card's answers, without a line: batch.c is included here and
 * batch_exchange runs over a scripted transmit function, so that every
 * status word, every length and every chain the vendor text allows or
 * forbids gets its one exact result.  What the results mean:
 *
 *   OK        9000 after GENERATE (and any 61XX pieces) with exactly the
 *             136 bytes of the answer, the expiry 00000000 or a date on
 *             or after the start;
 *   REFUSED   a bare 6700 6A80 6A86 6E00 answering GENERATE: the
 *             vendor's refusals, nothing spent (6D00, no such command,
 *             cannot answer a GENERATE sent after SELECT said 9000: it
 *             is in doubt like any word that the vendor does not list);
 *   EXHAUSTED a bare 6985 answering GENERATE;
 *   GONE      a PC/SC error that proves GENERATE never reached the card;
 *   DOUBT     everything else: a credit may be spent.
 *
 * A 61XX may announce any length: the pieces are collected until 9000
 * and only their total counts, as the vendor text says ("collect until
 * 90 00").  Each failing case names its input.
 */
#include "../daemon/batch.c"
#include "fuzz/stubs.h"

/* The watcher: the card is always the one that was inserted. */
unsigned
watch_card_now(const char *reader)
{
	(void)reader;
	return 0;
}

#include <check.h>

#define CB_MAX		700
#define CB_START	"20260101"

struct cb_answer {
	long		err;
	unsigned	sw;
	size_t		len;
	uint8_t		data[300];
};

struct cb_script {
	struct cb_answer a[CB_MAX];
	int		n;
	int		repeat;		/* the last answer, for ever */
	int		ntx;
	uint8_t		apdu[CB_MAX][64];
	size_t		apdu_len[CB_MAX];
};

static struct cb_script	cb;
static uint8_t		cb_lic[LIC_RESPONSE_LEN];
static const uint8_t	cb_model[FIELD_LEN] = "IDOPTE MODEL 1  ";
static const uint8_t	cb_serial[FIELD_LEN] = "0123456789ABCDEF";

static const char *const cb_names[] = { "OK", "NONE", "REFUSED", "DOUBT",
	"EXHAUSTED", "GONE" };

static long
cb_tx(void *arg, const uint8_t *cmd, size_t len, uint8_t *out, size_t *outlen,
    unsigned *sw)
{
	struct cb_script *s = arg;
	const struct cb_answer *a;

	ck_assert_int_lt(s->ntx, CB_MAX);
	ck_assert_uint_le(len, sizeof(s->apdu[0]));
	memcpy(s->apdu[s->ntx], cmd, len);
	s->apdu_len[s->ntx] = len;
	if (s->ntx < s->n)
		a = &s->a[s->ntx];
	else if (s->repeat)
		a = &s->a[s->n - 1];
	else
		ck_abort_msg("APDU %d sent after the script's end", s->ntx);
	s->ntx++;
	if (a->err != 0)
		return a->err;
	/* What pcscd says when the answer exceeds batch_tx's buffer. */
	if (a->len > 256)
		return SCARD_E_INSUFFICIENT_BUFFER;
	memcpy(out, a->data, a->len);
	*outlen = a->len;
	*sw = a->sw;
	return 0;
}

static void
cb_reset(void)
{
	size_t i;

	/* Only the counters: answers and APDUs are written before use. */
	cb.n = cb.ntx = cb.repeat = 0;
	memcpy(cb_lic, "20301231", DATE_LEN);
	for (i = DATE_LEN; i < LIC_RESPONSE_LEN; i++)
		cb_lic[i] = (uint8_t)(i * 37 + 11);
}

static struct cb_answer *
cb_add(unsigned sw, const uint8_t *data, size_t len)
{
	struct cb_answer *a = &cb.a[cb.n++];

	ck_assert_int_le(cb.n, CB_MAX);
	a->err = 0;
	a->sw = sw;
	a->len = len;
	if (len > 0)
		memcpy(a->data, data, len < sizeof(a->data) ? len :
		    sizeof(a->data));
	return a;
}

static void
cb_err(long err)
{
	ck_assert_int_lt(cb.n, CB_MAX);
	memset(&cb.a[cb.n], 0, sizeof(cb.a[0]));
	cb.a[cb.n++].err = err;
}

static enum batch_result
cb_run(struct batch_license *out)
{
	struct batch_io io = { cb_tx, &cb };

	memset(out, 0, sizeof(*out));
	snprintf(out->reader, sizeof(out->reader), "Test Batch Reader 00");
	return batch_exchange(&io, cb_model, cb_serial, CB_START, out);
}

#define CB_EXPECT(res, want, ...) do {					\
	enum batch_result cb_r = (res), cb_w = (want);			\
									\
	if (cb_r != cb_w)						\
		ck_abort_msg("%s: got %s, want %s", cb_what(__VA_ARGS__), \
		    cb_names[cb_r], cb_names[cb_w]);			\
} while (0)

static const char *
cb_what(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *
cb_what(const char *fmt, ...)
{
	static char buf[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return buf;
}

/* GENERATE exactly: 00 F8 00 00 28 model serial date 88. */
static void
cb_check_generate(void)
{
	static const uint8_t head[] = { 0x00, 0xF8, 0x00, 0x00, 0x28 };

	ck_assert_int_ge(cb.ntx, 1);
	ck_assert_uint_eq(cb.apdu_len[0], 46);
	ck_assert_mem_eq(cb.apdu[0], head, 5);
	ck_assert_mem_eq(cb.apdu[0] + 5, cb_model, FIELD_LEN);
	ck_assert_mem_eq(cb.apdu[0] + 21, cb_serial, FIELD_LEN);
	ck_assert_mem_eq(cb.apdu[0] + 37, CB_START, DATE_LEN);
	ck_assert_uint_eq(cb.apdu[0][45], 0x88);
}

/* Each GET RESPONSE is 00 C0 00 00 XX, XX from the 61XX before it. */
static void
cb_check_get_responses(void)
{
	int i;

	for (i = 1; i < cb.ntx; i++) {
		const struct cb_answer *prev = &cb.a[i - 1 < cb.n ? i - 1 :
		    cb.n - 1];
		uint8_t want[5] = { 0x00, 0xC0, 0x00, 0x00,
		    (uint8_t)(prev->sw & 0xFF) };

		ck_assert_msg(prev->err == 0 && (prev->sw & 0xFF00) == 0x6100,
		    "APDU %d sent after %04X", i, prev->sw);
		ck_assert_msg(cb.apdu_len[i] == 5 &&
		    memcmp(cb.apdu[i], want, 5) == 0, "GET RESPONSE %d is "
		    "%02X %02X %02X %02X %02X", i, cb.apdu[i][0],
		    cb.apdu[i][1], cb.apdu[i][2], cb.apdu[i][3],
		    cb.apdu[i][4]);
	}
}

static void
cb_check_ok(const struct batch_license *out, const uint8_t *answer)
{
	ck_assert_mem_eq(out->end_date, answer, DATE_LEN);
	ck_assert_uint_eq(out->end_date[DATE_LEN], '\0');
	ck_assert_mem_eq(out->license, answer + DATE_LEN, LICENSE_LEN);
	ck_assert_int_eq(out->has_license, 1);
	ck_assert_uint_eq(out->sw, 0x9000);
}

static int
cb_refusal(unsigned sw)
{
	return sw == 0x6700 || sw == 0x6A80 || sw == 0x6A86 ||
	    sw == 0x6E00;
}

/* Every status word as the bare answer to GENERATE. */
START_TEST(every_status_word)
{
	struct batch_license out;
	enum batch_result r, want;
	unsigned sw;

	for (sw = 0; sw <= 0xFFFF; sw++) {
		cb_reset();
		if (sw == 0x9000)
			cb_add(sw, cb_lic, LIC_RESPONSE_LEN);
		else
			cb_add(sw, NULL, 0);
		if ((sw & 0xFF00) == 0x6100)
			cb_add(0x9000, cb_lic, LIC_RESPONSE_LEN);
		r = cb_run(&out);
		want = sw == 0x9000 || (sw & 0xFF00) == 0x6100 ? BATCH_OK :
		    sw == 0x6985 ? BATCH_EXHAUSTED : cb_refusal(sw) ?
		    BATCH_REFUSED : BATCH_DOUBT;
		CB_EXPECT(r, want, "GENERATE answered %04X", sw);
		ck_assert_msg(cb.ntx == ((sw & 0xFF00) == 0x6100 ? 2 : 1),
		    "%04X: %d APDUs", sw, cb.ntx);
		cb_check_generate();
		cb_check_get_responses();
		if (r == BATCH_OK)
			cb_check_ok(&out, cb_lic);
		ck_assert_msg(r == BATCH_OK || out.sw == sw, "%04X: sw %04X",
		    sw, out.sw);
		ck_assert_msg(memchr(out.message, '\0', sizeof(out.message)) !=
		    NULL && out.message[0] != '\0', "%04X: message", sw);
	}
}
END_TEST

/* A refusal that carries data is no vendor answer: in doubt. */
START_TEST(refusal_with_data_is_in_doubt)
{
	static const unsigned words[] = { 0x6700, 0x6A80, 0x6A86, 0x6E00,
	    0x6D00, 0x6985 };
	struct batch_license out;
	size_t i, len;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		for (len = 1; len <= 256; len += 135) {
			cb_reset();
			cb_add(words[i], cb_lic, len);
			CB_EXPECT(cb_run(&out), BATCH_DOUBT, "%04X with %zu "
			    "bytes", words[i], len);
		}
}
END_TEST

/* A refusal word after 61XX: the credit is spent already. */
START_TEST(refusal_after_61xx_is_in_doubt)
{
	static const unsigned words[] = { 0x6700, 0x6A80, 0x6A86, 0x6E00,
	    0x6D00, 0x6985, 0x6F00, 0x6C88 };
	struct batch_license out;
	size_t i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		cb_reset();
		cb_add(0x6188, NULL, 0);
		cb_add(words[i], NULL, 0);
		CB_EXPECT(cb_run(&out), BATCH_DOUBT, "61 88 then %04X",
		    words[i]);
		ck_assert_uint_eq(out.sw, words[i]);
	}
}
END_TEST

/* 9000 with 0 to 300 bytes: only 136 is a license. */
START_TEST(answer_lengths)
{
	struct batch_license out;
	uint8_t buf[300];
	size_t len;

	memset(buf, 'A', sizeof(buf));
	for (len = 0; len <= 300; len++) {
		cb_reset();
		memcpy(buf, cb_lic, LIC_RESPONSE_LEN);
		cb_add(0x9000, buf, len);
		CB_EXPECT(cb_run(&out), len == LIC_RESPONSE_LEN ? BATCH_OK :
		    BATCH_DOUBT, "9000 with %zu bytes", len);
		ck_assert_msg(len == LIC_RESPONSE_LEN || !out.has_license,
		    "%zu bytes: has_license", len);
	}
	/* The same lengths in one GET RESPONSE after 61 88. */
	for (len = 0; len <= 300; len++) {
		cb_reset();
		cb_add(0x6188, NULL, 0);
		cb_add(0x9000, buf, len);
		CB_EXPECT(cb_run(&out), len == LIC_RESPONSE_LEN ? BATCH_OK :
		    BATCH_DOUBT, "61 88, then 9000 with %zu bytes", len);
	}
}
END_TEST

START_TEST(one_byte_short_or_long)
{
	struct batch_license out;
	uint8_t buf[LIC_RESPONSE_LEN + 1];

	memcpy(buf, cb_lic, LIC_RESPONSE_LEN);
	buf[LIC_RESPONSE_LEN] = 0x00;
	cb_reset();
	cb_add(0x9000, buf, 135);
	CB_EXPECT(cb_run(&out), BATCH_DOUBT, "9000 with 135 bytes");
	ck_assert_ptr_nonnull(strstr(out.message, "135 bytes instead of 136"));
	cb_reset();
	cb_add(0x9000, buf, 137);
	CB_EXPECT(cb_run(&out), BATCH_DOUBT, "9000 with 137 bytes");
	ck_assert_ptr_nonnull(strstr(out.message, "137 bytes instead of 136"));
}
END_TEST

/*
 * 61XX announcing a wrong length: what counts is the total at 9000.  A
 * piece longer or shorter than announced is taken as it comes; the
 * license is right if and only if the pieces add up to 136 bytes.
 */
START_TEST(announced_length_is_not_trusted)
{
	static const struct {
		unsigned	announce;
		size_t		first, second;	/* second: 0 = none */
		enum batch_result want;
	} t[] = {
		{ 0x6188, 100, 0, BATCH_DOUBT },	/* fewer, then 9000 */
		{ 0x6188, 135, 0, BATCH_DOUBT },
		{ 0x6188, 137, 0, BATCH_DOUBT }, /* more than announced */
		{ 0x6110, 136, 0, BATCH_OK },		/* announced 16 */
		{ 0x6100, 136, 0, BATCH_OK },		/* announced 256 */
		{ 0x61FF, 136, 0, BATCH_OK },
		{ 0x6101, 136, 0, BATCH_OK },
		{ 0x6188, 36, 100, BATCH_OK },		/* 61XX again */
		{ 0x6188, 36, 101, BATCH_DOUBT },
		{ 0x6188, 36, 99, BATCH_DOUBT },
	};
	struct batch_license out;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint8_t buf[300];

		memset(buf, 'B', sizeof(buf));
		memcpy(buf, cb_lic, LIC_RESPONSE_LEN);
		cb_reset();
		cb_add(t[i].announce, NULL, 0);
		if (t[i].second == 0)
			cb_add(0x9000, buf, t[i].first);
		else {
			cb_add(0x6100 | (unsigned)t[i].second, buf,
			    t[i].first);
			cb_add(0x9000, buf + t[i].first, t[i].second);
		}
		CB_EXPECT(cb_run(&out), t[i].want, "%04X then %zu + %zu bytes",
		    t[i].announce, t[i].first, t[i].second);
		cb_check_get_responses();
		if (t[i].want == BATCH_OK)
			cb_check_ok(&out, buf);
	}
}
END_TEST

START_TEST(expiry_must_be_a_date_on_or_after_the_start)
{
	static const struct {
		const char		*end;
		enum batch_result	 want;
	} t[] = {
		{ "2026XX01", BATCH_DOUBT }, { "20261301", BATCH_DOUBT },
		{ "20260230", BATCH_DOUBT }, { "20270229", BATCH_DOUBT },
		{ "20260100", BATCH_DOUBT }, { "00000001", BATCH_DOUBT },
		{ "2026-1-1", BATCH_DOUBT }, { "        ", BATCH_DOUBT },
		{ "\0\0\0\0\0\0\0\0", BATCH_DOUBT },
		{ "20251231", BATCH_DOUBT },	/* before the start */
		{ "19991231", BATCH_DOUBT },
		{ "00000000", BATCH_OK },	/* no limit */
		{ "20260101", BATCH_OK },	/* the start itself */
		{ "20280229", BATCH_OK }, { "20991231", BATCH_OK },
		{ "99991231", BATCH_OK },
	};
	struct batch_license out;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cb_reset();
		memcpy(cb_lic, t[i].end, DATE_LEN);
		cb_add(0x9000, cb_lic, LIC_RESPONSE_LEN);
		CB_EXPECT(cb_run(&out), t[i].want, "expiry \"%.8s\"",
		    t[i].end);
		/* The 136 bytes came: the license is kept as evidence. */
		ck_assert_int_eq(out.has_license, 1);
		ck_assert_mem_eq(out.license, cb_lic + DATE_LEN, LICENSE_LEN);
		if (t[i].want == BATCH_OK)
			cb_check_ok(&out, cb_lic);
		else
			ck_assert_ptr_nonnull(strstr(out.message,
			    "not a date on or after"));
	}
}
END_TEST

/* The answer in 1, 2, 17 and 136 pieces: all licenses. */
START_TEST(chains_of_pieces)
{
	static const int pieces[] = { 1, 2, 17, 136 };
	struct batch_license out;
	size_t i, at, plen[LIC_RESPONSE_LEN];
	int k, n;

	for (i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		n = pieces[i];
		cb_reset();
		/* Piece k has len[k] bytes; each 61XX announces the next. */
		for (k = 0; k < n; k++)
			plen[k] = k < n - 1 ? LIC_RESPONSE_LEN / (size_t)n :
			    LIC_RESPONSE_LEN - (size_t)(n - 1) *
			    (LIC_RESPONSE_LEN / (size_t)n);
		cb_add(0x6100 | (unsigned)plen[0], NULL, 0);
		for (k = 0, at = 0; k < n; at += plen[k], k++)
			cb_add(k == n - 1 ? 0x9000 : 0x6100 |
			    (unsigned)plen[k + 1], cb_lic + at, plen[k]);
		CB_EXPECT(cb_run(&out), BATCH_OK, "%d pieces", n);
		ck_assert_int_eq(cb.ntx, n + 1);
		cb_check_generate();
		cb_check_get_responses();
		cb_check_ok(&out, cb_lic);
	}
}
END_TEST

/* A chain that never ends stops, in doubt, after a bounded number. */
START_TEST(endless_chains_stop)
{
	struct batch_license out;
	uint8_t one = '2';

	cb_reset();
	cb_add(0x6101, NULL, 0);
	cb_add(0x6101, &one, 1);
	cb.repeat = 1;
	CB_EXPECT(cb_run(&out), BATCH_DOUBT, "61 01 for ever, 1 byte each");
	ck_assert_int_le(cb.ntx, LIC_RESPONSE_LEN + 2);
	cb_check_get_responses();

	cb_reset();
	cb_add(0x6100, NULL, 0);
	cb.repeat = 1;
	CB_EXPECT(cb_run(&out), BATCH_DOUBT, "61 00 for ever, no data");
	ck_assert_int_le(cb.ntx, LIC_RESPONSE_MAX + 2);
	cb_check_get_responses();
}
END_TEST

static const struct {
	long		 rv;
	const char	*name;
	enum batch_result want;		/* at GENERATE */
} cb_errors[] = {
	/* pcscd says these before the APDU goes to the reader. */
	{ SCARD_W_REMOVED_CARD, "SCARD_W_REMOVED_CARD", BATCH_GONE },
	{ SCARD_W_RESET_CARD, "SCARD_W_RESET_CARD", BATCH_GONE },
	{ SCARD_E_INVALID_HANDLE, "SCARD_E_INVALID_HANDLE", BATCH_GONE },
	/*
	 * pcsc-lite's IFDTransmit also gives SCARD_E_NO_SMARTCARD when the
	 * driver says the card left during the exchange: maybe sent.
	 */
	{ SCARD_E_NO_SMARTCARD, "SCARD_E_NO_SMARTCARD", BATCH_DOUBT },
	{ SCARD_E_NOT_TRANSACTED, "SCARD_E_NOT_TRANSACTED", BATCH_DOUBT },
	{ SCARD_E_TIMEOUT, "SCARD_E_TIMEOUT", BATCH_DOUBT },
	{ SCARD_F_COMM_ERROR, "SCARD_F_COMM_ERROR", BATCH_DOUBT },
	{ SCARD_E_NO_SERVICE, "SCARD_E_NO_SERVICE", BATCH_DOUBT },
	{ SCARD_E_READER_UNAVAILABLE, "SCARD_E_READER_UNAVAILABLE",
	    BATCH_DOUBT },
	{ SCARD_E_INSUFFICIENT_BUFFER, "SCARD_E_INSUFFICIENT_BUFFER",
	    BATCH_DOUBT },
	{ SCARD_W_UNRESPONSIVE_CARD, "SCARD_W_UNRESPONSIVE_CARD",
	    BATCH_DOUBT },
	{ SCARD_W_UNPOWERED_CARD, "SCARD_W_UNPOWERED_CARD", BATCH_DOUBT },
	{ SCARD_E_PROTO_MISMATCH, "SCARD_E_PROTO_MISMATCH", BATCH_DOUBT },
	{ SCARD_E_SHARING_VIOLATION, "SCARD_E_SHARING_VIOLATION",
	    BATCH_DOUBT },
	{ SCARD_F_INTERNAL_ERROR, "SCARD_F_INTERNAL_ERROR", BATCH_DOUBT },
	{ SCARD_F_UNKNOWN_ERROR, "SCARD_F_UNKNOWN_ERROR", BATCH_DOUBT },
	{ SCARD_E_CANCELLED, "SCARD_E_CANCELLED", BATCH_DOUBT },
	{ SCARD_E_SERVICE_STOPPED, "SCARD_E_SERVICE_STOPPED", BATCH_DOUBT },
	{ SCARD_E_UNKNOWN_READER, "SCARD_E_UNKNOWN_READER", BATCH_DOUBT },
};

START_TEST(transmit_error_at_generate)
{
	struct batch_license out;
	size_t i;

	for (i = 0; i < sizeof(cb_errors) / sizeof(cb_errors[0]); i++) {
		cb_reset();
		cb_err(cb_errors[i].rv);
		CB_EXPECT(cb_run(&out), cb_errors[i].want, "%s at GENERATE",
		    cb_errors[i].name);
		ck_assert_int_eq(cb.ntx, 1);
		ck_assert_ptr_nonnull(strstr(out.message,
		    cb_errors[i].want == BATCH_GONE ? "no credit spent" :
		    "may have been spent"));
	}
}
END_TEST

/* After 61XX, any transmit error at any piece: the credit is spent. */
START_TEST(transmit_error_at_each_get_response)
{
	struct batch_license out;
	size_t i;
	int at, k;

	for (i = 0; i < sizeof(cb_errors) / sizeof(cb_errors[0]); i++)
		for (at = 1; at <= 17; at++) {
			cb_reset();
			cb_add(0x6108, NULL, 0);
			for (k = 1; k < at; k++)
				cb_add(0x6108, cb_lic + 8 * (k - 1), 8);
			cb_err(cb_errors[i].rv);
			CB_EXPECT(cb_run(&out), BATCH_DOUBT, "%s at GET "
			    "RESPONSE %d", cb_errors[i].name, at);
			ck_assert_int_eq(cb.ntx, at + 1);
			ck_assert_int_eq(out.has_license, 0);
		}
}
END_TEST

static Suite *
batch_suite(void)
{
	Suite *s = suite_create("batch");
	TCase *tc = tcase_create("answers");

	tcase_add_test(tc, every_status_word);
	tcase_add_test(tc, refusal_with_data_is_in_doubt);
	tcase_add_test(tc, refusal_after_61xx_is_in_doubt);
	tcase_add_test(tc, answer_lengths);
	tcase_add_test(tc, one_byte_short_or_long);
	tcase_add_test(tc, announced_length_is_not_trusted);
	tcase_add_test(tc, expiry_must_be_a_date_on_or_after_the_start);
	tcase_add_test(tc, chains_of_pieces);
	tcase_add_test(tc, endless_chains_stop);
	tcase_add_test(tc, transmit_error_at_generate);
	tcase_add_test(tc, transmit_error_at_each_get_response);
	/* Fast alone (2 s in all), but the machine may be busy. */
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(batch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
