/*
 * vcard: one process is one card of the simulated line.  It connects to a
 * vpcd port (the card is inserted), answers the reader until it is told to
 * go (SIGTERM: the card is pulled), and keeps its state in a file so that
 * re-inserting the same card keeps its credits, PIN tries and license.
 *
 * vpcd framing: every message is a 2-byte big-endian length and a payload.
 * A 1-byte payload is a control: 0 power off, 1 power on, 2 reset, 4 ATR
 * (answered with the ATR).  Anything longer is a command APDU, answered
 * with a response APDU.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "simproto.h"
#include "simdate.h"

#define VC_MAX_MSG	512
#define VC_ATR_MAX	33

enum vc_type { VC_BATCH, VC_TARGET, VC_UNKNOWN };
enum vc_garbage { VC_GARB_NONE, VC_GARB_SW, VC_GARB_SHORT, VC_GARB_LONG,
	VC_GARB_WRONGLEN, VC_GARB_LEN };
enum vc_expiry { VC_EXP_GOOD, VC_EXP_NOTDATE, VC_EXP_BEFORE };

struct vc_state {
	enum vc_type	type;
	uint8_t		atr[VC_ATR_MAX];
	size_t		atrlen;
	/* batch */
	long		credits;
	long		issued;
	long		validity_days;
	int		direct;		/* 136 bytes + 9000, no 61XX */
	int		chunk;		/* largest GET RESPONSE piece, 0: any */
	/* target */
	uint8_t		model[LIC_FIELD_LEN];
	uint8_t		serial[LIC_FIELD_LEN];
	char		pin[33];
	int		tries;
	int		max_tries;
	int		global;
	int		has_license;
	uint8_t		license[LIC_BLOB_LEN];
	long		loads;
};

/* What a card does wrong on purpose; never saved in the state file. */
struct vc_faults {
	long		vanish_after;	/* APDUs answered before vanishing */
	int		vanish_on;	/* vanish when this INS arrives, or -1 */
	enum vc_garbage	garbage;
	long		garbage_from;	/* first APDU (0-based) answered badly */
	long		garbage_at;	/* or only this APDU, -1: from on */
	unsigned	garbage_sw;	/* sw: the status word given */
	long		garbage_arg;	/* wronglen: XX (-1: one too many); len: N */
	enum vc_expiry	expiry;		/* batch: GENERATE's expiry is bad */
	long		slow_ms;
	long		slow_from;	/* first APDU (0-based) answered slowly */
	int		reject_license;	/* the stored license is damaged */
};

/* Volatile card state: lost when the card loses power. */
struct vc_session {
	int		selected;
	int		logged_in;
	uint8_t		pending[LIC_RESPONSE_LEN];
	size_t		pending_len;
	size_t		pending_off;
	long		apdus;
};

static struct vc_state		vc_st;
static struct vc_faults		vc_fault = {
	.vanish_after = -1, .vanish_on = -1, .garbage = VC_GARB_NONE,
	.garbage_at = -1, .garbage_sw = 0x6F42, .garbage_arg = -1,
	.expiry = VC_EXP_GOOD,
};
static struct vc_session	vc_sess;
static const char		*vc_state_path;
static FILE			*vc_events;
static volatile sig_atomic_t	vc_stop;

static void
vc_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vcard: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static long
vc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line per event, flushed at once: the line driver polls this file. */
static void
vc_event(const char *fmt, ...)
{
	va_list ap;

	if (vc_events == NULL)
		return;
	fprintf(vc_events, "%ld ", vc_now_ms());
	va_start(ap, fmt);
	vfprintf(vc_events, fmt, ap);
	va_end(ap);
	fputc('\n', vc_events);
	fflush(vc_events);
}

static int
vc_hex(const char *s, uint8_t *out, size_t max, size_t *len)
{
	size_t n = 0;
	int hi = -1, v;

	for (; *s != '\0'; s++) {
		if (*s == ' ' || *s == ':')
			continue;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F')
			v = *s - 'A' + 10;
		else
			return -1;
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == max)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0)
		return -1;
	*len = n;
	return 0;
}

static void
vc_put_hex(FILE *f, const char *key, const uint8_t *p, size_t n)
{
	size_t i;

	fprintf(f, "%s=", key);
	for (i = 0; i < n; i++)
		fprintf(f, "%02X", p[i]);
	fputc('\n', f);
}

/* Space-padded 16-byte field from a string of at most 16 bytes. */
static void
vc_pad(uint8_t *dst, const char *src, const char *what)
{
	size_t n = strlen(src);

	if (n > LIC_FIELD_LEN)
		vc_die("%s \"%s\" is longer than %d bytes", what, src,
		    LIC_FIELD_LEN);
	memset(dst, ' ', LIC_FIELD_LEN);
	memcpy(dst, src, n);
}

/* A T=1 ATR with the given historical bytes, and its check byte. */
static void
vc_default_atr(const char *hist)
{
	size_t n = strlen(hist), i;
	uint8_t tck = 0;

	vc_st.atr[0] = 0x3B;
	vc_st.atr[1] = (uint8_t)(0x80 | n);
	vc_st.atr[2] = 0x80;
	vc_st.atr[3] = 0x01;
	memcpy(vc_st.atr + 4, hist, n);
	for (i = 1; i < 4 + n; i++)
		tck ^= vc_st.atr[i];
	vc_st.atr[4 + n] = tck;
	vc_st.atrlen = 5 + n;
}

/*
 * State file: key=value lines.  It is rewritten whole, through a
 * temporary file, fsync and rename, so a card pulled (killed) at any
 * moment leaves either the old state or the new one.
 */
static void
vc_save(void)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", vc_state_path) >=
	    (int)sizeof(tmp))
		vc_die("state path too long");
	if ((f = fopen(tmp, "w")) == NULL)
		vc_die("%s: %s", tmp, strerror(errno));
	fprintf(f, "type=%s\n", vc_st.type == VC_BATCH ? "batch" :
	    vc_st.type == VC_TARGET ? "target" : "unknown");
	vc_put_hex(f, "atr", vc_st.atr, vc_st.atrlen);
	if (vc_st.type == VC_BATCH) {
		fprintf(f, "credits=%ld\nissued=%ld\nvalidity_days=%ld\n"
		    "direct=%d\nchunk=%d\n", vc_st.credits, vc_st.issued,
		    vc_st.validity_days, vc_st.direct, vc_st.chunk);
	} else if (vc_st.type == VC_TARGET) {
		fprintf(f, "model=%.16s\nserial=%.16s\n", vc_st.model,
		    vc_st.serial);
		fprintf(f, "pin=%s\ntries=%d\nmax_tries=%d\nglobal=%d\n"
		    "loads=%ld\n", vc_st.pin, vc_st.tries, vc_st.max_tries,
		    vc_st.global, vc_st.loads);
		if (vc_st.has_license)
			vc_put_hex(f, "license", vc_st.license, LIC_BLOB_LEN);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
		vc_die("%s: %s", tmp, strerror(errno));
	if (rename(tmp, vc_state_path) != 0)
		vc_die("%s: %s", vc_state_path, strerror(errno));
}

static long
vc_num(const char *v, long lo, long hi, int line)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < lo || n > hi)
		vc_die("%s:%d: \"%s\" is not a number in %ld..%ld",
		    vc_state_path, line, v, lo, hi);
	return n;
}

static int
vc_load(void)
{
	char buf[1024], *v;
	size_t n;
	FILE *f;
	int line = 0;

	if ((f = fopen(vc_state_path, "r")) == NULL) {
		if (errno == ENOENT)
			return -1;
		vc_die("%s: %s", vc_state_path, strerror(errno));
	}
	while (fgets(buf, sizeof(buf), f) != NULL) {
		line++;
		buf[strcspn(buf, "\n")] = '\0';
		if ((v = strchr(buf, '=')) == NULL)
			vc_die("%s:%d: no '='", vc_state_path, line);
		*v++ = '\0';
		if (strcmp(buf, "type") == 0)
			vc_st.type = strcmp(v, "batch") == 0 ? VC_BATCH :
			    strcmp(v, "target") == 0 ? VC_TARGET : VC_UNKNOWN;
		else if (strcmp(buf, "atr") == 0) {
			if (vc_hex(v, vc_st.atr, VC_ATR_MAX, &vc_st.atrlen))
				vc_die("%s:%d: bad ATR", vc_state_path, line);
		} else if (strcmp(buf, "credits") == 0)
			vc_st.credits = vc_num(v, 0, 1L << 30, line);
		else if (strcmp(buf, "issued") == 0)
			vc_st.issued = vc_num(v, 0, 1L << 30, line);
		else if (strcmp(buf, "validity_days") == 0)
			vc_st.validity_days = vc_num(v, 0, 100000, line);
		else if (strcmp(buf, "direct") == 0)
			vc_st.direct = (int)vc_num(v, 0, 1, line);
		else if (strcmp(buf, "chunk") == 0)
			vc_st.chunk = (int)vc_num(v, 0, 256, line);
		else if (strcmp(buf, "model") == 0)
			vc_pad(vc_st.model, v, "model");
		else if (strcmp(buf, "serial") == 0)
			vc_pad(vc_st.serial, v, "serial");
		else if (strcmp(buf, "pin") == 0)
			snprintf(vc_st.pin, sizeof(vc_st.pin), "%s", v);
		else if (strcmp(buf, "tries") == 0)
			vc_st.tries = (int)vc_num(v, 0, 15, line);
		else if (strcmp(buf, "max_tries") == 0)
			vc_st.max_tries = (int)vc_num(v, 1, 15, line);
		else if (strcmp(buf, "global") == 0)
			vc_st.global = (int)vc_num(v, 0, 1, line);
		else if (strcmp(buf, "loads") == 0)
			vc_st.loads = vc_num(v, 0, 1L << 30, line);
		else if (strcmp(buf, "license") == 0) {
			if (vc_hex(v, vc_st.license, LIC_BLOB_LEN, &n) ||
			    n != LIC_BLOB_LEN)
				vc_die("%s:%d: bad license", vc_state_path,
				    line);
			vc_st.has_license = 1;
		} else
			vc_die("%s:%d: unknown key %s", vc_state_path, line,
			    buf);
	}
	fclose(f);
	return 0;
}

static size_t
vc_sw(uint8_t *r, size_t n, uint16_t sw)
{
	r[n] = (uint8_t)(sw >> 8);
	r[n + 1] = (uint8_t)sw;
	return n + 2;
}

struct vc_apdu {
	uint8_t		cla, ins, p1, p2;
	const uint8_t	*data;
	size_t		lc;
	int		has_le;
	size_t		le;
};

/* ISO 7816-4 short APDU cases 1 to 4; -1 when the lengths do not add up. */
static int
vc_parse(const uint8_t *c, size_t n, struct vc_apdu *a)
{
	memset(a, 0, sizeof(*a));
	if (n < 4)
		return -1;
	a->cla = c[0];
	a->ins = c[1];
	a->p1 = c[2];
	a->p2 = c[3];
	if (n == 4)
		return 0;
	if (n == 5) {
		a->has_le = 1;
		a->le = c[4] == 0 ? 256 : c[4];
		return 0;
	}
	a->lc = c[4];
	if (a->lc == 0 || n < 5 + a->lc || n > 6 + a->lc)
		return -1;
	a->data = c + 5;
	if (n == 6 + a->lc) {
		a->has_le = 1;
		a->le = c[5 + a->lc] == 0 ? 256 : c[5 + a->lc];
	}
	return 0;
}

static size_t
vc_get_response(const struct vc_apdu *a, uint8_t *r)
{
	size_t rest, n;

	if (vc_sess.pending_len == 0)
		return vc_sw(r, 0, 0x6F00);
	if (a->p1 != 0 || a->p2 != 0)
		return vc_sw(r, 0, BATCH_SW_WRONG_P1P2);
	rest = vc_sess.pending_len - vc_sess.pending_off;
	n = a->has_le ? a->le : 256;
	if (vc_st.chunk > 0 && n > (size_t)vc_st.chunk)
		n = (size_t)vc_st.chunk;
	if (n > rest)
		n = rest;
	memcpy(r, vc_sess.pending + vc_sess.pending_off, n);
	vc_sess.pending_off += n;
	rest -= n;
	if (rest == 0) {
		vc_sess.pending_len = vc_sess.pending_off = 0;
		return vc_sw(r, n, BATCH_SW_OK);
	}
	return vc_sw(r, n, (uint16_t)(0x6100 | (rest > 255 ? 0 : rest)));
}

static size_t
vc_generate(const struct vc_apdu *a, uint8_t *r)
{
	char start[SIMDATE_LEN + 1], end[SIMDATE_LEN + 1];
	long sd;
	uint8_t *out = vc_sess.pending;

	if (a->p1 != 0 || a->p2 != 0)
		return vc_sw(r, 0, BATCH_SW_WRONG_P1P2);
	if (a->lc != LIC_INPUT_LEN)
		return vc_sw(r, 0, BATCH_SW_WRONG_LENGTH);
	if (simdate_parse((const char *)a->data + 32, &sd) != 0)
		return vc_sw(r, 0, BATCH_SW_BAD_DATE);
	if (vc_st.credits <= 0) {
		vc_event("batch no-credit");
		return vc_sw(r, 0, BATCH_SW_NO_CREDIT);
	}
	memcpy(start, a->data + 32, SIMDATE_LEN);
	start[SIMDATE_LEN] = '\0';
	if (vc_st.validity_days == 0)
		memcpy(end, "00000000", SIMDATE_LEN + 1);
	else
		simdate_format(sd + vc_st.validity_days - 1, end);
	/* A faulty card: the same bad expiry in the answer and the license. */
	if (vc_fault.expiry == VC_EXP_NOTDATE)
		memcpy(end, "20271332", SIMDATE_LEN + 1);
	else if (vc_fault.expiry == VC_EXP_BEFORE)
		simdate_format(sd - 1, end);
	vc_st.credits--;
	vc_st.issued++;
	/* The credit is spent once the counter is saved, as on a real card. */
	vc_save();
	memcpy(out, end, SIMDATE_LEN);
	simlic_make(a->data, a->data + 16, start, end, (uint32_t)vc_st.issued,
	    out + SIMDATE_LEN);
	vc_event("generate %.16s %.16s %s %s credits=%ld", a->data,
	    a->data + 16, start, end, vc_st.credits);
	if (vc_st.direct) {
		memcpy(r, out, LIC_RESPONSE_LEN);
		return vc_sw(r, LIC_RESPONSE_LEN, BATCH_SW_OK);
	}
	vc_sess.pending_len = LIC_RESPONSE_LEN;
	vc_sess.pending_off = 0;
	return vc_sw(r, 0, 0x6100 | LIC_RESPONSE_LEN);
}

static size_t
vc_batch(const struct vc_apdu *a, uint8_t *r)
{
	if (a->ins != BATCH_INS_GET_RESPONSE)
		vc_sess.pending_len = vc_sess.pending_off = 0;
	if (a->cla != BATCH_CLA)
		return vc_sw(r, 0, BATCH_SW_WRONG_CLA);
	switch (a->ins) {
	case BATCH_INS_SELECT:
		if (a->p1 != BATCH_SELECT_P1 || a->p2 != BATCH_SELECT_P2)
			return vc_sw(r, 0, BATCH_SW_WRONG_P1P2);
		if (a->lc != BATCH_AID_LEN ||
		    memcmp(a->data, BATCH_AID, BATCH_AID_LEN) != 0) {
			vc_sess.selected = 0;
			return vc_sw(r, 0, BATCH_SW_WRONG_AID);
		}
		vc_sess.selected = 1;
		return vc_sw(r, 0, BATCH_SW_OK);
	case BATCH_INS_GENERATE:
		if (!vc_sess.selected)
			return vc_sw(r, 0, 0x6D00);
		return vc_generate(a, r);
	case BATCH_INS_GET_RESPONSE:
		return vc_get_response(a, r);
	default:
		return vc_sw(r, 0, 0x6D00);
	}
}

static size_t
vc_verify(const struct vc_apdu *a, uint8_t *r)
{
	if (a->p1 == 0xFF) {
		/* ISO 7816-4: P1=FF resets the verification status. */
		vc_sess.logged_in = 0;
		vc_event("logout");
		return vc_sw(r, 0, 0x9000);
	}
	if (a->p1 != 0x00 || a->p2 != 0x01)
		return vc_sw(r, 0, 0x6A86);
	if (vc_st.tries == 0)
		return vc_sw(r, 0, 0x6983);
	if (a->lc == 0)
		return vc_sw(r, 0, vc_sess.logged_in ? 0x9000 :
		    (uint16_t)(0x63C0 | vc_st.tries));
	if (a->lc == strlen(vc_st.pin) &&
	    memcmp(a->data, vc_st.pin, a->lc) == 0) {
		if (vc_st.tries != vc_st.max_tries) {
			vc_st.tries = vc_st.max_tries;
			vc_save();
		}
		vc_sess.logged_in = 1;
		vc_event("login ok");
		return vc_sw(r, 0, 0x9000);
	}
	vc_st.tries--;
	vc_sess.logged_in = 0;
	vc_save();
	vc_event("login bad tries=%d", vc_st.tries);
	if (vc_st.tries == 0)
		return vc_sw(r, 0, 0x6983);
	return vc_sw(r, 0, (uint16_t)(0x63C0 | vc_st.tries));
}

static size_t
vc_target(const struct vc_apdu *a, uint8_t *r)
{
	uint8_t st[LIC_STATUS_LEN];

	if (a->cla == 0x00 && a->ins == 0xA4) {
		if (a->p1 != 0x04)
			return vc_sw(r, 0, 0x6A86);
		vc_sess.selected = a->lc == TGT_AID_LEN &&
		    memcmp(a->data, TGT_AID, TGT_AID_LEN) == 0;
		if (vc_sess.selected)
			vc_event("select");
		return vc_sw(r, 0, vc_sess.selected ? 0x9000 : 0x6A82);
	}
	if (!vc_sess.selected)
		return vc_sw(r, 0, 0x6D00);
	if (a->cla == 0x00 && a->ins == 0x20)
		return vc_verify(a, r);
	if (a->cla != TGT_CLA)
		return vc_sw(r, 0, 0x6E00);
	switch (a->ins) {
	case TGT_INS_INFO:
		memcpy(r, vc_st.model, LIC_FIELD_LEN);
		memcpy(r + 16, vc_st.serial, LIC_FIELD_LEN);
		r[32] = (uint8_t)vc_st.tries;
		r[33] = (uint8_t)vc_st.max_tries;
		r[34] = (uint8_t)((vc_st.global ? TGT_FLAG_GLOBAL : 0) |
		    (vc_sess.logged_in ? TGT_FLAG_LOGGED_IN : 0));
		vc_event("info");
		return vc_sw(r, TGT_INFO_LEN, 0x9000);
	case TGT_INS_PUT_LICENSE:
		if (a->lc != LIC_BLOB_LEN)
			return vc_sw(r, 0, 0x6700);
		if (!vc_sess.logged_in)
			return vc_sw(r, 0, 0x6982);
		memcpy(vc_st.license, a->data, LIC_BLOB_LEN);
		if (vc_fault.reject_license)
			vc_st.license[100] ^= 0x01;
		vc_st.has_license = 1;
		vc_st.loads++;
		vc_save();
		vc_event("load");
		return vc_sw(r, 0, 0x9000);
	case TGT_INS_GET_STATUS:
		simlic_status(vc_st.license, vc_st.has_license, vc_st.model,
		    vc_st.serial, vc_st.global, simdate_today(), st);
		memcpy(r, st, LIC_STATUS_LEN);
		vc_event("status %d%d%d %.8s %.8s", st[0], st[1], st[2],
		    st + 3, st + 11);
		return vc_sw(r, LIC_STATUS_LEN, 0x9000);
	default:
		return vc_sw(r, 0, 0x6D00);
	}
}

static size_t
vc_apdu(const uint8_t *c, size_t n, uint8_t *r)
{
	struct vc_apdu a;

	if (vc_parse(c, n, &a) != 0)
		return vc_sw(r, 0, 0x6700);
	switch (vc_st.type) {
	case VC_BATCH:
		return vc_batch(&a, r);
	case VC_TARGET:
		return vc_target(&a, r);
	default:
		return vc_sw(r, 0, a.ins == 0xA4 ? 0x6A82 : 0x6D00);
	}
}

/*
 * Replace a good answer (n bytes, status word included) by a bad one of
 * the requested kind.
 */
static size_t
vc_spoil(uint8_t *r, size_t n)
{
	const uint8_t *src;
	size_t srclen, want;
	long xx;

	switch (vc_fault.garbage) {
	case VC_GARB_SW:
		return vc_sw(r, 0, (uint16_t)vc_fault.garbage_sw);
	case VC_GARB_SHORT:
		r[0] = 0x90;
		return 1;
	case VC_GARB_LONG:
		memset(r, 0xA5, 40);
		return vc_sw(r, 40, 0x9000);
	case VC_GARB_WRONGLEN:
		/*
		 * The data as it was, and a 61XX that lies about what is
		 * left: by default one byte more than the truth.
		 */
		xx = vc_fault.garbage_arg;
		if (xx < 0)
			xx = (r[n - 2] == 0x61 ? r[n - 1] : 0) + 1;
		return vc_sw(r, n - 2, (uint16_t)(0x6100 | (xx & 0xFF)));
	case VC_GARB_LEN:
		/*
		 * N bytes and 9000: the answer's own data, or else the
		 * answer still pending (GENERATE's 136 bytes), cut at N or
		 * padded with A5.
		 */
		if (n > 2) {
			src = r;
			srclen = n - 2;
		} else {
			src = vc_sess.pending + vc_sess.pending_off;
			srclen = vc_sess.pending_len - vc_sess.pending_off;
		}
		want = (size_t)vc_fault.garbage_arg;
		if (src != r)
			memcpy(r, src, srclen < want ? srclen : want);
		if (srclen < want)
			memset(r + srclen, 0xA5, want - srclen);
		return vc_sw(r, want, 0x9000);
	default:
		return n;
	}
}

/* --garbage KIND: sw, sw=XXXX, short, long, wronglen[=XX], len=N. */
static int
vc_garbage_opt(const char *v)
{
	char *end;
	long x;

	if (strcmp(v, "short") == 0)
		vc_fault.garbage = VC_GARB_SHORT;
	else if (strcmp(v, "long") == 0)
		vc_fault.garbage = VC_GARB_LONG;
	else if (strcmp(v, "sw") == 0)
		vc_fault.garbage = VC_GARB_SW;
	else if (strncmp(v, "sw=", 3) == 0) {
		x = strtol(v + 3, &end, 16);
		if (strlen(v + 3) != 4 || *end != '\0' || x < 0)
			return -1;
		vc_fault.garbage = VC_GARB_SW;
		vc_fault.garbage_sw = (unsigned)x;
	} else if (strcmp(v, "wronglen") == 0)
		vc_fault.garbage = VC_GARB_WRONGLEN;
	else if (strncmp(v, "wronglen=", 9) == 0) {
		x = strtol(v + 9, &end, 16);
		if (strlen(v + 9) != 2 || *end != '\0' || x < 0)
			return -1;
		vc_fault.garbage = VC_GARB_WRONGLEN;
		vc_fault.garbage_arg = x;
	} else if (strncmp(v, "len=", 4) == 0) {
		x = strtol(v + 4, &end, 10);
		if (v[4] == '\0' || *end != '\0' || x < 0 || x > 300)
			return -1;
		vc_fault.garbage = VC_GARB_LEN;
		vc_fault.garbage_arg = x;
	} else
		return -1;
	return 0;
}

static int
vc_readall(int fd, uint8_t *p, size_t n)
{
	ssize_t k;
	int one = 1;

	while (n > 0) {
		/*
		 * vpcd writes the length and the payload as two segments
		 * without TCP_NODELAY; if we delayed our ACK, Nagle would hold
		 * its second segment for 40 ms on every message.  QUICKACK is
		 * not sticky, so it is set again before each read.
		 */
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		k = read(fd, p, n);
		if (k < 0 && errno == EINTR) {
			if (vc_stop)
				return -1;
			continue;
		}
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int
vc_send(int fd, const uint8_t *p, size_t n)
{
	uint8_t buf[VC_MAX_MSG + 2];

	buf[0] = (uint8_t)(n >> 8);
	buf[1] = (uint8_t)n;
	memcpy(buf + 2, p, n);
	return write(fd, buf, n + 2) == (ssize_t)(n + 2) ? 0 : -1;
}

static void
vc_on_signal(int sig)
{
	(void)sig;
	vc_stop = 1;
}

static void
vc_serve(int fd)
{
	uint8_t hdr[2], msg[VC_MAX_MSG], resp[VC_MAX_MSG];
	size_t len, rn;
	struct timespec ts;

	while (!vc_stop) {
		if (vc_readall(fd, hdr, 2) != 0)
			break;
		len = (size_t)hdr[0] << 8 | hdr[1];
		if (len > VC_MAX_MSG || vc_readall(fd, msg, len) != 0)
			break;
		if (len == 1) {
			switch (msg[0]) {
			case 0:	/* power off */
			case 2:	/* reset */
				memset(&vc_sess, 0, sizeof(vc_sess) -
				    sizeof(vc_sess.apdus));
				break;
			case 4:
				if (vc_send(fd, vc_st.atr, vc_st.atrlen) != 0)
					return;
				break;
			default:
				break;
			}
			continue;
		}
		if ((vc_fault.vanish_after >= 0 &&
		    vc_sess.apdus >= vc_fault.vanish_after) ||
		    (len >= 4 && msg[1] == vc_fault.vanish_on)) {
			/* Pulled while the reader waits for this answer. */
			vc_event("vanish after %ld apdus", vc_sess.apdus);
			return;
		}
		rn = vc_apdu(msg, len, resp);
		if (vc_fault.garbage != VC_GARB_NONE &&
		    (vc_fault.garbage_at >= 0 ?
		    vc_sess.apdus == vc_fault.garbage_at :
		    vc_sess.apdus >= vc_fault.garbage_from))
			rn = vc_spoil(resp, rn);
		vc_sess.apdus++;
		if (vc_fault.slow_ms > 0 &&
		    vc_sess.apdus > vc_fault.slow_from) {
			ts.tv_sec = vc_fault.slow_ms / 1000;
			ts.tv_nsec = (vc_fault.slow_ms % 1000) * 1000000;
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR &&
			    !vc_stop)
				;
		}
		if (vc_send(fd, resp, rn) != 0)
			return;
	}
}

static void
vc_usage(void)
{
	fprintf(stderr,
"usage: vcard --port PORT --state FILE [--events FILE] [options]\n"
"  creating a card (the state file does not exist yet):\n"
"    --type batch|target|unknown   --atr HEX\n"
"    batch:  --credits N (100)  --validity-days N (365, 0: no end)\n"
"            --direct  --chunk N (largest GET RESPONSE piece)\n"
"    target: --model M  --serial S  --pin PIN  --tries N (3)  --global\n"
"            --preload START:END (a license made earlier)\n"
"  faults (this insertion only):\n"
"    --vanish-after N  --vanish-on INS (hex)\n"
"    --garbage sw[=XXXX]|short|long|wronglen[=XX]|len=N (0..300)\n"
"    --garbage-from N | --garbage-at N    --bad-expiry notdate|before\n"
"    --slow MS  --slow-from N  --reject-license\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "state", required_argument, NULL, 's' },
		{ "events", required_argument, NULL, 'e' },
		{ "type", required_argument, NULL, 't' },
		{ "atr", required_argument, NULL, 'a' },
		{ "credits", required_argument, NULL, 'c' },
		{ "validity-days", required_argument, NULL, 'v' },
		{ "direct", no_argument, NULL, 'd' },
		{ "chunk", required_argument, NULL, 'k' },
		{ "model", required_argument, NULL, 'm' },
		{ "serial", required_argument, NULL, 'n' },
		{ "pin", required_argument, NULL, 'P' },
		{ "tries", required_argument, NULL, 'T' },
		{ "global", no_argument, NULL, 'g' },
		{ "preload", required_argument, NULL, 'L' },
		{ "vanish-after", required_argument, NULL, 'V' },
		{ "vanish-on", required_argument, NULL, 'O' },
		{ "garbage", required_argument, NULL, 'G' },
		{ "garbage-from", required_argument, NULL, 'F' },
		{ "garbage-at", required_argument, NULL, 'A' },
		{ "bad-expiry", required_argument, NULL, 'X' },
		{ "slow", required_argument, NULL, 'S' },
		{ "slow-from", required_argument, NULL, 'w' },
		{ "reject-license", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 }
	};
	const char *type = "target", *atr = NULL, *model = "SIM-MODEL-1";
	const char *serial = NULL, *pin = "1234", *events = NULL;
	long port = 0, credits = 100, validity = 365, tries = 3, chunk = 0;
	int direct = 0, global = 0, ch, fd, one = 1;
	struct sockaddr_in sa;
	struct sigaction sact;
	uint8_t st[LIC_STATUS_LEN];
	const char *preload = NULL;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p': port = strtol(optarg, NULL, 10); break;
		case 's': vc_state_path = optarg; break;
		case 'e': events = optarg; break;
		case 't': type = optarg; break;
		case 'a': atr = optarg; break;
		case 'c': credits = strtol(optarg, NULL, 10); break;
		case 'v': validity = strtol(optarg, NULL, 10); break;
		case 'd': direct = 1; break;
		case 'k': chunk = strtol(optarg, NULL, 10); break;
		case 'm': model = optarg; break;
		case 'n': serial = optarg; break;
		case 'P': pin = optarg; break;
		case 'T': tries = strtol(optarg, NULL, 10); break;
		case 'g': global = 1; break;
		case 'L': preload = optarg; break;
		case 'V': vc_fault.vanish_after = strtol(optarg, NULL, 10);
			break;
		case 'O':
			vc_fault.vanish_on = (int)strtol(optarg, NULL, 16);
			break;
		case 'G':
			if (vc_garbage_opt(optarg) != 0)
				vc_usage();
			break;
		case 'A': vc_fault.garbage_at = strtol(optarg, NULL, 10);
			break;
		case 'X':
			if (strcmp(optarg, "notdate") == 0)
				vc_fault.expiry = VC_EXP_NOTDATE;
			else if (strcmp(optarg, "before") == 0)
				vc_fault.expiry = VC_EXP_BEFORE;
			else
				vc_usage();
			break;
		case 'F': vc_fault.garbage_from = strtol(optarg, NULL, 10);
			break;
		case 'S': vc_fault.slow_ms = strtol(optarg, NULL, 10); break;
		case 'w': vc_fault.slow_from = strtol(optarg, NULL, 10);
			break;
		case 'R': vc_fault.reject_license = 1; break;
		default: vc_usage();
		}
	}
	if (port < 1 || port > 65535 || vc_state_path == NULL)
		vc_usage();
	if (vc_load() != 0) {
		memset(&vc_st, 0, sizeof(vc_st));
		if (strcmp(type, "batch") == 0) {
			vc_st.type = VC_BATCH;
			vc_default_atr("IDOBATCH");
		} else if (strcmp(type, "target") == 0) {
			vc_st.type = VC_TARGET;
			vc_default_atr("CLSIMTGT");
		} else if (strcmp(type, "unknown") == 0) {
			vc_st.type = VC_UNKNOWN;
			vc_default_atr("UNKNOWN1");
		} else
			vc_usage();
		if (atr != NULL && (vc_hex(atr, vc_st.atr, VC_ATR_MAX,
		    &vc_st.atrlen) != 0 || vc_st.atrlen < 2))
			vc_die("bad --atr %s", atr);
		if (credits < 0 || validity < 0 || chunk < 0 || chunk > 256 ||
		    tries < 1 || tries > 15 || strlen(pin) > 32)
			vc_die("an option is out of range");
		vc_st.credits = credits;
		vc_st.validity_days = validity;
		vc_st.direct = direct;
		vc_st.chunk = (int)chunk;
		if (vc_st.type == VC_TARGET && serial == NULL)
			vc_die("a target card needs --serial");
		vc_pad(vc_st.model, model, "model");
		vc_pad(vc_st.serial, serial != NULL ? serial : "", "serial");
		snprintf(vc_st.pin, sizeof(vc_st.pin), "%s", pin);
		vc_st.tries = vc_st.max_tries = (int)tries;
		vc_st.global = global;
		if (preload != NULL) {
			/* Licensed earlier, elsewhere: START:END dates. */
			if (strlen(preload) != 17 || preload[8] != ':')
				vc_die("--preload wants YYYYMMDD:YYYYMMDD");
			simlic_make(vc_st.model, vc_st.serial, preload,
			    preload + 9, 0, vc_st.license);
			vc_st.has_license = 1;
		}
		vc_save();
	}
	if (events != NULL && (vc_events = fopen(events, "a")) == NULL)
		vc_die("%s: %s", events, strerror(errno));

	memset(&sact, 0, sizeof(sact));
	sact.sa_handler = vc_on_signal;	/* no SA_RESTART: unblock read() */
	sigaction(SIGTERM, &sact, NULL);
	sigaction(SIGINT, &sact, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		vc_die("socket: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		vc_die("no reader on port %ld: %s", port, strerror(errno));
	vc_event("insert %s", vc_st.type == VC_TARGET ? "target" :
	    vc_st.type == VC_BATCH ? "batch" : "unknown");
	vc_serve(fd);
	close(fd);
	if (vc_st.type == VC_TARGET) {
		/* What this card would tell the middleware from now on. */
		simlic_status(vc_st.license, vc_st.has_license, vc_st.model,
		    vc_st.serial, vc_st.global, simdate_today(), st);
		vc_event("final %d%d%d %.8s %.8s loads=%ld", st[0], st[1],
		    st[2], st + 3, st + 11, vc_st.loads);
	}
	vc_event("remove");
	return 0;
}
