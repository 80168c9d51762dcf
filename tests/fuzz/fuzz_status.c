/*
 * The status check of a target card: issue.c is included and one job's
 * steps (issue_card) run over a fuzzed card (its 19-byte status, then the one read back after
 * the load), a fuzzed pending license, renewal window and day.  The
 * middleware, the database and the batch cards are stubs that record
 * what the job did.  Checked against the vendor text and DESIGN.md,
 * written here apart from job.c:
 *
 *  - "skipped" only when the middleware takes the license (serialValid
 *    and dateValid true, not 0; or serialValid and a start date still to
 *    come, when dateValid is 0 until then) and the license is not due for
 *    renewal (renew-within-days 0, an end of 00000000, or a valid end
 *    date at least that many days away; an end that is no date is due);
 *  - "verified" only when the middleware takes the status read and it
 *    has the dates of the license the job loaded or found pending;
 *  - no credit is asked for when the card was skipped or verified at
 *    once, and at most one per job;
 *  - every row's reason and the operator's line are printable ASCII:
 *    card bytes are escaped.
 *
 * Input: st1[19] st2[19] pending(1) pstart[8] pend[8] renew(2) today(2)
 * flags(1) gen_end[8] model[16] serial[16].
 */
#include "../../daemon/issue.c"
#include "../../daemon/record.c"
#include "stubs.h"

#include <fcntl.h>

#define FS_LEN	(19 + 19 + 1 + 8 + 8 + 2 + 2 + 1 + 8 + 16 + 16)
#define FS_ROWS	16

static const uint8_t	*fs_in;
static int		 fs_status_calls, fs_generates, fs_nrows;
static char		 fs_states[FS_ROWS][16];
static uint8_t		 fs_row_status[FS_ROWS][STATUS_LEN];
static int		 fs_row_has_status[FS_ROWS];
static char		 fs_row_dates[FS_ROWS][2][DATE_LEN + 1];
static struct conf	 fs_conf;
static long		 fs_seq;

static void
fs_printable(const char *s, const char *what)
{
	const unsigned char *p;

	if (s == NULL)
		return;
	for (p = (const unsigned char *)s; *p != '\0'; p++)
		FUZZ_CHECK(*p >= 0x20 && *p < 0x7F, "byte %02X in %s: %s",
		    *p, what, s);
}

/* The middleware. */
unsigned long
p11_open(unsigned long slot, unsigned long *session)
{
	(void)slot;
	*session = 7;
	return CKR_OK;
}

/* The card stays the job's: the harness fuzzes its status, not swaps. */
unsigned long
p11_token_now(unsigned long slot, struct token *t)
{
	t->slot = slot;
	memcpy(t->model, fs_in + FS_LEN - 32, FIELD_LEN);
	memcpy(t->serial, fs_in + FS_LEN - 16, FIELD_LEN);
	t->flags = 0;
	return CKR_OK;
}

unsigned
watch_card_now(const char *reader)
{
	(void)reader;
	return 0;
}

void
p11_close(unsigned long s)
{
	(void)s;
}

unsigned long
p11_status(unsigned long s, uint8_t st[STATUS_LEN], unsigned long *len)
{
	unsigned flags = fs_in[59];

	(void)s;
	*len = STATUS_LEN;
	fs_status_calls++;
	FUZZ_CHECK(fs_status_calls <= 2, "status read %d times",
	    fs_status_calls);
	if (fs_status_calls == 1 && (flags & 0x20))
		return CKR_DEVICE_ERROR;
	if (fs_status_calls == 2 && (flags & 0x10))
		return CKR_DEVICE_REMOVED;
	memcpy(st, fs_in + (fs_status_calls == 1 ? 0 : 19), STATUS_LEN);
	return CKR_OK;
}

unsigned long
p11_login(unsigned long s, const char *pin, size_t len)
{
	(void)s;
	(void)pin;
	(void)len;
	return CKR_OK;
}

unsigned long
p11_logout(unsigned long s)
{
	(void)s;
	return CKR_OK;
}

unsigned long
p11_load_license(unsigned long s, const uint8_t *lic)
{
	(void)s;
	(void)lic;
	return (fs_in[59] & 0x08) ? CKR_DEVICE_ERROR : CKR_OK;
}

const char *
p11_rv_name(unsigned long rv)
{
	return rv == CKR_OK ? "CKR_OK" : "CKR_DEVICE_ERROR";
}

int
p11_pin_locked(unsigned long flags)
{
	(void)flags;
	return (fs_in[59] & 0x01) != 0;
}

int
p11_pin_final_try(unsigned long flags)
{
	(void)flags;
	return (fs_in[59] & 0x02) != 0;
}

int
p11_pin_tried_wrong(unsigned long flags)
{
	(void)flags;
	return (fs_in[59] & 0x04) != 0;
}

/* The database. */
long
db_append(const struct db_row *r, char *err, size_t len)
{
	int k = fs_nrows;

	(void)err;
	(void)len;
	FUZZ_CHECK(fs_nrows < FS_ROWS, "more than %d rows", FS_ROWS);
	fs_printable(r->reason, r->state);
	snprintf(fs_states[k], sizeof(fs_states[k]), "%s", r->state);
	fs_row_has_status[k] = r->status != NULL;
	if (r->status != NULL)
		memcpy(fs_row_status[k], r->status, STATUS_LEN);
	snprintf(fs_row_dates[k][0], DATE_LEN + 1, "%s", r->start_date != NULL ?
	    r->start_date : "");
	snprintf(fs_row_dates[k][1], DATE_LEN + 1, "%s", r->end_date != NULL ?
	    r->end_date : "");
	fs_nrows++;
	return ++fs_seq;
}

long
db_append_rows(const struct db_row *r, int n, char *err, size_t len)
{
	long seq = -1;
	int i;

	for (i = 0; i < n; i++)
		seq = db_append(&r[i], err, len);
	return seq;
}

int
db_find_pending(const uint8_t *model, const uint8_t *serial, long today,
    int verified_too, struct db_pending *p)
{
	int k;

	(void)model;
	(void)serial;
	(void)today;
	(void)verified_too;
	if (fs_in[38] % 3 == 0)
		return 0;
	if (fs_in[38] % 3 == 2)
		return -1;
	memset(p, 0, sizeof(*p));
	p->license_seq = 42;
	memset(p->license, 0x4C, LICENSE_LEN);
	/* The database holds the daemon's own text: digits. */
	for (k = 0; k < DATE_LEN; k++) {
		p->start_date[k] = (char)('0' + fs_in[39 + k] % 10);
		p->end_date[k] = (char)('0' + fs_in[47 + k] % 10);
	}
	return 1;
}

long
db_find_rejected(const uint8_t *m, const uint8_t *s)
{
	(void)m;
	(void)s;
	return 0;
}

long
db_find_doubt(const uint8_t *m, const uint8_t *s)
{
	(void)m;
	(void)s;
	return 0;
}

long
db_batch_count(const char *r, const char *a)
{
	(void)r;
	(void)a;
	return 0;
}

const char *
db_refusing(void)
{
	return NULL;
}

int
db_tail_ok(void)
{
	return 0;
}

long
db_next_job(void)
{
	return 1;
}

void
db_chain_head(char head[65])
{
	memset(head, '0', 64);
	head[64] = '\0';
}

/* The batch cards. */
int
batch_available(void)
{
	return 1;
}

int
batch_pick(char *reader, char *atr, int *waited)
{
	(void)waited;
	snprintf(reader, READER_MAX, "Batch Reader");
	snprintf(atr, 2 * ATR_MAX + 1, "3B00");
	return 1;
}

void
batch_unpick(int hold)
{
	(void)hold;
}

void
batch_settle(const char *reader)
{
	(void)reader;
}

void
batch_wait_settled(const char *reader)
{
	(void)reader;
}

enum batch_result
batch_generate(int hold, const uint8_t *model, const uint8_t *serial,
    const char *start, struct batch_license *out)
{
	long d;

	(void)hold;
	(void)model;
	(void)serial;
	fs_generates++;
	memset(out, 0, sizeof(*out));
	snprintf(out->reader, sizeof(out->reader), "Batch Reader");
	snprintf(out->atr, sizeof(out->atr), "3B00");
	if (fs_in[59] & 0x04) {
		out->sw = 0x6F00;
		snprintf(out->message, sizeof(out->message), "in doubt");
		return BATCH_DOUBT;
	}
	/* What batch_parse lets through: a date on or after the start. */
	if (date_parse((const char *)fs_in + 60, DATE_LEN, &d) == 0 &&
	    d >= date_today(NULL) - 100000)
		memcpy(out->end_date, fs_in + 60, DATE_LEN);
	else
		memcpy(out->end_date, "00000000", DATE_LEN);
	(void)start;
	memset(out->license, 0x55, LICENSE_LEN);
	out->has_license = 1;
	out->sw = 0x9000;
	snprintf(out->message, sizeof(out->message), "generated");
	return BATCH_OK;
}

/* The PIN's turns: this configuration's PIN was accepted before. */
enum pinturn
pinturn_begin(unsigned long gen)
{
	(void)gen;
	return PINTURN_FREE;
}

void
pinturn_end(unsigned long gen, enum pinturn how, int ok, int refused)
{
	(void)gen;
	(void)how;
	(void)ok;
	(void)refused;
}

/* A stop never cut a first try short here (no pin_doubt in the job). */
void
pinturn_tried(const struct conf *c, int refused)
{
	(void)c;
	(void)refused;
}

/* The rest of the daemon. */
long
job_now_ms(void)
{
	return 0;
}

int
spill_reserve(char *err, size_t len)
{
	(void)err;
	(void)len;
	return 0;
}

int
spill_write(int fd, long id, const struct spill_license *l, char *err,
    size_t len)
{
	(void)fd;
	(void)id;
	(void)l;
	(void)err;
	(void)len;
	return 0;
}

int
spill_sync(int fd, long id, char *err, size_t len)
{
	(void)fd;
	(void)id;
	(void)err;
	(void)len;
	return 0;
}

void
spill_release(int fd, long id)
{
	(void)fd;
	(void)id;
}

long
conf_start_date(const struct conf *c, long today)
{
	(void)c;
	return today;
}

void
log_card(const struct card_report *cr)
{
	fs_printable(cr->serial, "operator line serial");
	fs_printable(cr->model, "operator line model");
	fs_printable(cr->reason, "operator line reason");
	fs_printable(cr->end_date, "operator line end date");
}

/* Due for renewal, by the vendor's dates: written apart from job.c. */
static int
fs_due(const uint8_t *st, long renew, long today)
{
	long end;

	if (renew == 0 || memcmp(st + 11, "00000000", 8) == 0)
		return 0;
	if (date_parse((const char *)st + 11, 8, &end) != 0)
		return 1;
	return end - today < renew;
}

/*
 * The middleware takes the license: serialValid and dateValid, or
 * serialValid and a start still to come (dateValid is 0 until then; the
 * vendor's start-date policies today-plus and next-month make such
 * licenses, and they verify).  Today counts as to come: the middleware's
 * clock may be a day behind the daemon's zone (issue 18, case 13).
 */
static long	fs_today;

static int
fs_accepted(const uint8_t *st)
{
	long start;

	return st[1] != 0 && (st[2] != 0 || (date_parse((const char *)st + 3,
	    8, &start) == 0 && start >= fs_today));
}

static int
fs_matches(const uint8_t *st, const char *start, const char *end)
{
	return fs_accepted(st) && strlen(start) == DATE_LEN &&
	    strlen(end) == DATE_LEN && memcmp(st + 3, start, DATE_LEN) == 0 &&
	    memcmp(st + 11, end, DATE_LEN) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int devnull = -1;
	struct job_result res;
	struct job_ctx ctx;
	struct rec *j;
	const uint8_t *st1 = data;
	long renew, today;
	int i, verified = 0, skipped = 0, requested = 0;

	if (size < FS_LEN)
		return 0;
	if (devnull < 0)
		devnull = open("/dev/null", O_WRONLY);
	fs_in = data;
	fs_status_calls = fs_generates = fs_nrows = 0;
	fs_seq = 0;
	renew = (long)((data[55] << 8 | data[56]) % 3651);
	today = date_to_days(2026, 1, 1) + (long)(data[57] << 8 | data[58]) -
	    32768;
	memset(&fs_conf, 0, sizeof(fs_conf));
	snprintf(fs_conf.path, sizeof(fs_conf.path), "fuzz.conf");
	fs_conf.renew_days = renew;
	memset(&ctx, 0, sizeof(ctx));
	memset(&res, 0, sizeof(res));
	ctx.conf = &fs_conf;
	snprintf(ctx.reader, sizeof(ctx.reader), "Fuzz Reader 00");
	ctx.today = today;
	fs_today = today;
	ctx.notify_fd = devnull;
	j = calloc(1, sizeof(*j));
	rec_init(j, &ctx, &res);
	/* What job.c does before it hands a target card to issue.c. */
	j->tok.slot = 1;
	j->has_tok = 1;
	memcpy(j->tok.model, data + FS_LEN - 32, FIELD_LEN);
	memcpy(j->tok.serial, data + FS_LEN - 16, FIELD_LEN);
	dbhash_text(j->tok.model, FIELD_LEN, j->model, sizeof(j->model));
	dbhash_text(j->tok.serial, FIELD_LEN, j->serial, sizeof(j->serial));
	issue_card(j, 0);
	FUZZ_CHECK(fs_generates <= 1, "%d credits asked for", fs_generates);
	for (i = 0; i < fs_nrows; i++) {
		if (strcmp(fs_states[i], "requested") == 0)
			requested++;
		if (strcmp(fs_states[i], "skipped") == 0) {
			skipped++;
			FUZZ_CHECK(fs_accepted(st1) &&
			    !fs_due(st1, renew, today), "skipped: flags %u %u,"
			    " end %.8s, renew %ld", st1[1], st1[2],
			    (const char *)st1 + 11, renew);
		}
		if (strcmp(fs_states[i], "verified") == 0) {
			verified++;
			FUZZ_CHECK(fs_row_has_status[i] &&
			    fs_matches(fs_row_status[i], fs_row_dates[i][0],
			    fs_row_dates[i][1]), "verified with status flags "
			    "%u %u against %s..%s", fs_row_status[i][1],
			    fs_row_status[i][2], fs_row_dates[i][0],
			    fs_row_dates[i][1]);
		}
	}
	FUZZ_CHECK(requested == fs_generates, "%d requested rows, %d "
	    "GENERATE", requested, fs_generates);
	FUZZ_CHECK(skipped + verified <= 1, "skipped %d, verified %d",
	    skipped, verified);
	/* A card skipped, or verified by its first status: no credit. */
	if (skipped || (verified && fs_status_calls == 1))
		FUZZ_CHECK(fs_generates == 0, "a credit spent on a card that "
		    "needed none");
	free(j);
	return 0;
}
