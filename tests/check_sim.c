/*
 * The simulated line, through the real pcscd: the batch card against the
 * vendor text, the target cards and the simulated middleware through
 * p11-kit, and the faults the daemon's tests rely on.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <PCSC/winscard.h>
#include <p11-kit/p11-kit.h>

#include "testline.h"
#include "../sim/simproto.h"

#define MODULE	TOPDIR "/sim/cardlic-sim-p11.so"
#define R_BATCH	0
#define R_TGT	1
#define R_TGT2	2

static SCARDCONTEXT	ctx;
static SCARDHANDLE	card;
static DWORD		proto;

/* ---- raw PC/SC to the batch card ------------------------------------ */

static void
connect_reader(int k)
{
	char *name = tl_reader(k);
	LONG rv;

	ck_assert_int_eq(SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL,
	    &ctx), SCARD_S_SUCCESS);
	rv = SCardConnect(ctx, name, SCARD_SHARE_SHARED,
	    SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &proto);
	ck_assert_msg(rv == SCARD_S_SUCCESS, "connect %s: %s", name,
	    pcsc_stringify_error(rv));
	free(name);
}

/* Send hex; return the status word, the data in out/outlen. */
static unsigned
tx(const char *hex, uint8_t *out, size_t *outlen)
{
	uint8_t cmd[300], resp[300];
	DWORD rlen = sizeof(resp);
	size_t n = tl_hex(hex, cmd, sizeof(cmd));
	LONG rv;

	rv = SCardTransmit(card, proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 :
	    SCARD_PCI_T1, cmd, (DWORD)n, NULL, resp, &rlen);
	ck_assert_msg(rv == SCARD_S_SUCCESS, "transmit: %s",
	    pcsc_stringify_error(rv));
	ck_assert_uint_ge(rlen, 2);
	if (out != NULL) {
		memcpy(out, resp, rlen - 2);
		*outlen = rlen - 2;
	}
	return (unsigned)resp[rlen - 2] << 8 | resp[rlen - 1];
}

#define SELECT		"00A4040C09A0000003634D574C01"
#define MODEL_HEX	"53494D2D4D4F44454C2D312020202020"	/* SIM-MODEL-1 */
#define SERIAL_HEX	"54303030312020202020202020202020"	/* T0001 */

static char *
gen_cmd(const char *serial_hex, const char *date)
{
	char *s, dh[17];
	int i;

	for (i = 0; i < 8; i++)
		snprintf(dh + 2 * i, 3, "%02X", (unsigned char)date[i]);
	if (asprintf(&s, "00F8000028%s%s%s88", MODEL_HEX, serial_hex, dh) < 0)
		abort();
	return s;
}

/* Generate a license on the batch card, collecting 61XX pieces. */
static unsigned
generate(const char *serial_hex, const char *date, uint8_t out[136],
    size_t *len)
{
	uint8_t buf[300];
	size_t n;
	char get[16];
	unsigned sw;
	char *cmd = gen_cmd(serial_hex, date);

	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
	sw = tx(cmd, buf, &n);
	free(cmd);
	*len = 0;
	if (sw == 0x9000) {
		memcpy(out, buf, n);
		*len = n;
	}
	while ((sw & 0xFF00) == 0x6100) {
		snprintf(get, sizeof(get), "00C00000%02X", sw & 0xFF);
		sw = tx(get, buf, &n);
		ck_assert_uint_le(*len + n, 136);
		memcpy(out + *len, buf, n);
		*len += n;
	}
	return sw;
}

static void
batch_teardown(void)
{
	SCardDisconnect(card, SCARD_LEAVE_CARD);
	SCardReleaseContext(ctx);
}

START_TEST(select_ok_and_wrong_aid)
{
	tl_insert(R_BATCH, "b-select", "--type batch --credits 5");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
	ck_assert_uint_eq(tx("00A4040C09A0000003634D574C02", NULL, NULL),
	    0x6999);
	ck_assert_uint_eq(tx("00A4040C08A0000003634D574C", NULL, NULL),
	    0x6999);
	ck_assert_uint_eq(tx("80A4040C09A0000003634D574C01", NULL, NULL),
	    0x6E00);
	ck_assert_uint_eq(tx("00A4040009A0000003634D574C01", NULL, NULL),
	    0x6A86);
	ck_assert_uint_eq(tx("00A4000C09A0000003634D574C01", NULL, NULL),
	    0x6A86);
	batch_teardown();
}
END_TEST

START_TEST(generate_status_words)
{
	uint8_t out[300];
	size_t n;
	char *cmd;

	tl_insert(R_BATCH, "b-sw", "--type batch --credits 5");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
	/* 6700: Lc one short. */
	ck_assert_uint_eq(tx("00F8000027" MODEL_HEX SERIAL_HEX
	    "32303236313132", NULL, NULL), 0x6700);
	/* 6A80: not a date, and a day that does not exist. */
	cmd = gen_cmd(SERIAL_HEX, "2026-11-");
	ck_assert_uint_eq(tx(cmd, NULL, NULL), 0x6A80);
	free(cmd);
	cmd = gen_cmd(SERIAL_HEX, "20260230");
	ck_assert_uint_eq(tx(cmd, NULL, NULL), 0x6A80);
	free(cmd);
	/* 6A86 and 6E00. */
	ck_assert_uint_eq(tx("00F8010028" MODEL_HEX SERIAL_HEX
	    "323032363131323488", NULL, NULL), 0x6A86);
	ck_assert_uint_eq(tx("80F8000028" MODEL_HEX SERIAL_HEX
	    "323032363131323488", NULL, NULL), 0x6E00);
	/* None of the refusals spent a credit. */
	ck_assert_str_eq(tl_read("grep ^credits= %s/cards/b-sw.state",
	    tl_dir), "credits=5\n");
	/* 61XX, then GET RESPONSE. */
	cmd = gen_cmd(SERIAL_HEX, "20261124");
	ck_assert_uint_eq(tx(cmd, out, &n), 0x6188);
	ck_assert_uint_eq(n, 0);
	free(cmd);
	ck_assert_uint_eq(tx("00C0000088", out, &n), 0x9000);
	ck_assert_uint_eq(n, 136);
	/* Expiry: 365 days of validity, first day included. */
	ck_assert_int_eq(memcmp(out, "20271123", 8), 0);
	/* The license binds the exact padded model and serial. */
	ck_assert_int_eq(memcmp(out + 8 + 8, "SIM-MODEL-1     T0001      "
	    "     ", 32), 0);
	ck_assert_int_eq(memcmp(out + 8 + 40, "2026112420271123", 16), 0);
	/* Nothing pending any more. */
	ck_assert_uint_eq(tx("00C0000088", NULL, NULL), 0x6F00);
	ck_assert_str_eq(tl_read("grep -E '^(credits|issued)=' "
	    "%s/cards/b-sw.state", tl_dir), "credits=4\nissued=1\n");
	batch_teardown();
}
END_TEST

START_TEST(generate_direct_answer)
{
	uint8_t out[300];
	size_t n;
	char *cmd = gen_cmd(SERIAL_HEX, "20260101");

	tl_insert(R_BATCH, "b-direct", "--type batch --direct "
	    "--validity-days 31");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
	ck_assert_uint_eq(tx(cmd, out, &n), 0x9000);
	ck_assert_uint_eq(n, 136);
	ck_assert_int_eq(memcmp(out, "20260131", 8), 0);
	free(cmd);
	batch_teardown();
}
END_TEST

START_TEST(get_response_in_chunks)
{
	uint8_t out[136], ref[300];
	size_t n, k;
	unsigned sw;
	int pieces = 0;
	char *cmd = gen_cmd(SERIAL_HEX, "20261124");

	tl_insert(R_BATCH, "b-chunk", "--type batch --chunk 50");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
	ck_assert_uint_eq(tx(cmd, NULL, NULL), 0x6188);
	free(cmd);
	sw = 0x6188;
	n = 0;
	while ((sw & 0xFF00) == 0x6100) {
		char get[16];

		snprintf(get, sizeof(get), "00C00000%02X", sw & 0xFF);
		sw = tx(get, ref, &k);
		ck_assert_uint_le(k, 50);
		memcpy(out + n, ref, k);
		n += k;
		pieces++;
	}
	ck_assert_uint_eq(sw, 0x9000);
	ck_assert_uint_eq(n, 136);
	ck_assert_int_eq(pieces, 3);	/* 50 + 50 + 36 */
	ck_assert_int_eq(memcmp(out + 16, "SIM-MODEL-1", 11), 0);
	batch_teardown();
}
END_TEST

START_TEST(credits_run_out_and_stay_out)
{
	uint8_t out[136];
	size_t n;

	tl_insert(R_BATCH, "b-two", "--type batch --credits 2");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(generate(SERIAL_HEX, "20261124", out, &n), 0x9000);
	ck_assert_uint_eq(generate(SERIAL_HEX, "20261124", out, &n), 0x9000);
	ck_assert_uint_eq(generate(SERIAL_HEX, "20261124", out, &n), 0x6985);
	batch_teardown();
	/* Pulled and inserted again: the counter lives on the card. */
	tl_insert(R_BATCH, "b-two", "%s", "");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(generate(SERIAL_HEX, "20261124", out, &n), 0x6985);
	batch_teardown();
	ck_assert_str_eq(tl_read("grep -E '^(credits|issued)=' "
	    "%s/cards/b-two.state", tl_dir), "credits=0\nissued=2\n");
}
END_TEST

START_TEST(unknown_card_and_garbage)
{
	tl_insert(R_BATCH, "u-1", "--type unknown");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x6A82);
	batch_teardown();
	tl_insert(R_BATCH, "b-garbage", "--type batch --garbage sw "
	    "--garbage-from 1");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x6F42);
	batch_teardown();
}
END_TEST

START_TEST(slow_card_is_slow)
{
	long t0;

	tl_insert(R_BATCH, "b-slow", "--type batch --slow 300");
	connect_reader(R_BATCH);
	t0 = tl_now_ms();
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
	/* A lower bound only: the card must wait at least that long. */
	ck_assert_int_ge(tl_now_ms() - t0, 300);
	batch_teardown();
}
END_TEST

/* A fresh batch card with the given fault options, selected. */
static void
hostile_card(const char *name, const char *opts)
{
	tl_insert(R_BATCH, name, "--type batch %s", opts);
	connect_reader(R_BATCH);
	ck_assert_uint_eq(tx(SELECT, NULL, NULL), 0x9000);
}

static char *
credits_of(const char *name)
{
	return tl_read("grep ^credits= %s/cards/%s.state", tl_dir, name);
}

/*
 * The hostile answers the fault matrix needs, each at a chosen APDU
 * (0 is the SELECT, 1 the GENERATE, 2 on the GET RESPONSE pieces).
 */
START_TEST(hostile_batch_answers)
{
	uint8_t out[300];
	size_t n;
	char *cmd = gen_cmd(SERIAL_HEX, "20261124");
	static const size_t lens[] = { 0, 135, 137, 256 };
	char opts[64];
	unsigned i;

	/* Any status word, after the credit is spent. */
	hostile_card("b-h-sw", "--credits 5 --garbage sw=6A81 --garbage-at 1");
	ck_assert_uint_eq(tx(cmd, out, &n), 0x6A81);
	ck_assert_uint_eq(n, 0);
	ck_assert_str_eq(credits_of("b-h-sw"), "credits=4\n");
	/* --garbage-at hits that APDU only: the next answers are good. */
	ck_assert_uint_eq(tx(cmd, out, &n), 0x6188);
	batch_teardown();
	/* 61XX announcing one byte too many, then the true 136 bytes. */
	hostile_card("b-h-wl", "--garbage wronglen --garbage-at 1");
	ck_assert_uint_eq(tx(cmd, out, &n), 0x6189);
	ck_assert_uint_eq(tx("00C0000089", out, &n), 0x9000);
	ck_assert_uint_eq(n, 136);
	batch_teardown();
	/* A GET RESPONSE piece whose 61XX lies: 50 bytes, then 61 28. */
	hostile_card("b-h-wl2", "--chunk 50 --garbage wronglen=28 "
	    "--garbage-at 2");
	ck_assert_uint_eq(tx(cmd, out, &n), 0x6188);
	ck_assert_uint_eq(tx("00C0000088", out, &n), 0x6128);
	ck_assert_uint_eq(n, 50);
	ck_assert_uint_eq(tx("00C0000056", out, &n), 0x6124);	/* the truth */
	batch_teardown();
	/* Answers of a given length, with 9000. */
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		snprintf(opts, sizeof(opts), "--garbage len=%zu --garbage-at 1",
		    lens[i]);
		hostile_card("b-h-len", opts);
		ck_assert_uint_eq(tx(cmd, out, &n), 0x9000);
		ck_assert_uint_eq(n, lens[i]);
		if (lens[i] >= 8)	/* the real answer first: its expiry */
			ck_assert_int_eq(memcmp(out, "20271123", 8), 0);
		if (lens[i] > 136)
			ck_assert_uint_eq(out[136], 0xA5);
		batch_teardown();
	}
	/* An expiry that is no date, and one before the start. */
	hostile_card("b-h-exp", "--direct --bad-expiry notdate");
	ck_assert_uint_eq(tx(cmd, out, &n), 0x9000);
	ck_assert_uint_eq(n, 136);
	ck_assert_int_eq(memcmp(out, "20271332", 8), 0);
	ck_assert_int_eq(memcmp(out + 8 + 40, "2026112420271332", 16), 0);
	batch_teardown();
	hostile_card("b-h-exp", "--direct --bad-expiry before");
	ck_assert_uint_eq(tx(cmd, out, &n), 0x9000);
	ck_assert_int_eq(memcmp(out, "20261123", 8), 0);
	batch_teardown();
	/* Bad option values are refused, not taken as something else. */
	ck_assert_int_eq(tl_sh_rc(TOPDIR "/sim/vcard --port 1 --state "
	    "/nonexistent --garbage len=301 2>/dev/null"), 2);
	ck_assert_int_eq(tl_sh_rc(TOPDIR "/sim/vcard --port 1 --state "
	    "/nonexistent --garbage sw=6F4 2>/dev/null"), 2);
	free(cmd);
}
END_TEST

/* ---- the simulator's vendor constants against the vendor text ------- */

#define SPEC	TOPDIR "/../shared/spec/"

/*
 * The first line at or after from that starts with prefix and contains
 * what (NULL: anything); the line's text after prefix.  NULL if none.
 */
static const char *
spec_line(const char *text, const char *from, const char *prefix,
    const char *what)
{
	const char *p = from != NULL ? from : text, *eol;
	size_t n = strlen(prefix);

	for (; *p != '\0'; p = eol + (*eol != '\0')) {
		eol = strchr(p, '\n');
		if (eol == NULL)
			eol = p + strlen(p);
		if ((p != text && p[-1] != '\n') || strncmp(p, prefix, n) != 0)
			continue;
		if (what == NULL || (memmem(p, (size_t)(eol - p), what,
		    strlen(what)) != NULL))
			return p + n;
	}
	return NULL;
}

/* The hex number (2 or 4 digits, no prefix) at the start of s. */
static unsigned
spec_hex(const char *s, int digits)
{
	char buf[8];
	char *end;
	unsigned long v;

	ck_assert_msg(s != NULL, "not found in the vendor text");
	memcpy(buf, s, (size_t)digits);
	buf[digits] = '\0';
	v = strtoul(buf, &end, 16);
	ck_assert_msg(*end == '\0', "\"%.*s\" is not hex", digits, s);
	return (unsigned)v;
}

/*
 * Every vendor constant the simulator uses, read from the vendor text and
 * our reading notes at test time: if either changes, or the simulator's
 * copy drifts, this fails (the simulator keeps its own copies on purpose,
 * apart from the daemon's).
 */
START_TEST(vendor_constants_match_the_text)
{
	static const struct {
		const char	*meaning;
		unsigned	sw;
	} sws[] = {
		{ "Wrong application AID", BATCH_SW_WRONG_AID },
		{ "Wrong CLA", BATCH_SW_WRONG_CLA },
		{ "Incorrect P1-P2", BATCH_SW_WRONG_P1P2 },
		{ "Invalid input data length", BATCH_SW_WRONG_LENGTH },
		{ "No more credit", BATCH_SW_NO_CREDIT },
		{ "date incorrectly formatted", BATCH_SW_BAD_DATE },
		{ "Success", BATCH_SW_OK },
	};
	char *txt = tl_read("cat " SPEC "license-management.txt");
	char *notes = tl_read("cat " SPEC "NOTES.md");
	const char *p, *gen, *q;
	uint8_t aid[32];
	char hex[64];
	size_t i, n;
	unsigned found;

	ck_assert_msg(strlen(txt) > 1000 && strlen(notes) > 1000,
	    "vendor text missing under " SPEC);
	/* SELECT: the AID, Lc, INS, P1, P2, CLA. */
	p = strstr(txt, "AID of application:");
	ck_assert_ptr_nonnull(p);
	p += strlen("AID of application:");
	while (*p != '\0' && strchr("0123456789ABCDEF", *p) == NULL)
		p++;
	for (n = 0; n < sizeof(hex) - 1 && p[n] != '\0' &&
	    strchr("0123456789ABCDEF", p[n]) != NULL; n++)
		hex[n] = p[n];
	hex[n] = '\0';
	n = tl_hex(hex, aid, sizeof(aid));
	ck_assert_uint_eq(n, BATCH_AID_LEN);
	ck_assert_int_eq(memcmp(aid, BATCH_AID, BATCH_AID_LEN), 0);
	ck_assert_uint_eq(spec_hex(spec_line(txt, NULL, "INS ", "Select"), 2),
	    BATCH_INS_SELECT);
	q = spec_line(txt, NULL, "INS ", "Select");
	ck_assert_uint_eq(spec_hex(spec_line(txt, q, "Lc ", "Length of data"),
	    2), BATCH_AID_LEN);
	ck_assert_uint_eq(spec_hex(spec_line(txt, q, "P1 ", NULL), 2),
	    BATCH_SELECT_P1);
	ck_assert_uint_eq(spec_hex(spec_line(txt, q, "P2 ", "No FCI"), 2),
	    BATCH_SELECT_P2);
	ck_assert_uint_eq(spec_hex(spec_line(txt, NULL, "CLA ", NULL), 2),
	    BATCH_CLA);
	/* GENERATE: INS, Lc, Le, and the fields of its data. */
	gen = spec_line(txt, NULL, "INS ", "Generate license");
	ck_assert_uint_eq(spec_hex(gen, 2), BATCH_INS_GENERATE);
	ck_assert_uint_eq(spec_hex(spec_line(txt, gen, "Lc ", NULL), 2),
	    LIC_INPUT_LEN);
	ck_assert_uint_eq(spec_hex(spec_line(txt, gen, "Le ", NULL), 2),
	    LIC_RESPONSE_LEN);
	ck_assert_ptr_nonnull(strstr(txt, "The model indication (16 bytes)"));
	ck_assert_ptr_nonnull(strstr(txt, "The serial number (16 bytes)"));
	ck_assert_ptr_nonnull(strstr(txt, "start date (8 bytes)"));
	ck_assert_uint_eq(2 * LIC_FIELD_LEN + LIC_DATE_LEN, LIC_INPUT_LEN);
	ck_assert_uint_eq(LIC_DATE_LEN + LIC_BLOB_LEN, LIC_RESPONSE_LEN);
	/* The license and the status, in the loading chapter. */
	ck_assert_ptr_nonnull(strstr(txt, "license data (128 bytes)"));
	ck_assert_uint_eq(LIC_BLOB_LEN, 128);
	ck_assert_ptr_nonnull(strstr(txt, "at least 19 bytes long"));
	ck_assert_ptr_nonnull(strstr(txt, "length must be set to 19"));
	ck_assert_uint_eq(LIC_STATUS_LEN, 19);
	ck_assert_uint_eq(3 + 2 * LIC_DATE_LEN, LIC_STATUS_LEN);
	p = strstr(txt, "vendor-specific constant 0x");
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(strtoul(p + strlen("vendor-specific constant "),
	    NULL, 16), LIC_ATTRIBUTE);
	/* Every status word, found by its meaning in a status table. */
	for (i = 0; i < sizeof(sws) / sizeof(sws[0]); i++) {
		found = 0;
		for (p = txt; (p = strstr(p, sws[i].meaning)) != NULL; p++) {
			q = p;
			while (q > txt && q[-1] != '\n')
				q--;
			if (p - q >= 5 && q[4] == ' ' &&
			    strspn(q, "0123456789ABCDEF") == 4) {
				found = spec_hex(q, 4);
				break;
			}
		}
		ck_assert_msg(found == sws[i].sw, "%s: text %04X, sim %04X",
		    sws[i].meaning, found, sws[i].sw);
	}
	/* Our reading notes say the same. */
	ck_assert_ptr_nonnull(spec_line(notes, NULL, "| SELECT Lc | 09 | 9 | "
	    "AID A0 00 00 03 63 4D 57 4C 01 |", NULL));
	snprintf(hex, sizeof(hex), "| GENERATE Lc | %02X | %d |",
	    LIC_INPUT_LEN, LIC_INPUT_LEN);
	ck_assert_msg(strstr(notes, hex) != NULL, "NOTES.md lacks %s", hex);
	snprintf(hex, sizeof(hex), "| GENERATE Le | %02X | %d |",
	    LIC_RESPONSE_LEN, LIC_RESPONSE_LEN);
	ck_assert_msg(strstr(notes, hex) != NULL, "NOTES.md lacks %s", hex);
	snprintf(hex, sizeof(hex), "| 0x%02X | %d |", LIC_BLOB_LEN,
	    LIC_BLOB_LEN);
	ck_assert_msg(strstr(notes, hex) != NULL, "NOTES.md lacks %s", hex);
	snprintf(hex, sizeof(hex), "| license status | - | %d |",
	    LIC_STATUS_LEN);
	ck_assert_msg(strstr(notes, hex) != NULL, "NOTES.md lacks %s", hex);
	snprintf(hex, sizeof(hex), "{0x%lX, ", LIC_ATTRIBUTE);
	ck_assert_msg(strstr(notes, hex) != NULL, "NOTES.md lacks %s", hex);
	snprintf(hex, sizeof(hex), "`00 %02X 00 00 %02X <model 16><serial 16>"
	    "<YYYYMMDD> %02X`", BATCH_INS_GENERATE, LIC_INPUT_LEN,
	    LIC_RESPONSE_LEN);
	ck_assert_msg(strstr(notes, hex) != NULL, "NOTES.md lacks %s", hex);
	p = strstr(notes, "status words are listed in the text");
	ck_assert_ptr_nonnull(p);
	for (i = 0; i + 1 < sizeof(sws) / sizeof(sws[0]); i++) {
		snprintf(hex, sizeof(hex), "%04X", sws[i].sw);
		q = strstr(p, hex);
		ck_assert_msg(q != NULL && q - p < 300, "NOTES.md lacks %s",
		    hex);
	}
	free(txt);
	free(notes);
	/* And the simulator takes none of them from the daemon. */
	ck_assert_int_ne(tl_sh_rc("grep -n 'daemon/' " TOPDIR "/sim/*.[ch] "
	    ">&2"), 0);
	ck_assert_int_ne(tl_sh_rc("sed -n '/^sim\\/[a-z0-9.-]*:/,/^$/p' "
	    TOPDIR "/Makefile | grep -n 'daemon/' >&2"), 0);
}
END_TEST

/* ---- the middleware, loaded through p11-kit as the daemon does ------ */

static CK_FUNCTION_LIST	*p11;

static void
p11_up(void)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	p11 = p11_kit_module_load(MODULE, P11_KIT_MODULE_UNMANAGED);
	ck_assert_msg(p11 != NULL, "load %s: %s", MODULE, p11_kit_message());
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = p11->C_Initialize(&args);
	ck_assert_uint_eq(rv, CKR_OK);
}

static void
p11_down(void)
{
	p11->C_Finalize(NULL);
	p11_kit_module_release(p11);
}

/* The slot whose description is reader k's name. */
static CK_SLOT_ID
slot_of(int k)
{
	CK_SLOT_ID ids[32];
	CK_SLOT_INFO si;
	CK_ULONG n = 32, i;
	char *name = tl_reader(k);

	ck_assert_uint_eq(p11->C_GetSlotList(CK_FALSE, ids, &n), CKR_OK);
	for (i = 0; i < n; i++) {
		ck_assert_uint_eq(p11->C_GetSlotInfo(ids[i], &si), CKR_OK);
		if (strncmp((char *)si.slotDescription, name,
		    strlen(name)) == 0 &&
		    si.slotDescription[strlen(name)] == ' ') {
			free(name);
			return ids[i];
		}
	}
	ck_abort_msg("no slot for %s", name);
	return 0;
}

static CK_SESSION_HANDLE
open_rw(int k)
{
	CK_SESSION_HANDLE h;

	ck_assert_uint_eq(p11->C_OpenSession(slot_of(k), CKF_SERIAL_SESSION |
	    CKF_RW_SESSION, NULL, NULL, &h), CKR_OK);
	return h;
}

static CK_RV
get_status(CK_SESSION_HANDLE h, uint8_t st[19])
{
	CK_ATTRIBUTE a = { LIC_ATTRIBUTE, st, 19 };

	return p11->C_GetAttributeValue(h, 0, &a, 1);
}

static CK_RV
set_license(CK_SESSION_HANDLE h, uint8_t *blob, CK_ULONG len)
{
	CK_ATTRIBUTE a = { LIC_ATTRIBUTE, blob, len };

	return p11->C_SetAttributeValue(h, 0, &a, 1);
}

static CK_RV
login(CK_SESSION_HANDLE h, const char *pin)
{
	return p11->C_Login(h, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
}

/* A license for serial T0001 (or another) from a fresh batch card. */
static void
license_for(const char *serial_hex, const char *date, uint8_t out[136])
{
	size_t n;

	connect_reader(R_BATCH);
	ck_assert_uint_eq(generate(serial_hex, date, out, &n), 0x9000);
	ck_assert_uint_eq(n, 136);
	batch_teardown();
}

START_TEST(token_info_keeps_padding)
{
	CK_TOKEN_INFO ti;

	tl_insert(R_TGT, "t-info", "--type target --serial T0001 "
	    "--model SIM-MODEL-1");
	p11_up();
	ck_assert_uint_eq(p11->C_GetTokenInfo(slot_of(R_TGT), &ti), CKR_OK);
	ck_assert_int_eq(memcmp(ti.model, "SIM-MODEL-1     ", 16), 0);
	ck_assert_int_eq(memcmp(ti.serialNumber, "T0001           ", 16), 0);
	ck_assert(ti.flags & CKF_LOGIN_REQUIRED);
	ck_assert(!(ti.flags & (CKF_USER_PIN_COUNT_LOW |
	    CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)));
	/* The batch reader's card is no token; an empty reader neither. */
	tl_insert(R_BATCH, "b-notoken", "--type batch");
	ck_assert_uint_eq(p11->C_GetTokenInfo(slot_of(R_BATCH), &ti),
	    CKR_TOKEN_NOT_PRESENT);
	ck_assert_uint_eq(p11->C_GetTokenInfo(slot_of(3), &ti),
	    CKR_TOKEN_NOT_PRESENT);
	p11_down();
}
END_TEST

START_TEST(wrong_pin_locks_with_flags)
{
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h;
	CK_SLOT_ID s;

	tl_insert(R_TGT, "t-pin", "--type target --serial T0002 --pin 1234");
	p11_up();
	s = slot_of(R_TGT);
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "9999"), CKR_PIN_INCORRECT);
	ck_assert_uint_eq(p11->C_GetTokenInfo(s, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_USER_PIN_COUNT_LOW);
	ck_assert(!(ti.flags & CKF_USER_PIN_FINAL_TRY));
	ck_assert_uint_eq(login(h, "9999"), CKR_PIN_INCORRECT);
	ck_assert_uint_eq(p11->C_GetTokenInfo(s, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_USER_PIN_FINAL_TRY);
	ck_assert_uint_eq(login(h, "9999"), CKR_PIN_LOCKED);
	ck_assert_uint_eq(p11->C_GetTokenInfo(s, &ti), CKR_OK);
	ck_assert(ti.flags & CKF_USER_PIN_LOCKED);
	/* Locked: even the right PIN is refused, and it stays locked. */
	ck_assert_uint_eq(login(h, "1234"), CKR_PIN_LOCKED);
	p11->C_CloseSession(h);
	p11_down();
	ck_assert_str_eq(tl_read("grep ^tries= %s/cards/t-pin.state", tl_dir),
	    "tries=0\n");
}
END_TEST

START_TEST(right_pin_resets_tries)
{
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h;

	tl_insert(R_TGT, "t-reset", "--type target --serial T0003");
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "0000"), CKR_PIN_INCORRECT);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	ck_assert_uint_eq(login(h, "1234"), CKR_USER_ALREADY_LOGGED_IN);
	ck_assert_uint_eq(p11->C_GetTokenInfo(slot_of(R_TGT), &ti), CKR_OK);
	ck_assert(!(ti.flags & CKF_USER_PIN_COUNT_LOW));
	ck_assert_uint_eq(p11->C_Logout(h), CKR_OK);
	ck_assert_uint_eq(p11->C_Logout(h), CKR_USER_NOT_LOGGED_IN);
	p11_down();
}
END_TEST

START_TEST(load_then_status)
{
	uint8_t lic[136], st[19];
	CK_SESSION_HANDLE h;

	tl_insert(R_BATCH, "b-load", "--type batch");
	tl_insert(R_TGT, "t-load", "--type target --serial T0001");
	license_for(SERIAL_HEX, "20261101", lic);
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\0\0\0" "00000000" "00000000", 19), 0);
	ck_assert_uint_eq(set_license(h, lic + 8, 128),
	    CKR_USER_NOT_LOGGED_IN);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	ck_assert_uint_eq(set_license(h, lic + 8, 127),
	    CKR_ATTRIBUTE_VALUE_INVALID);
	ck_assert_uint_eq(set_license(h, lic + 8, 128), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\1\1\1" "20261101" "20271031", 19), 0);
	p11_down();
}
END_TEST

START_TEST(license_of_another_serial_rejected)
{
	uint8_t lic[136], st[19];
	CK_SESSION_HANDLE h;

	tl_insert(R_BATCH, "b-other", "--type batch");
	tl_insert(R_TGT, "t-other", "--type target --serial T0009");
	license_for(SERIAL_HEX, "20261101", lic);	/* made for T0001 */
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	ck_assert_uint_eq(set_license(h, lic + 8, 128), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(st[0], 1);
	ck_assert_int_eq(st[1], 0);
	ck_assert_int_eq(st[2], 1);
	p11_down();
}
END_TEST

/*
 * A license that is not one of ours reads back as present, not valid,
 * with 00000000 dates: never the bytes that happen to sit where our own
 * layout keeps its dates (see sim/README.md).
 */
START_TEST(foreign_license_has_no_dates)
{
	uint8_t blob[128], st[19];
	CK_SESSION_HANDLE h;
	int i;

	tl_insert(R_TGT, "t-foreign", "--type target --serial T0001");
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	/* Our layout and this card's names, but no valid MAC. */
	memset(blob, 0, sizeof(blob));
	memcpy(blob, SIMLIC_MAGIC "SIM-MODEL-1     T0001           "
	    "2026010120301231", 56);
	ck_assert_uint_eq(set_license(h, blob, 128), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\1\0\0" "00000000" "00000000", 19), 0);
	/* Bytes of another vendor's format: not dates either. */
	for (i = 0; i < 128; i++)
		blob[i] = (uint8_t)(0xFF - i);
	ck_assert_uint_eq(set_license(h, blob, 128), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\1\0\0" "00000000" "00000000", 19), 0);
	p11_down();
}
END_TEST

/*
 * Licenses from a batch card with a bad expiry, loaded anyway: one whose
 * end is no date does not parse (00000000 dates); one that ends before it
 * starts is ours, with its dates, and never date-valid.
 */
START_TEST(bad_expiry_licenses_read_back)
{
	uint8_t lic[136], st[19];
	CK_SESSION_HANDLE h;
	size_t n;

	tl_insert(R_TGT, "t-badexp", "--type target --serial T0001");
	tl_insert(R_BATCH, "b-notdate", "--type batch --bad-expiry notdate");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(generate(SERIAL_HEX, "20261101", lic, &n), 0x9000);
	batch_teardown();
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	ck_assert_uint_eq(set_license(h, lic + 8, 128), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\1\0\0" "00000000" "00000000", 19), 0);
	p11_down();
	tl_insert(R_BATCH, "b-before", "--type batch --bad-expiry before");
	connect_reader(R_BATCH);
	ck_assert_uint_eq(generate(SERIAL_HEX, "20261101", lic, &n), 0x9000);
	batch_teardown();
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	ck_assert_uint_eq(set_license(h, lic + 8, 128), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\1\1\0" "20261101" "20261031", 19), 0);
	p11_down();
}
END_TEST

START_TEST(expired_license_has_bad_date)
{
	uint8_t lic[136], st[19];
	CK_SESSION_HANDLE h;

	tl_insert(R_BATCH, "b-old", "--type batch --validity-days 30");
	tl_insert(R_TGT, "t-old", "--type target --serial T0001");
	license_for(SERIAL_HEX, "20200101", lic);
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	ck_assert_uint_eq(set_license(h, lic + 8, 128), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\1\1\0" "20200101" "20200130", 19), 0);
	p11_down();
}
END_TEST

START_TEST(global_license_card)
{
	uint8_t st[19];
	CK_SESSION_HANDLE h;

	tl_insert(R_TGT, "t-global", "--type target --serial G0001 --global");
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(memcmp(st, "\0\1\1" "00000000" "00000000", 19), 0);
	p11_down();
}
END_TEST

START_TEST(bad_calls_get_the_right_ckr)
{
	uint8_t st[19];
	CK_ATTRIBUTE small = { LIC_ATTRIBUTE, st, 10 };
	CK_ATTRIBUTE other = { CKA_LABEL, st, 19 };
	CK_ATTRIBUTE query = { LIC_ATTRIBUTE, NULL, 0 };
	CK_SESSION_HANDLE h, ro;

	tl_insert(R_TGT, "t-ckr", "--type target --serial T0004");
	tl_remove(3);
	p11_up();
	h = open_rw(R_TGT);
	ck_assert_uint_eq(p11->C_GetAttributeValue(h, 0, &small, 1),
	    CKR_BUFFER_TOO_SMALL);
	ck_assert_uint_eq(p11->C_GetAttributeValue(h, 0, &query, 1), CKR_OK);
	ck_assert_uint_eq(query.ulValueLen, 19);
	ck_assert_uint_eq(p11->C_GetAttributeValue(h, 0, &other, 1),
	    CKR_ATTRIBUTE_TYPE_INVALID);
	ck_assert_uint_eq(p11->C_GetAttributeValue(h, 7, &query, 1),
	    CKR_OBJECT_HANDLE_INVALID);
	ck_assert_uint_eq(get_status(h + 100, st), CKR_SESSION_HANDLE_INVALID);
	ck_assert_uint_eq(p11->C_OpenSession(slot_of(3), CKF_SERIAL_SESSION,
	    NULL, NULL, &ro), CKR_TOKEN_NOT_PRESENT);
	ck_assert_uint_eq(p11->C_OpenSession(slot_of(R_TGT),
	    CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
	ck_assert_uint_eq(login(ro, "1234"), CKR_OK);
	ck_assert_uint_eq(set_license(ro, st, 19), CKR_SESSION_READ_ONLY);
	ck_assert_uint_eq(p11->C_CloseSession(h), CKR_OK);
	ck_assert_uint_eq(p11->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
	p11_down();
}
END_TEST

START_TEST(card_pulled_mid_apdu)
{
	uint8_t st[19];
	CK_SESSION_HANDLE h;
	CK_RV rv;

	/* select, info (open) and select, info, verify: then it vanishes. */
	tl_insert(R_TGT, "t-pull", "--type target --serial T0005 "
	    "--vanish-after 3");
	p11_up();
	h = open_rw(R_TGT);
	rv = login(h, "1234");
	if (rv == CKR_OK)
		rv = get_status(h, st);
	ck_assert_msg(rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT,
	    "rv 0x%lx", rv);
	/* The session died with the card. */
	rv = get_status(h, st);
	ck_assert_msg(rv == CKR_SESSION_HANDLE_INVALID ||
	    rv == CKR_DEVICE_REMOVED, "rv 0x%lx", rv);
	p11_down();
}
END_TEST

START_TEST(parallel_slots_keep_their_logins)
{
	CK_SESSION_HANDLE a, b;
	uint8_t st[19];

	tl_insert(R_TGT, "t-par-a", "--type target --serial PA01");
	tl_insert(R_TGT2, "t-par-b", "--type target --serial PB01 --pin 5678");
	p11_up();
	a = open_rw(R_TGT);
	b = open_rw(R_TGT2);
	ck_assert_uint_eq(login(a, "1234"), CKR_OK);
	ck_assert_uint_eq(login(b, "1234"), CKR_PIN_INCORRECT);
	ck_assert_uint_eq(login(b, "5678"), CKR_OK);
	ck_assert_uint_eq(get_status(a, st), CKR_OK);
	ck_assert_uint_eq(get_status(b, st), CKR_OK);
	p11_down();
}
END_TEST

/* The 16-byte serial of the token in reader k, or "" with the CKR. */
static CK_RV
token_serial(int k, char out[17])
{
	CK_TOKEN_INFO ti;
	CK_RV rv;

	out[0] = '\0';
	rv = p11->C_GetTokenInfo(slot_of(k), &ti);
	if (rv == CKR_OK) {
		memcpy(out, ti.serialNumber, 16);
		out[16] = '\0';
	}
	return rv;
}

/*
 * A garbage answer to the token info, then another card in that reader:
 * the new card is seen, not "no token" through a stale PC/SC handle.
 */
START_TEST(garbage_token_info_then_next_card)
{
	char serial[17];

	/* APDU 0 is the probe's SELECT, 1 and 2 the SELECT and the info. */
	tl_insert(R_TGT, "t-garb-info", "--type target --serial GARB01 "
	    "--garbage sw --garbage-from 2");
	p11_up();
	ck_assert_uint_eq(token_serial(R_TGT, serial), CKR_DEVICE_ERROR);
	tl_insert(R_TGT, "t-after-garb", "--type target --serial AFTER01");
	ck_assert_uint_eq(token_serial(R_TGT, serial), CKR_OK);
	ck_assert_str_eq(serial, "AFTER01         ");
	p11_down();
}
END_TEST

/* A card swapped between two calls: the slot follows the reader. */
START_TEST(card_swapped_between_calls)
{
	char serial[17];
	CK_SESSION_HANDLE h;
	uint8_t st[19];

	tl_insert(R_TGT, "t-swap-a", "--type target --serial SWAPA");
	p11_up();
	ck_assert_uint_eq(token_serial(R_TGT, serial), CKR_OK);
	ck_assert_str_eq(serial, "SWAPA           ");
	tl_insert(R_TGT, "t-swap-b", "--type target --serial SWAPB");
	ck_assert_uint_eq(token_serial(R_TGT, serial), CKR_OK);
	ck_assert_str_eq(serial, "SWAPB           ");
	/* And a session opened after a swap works on the new card. */
	tl_insert(R_TGT, "t-swap-c", "--type target --serial SWAPC");
	h = open_rw(R_TGT);
	ck_assert_uint_eq(login(h, "1234"), CKR_OK);
	ck_assert_uint_eq(get_status(h, st), CKR_OK);
	ck_assert_int_eq(st[0], 0);
	ck_assert_uint_eq(p11->C_CloseSession(h), CKR_OK);
	ck_assert_str_eq(tl_read("grep -c 'login ok' %s/cards/t-swap-c.events",
	    tl_dir), "1\n");
	p11_down();
}
END_TEST

/*
 * CKF_TOKEN_PRESENT in C_GetSlotInfo says exactly what C_OpenSession and
 * C_GetTokenInfo find: a batch card, an unknown card or an empty reader
 * holds no token of ours.
 */
START_TEST(slot_info_agrees_with_open_session)
{
	static const int want[4] = { 0, 1, 0, 0 };
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h;
	CK_RV rv;
	int k, round;
	char *out;

	tl_insert(R_BATCH, "b-slotinfo", "--type batch");
	tl_insert(R_TGT, "t-slotinfo", "--type target --serial SLOT01");
	tl_insert(R_TGT2, "u-slotinfo", "--type unknown");
	tl_remove(3);
	p11_up();
	/* Twice: the second answer comes from what the first one learnt. */
	for (round = 0; round < 2; round++) {
		for (k = 0; k < 4; k++) {
			ck_assert_uint_eq(p11->C_GetSlotInfo(slot_of(k), &si),
			    CKR_OK);
			ck_assert_msg(!!(si.flags & CKF_TOKEN_PRESENT) ==
			    want[k], "reader %d: flags 0x%lx", k, si.flags);
			rv = p11->C_OpenSession(slot_of(k), CKF_SERIAL_SESSION,
			    NULL, NULL, &h);
			ck_assert_msg((rv == CKR_OK) == want[k],
			    "reader %d: C_OpenSession 0x%lx", k, rv);
			if (rv == CKR_OK)
				p11->C_CloseSession(h);
			else
				ck_assert_uint_eq(rv, CKR_TOKEN_NOT_PRESENT);
			rv = p11->C_GetTokenInfo(slot_of(k), &ti);
			ck_assert_msg((rv == CKR_OK) == want[k],
			    "reader %d: C_GetTokenInfo 0x%lx", k, rv);
		}
	}
	/* The batch card's state is as it was: nothing reached it. */
	ck_assert_int_ne(tl_sh_rc("grep -q generate %s/cards/b-slotinfo.events",
	    tl_dir), 0);
	p11_down();
	/* sim/README's example, batch card in reader 0 and all. */
	tl_remove(R_TGT2);
	out = tl_read("pkcs11-tool --module %s --login --pin 1234 -O 2>&1; "
	    "echo \"exit $?\"", MODULE);
	ck_assert_msg(strstr(out, "exit 0\n") != NULL, "%s", out);
	free(out);
	out = tl_read("pkcs11-tool --module %s -L 2>&1", MODULE);
	ck_assert_msg(strstr(out, "serial num         : SLOT01") != NULL,
	    "%s", out);
	free(out);
}
END_TEST

/* ---- many threads, many cards: the slot table under load ------------ */

static volatile int	churn_stop;
static long		churn_lists;

/* What a second client thread does all along: refresh the slot list. */
static void *
churn_slot_lists(void *arg)
{
	CK_SLOT_ID ids[32];
	CK_ULONG n;

	(void)arg;
	while (!churn_stop) {
		n = 32;
		ck_assert_uint_eq(p11->C_GetSlotList(CK_FALSE, ids, &n),
		    CKR_OK);
		churn_lists++;
	}
	return NULL;
}

/*
 * While another thread refreshes the slot list without a pause, a token
 * that is in its reader is never reported missing (p11_refresh used to
 * clear every slot's flag for a moment).  Bounded by count and by time;
 * the verdict depends on neither.
 */
START_TEST(refresh_never_hides_a_present_token)
{
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slot;
	pthread_t th;
	long i, bad = 0, t0;
	CK_RV rv, first = CKR_OK;

	tl_insert(R_TGT, "t-churn", "--type target --serial CHURN01");
	p11_up();
	slot = slot_of(R_TGT);
	churn_stop = 0;
	ck_assert_int_eq(pthread_create(&th, NULL, churn_slot_lists, NULL), 0);
	t0 = tl_now_ms();
	for (i = 0; i < 4000 && tl_now_ms() - t0 < 8000; i++) {
		rv = p11->C_GetTokenInfo(slot, &ti);
		if (rv != CKR_OK && bad++ == 0)
			first = rv;
	}
	churn_stop = 1;
	pthread_join(th, NULL);
	ck_assert_msg(bad == 0, "%ld of %ld C_GetTokenInfo failed (first "
	    "0x%lx) during %ld slot list refreshes", bad, i, first,
	    churn_lists);
	ck_assert_int_gt(churn_lists, 0);
	p11_down();
}
END_TEST

/*
 * Fast turnover on three target readers while the slot list is refreshed
 * all along: every card inserted is seen with its own serial, opens a
 * session and answers its status.
 */
START_TEST(turnover_on_three_readers)
{
	static const int readers[3] = { 1, 2, 3 };
	char name[16], serial[17], want[17];
	CK_SESSION_HANDLE h;
	uint8_t st[19];
	pthread_t th;
	int round, r;

	p11_up();
	churn_stop = 0;
	ck_assert_int_eq(pthread_create(&th, NULL, churn_slot_lists, NULL), 0);
	for (round = 0; round < 6; round++) {
		for (r = 0; r < 3; r++) {
			snprintf(name, sizeof(name), "TURN%d%02d", r, round);
			tl_insert(readers[r], name, "--type target --serial "
			    "%s", name);
			snprintf(want, sizeof(want), "%-16s", name);
			ck_assert_uint_eq(token_serial(readers[r], serial),
			    CKR_OK);
			ck_assert_str_eq(serial, want);
			/* Every other card: a token info, then a pull. */
			if (round % 2 == 1)
				continue;
			h = open_rw(readers[r]);
			ck_assert_uint_eq(get_status(h, st), CKR_OK);
			ck_assert_uint_eq(p11->C_CloseSession(h), CKR_OK);
		}
	}
	churn_stop = 1;
	pthread_join(th, NULL);
	p11_down();
}
END_TEST

START_TEST(real_clients)
{
	char *out;

	tl_insert(R_TGT, "t-tool", "--type target --serial TOOL01");
	out = tl_read("pkcs11-tool --module %s -L 2>&1", MODULE);
	ck_assert_msg(strstr(out, "serial num         : TOOL01") != NULL,
	    "%s", out);
	free(out);
	tl_sh("pkcs11-tool --module %s --login --pin 1234 -O >/dev/null 2>&1",
	    MODULE);
	ck_assert_int_ne(tl_sh_rc("pkcs11-tool --module %s --login --pin 0000 "
	    "-O >/dev/null 2>&1", MODULE), 0);
	out = tl_read("/usr/bin/python3 -c '"
	    "import PyKCS11\n"
	    "l = PyKCS11.PyKCS11Lib(); l.load(\"%s\")\n"
	    "s = l.getSlotList(tokenPresent=True)[0]\n"
	    "t = l.getTokenInfo(s)\n"
	    "print(repr(t.serialNumber), t.flags & PyKCS11.CKF_USER_PIN_COUNT_LOW)\n"
	    "x = l.openSession(s, PyKCS11.CKF_SERIAL_SESSION | "
	    "PyKCS11.CKF_RW_SESSION)\n"
	    "x.login(\"1234\"); print(\"login ok\")' 2>&1", MODULE);
	ck_assert_str_eq(out, "'TOOL01          ' 65536\nlogin ok\n");
	free(out);
}
END_TEST

/* A port in use: sim/line says so, and starts nothing. */
START_TEST(taken_port_is_refused)
{
	char *out, *port;
	int fd;

	/* Listen on the port just above this suite's line. */
	port = tl_read("sed -n 's/^SIM_LINE_PORT=//p' %s/env", tl_dir);
	fd = atoi(port) + 8;
	free(port);
	/*
	 * The system's interpreter: python3 on the PATH may be a slow
	 * version-manager shim.  The pid file appears once the port is
	 * bound and listening (it is written after listen(), then renamed
	 * into place): wait for it, never for a guessed time.
	 */
	tl_sh("rm -f %s/busy.pid; /usr/bin/python3 -c 'import socket, time, "
	    "os\n"
	    "s = socket.socket(); s.bind((\"127.0.0.1\", %d)); s.listen()\n"
	    "open(\"%s/busy.tmp\", \"w\").write(str(os.getpid()))\n"
	    "os.rename(\"%s/busy.tmp\", \"%s/busy.pid\")\n"
	    "time.sleep(30)' & i=0; while [ ! -s %s/busy.pid ] && "
	    "[ $i -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done; "
	    "test -s %s/busy.pid", tl_dir, fd, tl_dir, tl_dir, tl_dir, tl_dir,
	    tl_dir);
	out = tl_read(TOPDIR "/sim/line up --dir %s/taken --readers 2 "
	    "--port %d 2>&1; echo \"exit $?\"", tl_dir, fd - 1);
	ck_assert_msg(strstr(out, "port ") && strstr(out, "(reader 1) is "
	    "already taken") && strstr(out, "exit 2"), "%s", out);
	free(out);
	ck_assert_int_ne(tl_sh_rc("test -e %s/taken/pcscd.pid", tl_dir), 0);
	tl_sh("kill $(cat %s/busy.pid)", tl_dir);
}
END_TEST

/* A second line beside the first: its own ports, its own pcscd. */
START_TEST(lines_side_by_side)
{
	char *a, *b, *out;

	tl_sh(TOPDIR "/sim/line up --dir %s/second --readers 2 >/dev/null",
	    tl_dir);
	a = tl_read("sed -n 's/^SIM_LINE_PORT=//p' %s/env", tl_dir);
	b = tl_read("sed -n 's/^SIM_LINE_PORT=//p' %s/second/env", tl_dir);
	ck_assert_str_ne(a, b);
	out = tl_read("PCSCLITE_CSOCK_NAME=%s/second/run/pcscd.comm "
	    TOPDIR "/sim/simpcsc readers", tl_dir);
	ck_assert_str_eq(out, "Sim Line A 00 00\nSim Line A 00 01\n");
	free(out);
	tl_sh(TOPDIR "/sim/line down --dir %s/second >/dev/null", tl_dir);
	ck_assert_int_ne(tl_sh_rc("kill -0 $(cat %s/second/pcscd.pid) "
	    "2>/dev/null", tl_dir), 0);
	free(a);
	free(b);
}
END_TEST

/* The host's /run/pcscd is as it was: our pcscd lives in the line dir. */
START_TEST(system_pcscd_untouched)
{
	char *before = tl_read("ls -la /run/pcscd 2>&1 | sed 1d");
	char *after;

	tl_sh(TOPDIR "/sim/line up --dir %s/third --readers 2 >/dev/null",
	    tl_dir);
	after = tl_read("ls -la /run/pcscd 2>&1 | sed 1d");
	ck_assert_str_eq(before, after);
	ck_assert_int_eq(tl_sh_rc("test -S %s/third/run/pcscd.comm && "
	    "test -s %s/third/run/pcscd.pid", tl_dir, tl_dir), 0);
	tl_sh(TOPDIR "/sim/line down --dir %s/third >/dev/null", tl_dir);
	free(after);
	after = tl_read("ls -la /run/pcscd 2>&1 | sed 1d");
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
}
END_TEST

/*
 * --long-names: every reader's PC/SC name is over 64 bytes and all share
 * their first 64, as real CCID readers with a serial number do.  The
 * middleware cuts slotDescription at 64 bytes, as a real one would; the
 * slot ID of reader k is k (line k + 1 of DIR/readers).
 */
START_TEST(long_reader_names)
{
	char *names, *out, *line[4], *p, sock[512], want[80];
	CK_SLOT_ID ids[32];
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_ULONG n = 32, i;
	int k;

	tl_sh(TOPDIR "/sim/line up --dir %s/long --readers 4 --long-names "
	    ">/dev/null", tl_dir);
	names = tl_read("cat %s/long/readers", tl_dir);
	for (k = 0, p = names; k < 4; k++) {
		line[k] = p;
		p = strchr(p, '\n');
		ck_assert_ptr_nonnull(p);
		*p++ = '\0';
		ck_assert_msg(strlen(line[k]) > 64, "%s", line[k]);
		ck_assert_uint_le(strlen(line[k]), 127);
		ck_assert_int_eq(memcmp(line[k], line[0], 64), 0);
	}
	ck_assert_str_eq(p, "");
	for (k = 1; k < 4; k++)
		ck_assert_str_ne(line[k], line[k - 1]);
	/* pcscd names them exactly so. */
	out = tl_read("PCSCLITE_CSOCK_NAME=%s/long/run/pcscd.comm "
	    TOPDIR "/sim/simpcsc readers", tl_dir);
	snprintf(sock, sizeof(sock), "%s\n%s\n%s\n%s\n", line[0], line[1],
	    line[2], line[3]);
	ck_assert_str_eq(out, sock);
	free(out);
	tl_sh(TOPDIR "/sim/line insert --dir %s/long --reader 2 --card LN02 "
	    "-- --type target --serial LN02", tl_dir);
	snprintf(sock, sizeof(sock), "%s/long/run/pcscd.comm", tl_dir);
	setenv("PCSCLITE_CSOCK_NAME", sock, 1);
	p11_up();
	ck_assert_uint_eq(p11->C_GetSlotList(CK_FALSE, ids, &n), CKR_OK);
	ck_assert_uint_eq(n, 4);
	for (i = 0; i < n; i++) {
		ck_assert_uint_eq(ids[i], i);
		ck_assert_uint_eq(p11->C_GetSlotInfo(ids[i], &si), CKR_OK);
		ck_assert_int_eq(memcmp(si.slotDescription, line[i], 64), 0);
		ck_assert_uint_eq(p11->C_GetTokenInfo(ids[i], &ti),
		    i == 2 ? CKR_OK : CKR_TOKEN_NOT_PRESENT);
	}
	p11_down();
	/* What sim/README tells a test to read: pkcs11-tool -L. */
	out = tl_read("pkcs11-tool --module %s -L 2>&1", MODULE);
	snprintf(want, sizeof(want), "Slot 2 (0x2): %.64s", line[2]);
	ck_assert_msg(strstr(out, want) != NULL, "%s", out);
	ck_assert_msg(strstr(out, "serial num         : LN02") != NULL, "%s",
	    out);
	free(out);
	free(names);
	tl_sh(TOPDIR "/sim/line down --dir %s/long >/dev/null", tl_dir);
}
END_TEST

/*
 * restart-pcscd keeps the port lock while its pcscd is down, so that no
 * other line can take its ports meanwhile.
 */
START_TEST(restart_holds_the_port_lock)
{
	char *pid, *out;
	int i;

	tl_sh(TOPDIR "/sim/line up --dir %s/rs --readers 2 >/dev/null",
	    tl_dir);
	pid = tl_read("cat %s/rs/pcscd.pid", tl_dir);
	pid[strcspn(pid, "\n")] = '\0';
	tl_sh("RESTART_GAP=3 " TOPDIR "/sim/line restart-pcscd --dir %s/rs "
	    ">%s/rs.out 2>&1 & echo $! > %s/rs.restart", tl_dir, tl_dir,
	    tl_dir);
	/* Bounded wait for the old pcscd to be gone: inside the gap now. */
	for (i = 0; i < 500 && tl_sh_rc("kill -0 %s 2>/dev/null", pid) == 0;
	    i++)
		usleep(10000);
	ck_assert_int_ne(tl_sh_rc("kill -0 %s 2>/dev/null", pid), 0);
	ck_assert_int_ne(tl_sh_rc("flock -n ${TMPDIR:-/tmp}/cardlicd-sim-"
	    "ports.lock true"), 0);
	tl_sh("while kill -0 $(cat %s/rs.restart) 2>/dev/null; do "
	    "sleep 0.1; done", tl_dir);
	out = tl_read("cat %s/rs.out", tl_dir);
	ck_assert_msg(strstr(out, "pcscd restarted: ") != NULL, "%s", out);
	free(out);
	out = tl_read("PCSCLITE_CSOCK_NAME=%s/rs/run/pcscd.comm "
	    TOPDIR "/sim/simpcsc readers", tl_dir);
	ck_assert_str_eq(out, "Sim Line A 00 00\nSim Line A 00 01\n");
	free(out);
	free(pid);
	tl_sh(TOPDIR "/sim/line down --dir %s/rs >/dev/null", tl_dir);
}
END_TEST

/* A test that left the suite's line down does not fail the next ones. */
START_TEST(line_down_then_next_insert)
{
	tl_sh(TOPDIR "/sim/line down --dir %s >/dev/null", tl_dir);
	tl_insert(R_TGT, "t-again", "--type target --serial AGAIN01");
	ck_assert_int_eq(tl_sh_rc(TOPDIR "/sim/simpcsc readers | wc -l | "
	    "grep -qx 4"), 0);
	tl_remove(R_TGT);
}
END_TEST

static void
line_up(void)
{
	tl_up(4);
}

static Suite *
sim_suite(void)
{
	Suite *s = suite_create("sim");
	TCase *b = tcase_create("batch card");
	TCase *t = tcase_create("target card and middleware");
	TCase *l = tcase_create("the line itself");

	tcase_add_unchecked_fixture(b, line_up, tl_down);
	tcase_set_timeout(b, 60);
	tcase_add_test(b, select_ok_and_wrong_aid);
	tcase_add_test(b, generate_status_words);
	tcase_add_test(b, generate_direct_answer);
	tcase_add_test(b, get_response_in_chunks);
	tcase_add_test(b, credits_run_out_and_stay_out);
	tcase_add_test(b, unknown_card_and_garbage);
	tcase_add_test(b, slow_card_is_slow);
	tcase_add_test(b, vendor_constants_match_the_text);
	tcase_add_test(b, hostile_batch_answers);
	suite_add_tcase(s, b);

	tcase_add_unchecked_fixture(t, line_up, tl_down);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, token_info_keeps_padding);
	tcase_add_test(t, wrong_pin_locks_with_flags);
	tcase_add_test(t, right_pin_resets_tries);
	tcase_add_test(t, load_then_status);
	tcase_add_test(t, license_of_another_serial_rejected);
	tcase_add_test(t, expired_license_has_bad_date);
	tcase_add_test(t, foreign_license_has_no_dates);
	tcase_add_test(t, bad_expiry_licenses_read_back);
	tcase_add_test(t, global_license_card);
	tcase_add_test(t, bad_calls_get_the_right_ckr);
	tcase_add_test(t, card_pulled_mid_apdu);
	tcase_add_test(t, parallel_slots_keep_their_logins);
	tcase_add_test(t, real_clients);
	tcase_add_test(t, garbage_token_info_then_next_card);
	tcase_add_test(t, card_swapped_between_calls);
	tcase_add_test(t, slot_info_agrees_with_open_session);
	tcase_add_test(t, refresh_never_hides_a_present_token);
	tcase_add_test(t, turnover_on_three_readers);
	suite_add_tcase(s, t);

	tcase_add_unchecked_fixture(l, line_up, tl_down);
	tcase_set_timeout(l, 60);
	tcase_add_test(l, taken_port_is_refused);
	tcase_add_test(l, lines_side_by_side);
	tcase_add_test(l, system_pcscd_untouched);
	tcase_add_test(l, long_reader_names);
	tcase_add_test(l, restart_holds_the_port_lock);
	tcase_add_test(l, line_down_then_next_insert);
	suite_add_tcase(s, l);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sim_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
