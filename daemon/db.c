/*
 * The audit store: SQLite in WAL mode with synchronous=FULL, so that a row
 * is on disk when db_append returns, and auditors can read with plain
 * sqlite3 while we write.  Rows are appended under BEGIN IMMEDIATE; each
 * carries a SHA-256 over its columns and the previous row's hash.
 *
 * Job threads call in here; one lock serializes the writers, and nothing
 * here runs on the event loop's thread after start-up.
 */
#include <sys/file.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cardlicd.h"
#include "dbhash.h"
#include "sign.h"

extern const char *const	sql_migrations[];
extern const int		sql_migrations_count;

static sqlite3		*db;
static pthread_mutex_t	 db_lock = PTHREAD_MUTEX_INITIALIZER;
static char		 db_station[64];
static long		 db_job;
static uint8_t		 db_head[32];
/* The key read at start-up; a reload never changes it.  NULL: none. */
static struct sign_key	*db_key;

static int
db_exec(const char *sql, char *err, size_t len)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, len, "%s", msg != NULL ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

/*
 * The statements of a card's way, prepared once and kept: parsing the
 * same SQL a dozen times per card cost more than running it (issue 12).
 * By the address of the SQL text, which is a constant.  Under db_lock.
 */
static struct {
	const char	*sql;
	sqlite3_stmt	*st;
} db_stmts[16];

static sqlite3_stmt *
db_prep(const char *sql)
{
	size_t i, n = sizeof(db_stmts) / sizeof(db_stmts[0]);
	sqlite3_stmt *st = NULL;

	for (i = 0; i < n && db_stmts[i].sql != NULL; i++)
		if (db_stmts[i].sql == sql)
			return db_stmts[i].st;
	if (db == NULL || sqlite3_prepare_v3(db, sql, -1,
	    SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
		return NULL;
	if (i < n) {
		db_stmts[i].sql = sql;
		db_stmts[i].st = st;
	}
	return st;
}

/* Ready for the next use; one prepared past the table's end is freed. */
static void
db_unprep(sqlite3_stmt *st)
{
	size_t i;

	for (i = 0; i < sizeof(db_stmts) / sizeof(db_stmts[0]); i++)
		if (db_stmts[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return;
		}
	sqlite3_finalize(st);
}

static void
db_unprep_all(void)
{
	size_t i;

	for (i = 0; i < sizeof(db_stmts) / sizeof(db_stmts[0]); i++)
		sqlite3_finalize(db_stmts[i].st);
	memset(db_stmts, 0, sizeof(db_stmts));
}

/* A kept statement that returns no row: BEGIN, COMMIT, PRAGMA. */
static int
db_run(const char *sql, char *err, size_t len)
{
	sqlite3_stmt *st = db_prep(sql);
	int rc;

	if (st == NULL)
		return db_exec(sql, err, len);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		snprintf(err, len, "%s", sqlite3_errmsg(db));
	db_unprep(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static long
db_int(const char *sql)
{
	sqlite3_stmt *st;
	long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/*
 * The highest job number of any station, so that job numbers never come
 * back, whatever station id the file has had.  max(job) alone reads all
 * of audit_job (station, job): 5,300 pages, 0.13 s warm and 0.6 s cold at
 * 1,000,000 rows, on every start.  Here each station costs two descents
 * of that index: the next station name, then its highest job.
 */
static const char db_sql_max_job[] = "WITH RECURSIVE s(station) AS "
    "(SELECT min(station) FROM audit UNION ALL SELECT (SELECT station "
    "FROM audit WHERE station > s.station ORDER BY station LIMIT 1) FROM s "
    "WHERE s.station IS NOT NULL) SELECT coalesce(max((SELECT max(job) "
    "FROM audit WHERE station = s.station)), 0) FROM s";

/* Bring the schema up to date, one migration per transaction. */
static int
db_migrate(const char *path, char *err, size_t len)
{
	char msg[512], sql[64];
	long have = db_int("PRAGMA user_version");
	int i;

	if (have > sql_migrations_count) {
		snprintf(err, len, "%s: schema version %ld is newer than this "
		    "cardlicd knows (%d)", path, have, sql_migrations_count);
		return -1;
	}
	for (i = (int)have; i < sql_migrations_count; i++) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", i + 1);
		if (db_exec("BEGIN IMMEDIATE", msg, sizeof(msg)) != 0 ||
		    db_exec(sql_migrations[i], msg, sizeof(msg)) != 0 ||
		    db_exec(sql, msg, sizeof(msg)) != 0 ||
		    db_exec("COMMIT", msg, sizeof(msg)) != 0) {
			db_exec("ROLLBACK", sql, sizeof(sql));
			snprintf(err, len, "%s: migration %d: %s", path, i + 1,
			    msg);
			return -1;
		}
	}
	return 0;
}

/*
 * One daemon per database: two would number their jobs alike, share spill
 * files, and each spend a credit on the same card.  The lock is held for
 * the daemon's life (the descriptor is never closed); the file says who.
 */
static int
db_lock_file(const char *path, char *err, size_t len)
{
	char lock[4200], pid[64], who[64];
	ssize_t n;
	int fd;

	snprintf(lock, sizeof(lock), "%s.lock", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		snprintf(err, len, "%s: %s", lock, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		n = pread(fd, who, sizeof(who) - 1, 0);
		who[n > 0 ? n : 0] = '\0';
		who[strcspn(who, "\n")] = '\0';
		snprintf(err, len, "%s: another cardlicd (pid %s) uses this "
		    "database; one daemon per database", path, who[0] != '\0' ?
		    who : "unknown");
		close(fd);
		return -1;
	}
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 ||
	    pwrite(fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid))
		log_warnx("%s: cannot write our pid: %s", lock,
		    strerror(errno));
	return 0;
}

int
db_open(const char *path, const char *station, char *err, size_t len)
{
	char msg[512];
	sqlite3_stmt *st;

	if (db_lock_file(path, err, len) != 0)
		return -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, len, "%s: %s", path, db != NULL ?
		    sqlite3_errmsg(db) : "cannot open");
		db_close();
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_extended_result_codes(db, 1);
	/*
	 * Keep -wal and -shm when the daemon stops: an auditor who may only
	 * read the directory (cardlicd-audit) cannot create them, and SQLite
	 * needs them to read a WAL database.
	 */
	{
		int on = 1;

		sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL,
		    &on);
	}
	if (db_exec("PRAGMA journal_mode = WAL", msg, sizeof(msg)) != 0 ||
	    db_exec("PRAGMA synchronous = FULL", msg, sizeof(msg)) != 0 ||
	    db_exec("PRAGMA foreign_keys = ON", msg, sizeof(msg)) != 0 ||
	    /*
	     * A bounded page cache (256 KiB, 64 pages) keeps RSS flat and
	     * small on a long run (make soak, make bench-mem): rows are
	     * appended, and each card's rows touch a few dozen pages (the
	     * right edges of the table and of its append-ordered indexes,
	     * a path down the two ordered by serial); the rest is read
	     * back from the OS's cache.  1 MiB made no difference to the
	     * per-card time at 1,000,000 rows (bench/README).
	     */
	    db_exec("PRAGMA cache_size = -256", msg, sizeof(msg)) != 0) {
		snprintf(err, len, "%s: %s", path, msg);
		db_close();
		return -1;
	}
	if (db_migrate(path, err, len) != 0) {
		db_close();
		return -1;
	}
	snprintf(db_station, sizeof(db_station), "%s", station);
	spill_init(path);
	db_job = db_int(db_sql_max_job);
	memset(db_head, 0, sizeof(db_head));
	if (sqlite3_prepare_v2(db, "SELECT hash FROM audit ORDER BY seq DESC "
	    "LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_bytes(st, 0) == 32)
			memcpy(db_head, sqlite3_column_blob(st, 0), 32);
		sqlite3_finalize(st);
	}
	return 0;
}

void
db_close(void)
{
	db_unprep_all();
	if (db != NULL)
		sqlite3_close_v2(db);
	db = NULL;
	sign_key_free(db_key);
	db_key = NULL;
}

const struct sign_key *
db_signing_key(void)
{
	return db_key;
}

/*
 * The newest key row of this station: its public key (from "ed25519
 * HEX ..."), and its seq.  0 when there is none, 1 when found, -1 when a
 * key row cannot be read.
 */
static int
db_last_key(uint8_t pub[32], long *seq)
{
	sqlite3_stmt *st;
	const char *r;
	int rc = 0;

	if (sqlite3_prepare_v2(db, "SELECT seq, reason FROM audit WHERE "
	    "station = ?1 AND state = 'key' ORDER BY seq DESC LIMIT 1", -1,
	    &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*seq = (long)sqlite3_column_int64(st, 0);
		r = (const char *)sqlite3_column_text(st, 1);
		/* The daemon writes lower case: anything else is not ours. */
		rc = r != NULL && strncmp(r, "ed25519 ", 8) == 0 &&
		    strspn(r + 8, "0123456789abcdef") >= 64 &&
		    dbhash_unhex(r + 8, 64, pub, 32) == 0 ? 1 : -1;
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * Start signing with key (db takes it), and publish it: a `key` row when
 * it is not the station's newest key already.  reason says "ed25519
 * PUBHEX"; for a rotation, "endorsed-by PREVHEX ENDORSEMENT" when the
 * previous key endorsed this one (cardlicctl keygen --rotate), checked
 * here first.  The key row is the first row the new key signs.  Returns
 * the key row's seq, 0 when none was needed, -1 with err.  With no key,
 * warn: rows are written unsigned.
 */
long
db_sign_start(struct sign_key *key, const char *endorsement, char *err,
    size_t len)
{
	struct db_row r;
	uint8_t pub[32], prev[32], e[64];
	char reason[400], hex[65], phex[65];
	long seq = 0;
	int have, good = 0;

	pthread_mutex_lock(&db_lock);
	have = db_last_key(prev, &seq);
	pthread_mutex_unlock(&db_lock);
	if (key == NULL) {
		if (have != 0)
			log_warnx("no signing key ([audit] key-file or "
			    "key-credential), though this station's rows are "
			    "signed since row %ld: rows are now written "
			    "unsigned, and cardlicctl verify reports them as "
			    "BROKEN", seq);
		else
			log_warnx("no signing key ([audit] key-file or "
			    "key-credential): audit rows are written unsigned,"
			    " and nothing proves that this daemon wrote them; "
			    "make one with cardlicctl keygen (see "
			    "cardlicd.conf(5))");
		return 0;
	}
	if (have < 0) {
		snprintf(err, len, "the newest key row of station %s cannot "
		    "be read", db_station);
		sign_key_free(key);
		return -1;
	}
	pthread_mutex_lock(&db_lock);
	db_key = key;
	pthread_mutex_unlock(&db_lock);
	sign_key_public(key, pub);
	dbhash_hex(pub, 32, 0, hex);
	if (have == 1 && memcmp(pub, prev, 32) == 0)
		return 0;
	snprintf(reason, sizeof(reason), "ed25519 %s", hex);
	if (have == 1) {
		dbhash_hex(prev, 32, 0, phex);
		good = endorsement != NULL && dbhash_unhex(endorsement,
		    strlen(endorsement), e, 64) == 0 &&
		    sign_endorsed(prev, db_station, pub, e);
		if (good)
			snprintf(reason, sizeof(reason), "ed25519 %s "
			    "endorsed-by %s %s", hex, phex, endorsement);
		else
			log_warnx("the signing key changed (row %ld had %s, "
			    "now %s) with no endorsement by the previous key%s"
			    ": cardlicctl verify accepts it only when given "
			    "the new key with --key", seq, phex, hex,
			    endorsement != NULL && endorsement[0] != '\0' ?
			    " that checks (the .endorsement file is not the "
			    "previous key's for this station)" : "");
	}
	memset(&r, 0, sizeof(r));
	r.reader = "";
	r.job = 0;
	r.state = "key";
	r.reason = reason;
	r.license_seq = 0;
	r.batch_count = -1;
	if ((seq = db_append(&r, err, len)) < 0)
		return -1;
	log_info("signing key %s published in row %ld", hex, seq);
	return seq;
}

long
db_next_job(void)
{
	long j;

	pthread_mutex_lock(&db_lock);
	j = ++db_job;
	pthread_mutex_unlock(&db_lock);
	return j;
}

void
db_chain_head(char out[65])
{
	pthread_mutex_lock(&db_lock);
	dbhash_hex(db_head, 32, 0, out);
	pthread_mutex_unlock(&db_lock);
}

/*
 * The chain's newest row, for a checkpoint: its seq (0 when there is
 * none) and its hash.  Under db's lock, so that no append is half done;
 * the lock may be held through an append's fsync: not for the loop.
 */
int
db_head_row(long *seq, uint8_t hash[32])
{
	sqlite3_stmt *st;
	int rc = -1;

	*seq = 0;
	memset(hash, 0, 32);
	pthread_mutex_lock(&db_lock);
	if (db != NULL && sqlite3_prepare_v2(db, "SELECT seq, hash FROM audit "
	    "ORDER BY seq DESC LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*seq = (long)sqlite3_column_int64(st, 0);
			if (sqlite3_column_bytes(st, 1) == 32)
				memcpy(hash, sqlite3_column_blob(st, 1), 32);
		}
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&db_lock);
	return rc;
}

static void
db_text(struct dbhash_val *v, const char *s)
{
	v->type = s != NULL ? SQLITE_TEXT : SQLITE_NULL;
	v->p = (const uint8_t *)s;
	v->len = s != NULL ? strlen(s) : 0;
}

static void
db_blob(struct dbhash_val *v, const uint8_t *p, size_t len)
{
	v->type = p != NULL ? SQLITE_BLOB : SQLITE_NULL;
	v->p = p;
	v->len = p != NULL ? len : 0;
}

static void
db_integer(struct dbhash_val *v, long n, int null)
{
	v->type = null ? SQLITE_NULL : SQLITE_INTEGER;
	v->i = n;
}

static const char db_sql_begin[] = "BEGIN IMMEDIATE";
static const char db_sql_commit[] = "COMMIT";
static const char db_sql_last[] = "SELECT seq, hash FROM audit ORDER BY seq "
    "DESC LIMIT 1";
static const char db_sql_insert[] = AUDITROW_INSERT;

/* One row, inside the write transaction, chained to the last one. */
static int
db_insert(const struct db_row *r, long *seq, char *msg, size_t mlen)
{
	struct dbhash_val v[AUDITROW_HASHED];
	sqlite3_stmt *st = NULL;
	char utc[64];
	uint8_t hash[32], sig[64];
	int i, bad, rc, signed_ok = 0;

	/*
	 * The previous row is read inside the write transaction, so that a
	 * row appended by anyone else (cardlicctl merge into a copy, a second
	 * daemon by mistake) cannot fork the chain.
	 */
	*seq = 1;
	memset(db_head, 0, sizeof(db_head));
	if ((st = db_prep(db_sql_last)) != NULL) {
		if (sqlite3_step(st) == SQLITE_ROW) {
			*seq = (long)sqlite3_column_int64(st, 0) + 1;
			if (sqlite3_column_bytes(st, 1) == 32)
				memcpy(db_head, sqlite3_column_blob(st, 1),
				    32);
		}
		db_unprep(st);
		st = NULL;
	}
	date_utc_now(utc);
	/* By name: the columns' order is auditrow.h's alone. */
	memset(v, 0, sizeof(v));
	db_integer(&v[AUDITROW_seq], *seq, 0);
	db_text(&v[AUDITROW_utc], utc);
	db_text(&v[AUDITROW_station], db_station);
	db_integer(&v[AUDITROW_job], r->job, 0);
	db_text(&v[AUDITROW_reader], r->reader);
	db_text(&v[AUDITROW_state], r->state);
	db_text(&v[AUDITROW_reason], r->reason != NULL ? r->reason : "");
	db_blob(&v[AUDITROW_model], r->model, FIELD_LEN);
	db_blob(&v[AUDITROW_serial], r->serial, FIELD_LEN);
	db_text(&v[AUDITROW_start_date], r->start_date);
	db_text(&v[AUDITROW_end_date], r->end_date);
	db_integer(&v[AUDITROW_license_seq], r->license_seq,
	    r->license_seq <= 0);
	db_blob(&v[AUDITROW_license], r->license, LICENSE_LEN);
	db_text(&v[AUDITROW_batch_reader], r->batch_reader);
	db_text(&v[AUDITROW_batch_atr], r->batch_atr);
	db_integer(&v[AUDITROW_batch_count], r->batch_count,
	    r->batch_count < 0);
	db_text(&v[AUDITROW_sw], r->sw);
	db_text(&v[AUDITROW_ckr], r->ckr);
	db_blob(&v[AUDITROW_status], r->status, STATUS_LEN);
	db_text(&v[AUDITROW_timings], r->timings);
	/* A column added to auditrow.h but not above, or mistyped. */
	for (bad = 0; bad < AUDITROW_HASHED; bad++)
		if (v[bad].type != SQLITE_NULL &&
		    v[bad].type != auditrow_cols[bad].sqlite_type)
			break;
	if (bad < AUDITROW_HASHED) {
		snprintf(msg, mlen, "daemon/db.c: column %s has no "
		    "value of type %s", auditrow_cols[bad].name,
		    auditrow_cols[bad].type);
		rc = SQLITE_MISUSE;
	} else {
		dbhash_row(db_head, v, hash);
		/* The signature binds the hash, which binds the chain. */
		if (db_key != NULL && sign_bytes(db_key, SIGN_DOMAIN_ROW, hash,
		    32, sig) != 0) {
			snprintf(msg, mlen, "cannot sign the row");
			bad = 0;
			rc = SQLITE_MISUSE;
		} else {
			signed_ok = db_key != NULL;
			st = db_prep(db_sql_insert);
			rc = st != NULL ? SQLITE_OK : SQLITE_ERROR;
		}
	}
	for (i = 0; rc == SQLITE_OK && i < AUDITROW_HASHED; i++) {
		switch (v[i].type) {
		case SQLITE_NULL:
			rc = sqlite3_bind_null(st, i + 1);
			break;
		case SQLITE_INTEGER:
			rc = sqlite3_bind_int64(st, i + 1, v[i].i);
			break;
		case SQLITE_TEXT:
			rc = sqlite3_bind_text(st, i + 1, (const char *)v[i].p,
			    (int)v[i].len, SQLITE_STATIC);
			break;
		default:
			rc = sqlite3_bind_blob(st, i + 1, v[i].p,
			    (int)v[i].len, SQLITE_STATIC);
		}
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(st, AUDITROW_hash + 1, hash, 32,
		    SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = signed_ok ? sqlite3_bind_blob(st, AUDITROW_sig + 1, sig,
		    64, SQLITE_STATIC) :
		    sqlite3_bind_null(st, AUDITROW_sig + 1);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
	if (rc != SQLITE_OK && bad == AUDITROW_HASHED)
		snprintf(msg, mlen, "%s", sqlite3_errmsg(db));
	if (st != NULL)
		db_unprep(st);
	if (rc == SQLITE_OK)
		memcpy(db_head, hash, 32);
	return rc;
}

/*
 * Append rows, in one transaction, and make them durable.  Returns the
 * last one's seq, or -1 with err set: the caller must then act as if
 * nothing was recorded.
 */
long
db_append_rows(const struct db_row *rows, int n, char *err, size_t len)
{
	char msg[512];
	uint8_t head[32];
	long seq = -1;
	int i, rc = SQLITE_OK;

	pthread_mutex_lock(&db_lock);
	if (db == NULL) {
		snprintf(err, len, "the audit database is not open");
		goto out;
	}
	if (db_run(db_sql_begin, msg, sizeof(msg)) != 0) {
		snprintf(err, len, "audit database: %s", msg);
		goto out;
	}
	memcpy(head, db_head, sizeof(head));
	for (i = 0; i < n && rc == SQLITE_OK; i++)
		rc = db_insert(&rows[i], &seq, msg, sizeof(msg));
	if (rc == SQLITE_OK)
		rc = db_run(db_sql_commit, msg, sizeof(msg)) == 0 ? SQLITE_OK :
		    SQLITE_ERROR;
	if (rc != SQLITE_OK) {
		char ignore[64];

		db_exec("ROLLBACK", ignore, sizeof(ignore));
		memcpy(db_head, head, sizeof(head));
		snprintf(err, len, "audit database: %s", msg);
		seq = -1;
	}
out:
	pthread_mutex_unlock(&db_lock);
	return seq;
}

long
db_append(const struct db_row *r, char *err, size_t len)
{
	return db_append_rows(r, 1, err, len);
}

/*
 * The card's newest license that was generated, never verified nor
 * rejected, and still valid today: invariant 2 says it is reused.
 */
int
db_find_pending(const uint8_t *model, const uint8_t *serial, long today,
    int verified_too, struct db_pending *out)
{
	static const char pending[] = "SELECT g.seq, g.license, g.start_date,"
	    " g.end_date FROM audit g WHERE g.state = 'generated'"
	    " AND g.serial = ?1 AND g.model = ?2 AND NOT EXISTS (SELECT 1"
	    " FROM audit v WHERE v.license_seq = g.seq AND v.state IN"
	    " ('verified', 'rejected')) ORDER BY g.seq DESC";
	/* Also one the card had, and lost (erased, or a card reset). */
	static const char any[] = "SELECT g.seq, g.license, g.start_date,"
	    " g.end_date FROM audit g WHERE g.state = 'generated'"
	    " AND g.serial = ?1 AND g.model = ?2 AND NOT EXISTS (SELECT 1"
	    " FROM audit v WHERE v.license_seq = g.seq AND v.state ="
	    " 'rejected') ORDER BY g.seq DESC";
	const char *sql = verified_too ? any : pending;
	sqlite3_stmt *st;
	const unsigned char *end;
	long e;
	int rc, found = 0;

	pthread_mutex_lock(&db_lock);
	if ((st = db_prep(sql)) == NULL) {
		pthread_mutex_unlock(&db_lock);
		return -1;
	}
	sqlite3_bind_blob(st, 1, serial, FIELD_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, model, FIELD_LEN, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		end = sqlite3_column_text(st, 3);
		if (end == NULL || sqlite3_column_bytes(st, 1) != LICENSE_LEN)
			continue;
		if (strcmp((const char *)end, "00000000") != 0 &&
		    (date_parse((const char *)end, 8, &e) != 0 || e < today))
			continue;
		out->license_seq = (long)sqlite3_column_int64(st, 0);
		memcpy(out->license, sqlite3_column_blob(st, 1), LICENSE_LEN);
		snprintf(out->start_date, sizeof(out->start_date), "%s",
		    (const char *)sqlite3_column_text(st, 2));
		snprintf(out->end_date, sizeof(out->end_date), "%s", end);
		found = 1;
		break;
	}
	db_unprep(st);
	pthread_mutex_unlock(&db_lock);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

/* One number from a query of a card (?1 serial, ?2 model); -1: error. */
static long
db_card_query(const char *sql, const uint8_t *model, const uint8_t *serial)
{
	sqlite3_stmt *st;
	long v = -1;

	pthread_mutex_lock(&db_lock);
	if ((st = db_prep(sql)) != NULL) {
		sqlite3_bind_blob(st, 1, serial, FIELD_LEN, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, model, FIELD_LEN, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			v = (long)sqlite3_column_int64(st, 0);
		db_unprep(st);
	}
	pthread_mutex_unlock(&db_lock);
	return v;
}

/* The seq of the card's last rejected license, 0 if none, -1 on error. */
long
db_find_rejected(const uint8_t *model, const uint8_t *serial)
{
	return db_card_query("SELECT coalesce(max(seq), 0) FROM audit WHERE"
	    " state = 'rejected' AND serial = ?1 AND model = ?2", model,
	    serial);
}

/*
 * Licenses generated on the batch card (reader, ATR) in the rows up to
 * seq (a checkpoint's count, which cardlicctl counts again): the count on
 * the last such `generated` row, found through audit_batch in rowid
 * order, so the cost does not grow with the table (a count(*) there took
 * 28 ms per card at 247,000 licenses).  The count is only for rows
 * without one.  -1 when the database cannot say.
 */
long
db_batch_count_upto(const char *reader, const char *atr, long seq)
{
	sqlite3_stmt *st;
	long v = -1;

	static const char sql[] = "SELECT coalesce((SELECT "
	    "batch_count FROM audit WHERE state = 'generated' AND batch_reader "
	    "= ?1 AND batch_atr = ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT 1), "
	    "(SELECT count(*) FROM audit WHERE state = 'generated' AND "
	    "batch_reader = ?1 AND batch_atr = ?2 AND seq <= ?3))";

	pthread_mutex_lock(&db_lock);
	if ((st = db_prep(sql)) != NULL) {
		sqlite3_bind_text(st, 1, reader, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, atr, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, seq);
		if (sqlite3_step(st) == SQLITE_ROW)
			v = (long)sqlite3_column_int64(st, 0);
		db_unprep(st);
	}
	pthread_mutex_unlock(&db_lock);
	return v;
}

/* Licenses generated so far on the batch card (reader, ATR). */
long
db_batch_count(const char *reader, const char *atr)
{
	return db_batch_count_upto(reader, atr, LONG_MAX);
}

/* The card's in-doubt row that no admin has resolved: seq, 0, or -1. */
long
db_find_doubt(const uint8_t *model, const uint8_t *serial)
{
	return db_card_query("SELECT coalesce(max(d.seq), 0) FROM audit d "
	    "WHERE d.state = 'in-doubt' AND d.serial = ?1 AND d.model = ?2 "
	    "AND NOT EXISTS (SELECT 1 FROM audit r WHERE r.state = "
	    "'resolved' AND r.license_seq = d.seq)", model, serial);
}

static int
db_recover_spill(long job, const struct spill_license *l)
{
	struct db_row r;
	char err[512], reason[300];

	/* Already committed before the crash: only the file was left. */
	pthread_mutex_lock(&db_lock);
	{
		sqlite3_stmt *st;
		int found = 0;

		if (sqlite3_prepare_v2(db, "SELECT 1 FROM audit WHERE station ="
		    " ?1 AND job = ?2 AND state = 'generated'", -1, &st,
		    NULL) == SQLITE_OK) {
			sqlite3_bind_text(st, 1, db_station, -1,
			    SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, job);
			found = sqlite3_step(st) == SQLITE_ROW;
			sqlite3_finalize(st);
		}
		pthread_mutex_unlock(&db_lock);
		if (found)
			return 0;
	}
	memset(&r, 0, sizeof(r));
	snprintf(reason, sizeof(reason), "generated by the batch card in %s; "
	    "recorded after a restart from the spill file", l->batch_reader);
	r.reader = l->reader;
	r.job = job;
	r.state = "generated";
	r.reason = reason;
	r.model = l->model;
	r.serial = l->serial;
	r.start_date = l->start;
	r.end_date = l->end;
	r.license = l->license;
	r.batch_reader = l->batch_reader;
	r.batch_atr = l->batch_atr;
	r.batch_count = db_batch_count(l->batch_reader, l->batch_atr) + 1;
	r.sw = l->sw;
	if (db_append(&r, err, sizeof(err)) < 0) {
		log_alert("job %ld: cannot record the license of the spill "
		    "file: %s", job, err);
		return -1;
	}
	return 0;
}

/* What a follow-up row (in doubt, resolved) copies of the row it follows. */
struct db_card {
	long		job;
	char		reader[READER_MAX];
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	char		start[DATE_LEN + 1];
	char		batch_reader[READER_MAX];
	char		batch_atr[2 * ATR_MAX + 1];
};

static void
db_text_col(sqlite3_stmt *st, int i, char *out, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, i);

	snprintf(out, len, "%s", t != NULL ? (const char *)t : "");
}

/* Columns 0..6: job, reader, model, serial, start_date, batch reader, ATR. */
static void
db_card_read(sqlite3_stmt *st, struct db_card *c)
{
	memset(c, 0, sizeof(*c));
	memset(c->model, ' ', FIELD_LEN);
	memset(c->serial, ' ', FIELD_LEN);
	c->job = (long)sqlite3_column_int64(st, 0);
	db_text_col(st, 1, c->reader, sizeof(c->reader));
	if (sqlite3_column_bytes(st, 2) == FIELD_LEN)
		memcpy(c->model, sqlite3_column_blob(st, 2), FIELD_LEN);
	if (sqlite3_column_bytes(st, 3) == FIELD_LEN)
		memcpy(c->serial, sqlite3_column_blob(st, 3), FIELD_LEN);
	db_text_col(st, 4, c->start, sizeof(c->start));
	db_text_col(st, 5, c->batch_reader, sizeof(c->batch_reader));
	db_text_col(st, 6, c->batch_atr, sizeof(c->batch_atr));
}

static void
db_card_row(const struct db_card *c, struct db_row *r, const char *state,
    const char *reason)
{
	memset(r, 0, sizeof(*r));
	r->reader = c->reader;
	r->job = c->job;
	r->state = state;
	r->reason = reason;
	r->model = c->model;
	r->serial = c->serial;
	r->start_date = c->start[0] != '\0' ? c->start : NULL;
	r->batch_reader = c->batch_reader[0] != '\0' ? c->batch_reader : NULL;
	r->batch_atr = c->batch_atr[0] != '\0' ? c->batch_atr : NULL;
	r->batch_count = -1;
}

/*
 * The oldest `requested` row that the daemon outlived with no outcome:
 * 1 with c and its seq filled, 0 when there is none, -1 on error.
 */
static int
db_next_unanswered(struct db_card *c, long *seq, char *err, size_t len)
{
	static const char sql[] = "SELECT r.job, r.reader, r.model, r.serial,"
	    " r.start_date, r.batch_reader, r.batch_atr, r.seq FROM audit r"
	    " WHERE r.state = 'requested' AND r.station = ?1 AND NOT EXISTS"
	    " (SELECT 1 FROM audit x WHERE x.station = r.station AND"
	    " x.job = r.job AND x.seq > r.seq) ORDER BY r.seq LIMIT 1";
	sqlite3_stmt *st;
	int rc, found = 0;

	pthread_mutex_lock(&db_lock);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, len, "audit database: %s", sqlite3_errmsg(db));
		pthread_mutex_unlock(&db_lock);
		return -1;
	}
	sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		db_card_read(st, c);
		*seq = (long)sqlite3_column_int64(st, 7);
		found = 1;
	} else if (rc != SQLITE_DONE)
		snprintf(err, len, "audit database: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&db_lock);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

/*
 * At start-up, before any card: licenses left in spill files become their
 * `generated` rows, and every `requested` row that the daemon outlived
 * with no outcome becomes an in-doubt record.  -1 when the database
 * refuses: the daemon must not start, as it could not record anything.
 */
int
db_recover(char *err, size_t len)
{
	struct db_card c;
	struct db_row r;
	char reason[300], e[512];
	long rseq;
	int n = 0, rc, left;

	if ((left = spill_recover(db_recover_spill)) != 0) {
		snprintf(err, len, "%d license(s) left in spill files next to "
		    "the database could not be recorded; they stay there",
		    left < 0 ? 0 : left);
		return -1;
	}
	while ((rc = db_next_unanswered(&c, &rseq, err, len)) == 1) {
		snprintf(reason, sizeof(reason), "the daemon stopped after "
		    "asking for a license (row %ld) and before its outcome: a "
		    "credit may have been spent; decide with cardlicctl "
		    "resolve", rseq);
		db_card_row(&c, &r, "in-doubt", reason);
		if (db_append(&r, e, sizeof(e)) < 0) {
			snprintf(err, len, "cannot record a credit in doubt: "
			    "%s", e);
			return -1;
		}
		log_alert("%s: job %ld: a credit may have been spent before "
		    "the daemon stopped; recorded as in doubt", c.reader,
		    c.job);
		n++;
	}
	return rc < 0 ? -1 : n;
}

/*
 * An admin's decision on an in-doubt row, as a row of its own.  Returns
 * the new row's seq, or -1 with err (not an unresolved in-doubt row).
 */
long
db_resolve(long seq, int spent, const char *why, char *err, size_t len)
{
	static const char sql[] = "SELECT d.job, d.reader, d.model, d.serial,"
	    " d.start_date, d.batch_reader, d.batch_atr, EXISTS (SELECT 1"
	    " FROM audit r WHERE r.state = 'resolved' AND r.license_seq ="
	    " d.seq) FROM audit d WHERE d.seq = ?1 AND d.state = 'in-doubt'";
	struct db_card c;
	struct db_row r;
	sqlite3_stmt *st;
	char reason[600];
	int found = 0, done = 0;

	pthread_mutex_lock(&db_lock);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, seq);
		if (sqlite3_step(st) == SQLITE_ROW) {
			db_card_read(st, &c);
			done = sqlite3_column_int(st, 7);
			found = 1;
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&db_lock);
	if (!found) {
		snprintf(err, len, "row %ld is not a credit in doubt", seq);
		return -1;
	}
	if (done) {
		snprintf(err, len, "row %ld was already resolved", seq);
		return -1;
	}
	snprintf(reason, sizeof(reason), "%s: %s", spent ? "spent" :
	    "not spent", why);
	db_card_row(&c, &r, "resolved", reason);
	r.start_date = NULL;
	r.license_seq = seq;
	return db_append(&r, err, len);
}

/*
 * A batch card's counter of emitted licenses, as an admin read it with the
 * vendor's tool, as a `counted` row: the batch card's reader (also the
 * row's reader), its ATR and the count, with the admin's words in reason.
 * A license being made at this moment (a `requested` row of this station
 * with no outcome yet) may or may not be in the count that was read, so
 * the count is refused until it is done.  Returns the new row's seq, or
 * -1 with err.
 */
long
db_count(const char *reader, const char *atr, long n, const char *why,
    char *err, size_t len)
{
	static const char busy[] = "SELECT r.job, r.seq FROM audit r WHERE"
	    " r.state = 'requested' AND r.station = ?1 AND NOT EXISTS"
	    " (SELECT 1 FROM audit x WHERE x.station = r.station AND"
	    " x.job = r.job AND x.seq > r.seq) ORDER BY r.seq LIMIT 1";
	struct db_row r;
	sqlite3_stmt *st;
	long job = 0, seq = 0;
	int rc = SQLITE_ERROR;

	pthread_mutex_lock(&db_lock);
	if (db != NULL && sqlite3_prepare_v2(db, busy, -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
		if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			job = (long)sqlite3_column_int64(st, 0);
			seq = (long)sqlite3_column_int64(st, 1);
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&db_lock);
	if (rc == SQLITE_ROW) {
		snprintf(err, len, "a license is being made right now (job %ld,"
		    " row %ld): the count read may or may not include it; type "
		    "the count again once that card is done", job, seq);
		return -1;
	}
	if (rc != SQLITE_DONE) {
		snprintf(err, len, "audit database: cannot read it");
		return -1;
	}
	memset(&r, 0, sizeof(r));
	r.reader = reader;
	r.job = 0;	/* no card insertion */
	r.state = "counted";
	r.reason = why;
	r.batch_reader = reader;
	r.batch_atr = atr;
	r.batch_count = n;
	return db_append(&r, err, len);
}

/*
 * The station's totals as the audit rows tell them, so that STATUS= and
 * cardlicctl status do not start again from 0 with the daemon: cards
 * verified, skipped, failed (or rejected), credits spent (licenses and
 * credits in doubt), and credits in doubt that nobody has decided on.
 */
int
db_totals(long *issued, long *skipped, long *failed, long *credits,
    long *doubts)
{
	sqlite3_stmt *st;
	int rc = -1;

	pthread_mutex_lock(&db_lock);
	if (sqlite3_prepare_v2(db, "SELECT sum(state = 'verified'),"
	    " sum(state = 'skipped'), sum(state IN ('failed', 'rejected')),"
	    " sum(state IN ('generated', 'in-doubt')), sum(state = 'in-doubt'"
	    " AND NOT EXISTS (SELECT 1 FROM audit r WHERE r.state ="
	    " 'resolved' AND r.license_seq = audit.seq)) FROM audit WHERE"
	    " station = ?1", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			*issued = (long)sqlite3_column_int64(st, 0);
			*skipped = (long)sqlite3_column_int64(st, 1);
			*failed = (long)sqlite3_column_int64(st, 2);
			*credits = (long)sqlite3_column_int64(st, 3);
			*doubts = (long)sqlite3_column_int64(st, 4);
			rc = 0;
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&db_lock);
	return rc;
}
