/*
 * cardlicctl reconcile: for each batch card, the credits spent against
 * what became of them, and against the batch card's own counter.
 *
 * It reads the audit table alone, in one pass in rowid order, and never
 * an index.  An index that lies (issue 11's adversary rebuilt one
 * without a `generated` row, and reconcile's totals changed) can then
 * change no answer, so reconcile needs no PRAGMA integrity_check, which
 * was 6 of its 7 s at 1,000,000 rows (issue 12); the pass is under a
 * second.  Whether the rows themselves are the station's is verify
 * --key's to prove, as before.
 *
 * What the answers mean is the views' (sql/), which the SQL of the
 * earlier reconcile read: a license's outcome is the state of the last
 * row that names it (issuance), a credit in doubt is settled by a
 * `resolved` row that names it (in_doubt), and a license is pending while
 * no `verified` or `rejected` row names it (pending).  One thing no view
 * says: a `requested` row that no later row of its station and job
 * answers is a credit in doubt, not decided, until the daemon's recovery
 * writes its `in-doubt` row (independent test round, case 6); reconcile
 * vouches for no step that another process was supposed to run.
 * tests/reconcile-oracle.py asks the views the same questions (and the
 * audit table the last one), and the tests compare its answers with
 * these, byte for byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cardlicctl.h"
#include "../daemon/dbhash.h"

/* A row's state, as far as reconcile tells them apart. */
enum recon_state {
	RS_GENERATED, RS_LOADED, RS_FAILED, RS_VERIFIED, RS_REJECTED,
	RS_INDOUBT, RS_RESOLVED, RS_COUNTED, RS_REQUESTED, RS_OTHER
};

/* A TEXT value, its exact bytes; p NULL for SQL NULL. */
struct recon_text {
	char	*p;
	size_t	 n;
};

/* A license: its `generated` row, and the last row that names it. */
struct recon_lic {
	long long	 seq;
	long long	 rowid;
	uint32_t	 card;
	uint8_t		 state;		/* enum recon_state of the last row */
	uint8_t		 spent;		/* that row: resolved, as spent */
	uint8_t		 closed;	/* a verified or rejected row names it */
};

/* A credit in doubt, and the `resolved` rows that name it. */
struct recon_doubt {
	long long	 seq;
	long long	 rowid;
	uint32_t	 card;
	uint32_t	 seg;		/* the counts of its card before it */
	uint32_t	 nres;
	uint32_t	 nspent;	/* of those, resolved as spent */
};

/*
 * A `requested` row that no later row of its job has answered: a credit
 * that the batch card may have spent, with no outcome (cardlicd stopped
 * after asking, and its next start records it as in doubt; or the card
 * is being issued right now).  Counted as a credit in doubt not decided.
 */
struct recon_req {
	long long	 seq;
	long long	 rowid;
	long long	 job;
	uint32_t	 card;
	uint32_t	 seg;		/* the counts of its card before it */
};

/*
 * The open requests of every station, by (station, job): linear probing,
 * cap a power of two, at most half full.  at is the index in the
 * station's req + 1; 0 is an empty slot.
 */
struct recon_slot {
	long long	 job;
	uint32_t	 station;
	uint32_t	 at;
};

/* A batch card's counter as an admin typed it in (a `counted` row). */
struct recon_count {
	long long		 seq;
	long long		 count;	/* NULL reads as 0, as SQLite's would */
	struct recon_text	 count_txt, when, reason;
};

/* A batch card: station, reader and ATR, as reconcile tells them apart. */
struct recon_card {
	uint32_t		 station;
	struct recon_text	 reader, atr;
	struct recon_count	*counts;
	size_t			 ncounts, capcounts;
	long long		*seg_gen;	/* generated rows per segment */
	/* The table's columns, then whether it has a line at all. */
	long long		 spent, verified, pending, rejected, doubt;
	long long		 lost;
	int			 lines;
};

struct recon_station {
	struct recon_text	 name;
	long long		 next;		/* the seq the next row must have */
	struct recon_lic	*lic;
	size_t			 nlic, caplic;
	struct recon_doubt	*dbt;
	size_t			 ndbt, capdbt;
	struct recon_req	*req;		/* open, in no order */
	size_t			 nreq, capreq;
};

struct recon {
	struct recon_station	*st;
	size_t			 nst, capst;
	struct recon_card	*card;
	size_t			 ncard, capcard;
	sqlite3_stmt		*more;	/* a rare row's other columns */
	struct recon_slot	*open;	/* the open requests' index */
	size_t			 capopen, nopen;
	char			 broken[300];
};

static const char *const recon_help =
"usage: cardlicctl reconcile\n"
"For each batch card: credits spent against what became of them.  SPENT\n"
"counts the licenses generated, the credits in doubt nobody has decided on,\n"
"and those an admin resolved as spent; a batch card's own counter should\n"
"say the same.  Where the counter was typed in (cardlicctl batch-count),\n"
"its rise between two counts must equal the credits that the rows between\n"
"them say were spent (licenses generated, and credits in doubt resolved as\n"
"spent); the first count is the baseline.  A difference is shown with both\n"
"counts; credits in doubt not yet decided may explain one (\"possibly\").\n"
"Then every credit with no card to show for it is listed: a license still\n"
"pending (its card has not come back), a credit in doubt (decide with\n"
"cardlicctl resolve), and a license asked for with no outcome (cardlicd\n"
"stopped after asking, or is issuing that card now), which counts as a\n"
"credit in doubt.  The exit status is 1 while any difference or any such\n"
"credit is listed.  reconcile reads the rows as they are: verify --key\n"
"proves that they are the station's.\n";

/* Room for one more of size each in *v, which holds *cap. */
static int
recon_grow(void *v, size_t *cap, size_t n, size_t size)
{
	void **p = v, *q;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap == 0 ? 64 : *cap * 2;
	if ((q = realloc(*p, c * size)) == NULL)
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

static int
recon_text_set(struct recon_text *t, sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	t->n = (size_t)sqlite3_column_bytes(st, i);
	t->p = NULL;
	if (s == NULL)
		return 0;
	if ((t->p = malloc(t->n + 1)) == NULL)
		return -1;
	memcpy(t->p, s, t->n);
	t->p[t->n] = '\0';
	return 0;
}

/* Column i equals t: NULL equals NULL, as GROUP BY takes them. */
static int
recon_text_eq(const struct recon_text *t, sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	if (s == NULL || t->p == NULL)
		return s == NULL && t->p == NULL;
	return (size_t)sqlite3_column_bytes(st, i) == t->n &&
	    memcmp(s, t->p, t->n) == 0;
}

/* SQLite's ORDER BY on TEXT (BINARY), NULL first. */
static int
recon_text_cmp(const struct recon_text *a, const struct recon_text *b)
{
	int c;

	if (a->p == NULL || b->p == NULL)
		return (a->p != NULL) - (b->p != NULL);
	if ((c = memcmp(a->p, b->p, a->n < b->n ? a->n : b->n)) != 0)
		return c;
	return (a->n > b->n) - (a->n < b->n);
}

/* For a human: escaped, "-" for NULL, as the other commands show them. */
static const char *
recon_show(const struct recon_text *t)
{
	return t->p == NULL ? "-" : ctl_esc(t->p, t->n);
}

/* The state's exact bytes: "verified" and nothing after it. */
static enum recon_state
recon_state_of(sqlite3_stmt *st, int i)
{
	static const char *const names[] = { "generated", "loaded", "failed",
	    "verified", "rejected", "in-doubt", "resolved", "counted",
	    "requested" };
	const char *s = sqlite3_column_blob(st, i);
	size_t k, n = (size_t)sqlite3_column_bytes(st, i);

	if (s == NULL || n < 6)
		return RS_OTHER;
	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (strlen(names[k]) == n && memcmp(s, names[k], n) == 0)
			return (enum recon_state)k;
	return RS_OTHER;
}

/* reason LIKE 'spent:%', as the views test it: ASCII case ignored. */
static int
recon_like_spent(sqlite3_stmt *st, int i)
{
	const char *s = (const char *)sqlite3_column_text(st, i);

	return s != NULL && strncasecmp(s, "spent:", 6) == 0;
}

static struct recon_station *
recon_station(struct recon *r, sqlite3_stmt *st, int i, uint32_t *idx)
{
	static size_t last;
	struct recon_station *s;
	size_t k;

	if (last < r->nst && recon_text_eq(&r->st[last].name, st, i)) {
		*idx = (uint32_t)last;
		return &r->st[last];
	}
	for (k = 0; k < r->nst; k++)
		if (recon_text_eq(&r->st[k].name, st, i)) {
			*idx = (uint32_t)(last = k);
			return &r->st[k];
		}
	if (recon_grow(&r->st, &r->capst, r->nst, sizeof(*r->st)) != 0)
		return NULL;
	s = &r->st[r->nst];
	memset(s, 0, sizeof(*s));
	if (recon_text_set(&s->name, st, i) != 0)
		return NULL;
	s->next = 1;
	*idx = (uint32_t)(last = r->nst++);
	return s;
}

static int
recon_card_is(const struct recon_card *c, uint32_t station, sqlite3_stmt *st,
    int ri, int ai)
{
	return c->station == station && recon_text_eq(&c->reader, st, ri) &&
	    recon_text_eq(&c->atr, st, ai);
}

/* The batch card of a row (its station, columns ri and ai). */
static int
recon_card(struct recon *r, uint32_t station, sqlite3_stmt *st, int ri,
    int ai, uint32_t *idx)
{
	static size_t last;
	struct recon_card *c;
	size_t k;

	/* Most rows have the batch card of the row before. */
	if (last < r->ncard && recon_card_is(&r->card[last], station, st, ri,
	    ai)) {
		*idx = (uint32_t)last;
		return 0;
	}
	for (k = 0; k < r->ncard; k++)
		if (recon_card_is(&r->card[k], station, st, ri, ai)) {
			*idx = (uint32_t)(last = k);
			return 0;
		}
	if (recon_grow(&r->card, &r->capcard, r->ncard, sizeof(*r->card)) !=
	    0)
		return -1;
	c = &r->card[r->ncard];
	memset(c, 0, sizeof(*c));
	c->station = station;
	if (recon_text_set(&c->reader, st, ri) != 0 ||
	    recon_text_set(&c->atr, st, ai) != 0 ||
	    (c->seg_gen = calloc(1, sizeof(*c->seg_gen))) == NULL)
		return -1;
	*idx = (uint32_t)(last = r->ncard++);
	return 0;
}

/*
 * The element of a station's licenses or doubts (n of size bytes, in seq
 * order, each starting with its seq) whose seq is seq, or NULL.
 */
static void *
recon_find(void *base, size_t n, size_t size, long long seq)
{
	size_t lo = 0, hi = n, m;
	long long at;

	while (lo < hi) {
		m = lo + (hi - lo) / 2;
		memcpy(&at, (char *)base + m * size, sizeof(at));
		if (at < seq)
			lo = m + 1;
		else if (at > seq)
			hi = m;
		else
			return (char *)base + m * size;
	}
	return NULL;
}

/*
 * Columns of the pass, then of r->more.  From RC_MORE on come the TEXT
 * columns that the pass does not read otherwise (RC_NMORE of them), read
 * only to see that none holds a NUL byte.
 */
enum {
	RC_ROWID, RC_STATION, RC_SEQ, RC_STATE, RC_LICENSE, RC_READER,
	RC_ATR, RC_JOB, RC_MORE
};
#define RC_MORE_COLS	", utc, reader, reason, start_date, end_date, sw, " \
	"ckr, timings"
#define RC_NMORE	8
/* Every TEXT column of the row, read by the pass. */
#define RC_ONE_TEXT		1
#define RC_ONE_INTEGER		0
#define RC_ONE_BLOB		0
#define RC_ONE(name, type, exp, at, hex_at)	+ RC_ONE_##type
_Static_assert(4 + RC_NMORE == 0 AUDITROW_HASHED_COLUMNS(RC_ONE),
    "reconcile's pass must read every TEXT column of auditrow.h");
enum { RM_REASON, RM_COUNT, RM_WHEN };

/*
 * The columns that only `counted` and `resolved` rows need, read by
 * rowid (the table itself, no index): asking every row of the pass for
 * them cost more than these few look-ups.
 */
static sqlite3_stmt *
recon_more(struct recon *r, sqlite3_stmt *st)
{
	sqlite3_reset(r->more);
	sqlite3_bind_int64(r->more, 1, sqlite3_column_int64(st, RC_ROWID));
	return sqlite3_step(r->more) == SQLITE_ROW ? r->more : NULL;
}

static int
recon_counted(struct recon *r, uint32_t card, sqlite3_stmt *m, long long seq)
{
	struct recon_card *c = &r->card[card];
	struct recon_count *k;
	long long *g;

	if (recon_grow(&c->counts, &c->capcounts, c->ncounts,
	    sizeof(*c->counts)) != 0 || (g = realloc(c->seg_gen,
	    (c->ncounts + 2) * sizeof(*g))) == NULL)
		return -1;
	c->seg_gen = g;
	g[c->ncounts + 1] = 0;
	k = &c->counts[c->ncounts++];
	memset(k, 0, sizeof(*k));
	k->seq = seq;
	k->count = sqlite3_column_int64(m, RM_COUNT);
	if (recon_text_set(&k->count_txt, m, RM_COUNT) != 0 ||
	    recon_text_set(&k->when, m, RM_WHEN) != 0 ||
	    recon_text_set(&k->reason, m, RM_REASON) != 0)
		return -1;
	return 0;
}

static size_t
recon_hash(uint32_t station, long long job, size_t cap)
{
	uint64_t h = (uint64_t)job * 0x9E3779B97F4A7C15ULL ^
	    (uint64_t)station * 0xC2B2AE3D27D4EB4FULL;

	return (size_t)(h ^ h >> 29) & (cap - 1);
}

/* The slot of (station, job), or the empty one where it would go. */
static struct recon_slot *
recon_slot(struct recon *r, uint32_t station, long long job)
{
	size_t i;

	for (i = recon_hash(station, job, r->capopen); r->open[i].at != 0;
	    i = (i + 1) & (r->capopen - 1))
		if (r->open[i].job == job && r->open[i].station == station)
			break;
	return &r->open[i];
}

/* Room for one more open request: the index at most half full. */
static int
recon_open_room(struct recon *r)
{
	struct recon_slot *old = r->open, *n;
	size_t cap = r->capopen, i;

	if (2 * (r->nopen + 1) <= r->capopen)
		return 0;
	r->capopen = cap == 0 ? 256 : 2 * cap;
	if ((r->open = calloc(r->capopen, sizeof(*r->open))) == NULL) {
		r->open = old;
		r->capopen = cap;
		return -1;
	}
	for (i = 0; i < cap; i++)
		if (old[i].at != 0) {
			n = recon_slot(r, old[i].station, old[i].job);
			*n = old[i];
		}
	free(old);
	return 0;
}

/* Slot e emptied, and the run after it moved up (linear probing). */
static void
recon_slot_clear(struct recon *r, struct recon_slot *e)
{
	size_t i = (size_t)(e - r->open), j = i, k, mask = r->capopen - 1;

	for (;;) {
		j = (j + 1) & mask;
		if (r->open[j].at == 0)
			break;
		k = recon_hash(r->open[j].station, r->open[j].job,
		    r->capopen);
		/* j may move to i unless its home lies in (i, j]. */
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			r->open[i] = r->open[j];
			i = j;
		}
	}
	r->open[i].at = 0;
	r->nopen--;
}

/*
 * A row of station si and job: it answers the job's open request, if
 * any; a `requested` row opens one (seq, rowid, card ci).  -1: no memory.
 */
static int
recon_request(struct recon *r, uint32_t si, long long job, int requested,
    long long seq, long long rowid, uint32_t ci)
{
	struct recon_station *s = &r->st[si];
	struct recon_slot *e;
	struct recon_req *q;

	if (r->nopen > 0 && (e = recon_slot(r, si, job))->at != 0) {
		/* Answered: the last open request takes its place. */
		q = &s->req[e->at - 1];
		*q = s->req[--s->nreq];
		if (q != &s->req[s->nreq])
			recon_slot(r, si, q->job)->at = e->at;
		recon_slot_clear(r, e);
	}
	if (!requested)
		return 0;
	if (recon_open_room(r) != 0 || recon_grow(&s->req, &s->capreq,
	    s->nreq, sizeof(*s->req)) != 0)
		return -1;
	q = &s->req[s->nreq++];
	q->seq = seq;
	q->rowid = rowid;
	q->job = job;
	q->card = ci;
	q->seg = (uint32_t)r->card[ci].ncounts;
	e = recon_slot(r, si, job);
	e->station = si;
	e->job = job;
	e->at = (uint32_t)s->nreq;
	r->nopen++;
	return 0;
}

/*
 * A TEXT column of the row with a NUL byte in it: cardlicd never writes
 * one, and the row is made to be taken for another's (a station
 * "demo-line\0" beside "demo-line", for whatever stops at the NUL).
 * reconcile answers nothing from such a file.  0, or -1 with r->broken.
 */
static int
recon_nul(struct recon *r, sqlite3_stmt *st)
{
	const void *p;
	int i, k;

	/*
	 * As a BLOB: the same bytes, with no copy made to end them with a
	 * NUL (a third of the pass's time, as text).
	 */
	static const int fixed[4] = { RC_STATION, RC_STATE, RC_READER,
	    RC_ATR };

	for (i = 0; i < 4 + RC_NMORE; i++) {
		k = i < 4 ? fixed[i] : RC_MORE + i - 4;
		if ((p = sqlite3_column_blob(st, k)) == NULL ||
		    memchr(p, '\0', (size_t)sqlite3_column_bytes(st, k)) ==
		    NULL)
			continue;
		snprintf(r->broken, sizeof(r->broken), "station %s: row %lld: "
		    "its %s holds a NUL byte, which cardlicd never writes",
		    ctl_esc(sqlite3_column_text(st, RC_STATION), (size_t)
		    sqlite3_column_bytes(st, RC_STATION)),
		    (long long)sqlite3_column_int64(st, RC_SEQ),
		    sqlite3_column_name(st, k));
		return -1;
	}
	return 0;
}

/*
 * One row, in its station's order.  -1: out of memory; -2: broken; -3:
 * SQLite's error.
 */
static int
recon_row(struct recon *r, sqlite3_stmt *st)
{
	struct recon_station *s;
	struct recon_lic *l;
	struct recon_doubt *d;
	enum recon_state state;
	sqlite3_stmt *m;
	uint32_t si, ci;
	long long seq, lseq;
	int spent;

	if (sqlite3_column_type(st, RC_STATION) != SQLITE_TEXT ||
	    sqlite3_column_type(st, RC_SEQ) != SQLITE_INTEGER) {
		snprintf(r->broken, sizeof(r->broken), "the row at rowid %lld "
		    "has no station or no seq: the file is damaged",
		    (long long)sqlite3_column_int64(st, RC_ROWID));
		return -2;
	}
	if (recon_nul(r, st) != 0)
		return -2;
	if ((s = recon_station(r, st, RC_STATION, &si)) == NULL)
		return -1;
	seq = sqlite3_column_int64(st, RC_SEQ);
	/* As verify says it: the rows a pass skipped are missing. */
	if (seq != s->next) {
		if (seq > s->next)
			snprintf(r->broken, sizeof(r->broken), "station %s: "
			    "row %lld is missing: the rows go from %lld to "
			    "%lld (removed)", recon_show(&s->name), s->next,
			    s->next - 1, seq);
		else
			snprintf(r->broken, sizeof(r->broken), "station %s: "
			    "row %lld is out of order (after row %lld)",
			    recon_show(&s->name), seq, s->next - 1);
		return -2;
	}
	s->next++;
	state = recon_state_of(st, RC_STATE);
	/*
	 * Any row of a job answers its request; a `requested` row is one,
	 * naming the batch card that it asks.
	 */
	ci = 0;
	if (state == RS_REQUESTED && recon_card(r, si, st, RC_READER, RC_ATR,
	    &ci) != 0)
		return -1;
	if (recon_request(r, si, sqlite3_column_int64(st, RC_JOB),
	    state == RS_REQUESTED, seq, sqlite3_column_int64(st, RC_ROWID),
	    ci) != 0)
		return -1;
	if (state == RS_GENERATED || state == RS_INDOUBT ||
	    state == RS_COUNTED) {
		if (recon_card(r, si, st, RC_READER, RC_ATR, &ci) != 0)
			return -1;
		if (state == RS_COUNTED) {
			if ((m = recon_more(r, st)) == NULL)
				return -3;
			if (recon_counted(r, ci, m, seq) != 0)
				return -1;
		} else if (state == RS_GENERATED) {
			if (recon_grow(&s->lic, &s->caplic, s->nlic,
			    sizeof(*s->lic)) != 0)
				return -1;
			l = &s->lic[s->nlic++];
			l->seq = seq;
			l->rowid = sqlite3_column_int64(st, RC_ROWID);
			l->card = ci;
			l->state = RS_GENERATED;
			l->spent = l->closed = 0;
			r->card[ci].seg_gen[r->card[ci].ncounts]++;
		} else {
			if (recon_grow(&s->dbt, &s->capdbt, s->ndbt,
			    sizeof(*s->dbt)) != 0)
				return -1;
			d = &s->dbt[s->ndbt++];
			memset(d, 0, sizeof(*d));
			d->seq = seq;
			d->rowid = sqlite3_column_int64(st, RC_ROWID);
			d->card = ci;
			d->seg = (uint32_t)r->card[ci].ncounts;
		}
	}
	if (sqlite3_column_type(st, RC_LICENSE) != SQLITE_INTEGER)
		return 0;
	spent = 0;
	if (state == RS_RESOLVED) {
		if ((m = recon_more(r, st)) == NULL)
			return -3;
		spent = recon_like_spent(m, RM_REASON);
	}
	/* The rows come in seq order: this one is the last so far. */
	lseq = sqlite3_column_int64(st, RC_LICENSE);
	if ((l = recon_find(s->lic, s->nlic, sizeof(*l), lseq)) != NULL) {
		l->state = (uint8_t)state;
		l->spent = (uint8_t)spent;
		if (state == RS_VERIFIED || state == RS_REJECTED)
			l->closed = 1;
	}
	if (state == RS_RESOLVED && (d = recon_find(s->dbt, s->ndbt,
	    sizeof(*d), lseq)) != NULL) {
		d->nres++;
		d->nspent += (uint32_t)spent;
	}
	return 0;
}

/* The whole table, once, by rowid: 0, -1 (said), or -2 (broken). */
static int
recon_pass(struct ctl *c, struct recon *r)
{
	char sql[300];
	sqlite3_stmt *st;
	int rc = 0, s;

	snprintf(sql, sizeof(sql), "SELECT reason, batch_count, %s FROM "
	    "audit WHERE rowid = ?1", ctl_time(c, "utc"));
	if ((r->more = ctl_prepare(c, sql)) == NULL || (st = ctl_prepare(c,
	    "SELECT rowid, station, seq, state, license_seq, batch_reader, "
	    "batch_atr, job" RC_MORE_COLS " FROM audit NOT INDEXED ORDER BY "
	    "rowid")) == NULL)
		return -1;
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
		if ((rc = recon_row(r, st)) != 0)
			break;
	if (rc == -1)
		ctl_fail("%s: out of memory", c->db_path);
	else if (rc == -3 || (rc == 0 && s != SQLITE_DONE)) {
		ctl_fail("%s: %s", c->db_path, sqlite3_errmsg(c->db));
		rc = -1;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Each card's columns, from its licenses' outcomes and its doubts. */
static void
recon_totals(struct recon *r)
{
	struct recon_station *s;
	struct recon_card *c;
	struct recon_lic *l;
	struct recon_doubt *d;
	size_t i, k;

	for (i = 0; i < r->nst; i++) {
		s = &r->st[i];
		for (k = 0; k < s->nlic; k++) {
			l = &s->lic[k];
			c = &r->card[l->card];
			c->lines = 1;
			c->spent += l->state <= RS_INDOUBT || (l->state ==
			    RS_RESOLVED && l->spent);
			c->verified += l->state == RS_VERIFIED;
			c->pending += l->state <= RS_FAILED;
			c->rejected += l->state == RS_REJECTED;
			c->doubt += l->state == RS_INDOUBT;
			c->lost += l->state == RS_RESOLVED && l->spent;
		}
		for (k = 0; k < s->ndbt; k++) {
			d = &s->dbt[k];
			c = &r->card[d->card];
			c->lines = 1;
			if (d->nres == 0) {
				c->spent++;
				c->doubt++;
			}
			c->spent += d->nspent;
			c->lost += d->nspent;
		}
		/* A request with no outcome: in doubt, not decided. */
		for (k = 0; k < s->nreq; k++) {
			c = &r->card[s->req[k].card];
			c->lines = 1;
			c->spent++;
			c->doubt++;
		}
	}
}

static struct recon	*recon_sorting;

/* Cards in the order of station, reader, ATR. */
static int
recon_card_order(const void *a, const void *b)
{
	const struct recon_card *x = &recon_sorting->card[*(const uint32_t *)a];
	const struct recon_card *y = &recon_sorting->card[*(const uint32_t *)b];
	int c;

	if ((c = recon_text_cmp(&recon_sorting->st[x->station].name,
	    &recon_sorting->st[y->station].name)) != 0 ||
	    (c = recon_text_cmp(&x->reader, &y->reader)) != 0)
		return c;
	return recon_text_cmp(&x->atr, &y->atr);
}

static int
recon_req_order(const void *a, const void *b)
{
	long long x = ((const struct recon_req *)a)->seq;
	long long y = ((const struct recon_req *)b)->seq;

	return (x > y) - (x < y);
}

static int
recon_station_order(const void *a, const void *b)
{
	return recon_text_cmp(&recon_sorting->st[*(const uint32_t *)a].name,
	    &recon_sorting->st[*(const uint32_t *)b].name);
}

/* "3 generated, 1 in doubt resolved as spent" */
static const char *
recon_spent_words(const long long n[3])
{
	static char buf[120];

	if (n[1] == 0)
		snprintf(buf, sizeof(buf), "%lld generated", n[0]);
	else
		snprintf(buf, sizeof(buf), "%lld generated, %lld in doubt "
		    "resolved as spent", n[0], n[1]);
	return buf;
}

/*
 * Segment g of card ci (the rows after its count g - 1 and before its
 * count g; g = ncounts: since the last): the licenses generated, the
 * credits in doubt resolved as spent, those not decided (with the
 * requests that have no outcome), and their seqs.
 */
static void
recon_segment(const struct recon *r, uint32_t ci, size_t g, long long n[3],
    char *doubts, size_t len)
{
	const struct recon_card *c = &r->card[ci];
	const struct recon_station *s = &r->st[c->station];
	const struct recon_doubt *d;
	size_t k = 0, q = 0, o = 0;
	long long seq;

	n[0] = c->seg_gen[g];
	n[1] = n[2] = 0;
	doubts[0] = '\0';
	/* The doubts and the open requests, both in seq order, merged. */
	while (k < s->ndbt || q < s->nreq) {
		if (q == s->nreq || (k < s->ndbt &&
		    s->dbt[k].seq < s->req[q].seq)) {
			d = &s->dbt[k++];
			if (d->card != ci || d->seg != g)
				continue;
			n[1] += d->nspent;
			if (d->nres != 0)
				continue;
			seq = d->seq;
		} else {
			if (s->req[q].card != ci || s->req[q].seg != g) {
				q++;
				continue;
			}
			seq = s->req[q++].seq;
		}
		n[2]++;
		if (o < len)
			o += (size_t)snprintf(doubts + o, len - o, "%s#%lld",
			    o > 0 ? ", " : "", seq);
	}
}

static void
recon_count_line(const struct recon_count *k)
{
	printf("    count #%lld %s: %s, %s\n", k->seq, recon_show(&k->when),
	    recon_show(&k->count_txt), recon_show(&k->reason));
}

/*
 * Count g of card c against the one before it: 1 for a difference, else
 * 0 (a possible one, that the credits in doubt not yet decided may
 * explain, is shown but not counted: those are listed, and make
 * reconcile exit 1, anyway).
 */
static int
recon_count_check(const struct recon *r, const struct recon_card *c,
    size_t g, const long long n[3], const char *doubts)
{
	const struct recon_count *k = &c->counts[g], *p = &c->counts[g - 1];
	const char *st = recon_show(&r->st[c->station].name);
	long long rise = k->count - p->count, spent = n[0] + n[1];
	long long undecided = n[2];
	int maybe;

	if (rise == spent && undecided == 0) {
		printf("  %s %s (ATR %s): count #%lld %s: %s, up %lld since "
		    "#%lld: agrees with the rows (%s)\n", st,
		    recon_show(&c->reader), recon_show(&c->atr), k->seq,
		    recon_show(&k->when), recon_show(&k->count_txt), rise,
		    p->seq, recon_spent_words(n));
		return 0;
	}
	maybe = rise >= spent && rise <= spent + undecided;
	printf("  %s on %s %s (ATR %s):\n", maybe ? "POSSIBLE DIFFERENCE" :
	    "DIFFERENCE", st, recon_show(&c->reader), recon_show(&c->atr));
	recon_count_line(p);
	recon_count_line(k);
	if (rise < 0)
		printf("    the counter went down, by %lld: not the same batch "
		    "card, or a count typed in wrong\n", -rise);
	else
		printf("    the counter rose by %lld; the rows between say "
		    "%lld were spent (%s)\n", rise, spent,
		    recon_spent_words(n));
	if (undecided > 0)
		printf("    and %lld credit(s) in doubt are not decided (%s): "
		    "possibly %s\n", undecided, doubts, maybe ? "those; decide "
		    "them with cardlicctl resolve" : "spent, still no match");
	if (!maybe && rise > spent + undecided)
		printf("    %lld credit(s) spent that no row shows\n",
		    rise - spent - undecided);
	else if (!maybe && rise >= 0)
		printf("    %lld credit(s) in the rows that the counter did "
		    "not count\n", spent - rise);
	return !maybe;
}

/*
 * The batch cards' own counters, as admins typed them in, against the
 * rows: for each batch card, each count after the first must have risen
 * by what the rows between say was spent.  The number of differences.
 */
static int
recon_counts(const struct recon *r, const uint32_t *order)
{
	const struct recon_card *c;
	char doubts[400];
	long long n[3];
	size_t i, g;
	int diffs = 0, shown = 0;

	for (i = 0; i < r->ncard; i++) {
		c = &r->card[order[i]];
		for (g = 0; g < c->ncounts; g++) {
			if (shown++ == 0)
				printf("\nbatch card counters (cardlicctl "
				    "batch-count):\n");
			if (g == 0)
				printf("  %s %s (ATR %s): count #%lld %s: %s, "
				    "the first: the baseline\n",
				    recon_show(&r->st[c->station].name),
				    recon_show(&c->reader),
				    recon_show(&c->atr), c->counts[0].seq,
				    recon_show(&c->counts[0].when),
				    recon_show(&c->counts[0].count_txt));
			else {
				recon_segment(r, order[i], g, n, doubts,
				    sizeof(doubts));
				diffs += recon_count_check(r, c, g, n,
				    doubts);
			}
		}
		if (c->ncounts == 0)
			continue;
		/* After the last count: what the counter should say now. */
		recon_segment(r, order[i], c->ncounts, n, doubts,
		    sizeof(doubts));
		if (n[0] + n[1] + n[2] > 0)
			printf("    since #%lld: %lld spent (%s)%s%s%s; the "
			    "counter should now say %lld\n",
			    c->counts[c->ncounts - 1].seq, n[0] + n[1],
			    recon_spent_words(n), n[2] > 0 ? ", and in doubt "
			    "not decided: " : "", doubts, n[2] > 0 ?
			    " (possibly more)" : "",
			    c->counts[c->ncounts - 1].count + n[0] + n[1]);
	}
	return diffs;
}

/*
 * The row at rowid, read from the table itself: its serial as text, its
 * utc and its reason.  -1 if it is not the row of station s and seq.
 */
static int
recon_fetch(sqlite3_stmt *q, long long rowid, const struct recon_station *s,
    long long seq, const char *out[3])
{
	const void *b;
	int i;

	sqlite3_reset(q);
	sqlite3_bind_int64(q, 1, rowid);
	if (sqlite3_step(q) != SQLITE_ROW || sqlite3_column_int64(q, 0) !=
	    seq || !recon_text_eq(&s->name, q, 1))
		return -1;
	b = sqlite3_column_blob(q, 2);
	out[0] = b == NULL ? "-" : ctl_esc(b, dbhash_trimmed(b,
	    (size_t)sqlite3_column_bytes(q, 2)));
	for (i = 1; i < 3; i++) {
		b = sqlite3_column_text(q, i + 2);
		out[i] = b == NULL ? "-" : ctl_esc(b, (size_t)
		    sqlite3_column_bytes(q, i + 2));
	}
	return 0;
}

/*
 * The credits with no card to show for them, of one kind (enum below):
 * the licenses still pending, the credits in doubt not decided, or the
 * requests with no outcome, by station and seq.  n: how many were listed
 * before; then how many now, or -1.
 */
enum { RO_PENDING, RO_DOUBT, RO_REQUEST };

static int
recon_open_kind(const struct recon *r, const uint32_t *order,
    sqlite3_stmt *q, int kind, int n)
{
	const struct recon_station *s;
	const char *t[3];
	long long seq, rowid;
	uint32_t card;
	size_t i, k, m;

	for (i = 0; i < r->nst; i++) {
		s = &r->st[order[i]];
		m = kind == RO_PENDING ? s->nlic : kind == RO_DOUBT ? s->ndbt :
		    s->nreq;
		for (k = 0; k < m; k++) {
			if (kind == RO_PENDING) {
				if (s->lic[k].closed)
					continue;
				seq = s->lic[k].seq;
				rowid = s->lic[k].rowid;
				card = s->lic[k].card;
			} else if (kind == RO_DOUBT) {
				if (s->dbt[k].nres != 0)
					continue;
				seq = s->dbt[k].seq;
				rowid = s->dbt[k].rowid;
				card = s->dbt[k].card;
			} else {
				seq = s->req[k].seq;
				rowid = s->req[k].rowid;
				card = s->req[k].card;
			}
			if (recon_fetch(q, rowid, s, seq, t) != 0)
				return -1;
			if (n++ == 0)
				printf("\ncredits with no card to show for "
				    "them:\n");
			if (kind == RO_DOUBT)
				printf("  %s #%lld: credit in doubt for card "
				    "%s, batch card in %s: %s\n    decide: "
				    "cardlicctl resolve %lld spent|unspent "
				    "REASON\n", recon_show(&s->name), seq, t[0],
				    recon_show(&r->card[card].reader), t[2],
				    seq);
			else if (kind == RO_PENDING)
				printf("  %s #%lld: license for %s from %s (%s) "
				    "still pending: the card has not come "
				    "back\n", recon_show(&s->name), seq, t[0],
				    recon_show(&r->card[card].reader), t[1]);
			else
				printf("  %s #%lld: request with no outcome: "
				    "a license asked for card %s from the "
				    "batch card in %s (%s), a credit in "
				    "doubt\n    cardlicd stopped after asking "
				    "(its next start records the credit as in "
				    "doubt, to decide with cardlicctl "
				    "resolve), or it is issuing this card "
				    "now\n",
				    recon_show(&s->name), seq, t[0],
				    recon_show(&r->card[card].reader), t[1]);
		}
	}
	return n;
}

/* Every credit with no card to show for it: their number, or -1. */
static int
recon_open(struct ctl *c, const struct recon *r, const uint32_t *order)
{
	sqlite3_stmt *q;
	int n;

	if ((q = ctl_prepare(c, "SELECT seq, station, serial, utc, reason "
	    "FROM audit WHERE rowid = ?1")) == NULL)
		return -1;
	if ((n = recon_open_kind(r, order, q, RO_PENDING, 0)) >= 0 &&
	    (n = recon_open_kind(r, order, q, RO_DOUBT, n)) >= 0)
		n = recon_open_kind(r, order, q, RO_REQUEST, n);
	if (n < 0)
		ctl_fail("%s: %s", c->db_path, sqlite3_errmsg(c->db));
	sqlite3_finalize(q);
	return n;
}

static void
recon_free(struct recon *r)
{
	struct recon_card *c;
	size_t i, k;

	for (i = 0; i < r->nst; i++) {
		free(r->st[i].name.p);
		free(r->st[i].lic);
		free(r->st[i].dbt);
		free(r->st[i].req);
	}
	for (i = 0; i < r->ncard; i++) {
		c = &r->card[i];
		for (k = 0; k < c->ncounts; k++) {
			free(c->counts[k].count_txt.p);
			free(c->counts[k].when.p);
			free(c->counts[k].reason.p);
		}
		free(c->counts);
		free(c->seg_gen);
		free(c->reader.p);
		free(c->atr.p);
	}
	free(r->st);
	free(r->card);
	free(r->open);
}

/* The table, the counters, the open credits.  An exit status. */
static int
recon_report(struct ctl *c, struct recon *r)
{
	const struct recon_card *k;
	uint32_t *cards, *stations;
	size_t i;
	int diffs, open, rc;

	cards = calloc(r->ncard + 1, sizeof(*cards));
	stations = calloc(r->nst + 1, sizeof(*stations));
	if (cards == NULL || stations == NULL) {
		free(cards);
		free(stations);
		return ctl_fail("%s: out of memory", c->db_path);
	}
	for (i = 0; i < r->ncard; i++)
		cards[i] = (uint32_t)i;
	for (i = 0; i < r->nst; i++) {
		stations[i] = (uint32_t)i;
		/* The open requests in seq order, as the others are. */
		if (r->st[i].nreq > 1)
			qsort(r->st[i].req, r->st[i].nreq,
			    sizeof(*r->st[i].req), recon_req_order);
	}
	recon_sorting = r;
	qsort(cards, r->ncard, sizeof(*cards), recon_card_order);
	qsort(stations, r->nst, sizeof(*stations), recon_station_order);
	recon_totals(r);
	printf("%-10s  %-20s  %-28s  %5s  %8s  %7s  %8s  %8s  %4s\n",
	    "STATION", "BATCH READER", "BATCH ATR", "SPENT", "VERIFIED",
	    "PENDING", "REJECTED", "IN-DOUBT", "LOST");
	for (i = 0; i < r->ncard; i++) {
		k = &r->card[cards[i]];
		if (!k->lines)
			continue;
		printf("%-10s  %-20s  %-28s  %5lld  %8lld  %7lld  %8lld  %8lld"
		    "  %4lld\n", recon_show(&r->st[k->station].name),
		    recon_show(&k->reader), recon_show(&k->atr), k->spent,
		    k->verified, k->pending, k->rejected, k->doubt, k->lost);
	}
	diffs = recon_counts(r, cards);
	open = recon_open(c, r, stations);
	free(cards);
	free(stations);
	if (open < 0)
		return CTL_USAGE;
	if (diffs + open == 0)
		printf("\nevery credit spent is accounted for\n");
	else if (diffs > 0)
		printf("\n%d difference(s) between the batch cards' counters "
		    "and the rows\n", diffs);
	rc = diffs + open == 0 ? CTL_OK : CTL_NOTHING;
	return rc;
}

int
cmd_reconcile(struct ctl *c, int argc, char **argv)
{
	struct recon r;
	int rc;

	if (argc != 1) {
		if (ctl_has_opt(argc, argv, "--help")) {
			fputs(recon_help, stdout);
			return CTL_OK;
		}
		return ctl_usage(recon_help);
	}
	memset(&r, 0, sizeof(r));
	/* One snapshot for the pass and the rows it then reads again. */
	if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return ctl_fail("%s: %s", c->db_path, sqlite3_errmsg(c->db));
	rc = recon_pass(c, &r);
	if (rc == -2) {
		printf("%s: BROKEN: %s: reconcile answers nothing from it; "
		    "cardlicctl verify tells more\n", c->db_path,
		    r.broken);
		rc = CTL_USAGE;
	} else if (rc != 0)
		rc = CTL_USAGE;
	else
		rc = recon_report(c, &r);
	sqlite3_finalize(r.more);
	sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	recon_free(&r);
	return rc;
}
