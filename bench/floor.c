/*
 * bench/floor: the durable floor of one issuance (issue 12, item 2).  The
 * same PKCS#11 calls and batch card APDUs as cardlicd, the same module
 * loaded the same way (p11-kit, unmanaged, C_Initialize once), in the
 * same process model (one process, a thread per target reader, a mutex
 * around the batch card), and the fewest fsync'ed commits the invariants
 * allow: `requested` before GENERATE, `generated` before the load, and
 * the outcome.  Everything that can be kept open is: each reader's PC/SC
 * context, the batch card's connection, the database and its statements,
 * each reader's slot (looked up once by its description).
 *
 * Per card, one line of issue 12's measurement contract is appended to
 * --results, tab-separated, no header:
 *   prog readers serial outcome total token status login pending
 *   requested batchwait generate generated load readback outcome
 * prog is "floor", readers the number of target readers, outcome
 * "verified" or a short word; the rest in µs (CLOCK_MONOTONIC), "-" for a
 * step not done.  The clock starts when SCardGetStatusChange returns a
 * new card present in the reader, and stops when the outcome row's
 * commit has returned; the steps are consecutive, their sum the total.
 *
 * It is a bench, not a daemon: no spill file, no hash chain or signature
 * (the rows have a 32-byte hash column of zeros, so that they are the
 * size of cardlicd's), no PIN-try bookkeeping, no pause.  A card whose
 * step fails gets a `failed` row and a short outcome word.
 *
 * usage: bench/floor --db FILE --batch-reader NAME --readers "N1,N2"
 *        --module PATH --pin-file F --count N --results FILE
 *        [--slot-list]
 * --slot-list adds a C_GetSlotList per card to the token step, as a
 * program that refreshes the slot list for every job does.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <PCSC/winscard.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <sqlite3.h>

#define FL_MAX_READERS	16
#define FL_LICENSE_ATTR	0x8000006AUL
#define FL_STATUS_LEN	19
#define FL_LICENSE_LEN	128
#define FL_RESPONSE_LEN	136	/* expiry 8 + license 128 */
#define FL_FIELD_LEN	16

enum fl_step { FL_TOKEN, FL_STATUS, FL_LOGIN, FL_PENDING, FL_REQUESTED,
	FL_BATCHWAIT, FL_GENERATE, FL_GENERATED, FL_LOAD, FL_READBACK,
	FL_OUTCOME, FL_NSTEPS };

static const char *const fl_step_names[FL_NSTEPS] = { "token", "status",
	"login", "pending", "requested", "batchwait", "generate",
	"generated", "load", "readback", "outcome" };

struct fl_reader {
	char		name[200];
	CK_SLOT_ID	slot;
	SCARDCONTEXT	ctx;
	pthread_t	thread;
};

/* One card's job. */
struct fl_job {
	struct fl_reader *r;
	long		id;
	long long	t0, last, us[FL_NSTEPS];
	uint8_t		model[FL_FIELD_LEN], serial[FL_FIELD_LEN];
	char		serial_text[FL_FIELD_LEN + 1];
	char		start[9], end[9];
	uint8_t		license[FL_LICENSE_LEN];
	uint8_t		status[FL_STATUS_LEN];
	long		license_seq;
	char		sw[8];
	const char	*outcome;
};

static CK_FUNCTION_LIST	*fl_p11;
static char		fl_pin[64];
static size_t		fl_pin_len;
static int		fl_slot_list;

static sqlite3		*fl_db;
static sqlite3_stmt	*fl_insert, *fl_pending;
static pthread_mutex_t	fl_db_lock = PTHREAD_MUTEX_INITIALIZER;
static long		fl_jobs;

static pthread_mutex_t	fl_batch_lock = PTHREAD_MUTEX_INITIALIZER;
static SCARDCONTEXT	fl_batch_ctx;
static SCARDHANDLE	fl_batch_card;
static DWORD		fl_batch_proto;
static const char	*fl_batch_reader;
static char		fl_batch_atr[2 * 33 + 1];
/* Licenses generated on the batch card, kept in memory. */
static long		fl_batch_count;

static struct fl_reader	fl_readers[FL_MAX_READERS];
static int		fl_nreaders;
static FILE		*fl_results;
static pthread_mutex_t	fl_done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	fl_done_cond = PTHREAD_COND_INITIALIZER;
static long		fl_done, fl_count;
static int		fl_stop;

static void
fl_die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
    noreturn));

static void
fl_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench/floor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static long long
fl_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The step just done: its time since the previous one. */
static void
fl_step(struct fl_job *j, enum fl_step s)
{
	long long now = fl_now_us();

	j->us[s] = now - j->last;
	j->last = now;
}

/* "today" as cardlicd takes it: CARDLIC_TODAY, else the local date. */
static void
fl_today(char out[9])
{
	const char *fake = getenv("CARDLIC_TODAY");
	struct tm tm;
	time_t now;

	if (fake != NULL && strlen(fake) == 8) {
		memcpy(out, fake, 9);
		return;
	}
	now = time(NULL);
	localtime_r(&now, &tm);
	if (strftime(out, 9, "%Y%m%d", &tm) != 8)
		memcpy(out, "19700101", 9);
}

/* ----- the database: the daemon's columns, 3 commits per card ----- */

static const char fl_schema[] =
    "PRAGMA journal_mode = WAL;"
    "PRAGMA synchronous = FULL;"
    "CREATE TABLE IF NOT EXISTS audit ("
    " seq INTEGER PRIMARY KEY, utc TEXT NOT NULL, station TEXT NOT NULL,"
    " job INTEGER NOT NULL, reader TEXT NOT NULL, state TEXT NOT NULL,"
    " reason TEXT NOT NULL, model BLOB, serial BLOB, start_date TEXT,"
    " end_date TEXT, license_seq INTEGER, license BLOB, batch_reader TEXT,"
    " batch_atr TEXT, batch_count INTEGER, sw TEXT, ckr TEXT, status BLOB,"
    " timings TEXT, hash BLOB NOT NULL) STRICT;"
    "CREATE INDEX IF NOT EXISTS audit_card ON audit (serial, model);"
    "CREATE INDEX IF NOT EXISTS audit_license ON audit (license_seq);"
    "CREATE INDEX IF NOT EXISTS audit_batch ON audit (batch_reader,"
    " batch_atr) WHERE state = 'generated';";

static void
fl_db_open(const char *path)
{
	static const char ins[] = "INSERT INTO audit (utc, station, job,"
	    " reader, state, reason, model, serial, start_date, end_date,"
	    " license_seq, license, batch_reader, batch_atr, batch_count, sw,"
	    " ckr, status, timings, hash) VALUES (?1, 'floor', ?2, ?3, ?4, ?5,"
	    " ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
	    " zeroblob(32))";
	/* The daemon's lookup of a license the card was given already. */
	static const char pending[] = "SELECT g.seq, g.license, g.start_date,"
	    " g.end_date FROM audit g WHERE g.state = 'generated'"
	    " AND g.serial = ?1 AND g.model = ?2 AND NOT EXISTS (SELECT 1"
	    " FROM audit v WHERE v.license_seq = g.seq AND v.state ="
	    " 'rejected') ORDER BY g.seq DESC";
	char *err = NULL;

	if (sqlite3_open_v2(path, &fl_db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		fl_die("%s: %s", path, sqlite3_errmsg(fl_db));
	if (sqlite3_exec(fl_db, fl_schema, NULL, NULL, &err) != SQLITE_OK)
		fl_die("%s: %s", path, err);
	if (sqlite3_prepare_v2(fl_db, ins, -1, &fl_insert, NULL) !=
	    SQLITE_OK || sqlite3_prepare_v2(fl_db, pending, -1, &fl_pending,
	    NULL) != SQLITE_OK)
		fl_die("%s: %s", path, sqlite3_errmsg(fl_db));
}

/* One integer from the database, once at start; 0 when there is none. */
static long
fl_db_int(const char *sql, const char *a, const char *b)
{
	sqlite3_stmt *st;
	long v = 0;

	if (sqlite3_prepare_v2(fl_db, sql, -1, &st, NULL) != SQLITE_OK)
		fl_die("%s: %s", sql, sqlite3_errmsg(fl_db));
	if (a != NULL)
		sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	if (b != NULL)
		sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/*
 * Where an earlier run left off: the last job number, and the batch
 * card's count from its newest `generated` row (through audit_batch);
 * from then on both are kept in memory.
 */
static void
fl_db_resume(void)
{
	fl_jobs = fl_db_int("SELECT ifnull(max(job), 0) FROM audit", NULL,
	    NULL);
	fl_batch_count = fl_db_int("SELECT batch_count FROM audit WHERE"
	    " state = 'generated' AND batch_reader = ?1 AND batch_atr = ?2"
	    " ORDER BY seq DESC LIMIT 1", fl_batch_reader, fl_batch_atr);
}

/* Binds text, or NULL for a column the row leaves empty. */
static void
fl_bind_text(int i, const char *s)
{
	if (s != NULL)
		sqlite3_bind_text(fl_insert, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(fl_insert, i);
}

static void
fl_bind_blob(int i, const void *b, int n)
{
	if (b != NULL)
		sqlite3_bind_blob(fl_insert, i, b, n, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(fl_insert, i);
}

/* The steps so far, in ms, as cardlicd keeps them in each row. */
static void
fl_timings(const struct fl_job *j, char *out, size_t len)
{
	size_t n = 0;
	int s, k;

	for (s = 0; s < FL_NSTEPS && n < len; s++) {
		if (j->us[s] < 0)
			continue;
		k = snprintf(out + n, len - n, "%s\"%s\":%lld", n == 0 ? "{" :
		    ",", fl_step_names[s], j->us[s] / 1000);
		if (k < 0 || (size_t)k >= len - n)
			break;
		n += (size_t)k;
	}
	snprintf(out + n, n < len ? len - n : 0, "%s\"total\":%lld}",
	    n == 0 ? "{" : ",", (fl_now_us() - j->t0) / 1000);
}

/*
 * One row, in its own transaction (autocommit: the commit and its WAL
 * fsync have returned when this does).  The row's seq, or -1.
 */
static long
fl_record(struct fl_job *j, const char *state, const char *reason,
    const char *ckr)
{
	char utc[32], tim[300];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int generated = strcmp(state, "generated") == 0;
	int with_status = strcmp(state, "verified") == 0 ||
	    strcmp(state, "rejected") == 0 || strcmp(state, "skipped") == 0;
	long seq = -1;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(utc, sizeof(utc) - 6, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(utc + n, sizeof(utc) - n, ".%03dZ",
	    (int)(ts.tv_nsec / 1000000) % 1000);
	fl_timings(j, tim, sizeof(tim));
	pthread_mutex_lock(&fl_db_lock);
	fl_bind_text(1, utc);
	sqlite3_bind_int64(fl_insert, 2, j->id);
	fl_bind_text(3, j->r->name);
	fl_bind_text(4, state);
	fl_bind_text(5, reason);
	fl_bind_blob(6, j->model, FL_FIELD_LEN);
	fl_bind_blob(7, j->serial, FL_FIELD_LEN);
	fl_bind_text(8, j->start[0] != '\0' ? j->start : NULL);
	fl_bind_text(9, j->end[0] != '\0' ? j->end : NULL);
	if (j->license_seq > 0 && !generated)
		sqlite3_bind_int64(fl_insert, 10, j->license_seq);
	else
		sqlite3_bind_null(fl_insert, 10);
	fl_bind_blob(11, generated ? j->license : NULL, FL_LICENSE_LEN);
	fl_bind_text(12, j->us[FL_GENERATE] >= 0 || strcmp(state,
	    "requested") == 0 ? fl_batch_reader : NULL);
	fl_bind_text(13, j->us[FL_GENERATE] >= 0 || strcmp(state,
	    "requested") == 0 ? fl_batch_atr : NULL);
	if (generated)
		sqlite3_bind_int64(fl_insert, 14, fl_batch_count);
	else
		sqlite3_bind_null(fl_insert, 14);
	fl_bind_text(15, j->sw[0] != '\0' ? j->sw : NULL);
	fl_bind_text(16, ckr);
	fl_bind_blob(17, with_status ? j->status : NULL, FL_STATUS_LEN);
	fl_bind_text(18, tim);
	if (sqlite3_step(fl_insert) == SQLITE_DONE)
		seq = (long)sqlite3_last_insert_rowid(fl_db);
	else
		fprintf(stderr, "bench/floor: %s: the %s row of card %s: %s\n",
		    j->r->name, state, j->serial_text, sqlite3_errmsg(fl_db));
	sqlite3_reset(fl_insert);
	sqlite3_clear_bindings(fl_insert);
	pthread_mutex_unlock(&fl_db_lock);
	return seq;
}

/* A license this card already has, not rejected: 1 and j filled, or 0. */
static int
fl_find_pending(struct fl_job *j)
{
	const void *lic;
	const unsigned char *s, *e;
	int found = 0;

	pthread_mutex_lock(&fl_db_lock);
	sqlite3_bind_blob(fl_pending, 1, j->serial, FL_FIELD_LEN,
	    SQLITE_STATIC);
	sqlite3_bind_blob(fl_pending, 2, j->model, FL_FIELD_LEN,
	    SQLITE_STATIC);
	if (sqlite3_step(fl_pending) == SQLITE_ROW &&
	    sqlite3_column_bytes(fl_pending, 1) == FL_LICENSE_LEN &&
	    (lic = sqlite3_column_blob(fl_pending, 1)) != NULL &&
	    (s = sqlite3_column_text(fl_pending, 2)) != NULL &&
	    (e = sqlite3_column_text(fl_pending, 3)) != NULL &&
	    strlen((const char *)s) == 8 && strlen((const char *)e) == 8) {
		j->license_seq = (long)sqlite3_column_int64(fl_pending, 0);
		memcpy(j->license, lic, FL_LICENSE_LEN);
		memcpy(j->start, s, 9);
		memcpy(j->end, e, 9);
		found = 1;
	}
	sqlite3_reset(fl_pending);
	pthread_mutex_unlock(&fl_db_lock);
	return found;
}

/* ----- the batch card: one connection, kept ----- */

static void
fl_batch_open(void)
{
	BYTE atr[33];
	DWORD atrlen = sizeof(atr), state, proto, namelen = 0;
	DWORD k;

	if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL,
	    &fl_batch_ctx) != SCARD_S_SUCCESS)
		fl_die("no PC/SC context (is PCSCLITE_CSOCK_NAME set?)");
	if (SCardConnect(fl_batch_ctx, fl_batch_reader, SCARD_SHARE_SHARED,
	    SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &fl_batch_card,
	    &fl_batch_proto) != SCARD_S_SUCCESS)
		fl_die("%s: no batch card to connect to", fl_batch_reader);
	if (SCardStatus(fl_batch_card, NULL, &namelen, &state, &proto, atr,
	    &atrlen) != SCARD_S_SUCCESS)
		atrlen = 0;
	for (k = 0; k < atrlen; k++)
		snprintf(fl_batch_atr + 2 * k, 3, "%02X", atr[k]);
}

static LONG
fl_batch_tx(const BYTE *cmd, DWORD len, BYTE *resp, DWORD *rlen,
    unsigned *sw)
{
	LONG rv;

	rv = SCardTransmit(fl_batch_card, fl_batch_proto == SCARD_PROTOCOL_T0 ?
	    SCARD_PCI_T0 : SCARD_PCI_T1, cmd, len, NULL, resp, rlen);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	if (*rlen < 2)
		return SCARD_F_COMM_ERROR;
	*sw = (unsigned)resp[*rlen - 2] << 8 | resp[*rlen - 1];
	*rlen -= 2;
	return SCARD_S_SUCCESS;
}

/*
 * SELECT, GENERATE and the GET RESPONSE chain in one transaction.  0 with
 * j->end and j->license, or a short word for the outcome.  The caller
 * holds fl_batch_lock.
 */
static const char *
fl_generate(struct fl_job *j)
{
	static const BYTE sel[] = { 0x00, 0xA4, 0x04, 0x0C, 0x09, 0xA0, 0x00,
	    0x00, 0x03, 0x63, 0x4D, 0x57, 0x4C, 0x01 };
	BYTE gen[46], get[5] = { 0x00, 0xC0, 0x00, 0x00, 0x00 };
	BYTE resp[258], all[FL_RESPONSE_LEN + 258];
	DWORD n, total = 0;
	unsigned sw = 0;
	const char *bad = NULL;
	LONG rv;
	int pieces = 0;

	memcpy(gen, "\x00\xF8\x00\x00\x28", 5);
	memcpy(gen + 5, j->model, FL_FIELD_LEN);
	memcpy(gen + 21, j->serial, FL_FIELD_LEN);
	memcpy(gen + 37, j->start, 8);
	gen[45] = 0x88;
	rv = SCardBeginTransaction(fl_batch_card);
	if (rv == SCARD_W_RESET_CARD && SCardReconnect(fl_batch_card,
	    SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
	    SCARD_LEAVE_CARD, &fl_batch_proto) == SCARD_S_SUCCESS)
		rv = SCardBeginTransaction(fl_batch_card);
	if (rv != SCARD_S_SUCCESS)
		return "batchgone";
	n = sizeof(resp);
	if (fl_batch_tx(sel, sizeof(sel), resp, &n, &sw) != SCARD_S_SUCCESS ||
	    sw != 0x9000) {
		bad = "batchselect";
		goto out;
	}
	n = sizeof(resp);
	if (fl_batch_tx(gen, sizeof(gen), resp, &n, &sw) != SCARD_S_SUCCESS) {
		bad = "in-doubt";
		goto out;
	}
	memcpy(all, resp, n);
	total = n;
	while ((sw & 0xFF00) == 0x6100 && total <= FL_RESPONSE_LEN &&
	    ++pieces <= FL_RESPONSE_LEN) {
		get[4] = (BYTE)(sw & 0xFF);
		n = sizeof(resp);
		if (fl_batch_tx(get, sizeof(get), resp, &n, &sw) !=
		    SCARD_S_SUCCESS || total + n > sizeof(all)) {
			bad = "in-doubt";
			goto out;
		}
		memcpy(all + total, resp, n);
		total += n;
	}
	snprintf(j->sw, sizeof(j->sw), "%04X", sw & 0xFFFF);
	if (sw == 0x6985)
		bad = "nocredit";
	else if (sw != 0x9000 || total != FL_RESPONSE_LEN)
		bad = "in-doubt";
	else {
		memcpy(j->end, all, 8);
		j->end[8] = '\0';
		memcpy(j->license, all + 8, FL_LICENSE_LEN);
		fl_batch_count++;
	}
out:
	SCardEndTransaction(fl_batch_card, SCARD_LEAVE_CARD);
	return bad;
}

/* ----- PKCS#11 ----- */

static void
fl_p11_load(const char *path)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	/* Unmanaged, as cardlicd: the module's own list, object handle 0. */
	fl_p11 = p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED);
	if (fl_p11 == NULL)
		fl_die("%s: %s", path, p11_kit_message() != NULL ?
		    p11_kit_message() : "cannot load");
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	if ((rv = fl_p11->C_Initialize(&args)) != CKR_OK)
		fl_die("%s: C_Initialize: 0x%lX", path, (unsigned long)rv);
}

/* Each reader's slot, once: the slot whose description is its name. */
static void
fl_map_slots(void)
{
	CK_SLOT_ID ids[64];
	CK_SLOT_INFO si;
	CK_ULONG n = 64, i;
	size_t dl, rl;
	int k, hits;

	if (fl_p11->C_GetSlotList(CK_FALSE, ids, &n) != CKR_OK)
		fl_die("C_GetSlotList failed");
	for (k = 0; k < fl_nreaders; k++) {
		rl = strlen(fl_readers[k].name);
		for (hits = 0, i = 0; i < n; i++) {
			if (fl_p11->C_GetSlotInfo(ids[i], &si) != CKR_OK)
				continue;
			for (dl = 64; dl > 0 && si.slotDescription[dl - 1] ==
			    ' '; dl--)
				;
			if (dl == 0 || dl > rl || (dl < rl && dl < 64) ||
			    memcmp(si.slotDescription, fl_readers[k].name,
			    dl) != 0)
				continue;
			fl_readers[k].slot = ids[i];
			hits++;
		}
		if (hits != 1)
			fl_die("%s: %d PKCS#11 slots match this reader",
			    fl_readers[k].name, hits);
	}
}

/* ----- one card ----- */

static void
fl_serial_text(struct fl_job *j)
{
	size_t n = FL_FIELD_LEN, i;

	while (n > 0 && j->serial[n - 1] == ' ')
		n--;
	for (i = 0; i < n; i++)
		j->serial_text[i] = j->serial[i] >= 0x21 && j->serial[i] <
		    0x7F ? (char)j->serial[i] : '?';
	j->serial_text[n] = '\0';
}

/* The outcome is recorded; "-" stands for a step that did not happen. */
static void
fl_report(struct fl_job *j)
{
	char line[400];
	size_t n;
	int s;

	n = (size_t)snprintf(line, sizeof(line), "floor\t%d\t%s\t%s\t%lld",
	    fl_nreaders, j->serial_text[0] != '\0' ? j->serial_text : "-",
	    j->outcome, j->last - j->t0);
	for (s = 0; s < FL_NSTEPS && n < sizeof(line); s++) {
		if (j->us[s] < 0)
			n += (size_t)snprintf(line + n, sizeof(line) - n,
			    "\t-");
		else
			n += (size_t)snprintf(line + n, sizeof(line) - n,
			    "\t%lld", j->us[s]);
	}
	pthread_mutex_lock(&fl_done_lock);
	fprintf(fl_results, "%s\n", line);
	fflush(fl_results);
	printf("%s: %s %s %.2f ms\n", j->r->name, j->serial_text, j->outcome,
	    (double)(j->last - j->t0) / 1000.0);
	fflush(stdout);
	pthread_mutex_unlock(&fl_done_lock);
}

/* A step failed: its row (one commit) and a short word. */
static void
fl_fail(struct fl_job *j, const char *word, CK_RV rv)
{
	char reason[120], ckr[24];

	snprintf(reason, sizeof(reason), "bench floor: %s", word);
	snprintf(ckr, sizeof(ckr), "0x%08lX", (unsigned long)rv);
	j->outcome = word;
	/* A credit that may be spent with no license: cardlicd's state. */
	if (fl_record(j, strcmp(word, "in-doubt") == 0 ? "in-doubt" :
	    "failed", reason, rv != CKR_OK ? ckr : NULL) < 0)
		j->outcome = "dbfail";
	fl_step(j, FL_OUTCOME);
}

/*
 * Invariant 10 (issue 18): the card is read again (C_GetTokenInfo, which
 * also gives the PIN's flags) after the status, before the login, before
 * the load and after the read-back, as cardlicd does, since no program
 * may load a license or try a PIN on a card it has not seen to be its
 * own.  CKR_OK when it is the job's card; after the read-back (gone_ok),
 * also when it has left (the feeder takes it as soon as it is read).
 */
static CK_RV
fl_same_card(struct fl_job *j, int gone_ok)
{
	CK_TOKEN_INFO ti;
	CK_RV rv;

	if ((rv = fl_p11->C_GetTokenInfo(j->r->slot, &ti)) != CKR_OK)
		return gone_ok ? CKR_OK : rv;
	if (memcmp(ti.model, j->model, FL_FIELD_LEN) != 0 ||
	    memcmp(ti.serialNumber, j->serial, FL_FIELD_LEN) != 0)
		return CKR_DEVICE_REMOVED;
	return CKR_OK;
}

static void
fl_card(struct fl_job *j)
{
	CK_ATTRIBUTE a;
	CK_TOKEN_INFO ti;
	CK_SLOT_ID ids[64];
	CK_ULONG nids = 64;
	CK_SESSION_HANDLE h = 0;
	uint8_t buf[256];
	const char *bad;
	CK_RV rv;
	int s, logged = 0;

	for (s = 0; s < FL_NSTEPS; s++)
		j->us[s] = -1;
	j->last = j->t0;
	j->id = __atomic_add_fetch(&fl_jobs, 1, __ATOMIC_RELAXED);
	if (fl_slot_list)
		fl_p11->C_GetSlotList(CK_FALSE, ids, &nids);
	rv = fl_p11->C_GetTokenInfo(j->r->slot, &ti);
	fl_step(j, FL_TOKEN);
	if (rv != CKR_OK) {
		j->outcome = "notoken";	/* not a target card: no row */
		return;
	}
	memcpy(j->model, ti.model, FL_FIELD_LEN);
	memcpy(j->serial, ti.serialNumber, FL_FIELD_LEN);
	fl_serial_text(j);

	rv = fl_p11->C_OpenSession(j->r->slot, CKF_SERIAL_SESSION |
	    CKF_RW_SESSION, NULL, NULL, &h);
	if (rv == CKR_OK) {
		memset(buf, 0, sizeof(buf));
		a.type = FL_LICENSE_ATTR;
		a.pValue = buf;
		a.ulValueLen = FL_STATUS_LEN;
		rv = fl_p11->C_GetAttributeValue(h, 0, &a, 1);
		if (rv == CKR_OK && a.ulValueLen != FL_STATUS_LEN)
			rv = CKR_ATTRIBUTE_VALUE_INVALID;
		memcpy(j->status, buf, FL_STATUS_LEN);
	}
	if (rv == CKR_OK)
		rv = fl_same_card(j, 0);
	fl_step(j, FL_STATUS);
	if (rv != CKR_OK) {
		fl_fail(j, "statusfail", rv);
		goto out;
	}
	/* A card the middleware accepts needs no license (invariant 3). */
	if (j->status[1] != 0 && j->status[2] != 0) {
		j->outcome = "skipped";
		if (fl_record(j, "skipped", "already licensed", "CKR_OK") < 0)
			j->outcome = "dbfail";
		fl_step(j, FL_OUTCOME);
		goto out;
	}
	rv = fl_same_card(j, 0);
	if (rv == CKR_OK)
		rv = fl_p11->C_Login(h, CKU_USER, (CK_UTF8CHAR *)fl_pin,
		    fl_pin_len);
	fl_step(j, FL_LOGIN);
	if (rv != CKR_OK) {
		fl_fail(j, "loginfail", rv);
		goto out;
	}
	logged = 1;

	if (!fl_find_pending(j)) {
		fl_step(j, FL_PENDING);
		fl_today(j->start);
		if (fl_record(j, "requested", "asking for a license starting "
		    "today", NULL) < 0) {
			j->outcome = "dbfail";
			goto out;
		}
		fl_step(j, FL_REQUESTED);
		pthread_mutex_lock(&fl_batch_lock);
		fl_step(j, FL_BATCHWAIT);
		bad = fl_generate(j);
		pthread_mutex_unlock(&fl_batch_lock);
		fl_step(j, FL_GENERATE);
		if (bad != NULL) {
			fl_fail(j, bad, CKR_OK);
			goto out;
		}
		j->license_seq = fl_record(j, "generated", "generated by the "
		    "batch card", NULL);
		fl_step(j, FL_GENERATED);
		if (j->license_seq < 0) {
			j->outcome = "dbfail";
			goto out;
		}
	} else
		fl_step(j, FL_PENDING);

	a.type = FL_LICENSE_ATTR;
	a.pValue = j->license;
	a.ulValueLen = FL_LICENSE_LEN;
	rv = fl_same_card(j, 0);
	if (rv == CKR_OK)
		rv = fl_p11->C_SetAttributeValue(h, 0, &a, 1);
	fl_step(j, FL_LOAD);
	if (rv != CKR_OK) {
		fl_fail(j, "loadfail", rv);
		goto out;
	}
	memset(buf, 0, sizeof(buf));
	a.pValue = buf;
	a.ulValueLen = FL_STATUS_LEN;
	rv = fl_p11->C_GetAttributeValue(h, 0, &a, 1);
	if (rv == CKR_OK && a.ulValueLen != FL_STATUS_LEN)
		rv = CKR_ATTRIBUTE_VALUE_INVALID;
	memcpy(j->status, buf, FL_STATUS_LEN);
	if (rv == CKR_OK)
		rv = fl_same_card(j, 1);
	fl_step(j, FL_READBACK);
	if (rv != CKR_OK) {
		fl_fail(j, "readfail", rv);
		goto out;
	}
	/* Invariant 5: both flags and the expected dates. */
	if (j->status[1] != 0 && j->status[2] != 0 &&
	    memcmp(j->status + 3, j->start, 8) == 0 &&
	    memcmp(j->status + 11, j->end, 8) == 0) {
		j->outcome = "verified";
		if (fl_record(j, "verified", "the card reports the license "
		    "valid with the expected dates", "CKR_OK") < 0)
			j->outcome = "dbfail";
	} else {
		j->outcome = "rejected";
		if (fl_record(j, "rejected", "the card does not report the "
		    "license valid with the expected dates", "CKR_OK") < 0)
			j->outcome = "dbfail";
	}
	fl_step(j, FL_OUTCOME);
out:
	if (logged)
		fl_p11->C_Logout(h);
	if (h != 0)
		fl_p11->C_CloseSession(h);
}

static void *
fl_reader_main(void *arg)
{
	struct fl_reader *r = arg;
	SCARD_READERSTATE rs;
	struct fl_job j;
	DWORD handled = 0;
	int first = 1, stop;
	LONG rv;

	memset(&rs, 0, sizeof(rs));
	rs.szReader = r->name;
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	for (;;) {
		pthread_mutex_lock(&fl_done_lock);
		stop = fl_stop;
		pthread_mutex_unlock(&fl_done_lock);
		if (stop)
			break;
		rv = SCardGetStatusChange(r->ctx, INFINITE, &rs, 1);
		memset(&j, 0, sizeof(j));
		j.t0 = fl_now_us();
		pthread_mutex_lock(&fl_done_lock);
		stop = fl_stop;
		pthread_mutex_unlock(&fl_done_lock);
		if (stop || rv == SCARD_E_CANCELLED)
			break;
		if (rv != SCARD_S_SUCCESS) {
			fprintf(stderr, "bench/floor: %s: "
			    "SCardGetStatusChange: %s\n", r->name,
			    pcsc_stringify_error(rv));
			break;
		}
		rs.dwCurrentState = rs.dwEventState & ~SCARD_STATE_CHANGED;
		/* A new card: present, powered, and a new event count. */
		if (!(rs.dwEventState & SCARD_STATE_PRESENT) ||
		    (rs.dwEventState & SCARD_STATE_MUTE) ||
		    (!first && rs.dwEventState >> 16 == handled))
			continue;
		first = 0;
		handled = rs.dwEventState >> 16;
		j.r = r;
		fl_card(&j);
		fl_report(&j);
		pthread_mutex_lock(&fl_done_lock);
		if (++fl_done >= fl_count)
			pthread_cond_signal(&fl_done_cond);
		pthread_mutex_unlock(&fl_done_lock);
	}
	return NULL;
}

static void
fl_read_pin(const char *path)
{
	FILE *f;

	if ((f = fopen(path, "r")) == NULL)
		fl_die("%s: %s", path, strerror(errno));
	if (fgets(fl_pin, sizeof(fl_pin), f) == NULL)
		fl_die("%s: empty", path);
	fclose(f);
	fl_pin_len = strcspn(fl_pin, "\r\n");
	fl_pin[fl_pin_len] = '\0';
}

static void
fl_usage(void)
{
	fprintf(stderr, "usage: bench/floor --db FILE --batch-reader NAME "
	    "--readers \"N1,N2\" --module PATH\n"
	    "       --pin-file F --count N --results FILE [--slot-list]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "batch-reader", required_argument, NULL, 'b' },
		{ "readers", required_argument, NULL, 'r' },
		{ "module", required_argument, NULL, 'm' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "count", required_argument, NULL, 'n' },
		{ "results", required_argument, NULL, 'R' },
		{ "slot-list", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 }
	};
	const char *db = NULL, *list = NULL, *module = NULL, *pin = NULL;
	const char *results = NULL, *p, *comma;
	struct rusage ru;
	size_t n;
	int ch, k;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': db = optarg; break;
		case 'b': fl_batch_reader = optarg; break;
		case 'r': list = optarg; break;
		case 'm': module = optarg; break;
		case 'p': pin = optarg; break;
		case 'n': fl_count = strtol(optarg, NULL, 10); break;
		case 'R': results = optarg; break;
		case 's': fl_slot_list = 1; break;
		default: fl_usage();
		}
	}
	if (db == NULL || fl_batch_reader == NULL || list == NULL ||
	    module == NULL || pin == NULL || results == NULL ||
	    fl_count < 1 || optind != argc)
		fl_usage();
	for (p = list; *p != '\0'; p = *comma != '\0' ? comma + 1 : comma) {
		comma = strchr(p, ',');
		if (comma == NULL)
			comma = p + strlen(p);
		n = (size_t)(comma - p);
		if (n == 0 || n >= sizeof(fl_readers[0].name) ||
		    fl_nreaders == FL_MAX_READERS)
			fl_die("--readers: '%s'", list);
		memcpy(fl_readers[fl_nreaders].name, p, n);
		fl_readers[fl_nreaders++].name[n] = '\0';
	}
	fl_read_pin(pin);
	if ((fl_results = fopen(results, "a")) == NULL)
		fl_die("%s: %s", results, strerror(errno));
	fl_db_open(db);
	fl_batch_open();
	fl_db_resume();
	fl_p11_load(module);
	fl_map_slots();
	for (k = 0; k < fl_nreaders; k++)
		if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL,
		    &fl_readers[k].ctx) != SCARD_S_SUCCESS)
			fl_die("%s: no PC/SC context", fl_readers[k].name);
	for (k = 0; k < fl_nreaders; k++)
		if (pthread_create(&fl_readers[k].thread, NULL,
		    fl_reader_main, &fl_readers[k]) != 0)
			fl_die("pthread_create failed");
	printf("bench/floor: ready, %d target readers, batch card in %s\n",
	    fl_nreaders, fl_batch_reader);
	fflush(stdout);

	pthread_mutex_lock(&fl_done_lock);
	while (fl_done < fl_count)
		pthread_cond_wait(&fl_done_cond, &fl_done_lock);
	fl_stop = 1;
	pthread_mutex_unlock(&fl_done_lock);
	/*
	 * A thread may be finishing a card and only then wait again: it is
	 * cancelled until it has ended, not just once.
	 */
	for (k = 0; k < fl_nreaders; k++) {
		struct timespec ts;

		do {
			SCardCancel(fl_readers[k].ctx);
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
		} while (pthread_timedjoin_np(fl_readers[k].thread, NULL,
		    &ts) != 0);
		SCardReleaseContext(fl_readers[k].ctx);
	}
	fclose(fl_results);
	/* Its own CPU: user and system, all threads, the module's too. */
	getrusage(RUSAGE_SELF, &ru);
	printf("bench/floor: %ld cards, CPU %.1f ms (%.2f ms per card)\n",
	    fl_done, (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) *
	    1000.0 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) /
	    1000.0, ((double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) *
	    1000.0 + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) /
	    1000.0) / (double)fl_done);
	SCardDisconnect(fl_batch_card, SCARD_LEAVE_CARD);
	SCardReleaseContext(fl_batch_ctx);
	fl_p11->C_Finalize(NULL);
	p11_kit_module_release(fl_p11);
	sqlite3_finalize(fl_insert);
	sqlite3_finalize(fl_pending);
	sqlite3_close(fl_db);
	return 0;
}
