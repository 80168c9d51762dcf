/*
 * bench/mkaudit DB ROWS KEYFILE: an audit database of ROWS rows (default
 * 1,000,000) in cardlicd's schema, for make bench-audit (issue 12).  The
 * rows are a station's life, written with the daemon's own hash
 * (daemon/dbhash.c), signatures (daemon/sign.c) and migrations
 * (build/sqlmig.c), so that cardlicd can open the file and go on
 * appending, and cardlicctl verify --key says it is intact:
 *  - a key row first (KEYFILE is a key made by cardlicctl keygen),
 *    "ed25519 HEX v2", and every row signed v2, as cardlicd signs since
 *    issue 18 (daemon/sign.h); MKAUDIT_V1_ROWS=N writes the first N rows
 *    as a cardlicd from before signed them (a key row without the mark,
 *    rows signed v1), then the key published again with the mark, as
 *    today's cardlicd does at its first start on such a file, and the
 *    rest v2;
 *  - 5,000 cards a day from 2026-10-01 (MKAUDIT_START), 06:00 to 22:00
 *    UTC, each with distinct 16-byte serials (padded with spaces, one in
 *    10,000 with NULs): requested, generated, loaded, verified;
 *  - one card in 1,000 rejected, one pulled after its license was made
 *    (failed, then back 3 cards later: loaded, verified with the
 *    pending license), one skipped, one failed before any credit;
 *  - one credit in doubt a day, resolved 10 cards later (spent or not,
 *    day by day), its card back 15 cards later for a new license;
 *  - one batch card (reader, ATR) whose batch_count rises, and its
 *    counter typed in at the start of each day (`counted`), so that
 *    reconcile agrees with the rows.
 * The station is MKAUDIT_STATION (default line-1); MKAUDIT_VERSION
 * stops the schema at an older migration.  The last rows are
 * skipped cards, so that the file has exactly ROWS rows and no job is
 * left open.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "../daemon/dbhash.h"
#include "../daemon/sign.h"

extern const char *const	sql_migrations[];
extern const int		sql_migrations_count;

#define MK_PER_DAY	5000
#define MK_BATCH	"Sim Line A 00 00"
#define MK_ATR		"3B88800149444F424154434817"
#define MK_QUEUE	16

/* One row, as daemon/db.c's struct db_row has it. */
struct mk_row {
	const char	*reader;
	long		 job;
	const char	*state;
	const char	*reason;
	const uint8_t	*model;
	const uint8_t	*serial;
	const char	*start_date;
	const char	*end_date;
	long		 license_seq;	/* 0: none */
	const uint8_t	*license;
	const char	*batch_reader;
	const char	*batch_atr;
	long		 batch_count;	/* -1: none */
	const char	*sw;
	const char	*ckr;
	const uint8_t	*status;
	const char	*timings;
};

/* What comes back later: a pulled card, a decision, a card in doubt. */
struct mk_event {
	long		 due;		/* before card number due */
	int		 kind;		/* 1 back, 2 resolve, 3 again */
	long		 card;
	long		 seq;		/* the license or in-doubt row */
	int		 spent;
	long		 job;
	char		 reader[20];
	char		 start[9], end[9];
};

struct mk {
	sqlite3		*db;
	sqlite3_stmt	*ins;
	struct sign_key	*key;
	const char	*station;
	long		 v1_rows;	/* rows signed v1 first */
	int		 v2;		/* rows are signed v2 now */
	uint8_t		 prev[32];
	long		 seq, job, rows, count, generated;
	time_t		 t;		/* the current row's second */
	int		 ms;
	struct mk_event	 q[MK_QUEUE];
	int		 nq;
};

static const uint8_t mk_model[16] = "CLSIM TARGET    ";

static void
mk_die(const char *what, const char *more)
{
	fprintf(stderr, "mkaudit: %s%s%s\n", what, more != NULL ? ": " : "",
	    more != NULL ? more : "");
	exit(1);
}

static void
mk_text(struct dbhash_val *v, const char *s)
{
	v->type = s != NULL ? SQLITE_TEXT : SQLITE_NULL;
	v->p = (const uint8_t *)s;
	v->len = s != NULL ? strlen(s) : 0;
}

static void
mk_blob(struct dbhash_val *v, const uint8_t *p, size_t len)
{
	v->type = p != NULL ? SQLITE_BLOB : SQLITE_NULL;
	v->p = p;
	v->len = p != NULL ? len : 0;
}

static void
mk_int(struct dbhash_val *v, long n, int null)
{
	v->type = null ? SQLITE_NULL : SQLITE_INTEGER;
	v->i = n;
}

/* Append r as db_append does (hash, signature), a few ms after the last. */
static long
mk_append(struct mk *m, const struct mk_row *r)
{
	struct dbhash_val v[AUDITROW_HASHED];
	uint8_t h[32], sig[64];
	struct tm tm;
	char utc[80];
	int j;

	m->ms += 2 + (int)(m->seq % 3);
	if (m->ms >= 1000) {
		m->t += m->ms / 1000;
		m->ms %= 1000;
	}
	gmtime_r(&m->t, &tm);
	snprintf(utc, sizeof(utc), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, m->ms);
	m->seq++;
	memset(v, 0, sizeof(v));
	mk_int(&v[AUDITROW_seq], m->seq, 0);
	mk_text(&v[AUDITROW_utc], utc);
	mk_text(&v[AUDITROW_station], m->station);
	mk_int(&v[AUDITROW_job], r->job, 0);
	mk_text(&v[AUDITROW_reader], r->reader);
	mk_text(&v[AUDITROW_state], r->state);
	mk_text(&v[AUDITROW_reason], r->reason != NULL ? r->reason : "");
	mk_blob(&v[AUDITROW_model], r->model, 16);
	mk_blob(&v[AUDITROW_serial], r->serial, 16);
	mk_text(&v[AUDITROW_start_date], r->start_date);
	mk_text(&v[AUDITROW_end_date], r->end_date);
	mk_int(&v[AUDITROW_license_seq], r->license_seq, r->license_seq <= 0);
	mk_blob(&v[AUDITROW_license], r->license, 128);
	mk_text(&v[AUDITROW_batch_reader], r->batch_reader);
	mk_text(&v[AUDITROW_batch_atr], r->batch_atr);
	mk_int(&v[AUDITROW_batch_count], r->batch_count, r->batch_count < 0);
	mk_text(&v[AUDITROW_sw], r->sw);
	mk_text(&v[AUDITROW_ckr], r->ckr);
	mk_blob(&v[AUDITROW_status], r->status, 19);
	mk_text(&v[AUDITROW_timings], r->timings);
	dbhash_row(m->prev, v, h);
	if (sign_bytes(m->key, m->v2 ? SIGN_DOMAIN_ROW_V2 : SIGN_DOMAIN_ROW, h,
	    32, sig) != 0)
		mk_die("cannot sign a row", NULL);
	memcpy(m->prev, h, 32);
	sqlite3_reset(m->ins);
	for (j = 0; j < AUDITROW_HASHED; j++) {
		if (v[j].type == SQLITE_INTEGER)
			sqlite3_bind_int64(m->ins, j + 1, v[j].i);
		else if (v[j].type == SQLITE_TEXT)
			sqlite3_bind_text(m->ins, j + 1, (const char *)v[j].p,
			    (int)v[j].len, SQLITE_TRANSIENT);
		else if (v[j].type == SQLITE_BLOB)
			sqlite3_bind_blob(m->ins, j + 1, v[j].p, (int)v[j].len,
			    SQLITE_TRANSIENT);
		else
			sqlite3_bind_null(m->ins, j + 1);
	}
	sqlite3_bind_blob(m->ins, AUDITROW_hash + 1, h, 32, SQLITE_TRANSIENT);
	sqlite3_bind_blob(m->ins, AUDITROW_sig + 1, sig, 64, SQLITE_TRANSIENT);
	if (sqlite3_step(m->ins) != SQLITE_DONE)
		mk_die("insert", sqlite3_errmsg(m->db));
	m->rows++;
	/* A commit now and then keeps the journal small. */
	if (m->rows % 50000 == 0 && (sqlite3_exec(m->db, "COMMIT; BEGIN",
	    NULL, NULL, NULL) != SQLITE_OK))
		mk_die("commit", sqlite3_errmsg(m->db));
	return m->seq;
}

/* Card number n's serial: 12 characters, padded (one in 10,000: NULs). */
static void
mk_serial(long n, uint8_t out[16])
{
	char s[32];

	snprintf(s, sizeof(s), "CL%010ld", n % 10000000000L);
	memset(out, n % 10000 == 4321 ? '\0' : ' ', 16);
	memcpy(out, s, 12);
}

static void
mk_license(long n, uint8_t out[128])
{
	uint64_t x = 0x9E3779B97F4A7C15ULL * (uint64_t)(n + 1);
	int i;

	for (i = 0; i < 128; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		out[i] = (uint8_t)x;
	}
}

/* YYYYMMDD of t, and the same a year later. */
static void
mk_dates(time_t t, char start[9], char end[9])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(start, 9, "%Y%m%d", &tm);
	tm.tm_year++;
	if (tm.tm_mday > 28)
		tm.tm_mday = 28;
	strftime(end, 9, "%Y%m%d", &tm);
}

static void
mk_status(uint8_t st[19], int valid, const char *start, const char *end)
{
	st[0] = 1;
	st[1] = 1;
	st[2] = (uint8_t)valid;
	memcpy(st + 3, start, 8);
	memcpy(st + 11, end, 8);
}

static void
mk_card_row(struct mk_row *r, long job, const char *reader,
    const uint8_t *serial, const char *state, const char *timings)
{
	memset(r, 0, sizeof(*r));
	r->reader = reader;
	r->job = job;
	r->state = state;
	r->model = mk_model;
	r->serial = serial;
	r->batch_count = -1;
	r->timings = timings;
}

/* loaded, then verified (or rejected) with license seq: the end of a job. */
static void
mk_load(struct mk *m, long job, const char *reader, const uint8_t *serial,
    long seq, const char *start, const char *end, int reject, int again)
{
	struct mk_row r;
	uint8_t st[19];
	char t1[120], t2[160], reason[300];
	int d = (int)(job % 5);

	snprintf(t1, sizeof(t1), "{\"token\":1,\"status\":0,\"login\":1,"
	    "\"pending\":0,%s\"load\":1,\"total\":%d}", again ? "" :
	    "\"generate\":3,\"record\":1,", (again ? 4 : 8) + d);
	mk_card_row(&r, job, reader, serial, "loaded", t1);
	r.reason = "C_SetAttributeValue accepted the license";
	r.license_seq = seq;
	r.start_date = start;
	r.end_date = end;
	r.ckr = "CKR_OK";
	mk_append(m, &r);
	snprintf(t2, sizeof(t2), "{\"token\":1,\"status\":0,\"login\":1,"
	    "\"pending\":0,%s\"load\":1,\"readback\":2,\"total\":%d}",
	    again ? "" : "\"generate\":3,\"record\":1,", (again ? 6 : 10) + d);
	mk_card_row(&r, job, reader, serial, reject ? "rejected" : "verified",
	    t2);
	r.license_seq = seq;
	r.start_date = start;
	r.end_date = end;
	r.ckr = "CKR_OK";
	mk_status(st, !reject, start, end);
	r.status = st;
	if (reject) {
		snprintf(reason, sizeof(reason), "the card reports "
		    "licensePresent=1 serialValid=1 dateValid=0 start=%s "
		    "end=%s; expected 1 1 1 %s %s", start, end, start, end);
		r.reason = reason;
	} else
		r.reason = "the card reports the license valid with the "
		    "expected dates";
	mk_append(m, &r);
}

/* requested, then generated: the license's seq. */
static long
mk_generate(struct mk *m, long job, const char *reader, const uint8_t *serial,
    const char *start, const char *end, long n)
{
	struct mk_row r;
	uint8_t lic[128];
	char reason[120];

	mk_card_row(&r, job, reader, serial, "requested", "{\"token\":1,"
	    "\"status\":0,\"login\":1,\"pending\":0,\"total\":2}");
	snprintf(reason, sizeof(reason), "asking for a license starting %s",
	    start);
	r.reason = reason;
	r.start_date = start;
	r.batch_reader = MK_BATCH;
	r.batch_atr = MK_ATR;
	mk_append(m, &r);
	mk_license(n, lic);
	mk_card_row(&r, job, reader, serial, "generated", "{\"token\":1,"
	    "\"status\":0,\"login\":1,\"pending\":0,\"generate\":3,"
	    "\"total\":6}");
	r.reason = "generated by the batch card in " MK_BATCH;
	r.start_date = start;
	r.end_date = end;
	r.license = lic;
	r.batch_reader = MK_BATCH;
	r.batch_atr = MK_ATR;
	r.batch_count = ++m->generated;
	r.sw = "9000";
	m->count++;
	return mk_append(m, &r);
}

static void
mk_queue(struct mk *m, const struct mk_event *e)
{
	if (m->nq == MK_QUEUE)
		mk_die("too many events at once", NULL);
	m->q[m->nq++] = *e;
}

/* The events due before card n (all of them when n < 0). */
static void
mk_events(struct mk *m, long n)
{
	struct mk_event e;
	struct mk_row r;
	uint8_t serial[16];
	char reason[300];
	int i;

	for (i = 0; i < m->nq; ) {
		if (n >= 0 && m->q[i].due > n) {
			i++;
			continue;
		}
		e = m->q[i];
		m->q[i] = m->q[--m->nq];
		mk_serial(e.card, serial);
		if (e.kind == 1) {
			/* Back with its pending license: loaded, verified. */
			mk_load(m, ++m->job, e.reader, serial, e.seq, e.start,
			    e.end, 0, 1);
			continue;
		}
		if (e.kind == 2) {
			/* cardlicctl resolve: the in-doubt row's card. */
			mk_card_row(&r, e.job, e.reader, serial, "resolved",
			    NULL);
			r.timings = NULL;
			snprintf(reason, sizeof(reason), "%s: the batch card's "
			    "counter read with the vendor's tool (uid 0)",
			    e.spent ? "spent" : "not spent");
			r.reason = reason;
			r.license_seq = e.seq;
			r.batch_reader = MK_BATCH;
			r.batch_atr = MK_ATR;
			if (e.spent)
				m->count++;
			mk_append(m, &r);
			continue;
		}
		/* The card that was in doubt, back for a new license. */
		m->job++;
		mk_load(m, m->job, e.reader, serial, mk_generate(m, m->job,
		    e.reader, serial, e.start, e.end, e.card + 7777777),
		    e.start, e.end, 0, 0);
	}
}

/* One insertion of card n; the rows it writes now. */
static void
mk_card(struct mk *m, long n)
{
	struct mk_event e;
	struct mk_row r;
	uint8_t serial[16], st[19];
	char reader[20], start[9], end[9], reason[400];
	long job = ++m->job, seq, k = n % MK_PER_DAY;

	snprintf(reader, sizeof(reader), "Sim Line A 00 %02ld", 1 + n % 4);
	mk_serial(n, serial);
	mk_dates(m->t, start, end);
	memset(&e, 0, sizeof(e));
	e.card = n;
	e.job = job;
	snprintf(e.reader, sizeof(e.reader), "%s", reader);
	memcpy(e.start, start, 9);
	memcpy(e.end, end, 9);
	if (k == 2222) {
		/* A credit in doubt, decided 10 cards later. */
		mk_card_row(&r, job, reader, serial, "requested", "{\"token\":1,"
		    "\"status\":0,\"login\":1,\"pending\":0,\"total\":2}");
		snprintf(reason, sizeof(reason), "asking for a license "
		    "starting %s", start);
		r.reason = reason;
		r.start_date = start;
		r.batch_reader = MK_BATCH;
		r.batch_atr = MK_ATR;
		mk_append(m, &r);
		mk_card_row(&r, job, reader, serial, "in-doubt", "{\"token\":1,"
		    "\"status\":0,\"login\":1,\"pending\":0,\"generate\":2001,"
		    "\"total\":2004}");
		r.reason = "batch card in " MK_BATCH " answered GENERATE with "
		    "6F00: a credit may have been spent; no new credit for "
		    "this card until an admin decides (cardlicctl resolve)";
		r.start_date = start;
		r.sw = "6F00";
		r.batch_reader = MK_BATCH;
		r.batch_atr = MK_ATR;
		seq = mk_append(m, &r);
		e.due = n + 10;
		e.kind = 2;
		e.seq = seq;
		e.spent = (n / MK_PER_DAY) % 2 == 0;
		mk_queue(m, &e);
		e.due = n + 15;
		e.kind = 3;
		mk_queue(m, &e);
		return;
	}
	switch (n % 1000) {
	case 503:
		mk_card_row(&r, job, reader, serial, "skipped", "{\"token\":1,"
		    "\"status\":0,\"total\":1}");
		mk_status(st, 1, "20260101", "20270101");
		r.status = st;
		r.ckr = "CKR_OK";
		r.reason = "already licensed until 20270101";
		mk_append(m, &r);
		return;
	case 719:
		mk_card_row(&r, job, reader, serial, "failed", "{\"token\":1,"
		    "\"total\":1}");
		r.ckr = "CKR_TOKEN_NOT_PRESENT";
		r.reason = "cannot read the license status "
		    "(CKR_TOKEN_NOT_PRESENT); no credit spent";
		mk_append(m, &r);
		return;
	case 311:
		/* Pulled after its license was made; back 3 cards later. */
		seq = mk_generate(m, job, reader, serial, start, end, n);
		mk_card_row(&r, job, reader, serial, "failed", "{\"token\":1,"
		    "\"status\":0,\"login\":1,\"pending\":0,\"generate\":3,"
		    "\"record\":1,\"load\":1,\"total\":7}");
		r.ckr = "CKR_DEVICE_REMOVED";
		r.reason = "loading the license failed (CKR_DEVICE_REMOVED); "
		    "it stays pending for this card and will be reused";
		mk_append(m, &r);
		e.due = n + 3;
		e.kind = 1;
		e.seq = seq;
		mk_queue(m, &e);
		return;
	}
	seq = mk_generate(m, job, reader, serial, start, end, n);
	mk_load(m, job, reader, serial, seq, start, end, n % 1000 == 137, 0);
}

/*
 * The key row, as db_sign_start writes it: with the v2 mark, the first
 * row that the key signs v2.
 */
static void
mk_key(struct mk *m, int v2)
{
	struct mk_row r;
	uint8_t pub[32];
	char hex[65], reason[100];

	sign_key_public(m->key, pub);
	dbhash_hex(pub, 32, 0, hex);
	snprintf(reason, sizeof(reason), "ed25519 %s%s", hex, v2 ?
	    SIGN_V2_MARK : "");
	memset(&r, 0, sizeof(r));
	r.reader = "";
	r.state = "key";
	r.reason = reason;
	r.batch_count = -1;
	m->v2 = v2;
	mk_append(m, &r);
}

/* The batch card's counter, typed in at the start of a day. */
static void
mk_counted(struct mk *m)
{
	struct mk_row r;

	memset(&r, 0, sizeof(r));
	r.reader = MK_BATCH;
	r.job = 0;
	r.state = "counted";
	r.reason = "read with the vendor's tool before the shift (uid 0)";
	r.batch_reader = MK_BATCH;
	r.batch_atr = MK_ATR;
	r.batch_count = m->count;
	mk_append(m, &r);
}

int
main(int argc, char **argv)
{
	struct mk m;
	struct mk_row r;
	struct tm tm;
	char pem[4096], err[256], sql[64], path[4200];
	const char *day0 = getenv("MKAUDIT_START");
	const char *v1 = getenv("MKAUDIT_V1_ROWS");
	long rows, n;
	size_t len;
	time_t base;
	FILE *f;
	int i, version;

	if (argc != 4 || (rows = atol(argv[2])) < 1)
		mk_die("usage: bench/mkaudit DB ROWS KEYFILE", NULL);
	memset(&m, 0, sizeof(m));
	m.station = getenv("MKAUDIT_STATION") != NULL ?
	    getenv("MKAUDIT_STATION") : "line-1";
	if ((f = fopen(argv[3], "r")) == NULL)
		mk_die(argv[3], "cannot read the key");
	len = fread(pem, 1, sizeof(pem) - 1, f);
	fclose(f);
	pem[len] = '\0';
	if ((m.key = sign_key_from_pem(pem, len, err, sizeof(err))) == NULL)
		mk_die(argv[3], err);
	m.v1_rows = v1 != NULL ? atol(v1) : 0;
	memset(&tm, 0, sizeof(tm));
	if (day0 == NULL)
		day0 = "2026-10-01";
	if (sscanf(day0, "%d-%d-%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) !=
	    3)
		mk_die("MKAUDIT_START is YYYY-MM-DD", NULL);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	base = timegm(&tm);

	/* A daemon's -wal and -shm of an older file must not be replayed. */
	remove(argv[1]);
	snprintf(path, sizeof(path), "%s-wal", argv[1]);
	remove(path);
	snprintf(path, sizeof(path), "%s-shm", argv[1]);
	remove(path);
	if (sqlite3_open(argv[1], &m.db) != SQLITE_OK)
		mk_die(argv[1], sqlite3_errmsg(m.db));
	/*
	 * The schema as db_migrate makes it, then its version;
	 * MKAUDIT_VERSION=N stops at migration N, for tests that compare a
	 * database of an older cardlicd with the same rows.
	 */
	version = getenv("MKAUDIT_VERSION") != NULL ?
	    atoi(getenv("MKAUDIT_VERSION")) : sql_migrations_count;
	if (version < 5 || version > sql_migrations_count)
		mk_die("MKAUDIT_VERSION: from 5 (signed rows) to the newest",
		    NULL);
	for (i = 0; i < version; i++)
		if (sqlite3_exec(m.db, sql_migrations[i], NULL, NULL, NULL) !=
		    SQLITE_OK)
			mk_die("migration", sqlite3_errmsg(m.db));
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
	if (sqlite3_exec(m.db, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(m.db, "PRAGMA synchronous = OFF; PRAGMA cache_size = "
	    "-65536; BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(m.db, AUDITROW_INSERT, -1, &m.ins, NULL) !=
	    SQLITE_OK)
		mk_die(argv[1], sqlite3_errmsg(m.db));

	m.t = base + 6 * 3600 - 60;
	mk_key(&m, m.v1_rows == 0);

	/* Cards while there is room for the longest run of events. */
	for (n = 0; m.rows + 40 <= rows; n++) {
		/* The first start of a cardlicd that signs v2. */
		if (!m.v2 && m.rows >= m.v1_rows)
			mk_key(&m, 1);
		if (n % MK_PER_DAY == 0) {
			m.t = base + (n / MK_PER_DAY) * 86400 + 6 * 3600;
			m.ms = 0;
			mk_counted(&m);
		} else
			m.t = base + (n / MK_PER_DAY) * 86400 + 6 * 3600 +
			    (n % MK_PER_DAY) * 57600 / MK_PER_DAY;
		mk_events(&m, n);
		mk_card(&m, n);
	}
	mk_events(&m, -1);
	/* Then cards that needed nothing, one row each, up to rows. */
	for (; m.rows < rows; n++) {
		uint8_t serial[16], st[19];
		char reader[20];

		snprintf(reader, sizeof(reader), "Sim Line A 00 %02ld",
		    1 + n % 4);
		mk_serial(n, serial);
		mk_card_row(&r, ++m.job, reader, serial, "skipped",
		    "{\"token\":1,\"status\":0,\"total\":1}");
		mk_status(st, 1, "20260101", "20270101");
		r.status = st;
		r.ckr = "CKR_OK";
		r.reason = "already licensed until 20270101";
		mk_append(&m, &r);
	}
	sqlite3_finalize(m.ins);
	if (sqlite3_exec(m.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		mk_die("commit", sqlite3_errmsg(m.db));
	if (sqlite3_close(m.db) != SQLITE_OK)
		mk_die("close", NULL);
	sign_key_free(m.key);
	printf("%s: %ld rows, %ld cards, %ld licenses, %ld jobs\n", argv[1],
	    m.rows, n, m.generated, m.job);
	return 0;
}
