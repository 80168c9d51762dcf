/*
 * Unit tests, without a line: the pieces of cardlicd and cardlicctl that
 * can be checked alone, each in well under a second but one: the text of
 * every way a field can end, in SQL (about 2 s).  The daemon's
 * objects are linked (daemon/conf.c, classify.c, date.c, dbhash.c ...), and
 * ctl/cardlicctl.c is included here with its main() renamed, for ctl_esc.
 *
 * Covered here: the audit row's one definition against the SQL schema,
 * the hash of known rows, the text of a card's bytes (trimming and
 * escaping, in C and in SQL), dates, the classification rules, and the
 * PIN's turn-taking (pinturn.c, with real threads), and the station's
 * signatures and key files held to OpenSSL's (libcrypto is linked here
 * as the oracle, and the openssl command is run).  The configuration's
 * ranges and start-date policies are in check_conf.c.
 */
#include <check.h>
#include <fcntl.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

int	cardlicctl_main(int, char **);
#define main cardlicctl_main
#include "../ctl/cardlicctl.c"
#undef main

#include "../daemon/cardlicd.h"
#include "../daemon/date.h"
#include "../daemon/dbhash.h"
#include "../daemon/sign.h"

extern const char *const	sql_migrations[];
extern const int		sql_migrations_count;

/*
 * Equal bytes; SQLite gives NULL for an empty blob, which memcmp may
 * not see even for 0 bytes (UBSan says so).
 */
static int
cu_same(const void *a, const void *b, size_t n)
{
	return n == 0 || (a != NULL && memcmp(a, b, n) == 0);
}

/* A database made by the migrations, as cardlicd makes one. */
static sqlite3 *
cu_schema(void)
{
	sqlite3 *db;
	char *e = NULL;
	int i;

	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	for (i = 0; i < sql_migrations_count; i++)
		ck_assert_msg(sqlite3_exec(db, sql_migrations[i], NULL, NULL,
		    &e) == SQLITE_OK, "migration %d: %s", i + 1, e);
	return db;
}

/* The C table and the table of the migrations: same names, order, types. */
START_TEST(auditrow_matches_the_schema)
{
	sqlite3 *db = cu_schema();
	sqlite3_stmt *st;
	int i = 0;

	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT cid, name, type FROM "
	    "pragma_table_info('audit') ORDER BY cid", -1, &st, NULL),
	    SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		ck_assert_msg(i < AUDITROW_NCOLS, "column %s is in the SQL "
		    "schema, not in auditrow.h", sqlite3_column_text(st, 1));
		ck_assert_int_eq(sqlite3_column_int(st, 0), i);
		ck_assert_str_eq((const char *)sqlite3_column_text(st, 1),
		    auditrow_cols[i].name);
		ck_assert_str_eq((const char *)sqlite3_column_text(st, 2),
		    auditrow_cols[i].type);
		i++;
	}
	sqlite3_finalize(st);
	ck_assert_msg(i == AUDITROW_NCOLS, "the SQL schema has %d columns, "
	    "auditrow.h %d", i, AUDITROW_NCOLS);
	ck_assert_str_eq(auditrow_cols[AUDITROW_HASHED].name, "hash");
	ck_assert_str_eq(auditrow_cols[AUDITROW_sig].name, "sig");
	/* Both new states of migration 5 are allowed, a made-up one not. */
	ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO audit (seq, utc, "
	    "station, job, reader, state, reason, hash) VALUES (1, 'u', 's', "
	    "1, 'r', 'key', 'x', x'00'), (2, 'u', 's', 1, 'r', 'counted', "
	    "'x', x'00')", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_ne(sqlite3_exec(db, "INSERT INTO audit (seq, utc, "
	    "station, job, reader, state, reason, hash) VALUES (3, 'u', 's', "
	    "1, 'r', 'forged', 'x', x'00')", NULL, NULL, NULL), SQLITE_OK);
	/* The INSERT of db_append and the SELECT of verify are valid. */
	ck_assert_int_eq(sqlite3_prepare_v2(db, AUDITROW_INSERT, -1, &st,
	    NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_bind_parameter_count(st), AUDITROW_NCOLS);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT " AUDITROW_NAMES
	    ", model_text, serial_text FROM audit_text", -1, &st, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_column_count(st), AUDITROW_NCOLS + 2);
	sqlite3_finalize(st);
	sqlite3_close(db);
}
END_TEST

/* Export: every place taken once, by a column or its hex companion. */
START_TEST(export_places_are_a_permutation)
{
	int seen[AUDITROW_EXPORTS] = { 0 };
	int i;

	for (i = 0; i < AUDITROW_NCOLS; i++) {
		ck_assert_int_ge(auditrow_cols[i].export_at, 0);
		ck_assert_int_lt(auditrow_cols[i].export_at, AUDITROW_EXPORTS);
		seen[auditrow_cols[i].export_at]++;
		if (auditrow_cols[i].hex_at >= 0) {
			ck_assert_int_lt(auditrow_cols[i].hex_at,
			    AUDITROW_EXPORTS);
			seen[auditrow_cols[i].hex_at]++;
		}
	}
	for (i = 0; i < AUDITROW_EXPORTS; i++)
		ck_assert_msg(seen[i] == 1, "export place %d taken %d times",
		    i, seen[i]);
	ck_assert_int_eq(auditrow_cols[AUDITROW_station].export_at, 0);
}
END_TEST

static void
cu_val(struct dbhash_val *v, int type, const void *p, size_t len,
    long long i)
{
	v->type = type;
	v->p = p;
	v->len = len;
	v->i = i;
}

static void
cu_text(struct dbhash_val *v, const char *s)
{
	cu_val(v, SQLITE_TEXT, s, strlen(s), 0);
}

/*
 * Two known rows give known hashes.  The expected values were computed
 * apart from this code, in Python, from the format that dbhash.c
 * documents (hashlib.sha256 over prev, then per column: type byte, 4-byte
 * big-endian length, bytes; integers in decimal; NULL as type 5, length 0).
 */
START_TEST(hash_of_known_rows)
{
	static const uint8_t model[16] = "MODEL-X         ";
	static const uint8_t serial[16] = "SN000123\0\0\0\0\0\0\0";
	uint8_t license[128], zero[32], h1[32], h2[32], h3[32];
	struct dbhash_val v[AUDITROW_HASHED];
	char hex[65];
	int i;

	for (i = 0; i < 128; i++)
		license[i] = (uint8_t)i;
	memset(zero, 0, sizeof(zero));
	for (i = 0; i < AUDITROW_HASHED; i++)
		cu_val(&v[i], SQLITE_NULL, NULL, 0, 0);
	cu_val(&v[AUDITROW_seq], SQLITE_INTEGER, NULL, 0, 1);
	cu_text(&v[AUDITROW_utc], "2026-11-24T10:00:00.000Z");
	cu_text(&v[AUDITROW_station], "line-1");
	cu_val(&v[AUDITROW_job], SQLITE_INTEGER, NULL, 0, 7);
	cu_text(&v[AUDITROW_reader], "Reader 0");
	cu_text(&v[AUDITROW_state], "generated");
	cu_text(&v[AUDITROW_reason], "a new license");
	cu_val(&v[AUDITROW_model], SQLITE_BLOB, model, 16, 0);
	cu_val(&v[AUDITROW_serial], SQLITE_BLOB, serial, 16, 0);
	cu_text(&v[AUDITROW_start_date], "20261124");
	cu_text(&v[AUDITROW_end_date], "20271124");
	cu_val(&v[AUDITROW_license], SQLITE_BLOB, license, 128, 0);
	cu_text(&v[AUDITROW_batch_reader], "Batch 0");
	cu_text(&v[AUDITROW_batch_atr], "3B8880");
	cu_val(&v[AUDITROW_batch_count], SQLITE_INTEGER, NULL, 0, 1);
	cu_text(&v[AUDITROW_sw], "9000");
	cu_text(&v[AUDITROW_timings], "{\"gen\":12}");
	dbhash_row(zero, v, h1);
	dbhash_hex(h1, 32, 0, hex);
	ck_assert_str_eq(hex, "a32f5d72053ef54d65acfe02303389e9"
	    "def4577eb5ed814387e32759051c20ee");

	/* Chained, with '', a negative number and zero-length blobs. */
	for (i = 0; i < AUDITROW_HASHED; i++)
		cu_val(&v[i], SQLITE_NULL, NULL, 0, 0);
	cu_val(&v[AUDITROW_seq], SQLITE_INTEGER, NULL, 0, 2);
	cu_text(&v[AUDITROW_utc], "2026-11-24T10:00:01.000Z");
	cu_text(&v[AUDITROW_station], "line-1");
	cu_val(&v[AUDITROW_job], SQLITE_INTEGER, NULL, 0, -3);
	cu_text(&v[AUDITROW_reader], "");
	cu_text(&v[AUDITROW_state], "failed");
	cu_text(&v[AUDITROW_reason], "");
	cu_val(&v[AUDITROW_license_seq], SQLITE_INTEGER, NULL, 0, 1);
	cu_val(&v[AUDITROW_license], SQLITE_BLOB, license, 0, 0);
	cu_text(&v[AUDITROW_ckr], "CKR_PIN_INCORRECT");
	cu_val(&v[AUDITROW_status], SQLITE_BLOB, license, 0, 0);
	dbhash_row(h1, v, h2);
	dbhash_hex(h2, 32, 0, hex);
	ck_assert_str_eq(hex, "c6d39ed52ddfc7fa2098f6178576570e"
	    "a18883a89b610fb9204865907b607e36");

	/* NULL, '' and an empty blob are three different rows. */
	cu_val(&v[AUDITROW_status], SQLITE_NULL, NULL, 0, 0);
	dbhash_row(h1, v, h3);
	ck_assert(memcmp(h2, h3, 32) != 0);
	cu_text(&v[AUDITROW_status], "");
	dbhash_row(h1, v, h3);
	ck_assert(memcmp(h2, h3, 32) != 0);
	/* A NULL's stale pointer and number are not hashed. */
	cu_val(&v[AUDITROW_status], SQLITE_BLOB, license, 0, 0);
	cu_val(&v[AUDITROW_sw], SQLITE_NULL, license, 128, 99);
	dbhash_row(h1, v, h3);
	ck_assert(memcmp(h2, h3, 32) == 0);
}
END_TEST

/*
 * SHA-256 of checkpoint lines and spill records: FIPS 180-2's answers,
 * so that a checkpoint series and a spill file outlive any library.
 */
START_TEST(sha256_known_answers)
{
	static char million[1000000];
	uint8_t h[32];
	char hex[65];

	dbhash_sha256("abc", 3, h);
	dbhash_hex(h, 32, 0, hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
	dbhash_sha256("", 0, h);
	dbhash_hex(h, 32, 0, hex);
	ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb924"
	    "27ae41e4649b934ca495991b7852b855");
	memset(million, 'a', sizeof(million));
	dbhash_sha256(million, sizeof(million), h);
	dbhash_hex(h, 32, 0, hex);
	ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
	    "f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/*
 * A card's padded field, and its text: the bytes before the trailing
 * spaces and NULs, written by dbhash_text for the journal.
 */
static const struct {
	const char	*in;
	size_t		 len;
	const char	*journal;	/* dbhash_text */
	size_t		 kept;		/* bytes left after trimming */
} cu_fields[] = {
	{ "SN000123        ", 16, "SN000123", 8 },
	{ "SN000123\0\0\0\0\0\0\0\0", 16, "SN000123", 8 },
	{ "SN1 \0 \0\0\0\0\0\0\0\0\0\0", 16, "SN1", 3 },
	{ "A\0B             ", 16, "A\\x00B", 3 },
	{ " lead  ", 7, " lead", 5 },
	{ "                ", 16, "", 0 },
	{ "\0\0\0\0", 4, "", 0 },
	{ "a\\b\x1b[2J\x7f \0", 10, "a\\\\b\\x1B[2J\\x7F", 8 },
	{ "Q\"1,\xc3\xa9\r\n", 8, "Q\"1,\\xC3\\xA9\\x0D\\x0A", 8 },
	{ "x\t", 2, "x\\x09", 2 },
	{ "", 0, "", 0 },
	/* Longer than a card's field, with more than 16 bytes of padding. */
	{ "LONG-SERIAL-0123 4\0 \0\0\0\0 \0\0\0\0\0 \0\0\0\0\0\0  \0", 40,
	    "LONG-SERIAL-0123 4", 18 },
};

/* dbhash_text: trimmed, escaped, and never past its buffer. */
START_TEST(journal_text_of_card_bytes)
{
	char out[80], small[8];
	size_t i;

	for (i = 0; i < sizeof(cu_fields) / sizeof(cu_fields[0]); i++) {
		dbhash_text((const uint8_t *)cu_fields[i].in, cu_fields[i].len,
		    out, sizeof(out));
		ck_assert_msg(strcmp(out, cu_fields[i].journal) == 0,
		    "field %zu: want \"%s\", got \"%s\"", i,
		    cu_fields[i].journal, out);
		ck_assert_uint_eq(dbhash_trimmed((const uint8_t *)
		    cu_fields[i].in, cu_fields[i].len), cu_fields[i].kept);
	}
	/* Short of room: cut before an escape, never inside one. */
	memset(small, 'Z', sizeof(small));
	dbhash_text((const uint8_t *)"ab\x01\x02", 4, small, sizeof(small));
	ck_assert_str_eq(small, "ab\\x01");
	dbhash_text((const uint8_t *)"abc", 3, small, 1);
	ck_assert_str_eq(small, "");
}
END_TEST

/* The view audit_text trims the same bytes as the journal. */
START_TEST(sql_text_trims_as_the_journal)
{
	sqlite3 *db = cu_schema();
	sqlite3_stmt *st;
	size_t i;

	ck_assert_int_eq(sqlite3_exec(db, "DROP TRIGGER audit_append_only",
	    NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO audit (seq, utc,"
	    " station, job, reader, state, reason, model, serial, hash) VALUES"
	    " (?1, 'u', 's', 1, 'r', 'skipped', '', ?2, ?2, x'00')", -1, &st,
	    NULL), SQLITE_OK);
	for (i = 0; i < sizeof(cu_fields) / sizeof(cu_fields[0]); i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, (long long)i + 1);
		sqlite3_bind_blob(st, 2, cu_fields[i].in,
		    (int)cu_fields[i].len, SQLITE_STATIC);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	}
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT seq, model_text, "
	    "serial_text, typeof(serial_text) FROM audit_text ORDER BY seq",
	    -1, &st, NULL), SQLITE_OK);
	for (i = 0; sqlite3_step(st) == SQLITE_ROW; i++) {
		ck_assert_int_eq(sqlite3_column_int(st, 0), (int)i + 1);
		ck_assert_str_eq((const char *)sqlite3_column_text(st, 3),
		    "text");
		ck_assert_msg((size_t)sqlite3_column_bytes(st, 2) ==
		    cu_fields[i].kept && cu_same(sqlite3_column_blob(st, 2),
		    cu_fields[i].in, cu_fields[i].kept), "field %zu: "
		    "serial_text is %d bytes, want %zu", i,
		    sqlite3_column_bytes(st, 2), cu_fields[i].kept);
		ck_assert_int_eq(sqlite3_column_bytes(st, 1),
		    (int)cu_fields[i].kept);
	}
	ck_assert_uint_eq(i, sizeof(cu_fields) / sizeof(cu_fields[0]));
	sqlite3_finalize(st);
	/* No bytes, no text. */
	ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO audit (seq, utc, "
	    "station, job, reader, state, reason, hash) VALUES (1000, 'u', "
	    "'s', 1, 'r', 'failed', '', x'00')", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT typeof(model_text) || "
	    "typeof(serial_text) FROM audit_text WHERE seq = 1000", -1, &st,
	    NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "nullnull");
	sqlite3_finalize(st);
	sqlite3_close(db);
}
END_TEST

/*
 * A 16-byte field whose positions are padding (spaces, or NULs and
 * spaces mixed) or not (control bytes, ASCII, bytes >= 0x80, cut UTF-8;
 * among them 0x02 and 0x22, whose hex digits are those of the padding's,
 * and bytes whose hex ends in 0) as the bits of mask say, bit i for byte
 * i.
 */
enum { CU_SPACES, CU_MIXED };

static void
cu_pattern(uint8_t out[16], unsigned mask, int pad)
{
	static const uint8_t other[] = { 0x01, 0x02, 0x09, 0x10, 0x1f, '!',
	    '"', 'A', '\\', '0', 0x7f, 0x80, 0xa0, 0xc3, 0xf0, 0xff };
	uint32_t h = mask * 2654435761u;
	int i;

	for (i = 0; i < 16; i++)
		if (mask & (1u << i))
			out[i] = other[(mask + 5u * (unsigned)i) %
			    sizeof(other)];
		else if (pad == CU_MIXED)
			out[i] = (h >> (i + 8)) & 1 ? 0x00 : 0x20;
		else
			out[i] = 0x20;
}

#define CU_PATTERNS	(2 * 65536 + 3 * 6561)

/* Value n of sql_text_every_ending's list. */
static void
cu_value(uint8_t out[16], unsigned n)
{
	static const uint8_t half[3][8] = {
		{ 'S', 0x00, ' ', 'N', 0xff, 0xc3, ' ', '7' },
		{ 'S', 'N', ' ', '1', 0xff, 0xc3, ' ', '7' },
		{ 0x20, 0x00, 0x20, 0x20, 0x00, 0x00, 0x20, 0x00 },
	};
	static const uint8_t end[3] = { 0x00, 0x20, '"' };
	unsigned t, j;

	if (n < 2 * 65536) {
		cu_pattern(out, n % 65536, n < 65536 ? CU_SPACES : CU_MIXED);
		return;
	}
	n -= 2 * 65536;
	memcpy(out, half[n / 6561], 8);
	for (t = n % 6561, j = 8; j < 16; j++, t /= 3)
		out[j] = end[t % 3];
}

/*
 * The text of migration 6's audit_text against dbhash_trimmed, the C
 * rule, for every way a 16-byte field can end: each of the 2^16
 * patterns of padding and bytes over its 16 positions, with spaces
 * (rtrim's way) and with NULs and spaces mixed (interior ones too); each
 * of the 3^8 endings of NUL, space and a byte over its last 8 positions,
 * after 8 bytes that end in a byte (with a NUL in them, or none) or are
 * all padding; and NULL.  model
 * is the same bytes reversed.  Then serial_text = S, through the index,
 * finds as many rows as the C rule says, and the index holds what the
 * view says.
 */
START_TEST(sql_text_every_ending)
{
	sqlite3 *db = cu_schema();
	sqlite3_stmt *st;
	uint8_t (*v)[16], rev[16], *len;
	char want[4 * 16 + 1], got[4 * 16 + 1];
	const char *plan, *types;
	size_t k, kept, n;
	unsigned i, j, count, lookups = 0;

	ck_assert_ptr_nonnull(v = calloc(CU_PATTERNS, sizeof(*v)));
	ck_assert_ptr_nonnull(len = calloc(CU_PATTERNS, 1));
	/* The other indexes have no part here, and take time to write. */
	ck_assert_int_eq(sqlite3_exec(db, "DROP TRIGGER audit_append_only; "
	    "DROP INDEX audit_card; DROP INDEX audit_job; DROP INDEX "
	    "audit_utc; DROP INDEX audit_license; DROP INDEX audit_state; "
	    "DROP INDEX audit_batch; BEGIN", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO audit (seq, utc,"
	    " station, job, reader, state, reason, model, serial, hash) VALUES"
	    " (?1, 'u', 's', 1, 'r', 'skipped', '', ?2, ?3, x'00')", -1, &st,
	    NULL), SQLITE_OK);
	/* ck_assert writes to Check's pipe: in the loops, only on failure. */
	for (i = 0; i <= CU_PATTERNS; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, (long long)i + 1);
		if (i < CU_PATTERNS) {
			cu_value(v[i], i);
			len[i] = (uint8_t)dbhash_trimmed(v[i], 16);
			for (j = 0; j < 16; j++)
				rev[j] = v[i][15 - j];
			sqlite3_bind_blob(st, 2, rev, 16, SQLITE_TRANSIENT);
			sqlite3_bind_blob(st, 3, v[i], 16, SQLITE_STATIC);
		} else {
			sqlite3_bind_null(st, 2);
			sqlite3_bind_null(st, 3);
		}
		if (sqlite3_step(st) != SQLITE_DONE)
			ck_abort_msg("value %u: %s", i, sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT seq, model_text, "
	    "serial_text, typeof(model_text) || typeof(serial_text) FROM "
	    "audit_text ORDER BY seq", -1, &st, NULL), SQLITE_OK);
	for (i = 0; sqlite3_step(st) == SQLITE_ROW; i++) {
		types = (const char *)sqlite3_column_text(st, 3);
		if (sqlite3_column_int64(st, 0) != (long long)i + 1 ||
		    strcmp(types, i == CU_PATTERNS ? "nullnull" :
		    "texttext") != 0)
			ck_abort_msg("value %u: row %lld, types %s", i,
			    sqlite3_column_int64(st, 0), types);
		if (i == CU_PATTERNS)
			continue;
		kept = dbhash_trimmed(v[i], 16);
		n = (size_t)sqlite3_column_bytes(st, 2);
		dbhash_text(v[i], 16, want, sizeof(want));
		dbhash_text(sqlite3_column_blob(st, 2), n, got, sizeof(got));
		if (n != kept || !cu_same(sqlite3_column_blob(st, 2), v[i],
		    kept) || strcmp(got, want) != 0)
			ck_abort_msg("value %u: serial_text \"%s\" (%zu "
			    "bytes), the journal's \"%s\" (%zu)", i, got, n,
			    want, kept);
		for (j = 0; j < 16; j++)
			rev[j] = v[i][15 - j];
		kept = dbhash_trimmed(rev, 16);
		if ((size_t)sqlite3_column_bytes(st, 1) != kept ||
		    !cu_same(sqlite3_column_blob(st, 1), rev, kept))
			ck_abort_msg("value %u: model_text is %d bytes, want "
			    "%zu", i, sqlite3_column_bytes(st, 1), kept);
	}
	sqlite3_finalize(st);
	ck_assert_uint_eq(i, CU_PATTERNS + 1);
	/* Lookups, through the index, find what the C rule finds. */
	ck_assert_int_eq(sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN SELECT "
	    "count(*) FROM audit_text WHERE serial_text = ?1", -1, &st, NULL),
	    SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	plan = (const char *)sqlite3_column_text(st, 3);
	ck_assert_msg(strstr(plan, "INDEX audit_serial_text (<expr>=?)") !=
	    NULL, "%s", plan);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM "
	    "audit_text WHERE serial_text = ?1", -1, &st, NULL), SQLITE_OK);
	for (i = 0; i < CU_PATTERNS; i += 997, lookups++) {
		kept = len[i];
		for (k = 0, count = 0; k < CU_PATTERNS; k++)
			count += len[k] == kept && memcmp(v[k], v[i],
			    kept) == 0;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, (const char *)v[i], (int)kept,
		    SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_ROW ||
		    sqlite3_column_int64(st, 0) != count)
			ck_abort_msg("value %u: %lld rows through the index, "
			    "%u by the C rule", i, sqlite3_column_int64(st, 0),
			    count);
	}
	sqlite3_finalize(st);
	ck_assert_uint_gt(lookups, 100);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1,
	    &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(len);
	free(v);
}
END_TEST

/* ctl_esc: UTF-8 shown, the rest as \xNN, and ctl_unescape undoes it. */
START_TEST(terminal_text_of_card_bytes)
{
	static const struct {
		const char	*in;
		size_t		 len;
		const char	*want;
	} t[] = {
		{ "SN000123", 8, "SN000123" },
		{ "Q\"1,\xc3\xa9", 6, "Q\"1,\xc3\xa9" },	/* é kept */
		{ "a\\b", 3, "a\\\\b" },
		{ "\x1b[2J\a", 5, "\\x1b[2J\\x07" },
		{ "A\0B", 3, "A\\x00B" },
		{ "\r\n\x7f", 3, "\\x0d\\x0a\\x7f" },
		{ "\xc3", 1, "\\xc3" },			/* cut UTF-8 */
		{ "\xc2\x85", 2, "\\xc2\\x85" },	/* C1: NEL */
		{ "\xe2\x80\xa8", 3, "\\xe2\\x80\\xa8" }, /* U+2028 */
		{ "\xe2\x80\xae", 3, "\\xe2\\x80\\xae" }, /* RLO */
		{ "\xed\xa0\x80", 3, "\\xed\\xa0\\x80" }, /* a surrogate */
		{ "\xc0\xaf", 2, "\\xc0\\xaf" },	/* overlong / */
		{ "", 0, "" },
	};
	char back[64];
	size_t i, n;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *e = ctl_esc(t[i].in, t[i].len);

		ck_assert_msg(strcmp(e, t[i].want) == 0, "case %zu: want "
		    "\"%s\", got \"%s\"", i, t[i].want, e);
		n = ctl_unescape(e, back);
		ck_assert_msg(n == t[i].len && memcmp(back, t[i].in, n) == 0,
		    "case %zu does not come back", i);
	}
}
END_TEST

/* Every day of 2000..2099 goes to text and back, one day apart. */
START_TEST(dates_round_trip)
{
	long d, lo = date_to_days(2000, 1, 1), hi = date_to_days(2099, 12, 31);
	long back, prev = lo - 1;
	char s[DATE_LEN + 1];

	ck_assert_int_eq(date_to_days(1970, 1, 1), 0);
	ck_assert_int_eq(date_to_days(2000, 3, 1) - date_to_days(2000, 2, 28),
	    2);
	ck_assert_int_eq(date_to_days(2100, 3, 1) - date_to_days(2100, 2, 28),
	    1);
	ck_assert_int_eq(hi - lo + 1, 36525);
	for (d = lo; d <= hi; d++) {
		date_format(d, s);
		ck_assert_int_eq(date_parse(s, DATE_LEN, &back), 0);
		ck_assert_int_eq(back, d);
		ck_assert_int_eq(back, prev + 1);
		prev = back;
	}
	date_format(lo, s);
	ck_assert_str_eq(s, "20000101");
	date_format(date_to_days(1999, 12, 31), s);
	ck_assert_str_eq(s, "19991231");
}
END_TEST

START_TEST(dates_that_are_not_days)
{
	static const char *const bad[] = { "20230229", "21000229", "20260431",
	    "20261301", "20260001", "20260100", "20260132", "00000000",
	    "2026112", "202611240", "2026-11-", "2026112a", " 2026112",
	    "+2026112" };
	long d;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(date_parse(bad[i], strlen(bad[i]), &d) != 0,
		    "\"%s\" taken for a day", bad[i]);
	ck_assert_int_eq(date_parse("20240229", 8, &d), 0);
	ck_assert_int_eq(d, date_to_days(2024, 2, 29));
	ck_assert_int_eq(date_parse("20000229", 8, &d), 0);
	/* Only len bytes are read: a longer string is cut by the caller. */
	ck_assert_int_eq(date_parse("20261124XYZ", 8, &d), 0);
	ck_assert_int_eq(d, date_to_days(2026, 11, 24));
}
END_TEST

START_TEST(first_of_next_month)
{
	static const char *const t[][2] = {
		{ "20261124", "20261201" }, { "20261201", "20270101" },
		{ "20261231", "20270101" }, { "20240131", "20240201" },
		{ "20240229", "20240301" }, { "20990101", "20990201" },
		{ "20991215", "21000101" },
	};
	char s[DATE_LEN + 1];
	long d;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_int_eq(date_parse(t[i][0], 8, &d), 0);
		date_format(date_first_of_next_month(d), s);
		ck_assert_str_eq(s, t[i][1]);
	}
}
END_TEST

/* CARDLIC_TODAY stands the daemon on a day, only when it is one. */
START_TEST(today_can_be_set_for_tests)
{
	struct tm tm;
	time_t t0;
	long a, b, today;

	ck_assert_int_eq(date_tz_localtime("UTC", 0, &tm), 0);
	ck_assert_int_eq(tm.tm_year, 70);
	ck_assert_int_eq(tm.tm_yday, 0);
	setenv("CARDLIC_TODAY", "20240229", 1);
	ck_assert_int_eq(date_today("UTC"), date_to_days(2024, 2, 29));
	setenv("CARDLIC_TODAY", "20230229", 1);
	t0 = time(NULL);
	a = t0 / 86400;
	today = date_today("UTC");
	b = time(NULL) / 86400;
	/* Not a day: the clock's, whichever side of midnight it read. */
	ck_assert_msg(today == a || today == b, "today %ld, clock %ld..%ld",
	    today, a, b);
	unsetenv("CARDLIC_TODAY");
}
END_TEST

static char	cu_dir[64];

static void
cu_setup(void)
{
	snprintf(cu_dir, sizeof(cu_dir), "/tmp/check_unit.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(cu_dir));
}

static void
cu_teardown(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/unit.conf", cu_dir);
	unlink(path);
	rmdir(cu_dir);
}

/* conf_load on text; NULL and err set on a mistake. */
static struct conf *
cu_conf(const char *text, char *err, size_t len)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/unit.conf", cu_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	err[0] = '\0';
	return conf_load(path, CONF_CHECK_ONLY, err, len);
}

#define CU_BASE "[pkcs11]\nmodule = /x.so\npin = 1234\n"

/* The rules in their order, ATRs under their masks, readers by pattern. */
START_TEST(classify_by_atr_and_reader)
{
	static const uint8_t batch[] = { 0x3B, 0x88, 0x80, 0x01 };
	static const uint8_t ign1[] = { 0x3B, 0x8F, 0x80, 0x01, 0x77 };
	static const uint8_t ign2[] = { 0x3B, 0x8F, 0x81, 0x01, 0x12 };
	static const uint8_t other[] = { 0x3B, 0x9F, 0x80, 0x01, 0x77 };
	static const struct {
		const char	*reader;
		const uint8_t	*atr;
		size_t		 len;
		enum card_kind	 want;
	} t[] = {
		/* The first rule that matches wins: here the reader's. */
		{ "Twin Reader 01 00", batch, 4, KIND_TARGET },
		{ "Twin Reader 00 00", batch, 4, KIND_BATCH },
		/* An ATR matches at its exact length only. */
		{ "Twin Reader 00 00", ign1, 4, KIND_UNKNOWN },
		{ "Twin Reader 00 00", batch, 3, KIND_UNKNOWN },
		/* Under the mask: bit 0 of byte 2, the last byte are free. */
		{ "Twin Reader 00 00", ign1, 5, KIND_IGNORE },
		{ "Twin Reader 00 00", ign2, 5, KIND_IGNORE },
		{ "Twin Reader 00 00", other, 5, KIND_UNKNOWN },
		{ "My Batch Reader", other, 5, KIND_BATCH },
		{ "Twin Reader 00 00", NULL, 0, KIND_UNKNOWN },
	};
	struct conf *c;
	char err[512];
	size_t i;

	c = cu_conf(CU_BASE "[classify]\n"
	    "target-reader = Twin Reader 01*\n"
	    "batch-atr = 3b888001\n"
	    "ignore-atr = 3B8F8001FF/FFFFFEFF00\n"
	    "batch-reader = *Batch*\n", err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_int_eq(c->n_rules, 4);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		ck_assert_msg(classify_card(c, t[i].reader, t[i].atr,
		    t[i].len) == t[i].want, "case %zu: want kind %d", i,
		    t[i].want);
	conf_unref(c);
	/* No rule: every card is probed. */
	c = cu_conf(CU_BASE, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_int_eq(classify_card(c, "any", batch, sizeof(batch)),
	    KIND_UNKNOWN);
	conf_unref(c);
}
END_TEST

/* A rule that is not one: refused, saying where and why. */
START_TEST(classify_rules_refused)
{
	static const char *const t[][2] = {
		{ "batch-atr = 3B8\n", ":5: batch-atr: \"3B8\" is not an ATR "
		    "in hex (2 to 66 digits, optionally /MASK)" },
		{ "batch-atr = 3BXX\n", ":5: batch-atr: \"3BXX\" is not an "
		    "ATR" },
		{ "ignore-atr = 3B88/FF\n", ":5: ignore-atr: the mask must be "
		    "hex of the same length as the ATR" },
		{ "ignore-atr = 3B88/FFFFFF\n", ":5: ignore-atr: the mask "
		    "must be hex" },
		{ "target-atr = /FF\n", ":5: target-atr: \"/FF\" is not an "
		    "ATR" },
	};
	struct conf *c;
	char text[512], err[512];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(text, sizeof(text), CU_BASE "[classify]\n%s",
		    t[i][0]);
		c = cu_conf(text, err, sizeof(err));
		ck_assert_msg(c == NULL && strstr(err, t[i][1]) != NULL,
		    "%s: want \"%s\", got \"%s\"", t[i][0], t[i][1], err);
	}
}
END_TEST

/* [readers] include and exclude: patterns, exclude last. */
START_TEST(readers_included_and_excluded)
{
	struct conf *c;
	char err[512];

	c = cu_conf(CU_BASE "[readers]\ninclude = Gemalto*\ninclude = "
	    "ACS ACR38U*\nexclude = *Contactless*\n", err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert(classify_reader_wanted(c, "Gemalto PC Twin Reader 00 00"));
	ck_assert(classify_reader_wanted(c, "ACS ACR38U 01 00"));
	ck_assert(!classify_reader_wanted(c, "Gemalto Contactless 00 00"));
	ck_assert(!classify_reader_wanted(c, "Virtual PCD 00 00"));
	ck_assert(!classify_reader_wanted(c, "gemalto PC Twin Reader 00 00"));
	conf_unref(c);
	c = cu_conf(CU_BASE "[readers]\nexclude = Virtual*\n", err,
	    sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert(classify_reader_wanted(c, "Gemalto PC Twin Reader 00 00"));
	ck_assert(!classify_reader_wanted(c, "Virtual PCD 00 00"));
	conf_unref(c);
}
END_TEST

/* The PIN's turns (invariant 4), with real threads. */
struct pt_arg {
	unsigned long	 gen;
	volatile int	*done;		/* set by the first login's end */
	int		 saw_done;
	enum pinturn	 how;
};

static void *
pt_second(void *arg)
{
	struct pt_arg *a = arg;

	a->how = pinturn_begin(a->gen);
	a->saw_done = *a->done;
	pinturn_end(a->gen, a->how, 0, 0);
	return NULL;
}

START_TEST(pin_turns_until_accepted)
{
	volatile int done = 0;
	struct pt_arg a = { 101, &done, 0, PINTURN_FREE };
	pthread_t t;

	/* Untried: the first login goes alone; the second waits for it. */
	ck_assert_int_eq(pinturn_begin(101), PINTURN_ALONE);
	ck_assert_int_eq(pthread_create(&t, NULL, pt_second, &a), 0);
	usleep(100000);
	done = 1;
	pinturn_end(101, PINTURN_ALONE, 1, 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(a.saw_done, 1);
	/* Accepted: logins go side by side, none waits. */
	ck_assert_int_eq(a.how, PINTURN_FREE);
	ck_assert_int_eq(pinturn_begin(101), PINTURN_FREE);
	ck_assert_int_eq(pinturn_begin(101), PINTURN_FREE);
}
END_TEST

START_TEST(pin_refused_is_never_tried_again)
{
	volatile int done = 0;
	struct pt_arg a = { 202, &done, 0, PINTURN_ALONE };
	pthread_t t;

	ck_assert_int_eq(pinturn_begin(202), PINTURN_ALONE);
	ck_assert_int_eq(pthread_create(&t, NULL, pt_second, &a), 0);
	usleep(100000);
	done = 1;
	pinturn_end(202, PINTURN_ALONE, 0, 1);
	pthread_join(t, NULL);
	/* The card waiting its turn is not tried with the refused PIN. */
	ck_assert_int_eq(a.saw_done, 1);
	ck_assert_int_eq(a.how, PINTURN_REFUSED);
	ck_assert_int_eq(pinturn_begin(202), PINTURN_REFUSED);
	/* A new configuration (reload) is untried; the old one stays no. */
	ck_assert_int_eq(pinturn_begin(203), PINTURN_ALONE);
	pinturn_end(203, PINTURN_ALONE, 1, 0);
	ck_assert_int_eq(pinturn_begin(202), PINTURN_REFUSED);
	ck_assert_int_eq(pinturn_begin(203), PINTURN_FREE);
}
END_TEST

START_TEST(pin_refused_after_accepted)
{
	/* A card that refuses a PIN once known good: refused from then on. */
	ck_assert_int_eq(pinturn_begin(303), PINTURN_ALONE);
	pinturn_end(303, PINTURN_ALONE, 1, 0);
	ck_assert_int_eq(pinturn_begin(303), PINTURN_FREE);
	pinturn_end(303, PINTURN_FREE, 0, 1);
	ck_assert_int_eq(pinturn_begin(303), PINTURN_REFUSED);
	/* A login that failed otherwise (a pulled card) teaches nothing. */
	ck_assert_int_eq(pinturn_begin(404), PINTURN_ALONE);
	pinturn_end(404, PINTURN_ALONE, 0, 0);
	ck_assert_int_eq(pinturn_begin(404), PINTURN_ALONE);
	pinturn_end(404, PINTURN_ALONE, 0, 0);
}
END_TEST

/* A key made here, at test time: no key is ever kept in the repository. */
static struct sign_key *
cu_key(char *pem, size_t len)
{
	struct sign_key *k;
	char err[256];

	ck_assert_msg(sign_key_generate(pem, len, err, sizeof(err)) == 0,
	    "%s", err);
	ck_assert_ptr_nonnull(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	k = sign_key_from_pem(pem, strlen(pem), err, sizeof(err));
	ck_assert_msg(k != NULL, "%s", err);
	return k;
}

/* Sign, check; any flipped bit of signature, message or key fails. */
START_TEST(sign_round_trip_and_flipped_bits)
{
	uint8_t hash[32], sig[64], again[64], pub[32];
	char pem[1024];
	struct sign_key *k = cu_key(pem, sizeof(pem));
	size_t i;

	for (i = 0; i < sizeof(hash); i++)
		hash[i] = (uint8_t)(i * 7 + 1);
	sign_key_public(k, pub);
	ck_assert_int_eq(sign_bytes(k, SIGN_DOMAIN_ROW, hash, 32, sig), 0);
	ck_assert_int_eq(sign_check(pub, SIGN_DOMAIN_ROW, hash, 32, sig), 1);
	/* Ed25519 is deterministic: the same row, the same signature. */
	ck_assert_int_eq(sign_bytes(k, SIGN_DOMAIN_ROW, hash, 32, again), 0);
	ck_assert_mem_eq(sig, again, 64);
	for (i = 0; i < 64 * 8; i += 13) {
		sig[i / 8] ^= (uint8_t)(1 << (i % 8));
		ck_assert_msg(!sign_check(pub, SIGN_DOMAIN_ROW, hash, 32,
		    sig), "signature bit %zu flipped still checks", i);
		sig[i / 8] ^= (uint8_t)(1 << (i % 8));
	}
	for (i = 0; i < 32 * 8; i += 5) {
		hash[i / 8] ^= (uint8_t)(1 << (i % 8));
		ck_assert_msg(!sign_check(pub, SIGN_DOMAIN_ROW, hash, 32,
		    sig), "hash bit %zu flipped still checks", i);
		hash[i / 8] ^= (uint8_t)(1 << (i % 8));
	}
	pub[5] ^= 0x10;
	ck_assert(!sign_check(pub, SIGN_DOMAIN_ROW, hash, 32, sig));
	pub[5] ^= 0x10;
	ck_assert_int_eq(sign_check(pub, SIGN_DOMAIN_ROW, hash, 32, sig), 1);
	sign_key_free(k);
}
END_TEST

/* A signature for one purpose never passes for another. */
START_TEST(sign_wrong_domain_fails)
{
	uint8_t msg[32] = { 1, 2, 3 }, sig[64], pub[32], other[32];
	char pem[1024];
	struct sign_key *k = cu_key(pem, sizeof(pem));
	struct sign_key *k2 = cu_key(pem, sizeof(pem));

	sign_key_public(k, pub);
	sign_key_public(k2, other);
	ck_assert_mem_ne(pub, other, 32);
	ck_assert_int_eq(sign_bytes(k, SIGN_DOMAIN_ROW, msg, 32, sig), 0);
	ck_assert(!sign_check(pub, SIGN_DOMAIN_KEY, msg, 32, sig));
	ck_assert(!sign_check(pub, SIGN_DOMAIN_CHECKPOINT, msg, 32, sig));
	/* The NUL after the domain is signed: no shifting a byte across. */
	ck_assert(!sign_check(pub, "cardlicd-row-v", msg, 32, sig));
	ck_assert(!sign_check(other, SIGN_DOMAIN_ROW, msg, 32, sig));
	ck_assert_int_eq(sign_check(pub, SIGN_DOMAIN_ROW, msg, 32, sig), 1);
	sign_key_free(k);
	sign_key_free(k2);
}
END_TEST

/* Private PEM -> public key -> PEM file -> the same 32 bytes. */
START_TEST(sign_pem_round_trip)
{
	char pem[1024], pubpem[512], path[] = "/tmp/cu-pub-XXXXXX", err[256];
	uint8_t pub[32], back[32], msg[1] = { 0 }, sig[64];
	struct sign_key *k = cu_key(pem, sizeof(pem)), *bad;
	int fd;

	sign_key_public(k, pub);
	ck_assert_int_eq(sign_pub_pem(pub, pubpem, sizeof(pubpem)), 0);
	ck_assert_ptr_nonnull(strstr(pubpem, "-----BEGIN PUBLIC KEY-----"));
	ck_assert_int_eq(sign_pub_pem(pub, pubpem, 20), -1);
	ck_assert_int_eq(sign_pub_pem(pub, pubpem, sizeof(pubpem)), 0);
	ck_assert_int_ge(fd = mkstemp(path), 0);
	ck_assert_int_eq(write(fd, pubpem, strlen(pubpem)),
	    (ssize_t)strlen(pubpem));
	close(fd);
	memset(back, 0, sizeof(back));
	ck_assert_msg(sign_pub_read(path, back, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_mem_eq(pub, back, 32);
	/* A private key is no public key file, and names the file. */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, pem, strlen(pem)), (ssize_t)strlen(pem));
	close(fd);
	ck_assert_int_eq(sign_pub_read(path, back, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, path));
	unlink(path);
	ck_assert_int_eq(sign_pub_read(path, back, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "cannot open"));
	/* Garbage, a truncated key and a public key are no private key. */
	ck_assert_ptr_null(sign_key_from_pem("junk", 4, err, sizeof(err)));
	ck_assert_ptr_null(sign_key_from_pem(pem, 40, err, sizeof(err)));
	ck_assert_ptr_null(bad = sign_key_from_pem(pubpem, strlen(pubpem),
	    err, sizeof(err)));
	ck_assert_int_eq(sign_bytes(k, "", msg, 0, sig), 0);
	ck_assert_int_eq(sign_check(back, "", msg, 0, sig), 1);
	sign_key_free(k);
}
END_TEST

/*
 * OpenSSL as the oracle: for the same key and message, sign.c must give
 * the bytes that libcrypto gives, and read the keys that libcrypto and
 * the openssl command write.  Nothing of sign.c judges sign.c here.
 */

/* A key's PEM as OpenSSL writes it (openssl genpkey, pkey -pubout). */
static char *
cu_ossl_pem(EVP_PKEY *pk, int public)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *p, *out;
	long n;

	ck_assert_ptr_nonnull(bio);
	ck_assert_int_eq(public ? PEM_write_bio_PUBKEY(bio, pk) :
	    PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(bio, &p);
	ck_assert_int_gt(n, 0);
	ck_assert_ptr_nonnull(out = strndup(p, (size_t)n));
	BIO_free(bio);
	return out;
}

/* OpenSSL's Ed25519 over the domain, its NUL, then msg. */
static void
cu_ossl_sign(EVP_PKEY *pk, const char *domain, const uint8_t *msg,
    size_t len, uint8_t sig[64])
{
	size_t d = strlen(domain) + 1, slen = 64;
	uint8_t *m = malloc(d + len);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	ck_assert_ptr_nonnull(m);
	ck_assert_ptr_nonnull(md);
	memcpy(m, domain, d);
	if (len > 0)
		memcpy(m + d, msg, len);
	ck_assert_int_eq(EVP_DigestSignInit(md, NULL, NULL, NULL, pk), 1);
	ck_assert_int_eq(EVP_DigestSign(md, sig, &slen, m, d + len), 1);
	ck_assert_uint_eq(slen, 64);
	EVP_MD_CTX_free(md);
	free(m);
}

/* What a command prints on its stdout, NUL-terminated; *st its status. */
static char *
cu_run(int *st, const char *cmd)
{
	char *out = malloc(8192);
	size_t n = 0, r;
	FILE *f;

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(f = popen(cmd, "r"));
	while (n < 8191 && (r = fread(out + n, 1, 8191 - n, f)) > 0)
		n += r;
	out[n] = '\0';
	*st = pclose(f);
	return out;
}

/*
 * Several keys (two edge seeds, six random), every domain, messages
 * around the lengths where sign.c changes buffers: each signature is
 * OpenSSL's, each of OpenSSL's checks, and the public PEM is OpenSSL's.
 */
START_TEST(signatures_are_openssl_s)
{
	static const char *const domains[] = { SIGN_DOMAIN_ROW,
	    SIGN_DOMAIN_KEY, SIGN_DOMAIN_CHECKPOINT, "" };
	static const size_t lens[] = { 0, 1, 31, 32, 33, 95, 96, 238, 239,
	    240, 255, 256, 1000, 16384 };
	static uint8_t msg[16384];
	uint8_t seed[32], sig[64], osig[64], pub[32], opub[32], em[100];
	char *pem, *opem, ppem[512], err[256];
	struct sign_key *k;
	EVP_PKEY *pk;
	size_t i, d, n;
	int key;

	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)((i * 131 + 17) ^ (i >> 8));
	for (key = 0; key < 8; key++) {
		if (key < 2)
			memset(seed, key == 0 ? 0x00 : 0xff, sizeof(seed));
		else
			ck_assert_int_eq(RAND_bytes(seed, sizeof(seed)), 1);
		pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
		    seed, sizeof(seed));
		ck_assert_ptr_nonnull(pk);
		pem = cu_ossl_pem(pk, 0);
		k = sign_key_from_pem(pem, strlen(pem), err, sizeof(err));
		ck_assert_msg(k != NULL, "key %d, OpenSSL's PEM: %s", key, err);
		sign_key_public(k, pub);
		n = sizeof(opub);
		ck_assert_int_eq(EVP_PKEY_get_raw_public_key(pk, opub, &n), 1);
		ck_assert_mem_eq(pub, opub, 32);
		opem = cu_ossl_pem(pk, 1);
		ck_assert_int_eq(sign_pub_pem(pub, ppem, sizeof(ppem)), 0);
		ck_assert_str_eq(ppem, opem);
		for (d = 0; d < sizeof(domains) / sizeof(domains[0]); d++)
			for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
				ck_assert_int_eq(sign_bytes(k, domains[d], msg,
				    lens[i], sig), 0);
				cu_ossl_sign(pk, domains[d], msg, lens[i],
				    osig);
				ck_assert_msg(memcmp(sig, osig, 64) == 0,
				    "key %d, domain \"%s\", %zu bytes: not "
				    "OpenSSL's signature", key, domains[d],
				    lens[i]);
				ck_assert(sign_check(pub, domains[d], msg,
				    lens[i], osig));
			}
		/* A key rotation's endorsement: station, NUL, new key. */
		memcpy(em, "st-7", 5);
		memcpy(em + 5, msg, 32);
		ck_assert_int_eq(sign_endorse(k, "st-7", msg, sig), 0);
		cu_ossl_sign(pk, SIGN_DOMAIN_KEY, em, 37, osig);
		ck_assert_mem_eq(sig, osig, 64);
		ck_assert(sign_endorsed(pub, "st-7", msg, osig));
		ck_assert(!sign_endorsed(pub, "st-8", msg, osig));
		sign_key_free(k);
		EVP_PKEY_free(pk);
		free(pem);
		free(opem);
	}
}
END_TEST

/*
 * A known answer, from openssl pkeyutl -sign -rawin on 2026-12-07: a key
 * that is no secret (its seed is the bytes 0 to 31) signs a row's hash.
 * It holds whatever library signs, now and after any change.
 */
START_TEST(signature_known_answer)
{
	static const char pem[] = "-----BEGIN PRIVATE KEY-----\n"
	    "MC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n"
	    "-----END PRIVATE KEY-----\n";
	uint8_t hash[32], sig[64], pub[32];
	char hex[129], err[256];
	struct sign_key *k;
	int i;

	for (i = 0; i < 32; i++)
		hash[i] = (uint8_t)(i * 7 + 1);
	k = sign_key_from_pem(pem, sizeof(pem) - 1, err, sizeof(err));
	ck_assert_msg(k != NULL, "%s", err);
	sign_key_public(k, pub);
	dbhash_hex(pub, 32, 0, hex);
	ck_assert_str_eq(hex, "03a107bff3ce10be1d70dd18e74bc099"
	    "67e4d6309ba50d5f1ddc8664125531b8");
	ck_assert_int_eq(sign_bytes(k, SIGN_DOMAIN_ROW, hash, 32, sig), 0);
	dbhash_hex(sig, 64, 0, hex);
	ck_assert_str_eq(hex, "3a2e98a51b59dc0ba654913ba1b979f1"
	    "29cca15081e0592da9e617a81805f887"
	    "7d91b0ec69c9c413737599ca613da59d"
	    "5ec3d4919548fda58a6123539cd00a0c");
	ck_assert(sign_check(pub, SIGN_DOMAIN_ROW, hash, 32, sig));
	sign_key_free(k);
}
END_TEST

/*
 * Our keygen writes what openssl genpkey writes (openssl pkey rewrites
 * it to the same bytes), and openssl pkey -check finds the key valid;
 * a key made by the openssl command loads, with the same public key.
 */
START_TEST(keys_go_both_ways_with_openssl)
{
	char pem[1024], pem2[1024], pubpem[512], err[256], cmd[600];
	char path[] = "/tmp/cu-key-XXXXXX";
	uint8_t pub[32], opub[32];
	struct sign_key *k;
	EVP_PKEY *pk;
	BIO *bio;
	size_t n;
	char *out;
	int fd, st;

	ck_assert_msg(sign_key_generate(pem, sizeof(pem), err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_msg(sign_key_generate(pem2, sizeof(pem2), err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_str_ne(pem, pem2);
	/* PKCS#8 v1, Ed25519, the 32-byte seed: 48 bytes in one line. */
	ck_assert_uint_eq(strlen(pem), 119);
	ck_assert_int_eq(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n"
	    "MC4CAQAwBQYDK2VwBCIEI", 49), 0);
	ck_assert_ptr_nonnull(bio = BIO_new_mem_buf(pem, (int)strlen(pem)));
	ck_assert_ptr_nonnull(pk = PEM_read_bio_PrivateKey(bio, NULL, NULL,
	    NULL));
	BIO_free(bio);
	ck_assert_int_eq(EVP_PKEY_get_id(pk), EVP_PKEY_ED25519);
	n = sizeof(opub);
	ck_assert_int_eq(EVP_PKEY_get_raw_public_key(pk, opub, &n), 1);
	EVP_PKEY_free(pk);
	ck_assert_ptr_nonnull(k = sign_key_from_pem(pem, strlen(pem), err,
	    sizeof(err)));
	sign_key_public(k, pub);
	sign_key_free(k);
	ck_assert_mem_eq(pub, opub, 32);

	ck_assert_int_ge(fd = mkstemp(path), 0);
	ck_assert_int_eq(write(fd, pem, strlen(pem)), (ssize_t)strlen(pem));
	close(fd);
	snprintf(cmd, sizeof(cmd), "openssl pkey -in %s -check -noout 2>&1",
	    path);
	out = cu_run(&st, cmd);
	ck_assert_msg(st == 0 && strstr(out, "Key is valid") != NULL,
	    "openssl pkey -check: %s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "openssl pkey -in %s", path);
	out = cu_run(&st, cmd);
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, pem);
	free(out);
	snprintf(cmd, sizeof(cmd), "openssl pkey -in %s -pubout", path);
	out = cu_run(&st, cmd);
	ck_assert_int_eq(sign_pub_pem(pub, pubpem, sizeof(pubpem)), 0);
	ck_assert_str_eq(out, pubpem);
	free(out);

	/* The other way: openssl genpkey's key, and pkey -pubout's file. */
	snprintf(cmd, sizeof(cmd), "openssl genpkey -algorithm ed25519 "
	    "-out %s.o && openssl pkey -in %s.o -pubout -out %s.pub && "
	    "cat %s.o", path, path, path, path);
	out = cu_run(&st, cmd);
	ck_assert_int_eq(st, 0);
	k = sign_key_from_pem(out, strlen(out), err, sizeof(err));
	ck_assert_msg(k != NULL, "openssl genpkey's key: %s", err);
	sign_key_public(k, pub);
	sign_key_free(k);
	free(out);
	snprintf(cmd, sizeof(cmd), "%s.pub", path);
	ck_assert_msg(sign_pub_read(cmd, opub, err, sizeof(err)) == 0,
	    "%s", err);
	ck_assert_mem_eq(pub, opub, 32);
	unlink(cmd);
	snprintf(cmd, sizeof(cmd), "%s.o", path);
	unlink(cmd);
	unlink(path);
}
END_TEST

/*
 * A key file as text: before, the block (label, DER in base64 lines of
 * width, each line ended by eol), after.  The base64 is OpenSSL's.
 */
static char *
cu_pem(const char *before, const char *label, const uint8_t *der,
    size_t n, int width, const char *eol, const char *after)
{
	unsigned char b64[4200];
	char *out;
	size_t len, i, k;
	int b;

	ck_assert_uint_le(n, 3000);
	b = EVP_EncodeBlock(b64, der, (int)n);
	len = strlen(before) + strlen(after) + 2 * strlen(label) + 32 +
	    (size_t)b + ((size_t)b / (size_t)width + 3) * strlen(eol);
	ck_assert_ptr_nonnull(out = malloc(len + 1));
	k = (size_t)snprintf(out, len, "%s-----BEGIN %s-----%s", before,
	    label, eol);
	for (i = 0; i < (size_t)b; i += (size_t)width)
		k += (size_t)snprintf(out + k, len - k, "%.*s%s", width,
		    (const char *)b64 + i, eol);
	snprintf(out + k, len - k, "-----END %s-----%s%s", label, eol, after);
	return out;
}

/* A private key's PKCS#8, as OpenSSL writes it (DER); pk kept. */
static size_t
cu_p8(EVP_PKEY *pk, uint8_t *der, size_t max)
{
	PKCS8_PRIV_KEY_INFO *p8;
	unsigned char *p = NULL;
	int n;

	ck_assert_ptr_nonnull(pk);
	ck_assert_ptr_nonnull(p8 = EVP_PKEY2PKCS8(pk));
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, &p);
	PKCS8_PRIV_KEY_INFO_free(p8);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_le((size_t)n, max);
	memcpy(der, p, (size_t)n);
	OPENSSL_free(p);
	return (size_t)n;
}

/* The same, pk freed. */
static size_t
cu_p8_of(EVP_PKEY *pk, uint8_t *der, size_t max)
{
	size_t n = cu_p8(pk, der, max);

	EVP_PKEY_free(pk);
	return n;
}

/* t (malloc'ed) with s inserted before t[at]. */
static char *
cu_insert(char *t, size_t at, const char *s)
{
	size_t n = strlen(t), k = strlen(s);

	ck_assert_uint_le(at, n);
	ck_assert_ptr_nonnull(t = realloc(t, n + k + 1));
	memmove(t + at + k, t + at, n - at + 1);
	memcpy(t + at, s, k);
	return t;
}

/* text, as a private key: NULL and the reason, which must hold why. */
static void
cu_refused(const char *name, char *text, size_t len, const char *why)
{
	struct sign_key *k;
	char err[256];

	err[0] = '\0';
	k = sign_key_from_pem(text, len, err, sizeof(err));
	ck_assert_msg(k == NULL, "%s: loaded", name);
	ck_assert_msg(strstr(err, why) != NULL, "%s: \"%s\" does not say "
	    "\"%s\"", name, err, why);
	free(text);
}

/* text, as a private key: loaded, with the public key pub. */
static void
cu_loads(const char *name, char *text, const uint8_t pub[32])
{
	struct sign_key *k;
	uint8_t got[32];
	char err[256];

	k = sign_key_from_pem(text, strlen(text), err, sizeof(err));
	ck_assert_msg(k != NULL, "%s: %s", name, err);
	sign_key_public(k, got);
	ck_assert_mem_eq(got, pub, 32);
	sign_key_free(k);
	free(text);
}

/*
 * Private key files: what OpenSSL wrote, formatted as an editor may
 * leave it, loads; anything else is refused and says what is wrong.
 * No passphrase is asked for: an encrypted key is refused at once.
 */
START_TEST(private_key_files_refused_with_their_reason)
{
	static uint8_t der[3000], pd[64], d2[128];
	uint8_t seed[57], pub[32];
	char *t, *pem;
	size_t n, pn;
	EVP_PKEY *pk;
	BIO *bio;
	long bl;

	ck_assert_int_eq(RAND_bytes(seed, sizeof(seed)), 1);
	pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	ck_assert_ptr_nonnull(pk);
	n = cu_p8(pk, der, sizeof(der));
	ck_assert_uint_eq(n, 48);
	pn = sizeof(pub);
	ck_assert_int_eq(EVP_PKEY_get_raw_public_key(pk, pub, &pn), 1);
	memcpy(pd, "\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00", 12);
	memcpy(pd + 12, pub, 32);

	cu_loads("as written", cu_pem("", "PRIVATE KEY", der, n, 64, "\n",
	    ""), pub);
	cu_loads("CRLF", cu_pem("", "PRIVATE KEY", der, n, 64, "\r\n", ""),
	    pub);
	cu_loads("blank lines, trailing blanks", cu_pem("\n\n",
	    "PRIVATE KEY", der, n, 64, "  \n", "\n \t\n"), pub);
	cu_loads("lines of 16", cu_pem("", "PRIVATE KEY", der, n, 16, "\n",
	    ""), pub);
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	t[strlen(t) - 1] = '\0';
	cu_loads("no final newline", t, pub);

	cu_refused("empty", strdup(""), 0, "not a PEM private key: the file "
	    "is empty");
	cu_refused("blank", strdup("\n \n"), 3, "the file is empty");
	cu_refused("junk", strdup("junk\n"), 5, "not a PEM private key: no "
	    "-----BEGIN PRIVATE KEY----- line");
	t = malloc(n);
	memcpy(t, der, n);
	cu_refused("DER", t, n, "no -----BEGIN PRIVATE KEY----- line");
	t = cu_pem("made by Ann\n", "PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("text before", t, strlen(t), "text before the -----BEGIN "
	    "PRIVATE KEY----- line (line 1): a key file holds its key and "
	    "nothing else");
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "made by Ann\n");
	cu_refused("text after", t, strlen(t), "text after the -----END "
	    "PRIVATE KEY----- line (line 4)");
	pem = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	t = cu_pem(pem, "PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("two keys", t, strlen(t), "text after the -----END PRIVATE "
	    "KEY----- line (line 4)");
	t = cu_pem(pem, "PUBLIC KEY", pd, 44, 64, "\n", "");
	cu_refused("key and public key", t, strlen(t), "text after the "
	    "-----END PRIVATE KEY----- line (line 4)");
	t = malloc(strlen(pem) + 1);
	memcpy(t, pem, strlen(pem) + 1);
	cu_refused("NUL after", t, strlen(pem) + 1, "text after the -----END "
	    "PRIVATE KEY----- line (line 4)");
	free(pem);
	t = cu_pem("", "PUBLIC KEY", pd, 44, 64, "\n", "");
	cu_refused("public key", t, strlen(t), "a public key (-----BEGIN "
	    "PUBLIC KEY-----), not a private key");

	ck_assert_ptr_nonnull(bio = BIO_new(BIO_s_mem()));
	ck_assert_int_eq(PEM_write_bio_PKCS8PrivateKey(bio, pk,
	    EVP_aes_256_cbc(), "secret", 6, NULL, NULL), 1);
	bl = BIO_get_mem_data(bio, &t);
	cu_refused("PKCS#8 encrypted", strndup(t, (size_t)bl), (size_t)bl,
	    "an encrypted private key (-----BEGIN ENCRYPTED PRIVATE "
	    "KEY-----): refused, no passphrase is ever asked for");
	BIO_free(bio);
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	t = cu_insert(t, 28, "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
	    "00112233445566778899AABBCCDDEEFF\n\n");
	cu_refused("Proc-Type", t, strlen(t), "an encrypted private key "
	    "(Proc-Type, line 2): refused");
	t = cu_insert(cu_pem("", "PRIVATE KEY", der, n, 64, "\n", ""), 28,
	    "Comment: hi\n\n");
	cu_refused("header", t, strlen(t), "not a PEM private key alone: a "
	    "header on line 2");
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	*strstr(t, "-----END") = '\0';
	cu_refused("no END", t, strlen(t), "no -----END PRIVATE KEY----- "
	    "line");
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	memcpy(strstr(t, "-----END") + 9, "PUBLIC", 6);
	cu_refused("END of another", t, strlen(t), "line 3 does not end the "
	    "-----BEGIN PRIVATE KEY----- of line 1");
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	t[28 + 4] = '*';
	cu_refused("bad character", t, strlen(t), "bad base64 on line 2, "
	    "column 5");
	t = cu_insert(cu_pem("", "PRIVATE KEY", der, n, 64, "\n", ""), 32,
	    " ");
	cu_refused("blank in base64", t, strlen(t), "bad base64 on line 2, "
	    "column 5");
	t = cu_insert(cu_pem("", "PRIVATE KEY", der, n, 32, "\n", ""), 28,
	    "\n");
	cu_refused("blank line inside", t, strlen(t), "a blank line inside it "
	    "(line 2)");
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	t = cu_insert(t, (size_t)(strstr(t, "\n-----END") - t), "==");
	cu_refused("bad padding", t, strlen(t), "bad base64 (its length");
	t = cu_pem("", "OPENSSH PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("OpenSSH", t, strlen(t), "an OpenSSH key (-----BEGIN "
	    "OPENSSH PRIVATE KEY-----), not PKCS#8");
	t = cu_pem("", "RSA PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("old RSA", t, strlen(t), "not an Ed25519 key: -----BEGIN "
	    "RSA PRIVATE KEY-----");
	t = cu_pem("", "CERTIFICATE", der, n, 64, "\n", "");
	cu_refused("certificate", t, strlen(t), "not a PEM private key: "
	    "-----BEGIN CERTIFICATE----- (line 1), not -----BEGIN PRIVATE "
	    "KEY-----");
	t = malloc(70000);
	memset(t, '\n', 70000);
	cu_refused("huge", t, 70000, "more than 65536 bytes");

	/* Other algorithms, named. */
	n = cu_p8_of(EVP_RSA_gen(1024), der, sizeof(der));
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("RSA", t, strlen(t), "not an Ed25519 key (an RSA key)");
	n = cu_p8_of(EVP_EC_gen("P-256"), der, sizeof(der));
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("EC", t, strlen(t), "not an Ed25519 key (an EC key)");
	n = cu_p8_of(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, seed,
	    32), der, sizeof(der));
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("X25519", t, strlen(t), "not an Ed25519 key (an X25519 "
	    "key)");
	n = cu_p8_of(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED448, NULL, seed,
	    57), der, sizeof(der));
	t = cu_pem("", "PRIVATE KEY", der, n, 64, "\n", "");
	cu_refused("Ed448", t, strlen(t), "not an Ed25519 key (an Ed448 key)");

	/* The DER around a seed, changed one way at a time. */
	n = cu_p8(pk, der, sizeof(der));
	memcpy(d2, der, n);
	memcpy(d2 + 9, "\x2a\x03\x04", 3);	/* 1.3.101.112 -> 1.2.3.4 */
	t = cu_pem("", "PRIVATE KEY", d2, n, 64, "\n", "");
	cu_refused("unknown algorithm", t, strlen(t), "not an Ed25519 key "
	    "(algorithm 1.2.3.4)");
	memcpy(d2, der, n);
	d2[1] = 0x2d;
	d2[13] = 0x21;
	d2[15] = 0x1f;
	t = cu_pem("", "PRIVATE KEY", d2, n - 1, 64, "\n", "");
	cu_refused("31-byte seed", t, strlen(t), "an Ed25519 private key of "
	    "31 bytes, not 32");
	memcpy(d2, der, n);
	d2[n] = 0x05;
	d2[n + 1] = 0x00;
	t = cu_pem("", "PRIVATE KEY", d2, n + 2, 64, "\n", "");
	cu_refused("trailing DER", t, strlen(t), "trailing data after the key "
	    "(2 bytes)");
	memcpy(d2, "\x30\x30\x02\x01\x00\x30\x07\x06\x03\x2b\x65\x70\x05\x00",
	    14);
	memcpy(d2 + 14, der + 12, 36);
	t = cu_pem("", "PRIVATE KEY", d2, 50, 64, "\n", "");
	cu_refused("parameters", t, strlen(t), "an Ed25519 private key with "
	    "algorithm parameters, which RFC 8410 forbids");
	memcpy(d2, der, n);
	d2[1] = 0x51;
	d2[4] = 0x01;
	memcpy(d2 + n, "\x81\x21\x00", 3);
	memcpy(d2 + n + 3, pub, 32);
	t = cu_pem("", "PRIVATE KEY", d2, n + 35, 64, "\n", "");
	cu_refused("version 1", t, strlen(t), "a PKCS#8 version field of 1: "
	    "cardlicd reads 0");
	memcpy(d2, der, n);
	d2[1] = 0x30;
	memcpy(d2 + n, "\xa0\x00", 2);
	t = cu_pem("", "PRIVATE KEY", d2, n + 2, 64, "\n", "");
	cu_refused("attributes", t, strlen(t), "attributes or a public key "
	    "after the private key");
	memcpy(d2, "\x30\x81\x2e", 3);
	memcpy(d2 + 3, der + 2, n - 2);
	t = cu_pem("", "PRIVATE KEY", d2, n + 1, 64, "\n", "");
	cu_refused("BER length", t, strlen(t), "not one DER SEQUENCE");
	EVP_PKEY_free(pk);
}
END_TEST

/* What sign_pub_read says of path once text is written to it. */
static void
cu_pub_refused(const char *path, const char *name, char *text,
    const char *why)
{
	uint8_t pub[32];
	char err[512];
	FILE *f;

	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	free(text);
	err[0] = '\0';
	ck_assert_msg(sign_pub_read(path, pub, err, sizeof(err)) == -1,
	    "%s: read", name);
	ck_assert_msg(strncmp(err, path, strlen(path)) == 0 &&
	    strstr(err, why) != NULL, "%s: \"%s\" does not say \"%s\"", name,
	    err, why);
}

/* Public key files (verify --key): the same rules, their own words. */
START_TEST(public_key_files_refused_with_their_reason)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
	    "qrstuvwxyz0123456789+/";
	char path[] = "/tmp/cu-pub-XXXXXX", err[256], *t, *c;
	uint8_t seed[32], pd[64], der[3000], pub[32];
	unsigned char *p;
	EVP_PKEY *pk, *rsa;
	int fd, n;

	ck_assert_int_eq(RAND_bytes(seed, sizeof(seed)), 1);
	pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	ck_assert_ptr_nonnull(pk);
	p = pd;
	ck_assert_int_eq(i2d_PUBKEY(pk, &p), 44);
	ck_assert_int_ge(fd = mkstemp(path), 0);
	close(fd);

	t = cu_pem("", "PUBLIC KEY", pd, 44, 64, "\r\n", "\n");
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, t, strlen(t)), (ssize_t)strlen(t));
	close(fd);
	free(t);
	ck_assert_msg(sign_pub_read(path, pub, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_mem_eq(pub, pd + 12, 32);

	n = (int)cu_p8(pk, der, sizeof(der));
	cu_pub_refused(path, "private key", cu_pem("", "PRIVATE KEY", der,
	    (size_t)n, 64, "\n", ""), "a private key (-----BEGIN PRIVATE "
	    "KEY-----), not a public key");
	cu_pub_refused(path, "text after", cu_pem("", "PUBLIC KEY", pd, 44,
	    64, "\n", "station 7\n"), "text after the -----END PUBLIC "
	    "KEY----- line (line 4)");
	cu_pub_refused(path, "text before", cu_pem("station 7\n",
	    "PUBLIC KEY", pd, 44, 64, "\n", ""), "text before the -----BEGIN "
	    "PUBLIC KEY----- line (line 1)");
	memcpy(der, pd, 44);
	der[1] = 0x29;
	der[10] = 0x20;
	cu_pub_refused(path, "31 bytes", cu_pem("", "PUBLIC KEY", der, 43, 64,
	    "\n", ""), "an Ed25519 public key of 31 bytes, not 32");
	memcpy(der, pd, 44);
	der[11] = 0x01;
	cu_pub_refused(path, "unused bits", cu_pem("", "PUBLIC KEY", der, 44,
	    64, "\n", ""), "not one BIT STRING of whole bytes");
	memcpy(der, pd, 44);
	memset(der + 12, 0, 32);
	cu_pub_refused(path, "a point of small order", cu_pem("",
	    "PUBLIC KEY", der, 44, 64, "\n", ""), "not a valid Ed25519 "
	    "public key");
	memcpy(der, "\x30\x2c\x30\x07\x06\x03\x2b\x65\x70\x05\x00", 11);
	memcpy(der + 11, pd + 9, 35);
	cu_pub_refused(path, "parameters", cu_pem("", "PUBLIC KEY", der, 46,
	    64, "\n", ""), "an Ed25519 public key with algorithm parameters");
	/* The last character's two spare bits set: OpenSSL took it. */
	t = cu_pem("", "PUBLIC KEY", pd, 44, 64, "\n", "");
	c = strchr(t, '=') - 1;
	*c = b64[(strchr(b64, *c) - b64) | 1];
	cu_pub_refused(path, "spare bits", t, "bad base64");
	p = der;
	rsa = EVP_RSA_gen(1024);
	ck_assert_ptr_nonnull(rsa);
	n = i2d_PUBKEY(rsa, &p);
	EVP_PKEY_free(rsa);
	cu_pub_refused(path, "RSA", cu_pem("", "PUBLIC KEY", der, (size_t)n,
	    64, "\n", ""), "not an Ed25519 public key (an RSA key)");
	unlink(path);
	ck_assert_int_eq(sign_pub_read(path, pub, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "cannot open: No such file"));
	EVP_PKEY_free(pk);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("unit");
	TCase *row = tcase_create("row"), *text = tcase_create("text");
	TCase *date = tcase_create("date"), *conf = tcase_create("classify");
	TCase *pin = tcase_create("pin turns");
	TCase *sign = tcase_create("sign");
	TCase *ending = tcase_create("every ending");
	SRunner *sr;
	int failed;

	tcase_add_test(row, auditrow_matches_the_schema);
	tcase_add_test(row, export_places_are_a_permutation);
	tcase_add_test(row, hash_of_known_rows);
	tcase_add_test(row, sha256_known_answers);
	suite_add_tcase(s, row);
	tcase_add_test(text, journal_text_of_card_bytes);
	tcase_add_test(text, sql_text_trims_as_the_journal);
	tcase_add_test(text, terminal_text_of_card_bytes);
	suite_add_tcase(s, text);
	/* 150,000 rows: time to spare on a busy machine. */
	tcase_set_timeout(ending, 60);
	tcase_add_test(ending, sql_text_every_ending);
	suite_add_tcase(s, ending);
	tcase_add_test(date, dates_round_trip);
	tcase_add_test(date, dates_that_are_not_days);
	tcase_add_test(date, first_of_next_month);
	tcase_add_test(date, today_can_be_set_for_tests);
	suite_add_tcase(s, date);
	tcase_add_checked_fixture(conf, cu_setup, cu_teardown);
	tcase_add_test(conf, classify_by_atr_and_reader);
	tcase_add_test(conf, classify_rules_refused);
	tcase_add_test(conf, readers_included_and_excluded);
	suite_add_tcase(s, conf);
	tcase_add_test(pin, pin_turns_until_accepted);
	tcase_add_test(pin, pin_refused_is_never_tried_again);
	tcase_add_test(pin, pin_refused_after_accepted);
	suite_add_tcase(s, pin);
	tcase_add_test(sign, sign_round_trip_and_flipped_bits);
	tcase_add_test(sign, sign_wrong_domain_fails);
	tcase_add_test(sign, sign_pem_round_trip);
	tcase_add_test(sign, signatures_are_openssl_s);
	tcase_add_test(sign, signature_known_answer);
	tcase_add_test(sign, keys_go_both_ways_with_openssl);
	tcase_add_test(sign, private_key_files_refused_with_their_reason);
	tcase_add_test(sign, public_key_files_refused_with_their_reason);
	suite_add_tcase(s, sign);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
