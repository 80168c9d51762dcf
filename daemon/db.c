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
#include <stdarg.h>
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
static char		 db_path[4096];
static long		 db_job;
/*
 * Invariant 11: the row this daemon wrote last (or found and checked at
 * start-up), which the next one must follow: its seq and its hash.
 */
static long		 db_last;
static uint8_t		 db_head[32];
/*
 * Why no row may be appended any more, or "": set once the file turns
 * out to hold a row that this daemon did not write where its own last
 * row should be, or an insert added no row (a trigger of someone else's).
 * The daemon then signs nothing more; a restart checks the file again.
 */
static char		 db_refuse[600];
/* The note of the last row, outside the database (db_note_put). */
static int		 db_note_fd = -1;
static char		 db_note_path[4200];

static void	db_note_put(void);
/* The key read at start-up; a reload never changes it.  NULL: none. */
static struct sign_key	*db_key;
/* Its key row: every row from there on is signed with it. */
static long		 db_key_seq;

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

/*
 * Issue 18, case 7: a database is one station's.  Its rows, its chain,
 * its recovery and its checkpoints all name the station; an id changed
 * under them split the chain in two for verify and reconcile, and hid
 * the requests of the old id from recovery.  So the id cannot change
 * once the file has rows: column i of st (the last row's station) must
 * be it, byte for byte.  0, or -1 with err.
 */
static int
db_station_is(sqlite3_stmt *st, int i, const char *station, char *err,
    size_t len)
{
	const unsigned char *was = sqlite3_column_text(st, i);
	size_t n = (size_t)sqlite3_column_bytes(st, i);
	char shown[300];

	if (sqlite3_column_type(st, i) == SQLITE_TEXT &&
	    n == strlen(station) && memcmp(was, station, n) == 0)
		return 0;
	if (was == NULL || sqlite3_column_type(st, i) != SQLITE_TEXT)
		snprintf(shown, sizeof(shown), "a row with no station");
	else
		dbhash_text(was, n, shown, sizeof(shown));
	snprintf(err, len, "%s holds the rows of station %s, but [station] id "
	    "is %s: a station's id cannot change in its database (its chain, "
	    "recovery and checkpoints name it); set id = %s again, or give "
	    "station %s a database of its own", db_path, shown, station,
	    shown, station);
	return -1;
}

/*
 * For cardlicd -n: the station whose rows the database at path holds (its
 * last row's), read-only.  1 with it in out (escaped), 0 when the file
 * has no row or does not exist, -1 when it cannot be read.
 */
int
db_station_of(const char *path, char *out, size_t len)
{
	sqlite3_stmt *st;
	sqlite3 *d = NULL;
	int rc = -1;

	if (access(path, F_OK) != 0)
		return 0;
	if (sqlite3_open_v2(path, &d, SQLITE_OPEN_READONLY, NULL) ==
	    SQLITE_OK && sqlite3_prepare_v2(d, "SELECT station FROM audit "
	    "ORDER BY seq DESC LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			dbhash_text(sqlite3_column_text(st, 0), (size_t)
			    sqlite3_column_bytes(st, 0), out, len);
		rc = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
		sqlite3_finalize(st);
	}
	sqlite3_close(d);
	return rc;
}

int
db_open(const char *path, const char *station, char *err, size_t len)
{
	char msg[512];
	sqlite3_stmt *st;
	int rc = 0;

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
	snprintf(db_path, sizeof(db_path), "%s", path);
	snprintf(db_note_path, sizeof(db_note_path), "%s.note", path);
	if ((db_note_fd = open(db_note_path, O_RDWR | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) < 0) {
		snprintf(err, len, "%s: %s", db_note_path, strerror(errno));
		db_close();
		return -1;
	}
	db_job = db_int(db_sql_max_job);
	/* Where the chain ends; recover_check_start says whether it is ours. */
	db_last = 0;
	memset(db_head, 0, sizeof(db_head));
	if (sqlite3_prepare_v2(db, "SELECT seq, hash, station FROM audit "
	    "ORDER BY seq DESC LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW) {
			db_last = (long)sqlite3_column_int64(st, 0);
			if (sqlite3_column_bytes(st, 1) == 32)
				memcpy(db_head, sqlite3_column_blob(st, 1),
				    32);
			rc = db_station_is(st, 2, station, err, len);
		}
		sqlite3_finalize(st);
	}
	if (rc != 0) {
		db_close();
		return -1;
	}
	return 0;
}

/* The hashed columns of a row that st stands on (AUDITROW_NAMES). */
static void
db_row_values(sqlite3_stmt *st, struct dbhash_val v[AUDITROW_HASHED])
{
	int i;

	for (i = 0; i < AUDITROW_HASHED; i++) {
		v[i].type = sqlite3_column_type(st, i);
		v[i].i = sqlite3_column_int64(st, i);
		v[i].p = v[i].type == SQLITE_BLOB ? sqlite3_column_blob(st, i) :
		    sqlite3_column_text(st, i);
		v[i].len = (size_t)sqlite3_column_bytes(st, i);
	}
}

/* Row seq's hash: 1 when the row is there, 0 when not, -1 on error. */
int
db_row_hash(long seq, uint8_t hash[32])
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT hash FROM audit NOT INDEXED "
	    "WHERE seq = ?1",
	    -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, seq);
	rc = sqlite3_step(st);
	memset(hash, 0, 32);
	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32)
		memcpy(hash, sqlite3_column_blob(st, 0), 32);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/*
 * The rows after row `from` (whose hash is head), which the daemon did not
 * note as its own: each must be of this station, follow the chain, and
 * (with a key) carry the active key's signature, as the rows of a crash
 * between a commit and its note do.  A key row may change the active key
 * to this daemon's own, or to one the active key endorsed.  0, or -1
 * with err naming the first row that is not the daemon's.
 */
int
db_check_after(long from, const uint8_t head[32], const uint8_t *mine,
    char *err, size_t len)
{
	struct dbhash_val v[AUDITROW_HASHED];
	uint8_t prev[32], h[32], active[32], pub[32];
	sqlite3_stmt *st;
	long expect = from + 1, kseq = 0;
	int rc, keyed, v2;

	memcpy(prev, head, 32);
	if ((keyed = db_key_at(from, active, &kseq, &v2)) < 0) {
		snprintf(err, len, "the key row %ld cannot be read", kseq);
		return -1;
	}
	if (sqlite3_prepare_v2(db, "SELECT " AUDITROW_NAMES " FROM audit "
	    "WHERE seq > ?1 ORDER BY seq", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, len, "%s", sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_int64(st, 1, from);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		db_row_values(st, v);
		dbhash_row(prev, v, h);
		if (v[AUDITROW_seq].i != expect ||
		    v[AUDITROW_station].type != SQLITE_TEXT ||
		    v[AUDITROW_station].len != strlen(db_station) ||
		    memcmp(v[AUDITROW_station].p, db_station,
		    v[AUDITROW_station].len) != 0 ||
		    sqlite3_column_bytes(st, AUDITROW_hash) != 32 ||
		    memcmp(sqlite3_column_blob(st, AUDITROW_hash), h, 32) != 0)
			break;
		/* Only the daemon's own key row: its last start's. */
		if (v[AUDITROW_state].type == SQLITE_TEXT &&
		    v[AUDITROW_state].len == 3 &&
		    memcmp(v[AUDITROW_state].p, "key", 3) == 0) {
			if (mine == NULL || v[AUDITROW_reason].len < 72 ||
			    dbhash_unhex((const char *)v[AUDITROW_reason].p +
			    8, 64, pub, 32) != 0 || memcmp(pub, mine, 32) != 0)
				break;
			memcpy(active, pub, 32);
			keyed = 1;
			v2 = v[AUDITROW_reason].len > strlen(SIGN_V2_MARK) &&
			    memcmp((const char *)v[AUDITROW_reason].p +
			    v[AUDITROW_reason].len - strlen(SIGN_V2_MARK),
			    SIGN_V2_MARK, strlen(SIGN_V2_MARK)) == 0;
		}
		/*
		 * Signed by an older cardlicd (v1) under a key row without the
		 * mark, v2 under one with it: an older cardlicd run after this
		 * one cannot leave v1 rows where a verifier relies on v2.
		 */
		if (mine != NULL && keyed && (sqlite3_column_bytes(st,
		    AUDITROW_sig) != 64 || !sign_check(active, v2 ?
		    SIGN_DOMAIN_ROW_V2 : SIGN_DOMAIN_ROW, h, 32,
		    sqlite3_column_blob(st, AUDITROW_sig))))
			break;
		memcpy(prev, h, 32);
		expect++;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW) {
		snprintf(err, len, "row %ld, after row %ld that this station "
		    "wrote last, is not the station's: it does not follow the "
		    "chain, names another station, or is not signed by its "
		    "key; someone else wrote it", expect, from);
		return -1;
	}
	if (rc != SQLITE_DONE) {
		snprintf(err, len, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/*
 * Where the chain ends, as db_open found it and the appends since moved
 * it: the seq of the last row (0: none), and its hash in head.
 */
long
db_tail(uint8_t head[32])
{
	long seq;

	pthread_mutex_lock(&db_lock);
	seq = db_last;
	memcpy(head, db_head, 32);
	pthread_mutex_unlock(&db_lock);
	return seq;
}

void
db_close(void)
{
	if (db_note_fd >= 0)
		close(db_note_fd);
	db_note_fd = -1;
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

/* The station id the rows are written with. */
void
db_station_now(char *out, size_t len)
{
	snprintf(out, len, "%s", db_station);
}

/*
 * The seq of this station's last key row for pub, when a key row of
 * another key came after it (pub was retired); 0 when pub was never
 * retired; -1 on error.
 */
static long
db_key_retired(const uint8_t pub[32])
{
	sqlite3_stmt *st;
	char want[8 + 65];
	long seq = -1;

	memcpy(want, "ed25519 ", 8);
	dbhash_hex(pub, 32, 0, want + 8);
	if (sqlite3_prepare_v2(db, "SELECT coalesce(max(k.seq), 0) FROM audit "
	    "k WHERE k.station = ?1 AND k.state = 'key' AND substr(k.reason, "
	    "1, 72) = ?2 AND EXISTS (SELECT 1 FROM audit n WHERE n.station = "
	    "k.station AND n.state = 'key' AND n.seq > k.seq AND "
	    "substr(n.reason, 1, 72) <> ?2)", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, want, 72, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		seq = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return seq;
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
	long seq = 0, rseq;
	int have, good = 0, v2 = 0;

	pthread_mutex_lock(&db_lock);
	have = db_key_at(LONG_MAX, prev, &seq, &v2);
	/*
	 * The note, from the start (a file from before notes has none):
	 * signed when the key is the station's active one, unsigned when
	 * the station has none.  A new key's note comes with its key row.
	 */
	if (key != NULL)
		sign_key_public(key, pub);
	if ((key == NULL && have == 0) || (key != NULL && have == 1 &&
	    memcmp(pub, prev, 32) == 0)) {
		db_key = key;
		db_note_put();
		db_key = NULL;
	}
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
	sign_key_public(key, pub);
	dbhash_hex(pub, 32, 0, hex);
	/*
	 * Issue 18, case 12: a rotation retires the old key for every row
	 * after it.  A retired key that signed again would be one that
	 * whoever kept its private half could use too.
	 */
	if (have == 1 && memcmp(pub, prev, 32) != 0 &&
	    (rseq = db_key_retired(pub)) != 0) {
		if (rseq > 0)
			snprintf(err, len, "the signing key %s was retired by "
			    "a rotation (its last key row is row %ld, and a "
			    "newer key followed it): it cannot sign this "
			    "station's rows again; give the daemon the current "
			    "key, or a new one (cardlicctl keygen --rotate)",
			    hex, rseq);
		else
			snprintf(err, len, "the key rows cannot be read");
		sign_key_free(key);
		return -1;
	}
	pthread_mutex_lock(&db_lock);
	db_key = key;
	pthread_mutex_unlock(&db_lock);
	if (have == 1 && memcmp(pub, prev, 32) == 0 && v2) {
		db_key_seq = seq;
		return 0;
	}
	/*
	 * A new key, or the same one published again once, with the mark
	 * that its rows are signed v2 from here on (sign.h).
	 */
	snprintf(reason, sizeof(reason), "ed25519 %s" SIGN_V2_MARK, hex);
	if (have == 1) {
		dbhash_hex(prev, 32, 0, phex);
		good = endorsement != NULL && dbhash_unhex(endorsement,
		    strlen(endorsement), e, 64) == 0 &&
		    sign_endorsed(prev, db_station, pub, e);
		if (memcmp(pub, prev, 32) == 0)
			;	/* the same key, now v2: no endorsement */
		else if (good)
			snprintf(reason, sizeof(reason), "ed25519 %s "
			    "endorsed-by %s %s" SIGN_V2_MARK, hex, phex,
			    endorsement);
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
	db_key_seq = seq;
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
 * The newest row this daemon wrote (or checked at start-up), for a
 * checkpoint: its seq (0 when there is none) and its hash.  Never the
 * file's last row as such: a checkpoint signs only the daemon's own
 * chain, and none is signed once the file turned out to hold rows of
 * someone else's (invariant 11).  -1 then.
 */
int
db_head_row(long *seq, uint8_t hash[32])
{
	int rc = -1;

	pthread_mutex_lock(&db_lock);
	if (db != NULL && db_refuse[0] == '\0') {
		*seq = db_last;
		memcpy(hash, db_head, 32);
		rc = 0;
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

/* From now on nothing is appended: why, for every caller and the log. */
static void
db_refuse_set(const char *fmt, ...)
{
	va_list ap;

	if (db_refuse[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(db_refuse, sizeof(db_refuse), fmt, ap);
	va_end(ap);
	log_alert("audit database: %s; issuance stops, and nothing more is "
	    "recorded or signed until it is checked (cardlicctl verify --key) "
	    "and cardlicd restarted", db_refuse);
}

/* Why nothing may be appended (the line pauses), or NULL. */
const char *
db_refusing(void)
{
	const char *why;

	pthread_mutex_lock(&db_lock);
	why = db_refuse[0] != '\0' ? db_refuse : NULL;
	pthread_mutex_unlock(&db_lock);
	return why;
}

/*
 * Inside the write transaction: the file's last row is the one this
 * daemon wrote last (db_last, db_head).  0, or -1 with msg (and the
 * daemon refuses from then on).
 */
static int
db_last_is_ours(char *msg, size_t len)
{
	sqlite3_stmt *st;
	long seq = 0;
	int same = 0, rc;

	if ((st = db_prep(db_sql_last)) == NULL) {
		snprintf(msg, len, "%s", sqlite3_errmsg(db));
		return -1;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		seq = (long)sqlite3_column_int64(st, 0);
		same = sqlite3_column_bytes(st, 1) == 32 &&
		    memcmp(sqlite3_column_blob(st, 1), db_head, 32) == 0;
	} else
		same = rc == SQLITE_DONE;
	db_unprep(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		snprintf(msg, len, "%s", sqlite3_errmsg(db));
		return -1;
	}
	if (seq == db_last && same)
		return 0;
	if (seq == db_last)
		db_refuse_set("row %ld is not the row this daemon wrote there "
		    "(its hash changed)", seq);
	else if (seq > db_last)
		db_refuse_set("the file ends with row %ld, after row %ld that "
		    "this daemon wrote last: rows were appended by someone "
		    "else", seq, db_last);
	else
		db_refuse_set("the file ends with row %ld, before row %ld that "
		    "this daemon wrote last: rows were removed", seq,
		    db_last);
	snprintf(msg, len, "%s", db_refuse);
	return -1;
}

/*
 * This station's key row at or before seq (LONG_MAX: its newest): its
 * public key (from "ed25519 HEX ..."), its seq, and in v2 whether it
 * carries the mark that the rows after it are signed v2 (may be NULL).
 * 1 when found, 0 when there is none, -1 when it cannot be read.
 */
int
db_key_at(long seq, uint8_t pub[32], long *kseq, int *v2)
{
	sqlite3_stmt *st;
	const char *r;
	size_t n;
	int rc = 0;

	if (v2 != NULL)
		*v2 = 0;
	if (sqlite3_prepare_v2(db, "SELECT seq, reason FROM audit WHERE "
	    "station = ?1 AND state = 'key' AND seq <= ?2 ORDER BY seq DESC "
	    "LIMIT 1", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, seq);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*kseq = (long)sqlite3_column_int64(st, 0);
		r = (const char *)sqlite3_column_text(st, 1);
		/* The daemon writes lower case: anything else is not ours. */
		rc = r != NULL && strncmp(r, "ed25519 ", 8) == 0 &&
		    strspn(r + 8, "0123456789abcdef") >= 64 &&
		    dbhash_unhex(r + 8, 64, pub, 32) == 0 ? 1 : -1;
		n = rc == 1 ? strlen(r) : 0;
		if (v2 != NULL && n > strlen(SIGN_V2_MARK))
			*v2 = strcmp(r + n - strlen(SIGN_V2_MARK),
			    SIGN_V2_MARK) == 0;
	}
	sqlite3_finalize(st);
	return rc;
}

/* A row as the table holds it, once db_proven has proven it. */
struct db_found {
	long		seq;
	long		job;
	long		license_seq;
	char		state[16];
	char		reader[READER_MAX];
	uint8_t		model[FIELD_LEN];
	uint8_t		serial[FIELD_LEN];
	int		has_card;	/* model and serial, 16 bytes each */
	char		start[DATE_LEN + 1];
	char		end[DATE_LEN + 1];
	uint8_t		license[LICENSE_LEN];
	int		has_license;
	char		batch_reader[READER_MAX];
	char		batch_atr[2 * ATR_MAX + 1];
};

static void
db_found_text(const struct dbhash_val *v, char *out, size_t len)
{
	snprintf(out, len, "%.*s", v->type == SQLITE_TEXT ? (int)v->len : 0,
	    v->type == SQLITE_TEXT ? (const char *)v->p : "");
}

static void
db_found_fill(const struct dbhash_val *v, struct db_found *f)
{
	memset(f, 0, sizeof(*f));
	f->seq = v[AUDITROW_seq].i;
	f->job = v[AUDITROW_job].i;
	f->license_seq = v[AUDITROW_license_seq].type == SQLITE_INTEGER ?
	    v[AUDITROW_license_seq].i : 0;
	db_found_text(&v[AUDITROW_state], f->state, sizeof(f->state));
	db_found_text(&v[AUDITROW_reader], f->reader, sizeof(f->reader));
	f->has_card = v[AUDITROW_model].type == SQLITE_BLOB &&
	    v[AUDITROW_model].len == FIELD_LEN &&
	    v[AUDITROW_serial].type == SQLITE_BLOB &&
	    v[AUDITROW_serial].len == FIELD_LEN;
	if (f->has_card) {
		memcpy(f->model, v[AUDITROW_model].p, FIELD_LEN);
		memcpy(f->serial, v[AUDITROW_serial].p, FIELD_LEN);
	}
	db_found_text(&v[AUDITROW_start_date], f->start, sizeof(f->start));
	db_found_text(&v[AUDITROW_end_date], f->end, sizeof(f->end));
	f->has_license = v[AUDITROW_license].type == SQLITE_BLOB &&
	    v[AUDITROW_license].len == LICENSE_LEN;
	if (f->has_license)
		memcpy(f->license, v[AUDITROW_license].p, LICENSE_LEN);
	db_found_text(&v[AUDITROW_batch_reader], f->batch_reader,
	    sizeof(f->batch_reader));
	db_found_text(&v[AUDITROW_batch_atr], f->batch_atr,
	    sizeof(f->batch_atr));
}

/*
 * Whoever can write the file can change a row for a while, or rebuild one
 * of cardlicd's indexes so that it files a row under another card, and
 * put everything back afterwards: an adversary had a card loaded with
 * another card's license so, and a `verified` row signed for a license
 * that never reached its card (issue 18).  So a row that the daemon acts
 * on, or copies into a row that it signs, is read again by its rowid (a
 * lookup that no index serves) and proven this station's own first: its
 * hash recomputed from its values and the hash before it, then the chain
 * from it to a row that proves itself: the first one at or after it that
 * is signed with the daemon's key (one step for every row since the key
 * row, the usual case), or else the daemon's own last row.  0 with f
 * filled, or -1: the daemon refuses from now on, and err says why.
 * Called with db_lock held.
 */
static int
db_proven(long seq, struct db_found *f, char *err, size_t len)
{
	struct dbhash_val v[AUDITROW_HASHED];
	uint8_t prev[32], h[32], pub[32];
	sqlite3_stmt *st = NULL;
	long expect = seq;
	int tried = 0, ok = 0;

	if (db_key != NULL)
		sign_key_public(db_key, pub);
	if (seq >= 1 && seq <= db_last && db_row_hash(seq - 1, prev) >= 0 &&
	    sqlite3_prepare_v2(db, "SELECT " AUDITROW_NAMES " FROM audit NOT "
	    "INDEXED WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq", -1, &st,
	    NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, seq);
		sqlite3_bind_int64(st, 2, db_last);
	}
	while (st != NULL && sqlite3_step(st) == SQLITE_ROW) {
		db_row_values(st, v);
		dbhash_row(prev, v, h);
		if (v[AUDITROW_seq].i != expect ||
		    sqlite3_column_bytes(st, AUDITROW_hash) != 32 ||
		    memcmp(sqlite3_column_blob(st, AUDITROW_hash), h, 32) != 0)
			break;
		if (expect == seq)
			db_found_fill(v, f);
		/* One signature is tried: the chain does the rest. */
		if (db_key != NULL && expect >= db_key_seq && !tried++ &&
		    sqlite3_column_bytes(st, AUDITROW_sig) == 64 &&
		    sign_check(pub, SIGN_DOMAIN_ROW_V2, h, 32,
		    sqlite3_column_blob(st, AUDITROW_sig))) {
			ok = 1;
			break;
		}
		if (expect == db_last) {
			ok = memcmp(h, db_head, 32) == 0;
			break;
		}
		memcpy(prev, h, 32);
		expect++;
	}
	sqlite3_finalize(st);
	if (ok)
		return 0;
	db_refuse_set("row %ld is not as this station wrote it (its values, "
	    "its hash, or the chain from it to this daemon's last row %ld no "
	    "longer agree)", seq, db_last);
	snprintf(err, len, "%s", db_refuse);
	return -1;
}

/*
 * Before a card is touched: the file still ends with the row this daemon
 * wrote last (a read, no transaction).  0, or -1: it refuses from now on
 * (db_refusing says why).
 */
int
db_tail_ok(void)
{
	char msg[700];
	int rc = -1;

	pthread_mutex_lock(&db_lock);
	if (db != NULL && db_refuse[0] == '\0')
		rc = db_last_is_ours(msg, sizeof(msg));
	pthread_mutex_unlock(&db_lock);
	return rc;
}

/*
 * The note (issue 18, cases 3 and 10): after every commit, the row this
 * daemon wrote last, in DB.note beside the database, signed with the
 * station's key when it has one, so that at the next start a file that
 * lost rows (a -wal removed after a crash, an older copy put back) is
 * noticed rather than written on, and so are rows someone else appended.
 * One pwrite of a fixed-size line, with no fsync: a crash of the daemon
 * keeps it (the kernel holds it), and a power cut can only leave it
 * behind the database, which the start-up check accepts (it checks the
 * rows after it), never ahead.  Its SHA-256 tells a torn one.
 */

static void
db_note_put(void)
{
	char line[NOTE_LEN], head[65], hex[129];
	uint8_t h[32], sig[64];
	int n;

	if (db_note_fd < 0)
		return;
	dbhash_hex(db_head, 32, 0, head);
	n = snprintf(line, sizeof(line), NOTE_MAGIC "station=%s seq=%ld "
	    "head=%s", db_station, db_last, head);
	if (db_key != NULL && sign_bytes(db_key, SIGN_DOMAIN_NOTE,
	    (const uint8_t *)line, (size_t)n, sig) == 0) {
		dbhash_hex(sig, 64, 0, hex);
		n += snprintf(line + n, sizeof(line) - (size_t)n, " sig=%s",
		    hex);
	}
	dbhash_sha256(line, (size_t)n, h);
	dbhash_hex(h, 32, 0, hex);
	n += snprintf(line + n, sizeof(line) - (size_t)n, " sum=%.16s", hex);
	memset(line + n, ' ', sizeof(line) - (size_t)n);
	line[sizeof(line) - 1] = '\n';
	if (pwrite(db_note_fd, line, sizeof(line), 0) != (ssize_t)sizeof(line))
		log_warnx("%s: %s; the next start cannot tell whether rows "
		    "were lost", db_note_path, strerror(errno));
}

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
	 * Invariant 11: the file's last row, read inside the write
	 * transaction, must be the one this daemon wrote last.  Chaining to
	 * whatever ends the file, and signing that, would vouch for a row
	 * appended by someone else (issue 18, case 3).
	 */
	if (db_last_is_ours(msg, mlen) != 0)
		return SQLITE_MISUSE;
	*seq = db_last + 1;
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
		if (db_key != NULL && sign_bytes(db_key, SIGN_DOMAIN_ROW_V2, hash,
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
	/*
	 * Exactly one row, ours: a trigger that is not cardlicd's may drop
	 * it silently (RAISE(IGNORE)) and the statement still succeeds
	 * (issue 18, case 5).
	 */
	if (rc == SQLITE_OK && (sqlite3_changes(db) != 1 ||
	    sqlite3_last_insert_rowid(db) != *seq)) {
		db_refuse_set("the insert of row %ld added %d rows: the "
		    "database has a trigger that is not cardlicd's", *seq,
		    sqlite3_changes(db));
		snprintf(msg, mlen, "%s", db_refuse);
		rc = SQLITE_MISUSE;
	}
	if (st != NULL)
		db_unprep(st);
	if (rc == SQLITE_OK) {
		memcpy(db_head, hash, 32);
		db_last = *seq;
	}
	return rc;
}

/*
 * Append rows, in one transaction, and make them durable.  Returns the
 * last one's seq, or -1 with err set: the caller must then act as if
 * nothing was recorded.  With check: see db_append_if.
 */
static long
db_append_checked(const struct db_row *rows, int n,
    int (*check)(void *, char *, size_t), void *arg, char *err, size_t len)
{
	char msg[700];
	uint8_t head[32];
	long seq = -1, last;
	int i, rc = SQLITE_OK;

	pthread_mutex_lock(&db_lock);
	if (db == NULL) {
		snprintf(err, len, "the audit database is not open");
		goto out;
	}
	if (db_refuse[0] != '\0') {
		snprintf(err, len, "nothing is recorded: %s", db_refuse);
		goto out;
	}
	if (db_run(db_sql_begin, msg, sizeof(msg)) != 0) {
		snprintf(err, len, "audit database: %s", msg);
		goto out;
	}
	memcpy(head, db_head, sizeof(head));
	last = db_last;
	if (check != NULL && check(arg, msg, sizeof(msg)) != 0)
		rc = SQLITE_CONSTRAINT;
	for (i = 0; i < n && rc == SQLITE_OK; i++)
		rc = db_insert(&rows[i], &seq, msg, sizeof(msg));
	if (rc == SQLITE_OK)
		rc = db_run(db_sql_commit, msg, sizeof(msg)) == 0 ? SQLITE_OK :
		    SQLITE_ERROR;
	if (rc != SQLITE_OK) {
		char ignore[64];

		db_exec("ROLLBACK", ignore, sizeof(ignore));
		memcpy(db_head, head, sizeof(head));
		db_last = last;
		if (rc == SQLITE_CONSTRAINT)
			snprintf(err, len, "%s", msg);
		else
			snprintf(err, len, "audit database: %s", msg);
		seq = rc == SQLITE_CONSTRAINT ? 0 : -1;
	} else
		db_note_put();
out:
	pthread_mutex_unlock(&db_lock);
	return seq;
}

/*
 * Append rows if check (run inside the write transaction, under its lock,
 * before the rows) says so: the test and the append are one step, so
 * that two requests cannot both pass it (issue 18, case 9).  The last
 * row's seq; 0 with check's reason in err when it refused; -1 with err
 * when the database did.
 */
long
db_append_if(const struct db_row *rows, int n,
    int (*check)(void *, char *, size_t), void *arg, char *err, size_t len)
{
	return db_append_checked(rows, n, check, arg, err, len);
}

long
db_append_rows(const struct db_row *rows, int n, char *err, size_t len)
{
	return db_append_checked(rows, n, NULL, NULL, err, len);
}

long
db_append(const struct db_row *r, char *err, size_t len)
{
	return db_append_rows(r, 1, err, len);
}

/*
 * The conditions that select the same rows, each written once (issue 19),
 * with the station join that the views have (sql/): a license_seq or a
 * job names a row of its own station only, in a merged file too.
 */
/* The in-doubt row d has no admin's decision. */
#define DB_UNDECIDED(d)	"NOT EXISTS (SELECT 1 FROM audit r WHERE "	\
	"r.station = " d ".station AND r.state = 'resolved' AND "	\
	"r.license_seq = " d ".seq)"
/* The license of generated row g has no row of those states naming it. */
#define DB_UNCLOSED(g, states)	"NOT EXISTS (SELECT 1 FROM audit v "	\
	"WHERE v.station = " g ".station AND v.license_seq = " g ".seq "\
	"AND v.state IN (" states "))"
/*
 * The requests of this station (?1) with no later row of their job, the
 * oldest first: columns job, reader, model, serial, start_date,
 * batch_reader, batch_atr, then seq.
 */
static const char db_sql_unanswered[] = "SELECT r.job, r.reader, r.model,"
    " r.serial, r.start_date, r.batch_reader, r.batch_atr, r.seq FROM audit"
    " r WHERE r.state = 'requested' AND r.station = ?1 AND NOT EXISTS"
    " (SELECT 1 FROM audit x WHERE x.station = r.station AND x.job = r.job"
    " AND x.seq > r.seq) ORDER BY r.seq LIMIT 1";

/*
 * Found through an index, which anyone who can write the file can make
 * lie: row seq proven (db_proven), and, as the table holds it, a license
 * generated for this very card.  1 with f, 0: not that card's license
 * (then nothing is trusted any more), -1.  With db_lock held.
 */
static int
db_license_of(long seq, const uint8_t *model, const uint8_t *serial,
    struct db_found *f)
{
	char err[700], m[4 * FIELD_LEN + 1], sr[4 * FIELD_LEN + 1];

	if (db_proven(seq, f, err, sizeof(err)) != 0)
		return -1;
	if (strcmp(f->state, "generated") == 0 && f->has_card &&
	    f->has_license && memcmp(f->model, model, FIELD_LEN) == 0 &&
	    memcmp(f->serial, serial, FIELD_LEN) == 0)
		return 1;
	dbhash_text(model, FIELD_LEN, m, sizeof(m));
	dbhash_text(serial, FIELD_LEN, sr, sizeof(sr));
	db_refuse_set("the index audit_card gives row %ld as a license of "
	    "card %s %s, which that row is not: the file's indexes were "
	    "changed (cardlicctl verify --key runs the integrity check that "
	    "names them)", seq, m, sr);
	return 0;
}

/*
 * The card's newest license that was generated, never verified nor
 * rejected, and still valid today: invariant 2 says it is reused.  Only a
 * row proven this station's, and this card's, is used (db_license_of);
 * anything else stops issuance (-1, db_refusing says why).
 */
int
db_find_pending(const uint8_t *model, const uint8_t *serial, long today,
    int verified_too, struct db_pending *out)
{
	static const char pending[] = "SELECT g.seq FROM audit g WHERE "
	    "g.state = 'generated' AND g.serial = ?1 AND g.model = ?2 AND "
	    DB_UNCLOSED("g", "'verified', 'rejected'") " ORDER BY g.seq DESC";
	/* Also one the card had, and lost (erased, or a card reset). */
	static const char any[] = "SELECT g.seq FROM audit g WHERE "
	    "g.state = 'generated' AND g.serial = ?1 AND g.model = ?2 AND "
	    DB_UNCLOSED("g", "'rejected'") " ORDER BY g.seq DESC";
	struct db_found f;
	sqlite3_stmt *st;
	long e;
	int rc, found = 0;

	pthread_mutex_lock(&db_lock);
	if ((st = db_prep(verified_too ? any : pending)) == NULL) {
		pthread_mutex_unlock(&db_lock);
		return -1;
	}
	sqlite3_bind_blob(st, 1, serial, FIELD_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, model, FIELD_LEN, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((found = db_license_of((long)sqlite3_column_int64(st, 0),
		    model, serial, &f)) != 1)
			break;
		if (strcmp(f.end, "00000000") != 0 && (date_parse(f.end, 8,
		    &e) != 0 || e < today)) {
			found = 0;
			continue;
		}
		out->license_seq = f.seq;
		memcpy(out->license, f.license, LICENSE_LEN);
		snprintf(out->start_date, sizeof(out->start_date), "%s",
		    f.start);
		snprintf(out->end_date, sizeof(out->end_date), "%s", f.end);
		break;
	}
	db_unprep(st);
	if (found != 1 && db_refuse[0] != '\0')
		rc = SQLITE_ERROR;
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
	    "AND " DB_UNDECIDED("d"), model, serial);
}

/* A follow-up row of c's: the job, the reader, the card, the batch card. */
void
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

/* A proven row's job, reader, card and batch card, for a row after it. */
static void
db_card_from(const struct db_found *f, struct db_card *c)
{
	memset(c, 0, sizeof(*c));
	c->job = f->job;
	snprintf(c->reader, sizeof(c->reader), "%s", f->reader);
	memset(c->model, ' ', FIELD_LEN);
	memset(c->serial, ' ', FIELD_LEN);
	if (f->has_card) {
		memcpy(c->model, f->model, FIELD_LEN);
		memcpy(c->serial, f->serial, FIELD_LEN);
	}
	snprintf(c->start, sizeof(c->start), "%s", f->start);
	snprintf(c->batch_reader, sizeof(c->batch_reader), "%s",
	    f->batch_reader);
	snprintf(c->batch_atr, sizeof(c->batch_atr), "%s", f->batch_atr);
}

/*
 * The oldest `requested` row of this station with no later row of its
 * job, found by reading the whole table in rowid order (NOT INDEXED): an
 * index that lied could hide a request from recovery, and a credit spent
 * in it would go silent (issue 18: an adversary filed another row under
 * the request's job in audit_job).  Start-up only; about 0.3 s a million
 * rows.  The seq, 0 when there is none, -1 on error.  With db_lock held.
 */
static long
db_scan_unanswered(void)
{
	struct { long job, seq; } *open = NULL, *more;
	sqlite3_stmt *st;
	const char *station, *state;
	size_t n = 0, cap = 0, i;
	long job, oldest = 0;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT seq, station, job, state FROM "
	    "audit NOT INDEXED ORDER BY seq", -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		station = (const char *)sqlite3_column_text(st, 1);
		state = (const char *)sqlite3_column_text(st, 3);
		job = (long)sqlite3_column_int64(st, 2);
		if (station == NULL || state == NULL ||
		    strcmp(station, db_station) != 0 || job == 0)
			continue;
		for (i = 0; i < n && open[i].job != job; i++)
			;
		if (i < n)	/* a later row of an open job answers it */
			open[i] = open[--n];
		else if (strcmp(state, "requested") == 0) {
			if (n == cap) {
				cap = cap * 2 + 8;
				if ((more = reallocarray(open, cap,
				    sizeof(*open))) == NULL)
					break;
				open = more;
			}
			open[n].job = job;
			open[n++].seq = (long)sqlite3_column_int64(st, 0);
		}
	}
	sqlite3_finalize(st);
	for (i = 0; i < n; i++)
		if (oldest == 0 || open[i].seq < oldest)
			oldest = open[i].seq;
	free(open);
	return rc == SQLITE_DONE ? oldest : -1;
}

/*
 * The oldest `requested` row that the daemon outlived with no outcome,
 * proven this station's (db_proven): 1 with c and its seq filled, 0 when
 * there is none, -1 with err.
 */
int
db_next_unanswered(struct db_card *c, long *seq, char *err, size_t len)
{
	struct db_found f;
	long s;
	int rc = -1;

	pthread_mutex_lock(&db_lock);
	if ((s = db_scan_unanswered()) < 0)
		snprintf(err, len, "audit database: %s", sqlite3_errmsg(db));
	else if (s == 0)
		rc = 0;
	else if (db_proven(s, &f, err, len) == 0) {
		db_card_from(&f, c);
		*seq = s;
		rc = 1;
	}
	pthread_mutex_unlock(&db_lock);
	return rc;
}

/*
 * What the rows say of one job of this station, for recovery: its
 * `requested` row (seq, card, start date), whether any row of the job
 * came after it, its `generated` row and license if one is in, and the
 * public key that was the station's at its request (keyed 0: none).
 * 0, or -1 on a database error.  Only from a db_append_if check, which
 * runs under db's lock inside the write transaction: what it reads is
 * what the append then follows.
 */
int
db_job_in_tx(long job, struct db_job *out)
{
	struct db_found f;
	sqlite3_stmt *st;
	char err[700];
	int rc;

	memset(out, 0, sizeof(*out));
	if (sqlite3_prepare_v2(db, "SELECT seq FROM audit WHERE station = ?1 "
	    "AND job = ?2 ORDER BY seq", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, job);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* Found through audit_job: proven, and of this job. */
		if (db_proven((long)sqlite3_column_int64(st, 0), &f, err,
		    sizeof(err)) != 0)
			break;
		if (f.job != job) {
			db_refuse_set("the index audit_job gives row %ld as a "
			    "row of job %ld, which it is not: the file's "
			    "indexes were changed", f.seq, job);
			break;
		}
		if (strcmp(f.state, "requested") == 0 && out->requested == 0) {
			out->requested = f.seq;
			memcpy(out->model, f.model, FIELD_LEN);
			memcpy(out->serial, f.serial, FIELD_LEN);
			snprintf(out->start, sizeof(out->start), "%s", f.start);
			continue;
		}
		if (out->requested != 0 && out->after == 0)
			out->after = f.seq;
		if (strcmp(f.state, "generated") == 0 && out->generated == 0) {
			out->generated = f.seq;
			memcpy(out->license, f.license, LICENSE_LEN);
			out->has_license = f.has_license;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return -1;
	if (out->requested != 0 && (out->keyed = db_key_at(out->requested,
	    out->key, &out->key_seq, NULL)) < 0)
		return -1;
	/* A spill file is checked with that key: it must be a key row. */
	if (out->keyed && db_proven(out->key_seq, &f, err, sizeof(err)) != 0)
		return -1;
	if (out->keyed && strcmp(f.state, "key") != 0) {
		db_refuse_set("an index gives row %ld as the key row of row "
		    "%ld, which it is not: the file's indexes were changed",
		    out->key_seq, out->requested);
		return -1;
	}
	return 0;
}

/* An admin's decision, checked and built inside its transaction. */
struct db_decision {
	long		seq;
	int		spent;
	const char	*why;
	struct db_card	c;
	char		reason[600];
	struct db_row	*r;
};

/*
 * The in-doubt row is this station's and nobody has decided on it yet:
 * read inside the write transaction, so that two decisions sent at once
 * cannot both pass (issue 18, case 9).
 */
static int
db_decision_check(void *arg, char *err, size_t len)
{
	static const char sql[] = "SELECT NOT " DB_UNDECIDED("d") " FROM"
	    " audit d WHERE d.seq = ?1 AND d.state = 'in-doubt' AND"
	    " d.station = ?2";
	struct db_decision *dd = arg;
	struct db_found f;
	sqlite3_stmt *st;
	int found = 0, done = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, len, "audit database: %s", sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_int64(st, 1, dd->seq);
	sqlite3_bind_text(st, 2, db_station, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		done = sqlite3_column_int(st, 0);
		found = 1;
	}
	sqlite3_finalize(st);
	/* Its values go into a row that the daemon signs. */
	if (found && db_proven(dd->seq, &f, err, len) != 0)
		return -1;
	if (found)
		db_card_from(&f, &dd->c);
	if (!found) {
		snprintf(err, len, "row %ld is not a credit in doubt of station "
		    "%s", dd->seq, db_station);
		return -1;
	}
	if (done) {
		snprintf(err, len, "row %ld was already resolved", dd->seq);
		return -1;
	}
	snprintf(dd->reason, sizeof(dd->reason), "%s: %s", dd->spent ?
	    "spent" : "not spent", dd->why);
	db_card_row(&dd->c, dd->r, "resolved", dd->reason);
	dd->r->start_date = NULL;
	dd->r->license_seq = dd->seq;
	return 0;
}

/*
 * An admin's decision on an in-doubt row, as a row of its own.  Returns
 * the new row's seq, or -1 with err (not an unresolved in-doubt row).
 */
long
db_resolve(long seq, int spent, const char *why, char *err, size_t len)
{
	struct db_decision dd;
	struct db_row r;
	long n;

	memset(&dd, 0, sizeof(dd));
	memset(&r, 0, sizeof(r));
	dd.seq = seq;
	dd.spent = spent;
	dd.why = why;
	dd.r = &r;
	n = db_append_if(&r, 1, db_decision_check, &dd, err, len);
	return n > 0 ? n : -1;
}

/*
 * No license of this station is being made right now: the count read may
 * or may not include it.  Inside the count's transaction.
 */
static int
db_count_check(void *arg, char *err, size_t len)
{
	sqlite3_stmt *st;
	int rc;

	(void)arg;
	if (sqlite3_prepare_v2(db, db_sql_unanswered, -1, &st, NULL) !=
	    SQLITE_OK) {
		snprintf(err, len, "audit database: cannot read it");
		return -1;
	}
	sqlite3_bind_text(st, 1, db_station, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		snprintf(err, len, "a license is being made right now (job "
		    "%lld, row %lld): the count read may or may not include "
		    "it; type the count again once that card is done",
		    (long long)sqlite3_column_int64(st, 0),
		    (long long)sqlite3_column_int64(st, 7));
	else if (rc != SQLITE_DONE)
		snprintf(err, len, "audit database: cannot read it");
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/*
 * A batch card's counter of emitted licenses, as an admin read it with the
 * vendor's tool, as a `counted` row: the batch card's reader (also the
 * row's reader), its ATR and the count, the label written on the card in
 * serial (what identifies it: issue 18, case 8), with the admin's words
 * in reason.
 * A license being made at this moment (a `requested` row of this station
 * with no outcome yet) may or may not be in the count that was read, so
 * the count is refused until it is done.  Returns the new row's seq, or
 * -1 with err.
 */
long
db_count(const char *reader, const char *atr, const char *label, long n,
    const char *why, char *err, size_t len)
{
	uint8_t serial[FIELD_LEN];
	struct db_row r;
	long seq;

	/* The card's label in serial, padded as a token's serial is. */
	memset(serial, ' ', sizeof(serial));
	memcpy(serial, label, strnlen(label, FIELD_LEN));
	memset(&r, 0, sizeof(r));
	r.reader = reader;
	r.job = 0;	/* no card insertion */
	r.state = "counted";
	r.reason = why;
	r.serial = serial;
	r.batch_reader = reader;
	r.batch_atr = atr;
	r.batch_count = n;
	seq = db_append_if(&r, 1, db_count_check, NULL, err, len);
	return seq > 0 ? seq : -1;
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
	if (sqlite3_prepare_v2(db, "SELECT sum(d.state = 'verified'),"
	    " sum(d.state = 'skipped'), sum(d.state IN ('failed', 'rejected')),"
	    " sum(d.state IN ('generated', 'in-doubt')), sum(d.state ="
	    " 'in-doubt' AND " DB_UNDECIDED("d") ") FROM audit d WHERE"
	    " d.station = ?1", -1, &st, NULL) == SQLITE_OK) {
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
