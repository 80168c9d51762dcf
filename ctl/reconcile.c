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
 *
 * A batch card has no identity that the station can read (issue 18,
 * case 8): no APDU of the vendor's names one, and an ATR names a kind
 * of card.  The rows name insertions instead: a `batch-in` row at each,
 * and every credit row of a reader after it belongs to it, up to the
 * reader's next `batch-in` row.  An admin's count names the card: its
 * label (in serial) is bound to the insertion current in its reader, so
 * the label is the card's identity across insertions, readers and
 * stations.  Counts with no label (older files), and credits with no
 * `batch-in` row before them, keep the identity of before: station,
 * reader and ATR.
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
	RS_INDOUBT, RS_RESOLVED, RS_COUNTED, RS_REQUESTED, RS_BATCHIN,
	RS_OTHER
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
	uint32_t	 ins;		/* its insertion */
	uint8_t		 state;		/* enum recon_state of the last row */
	uint8_t		 spent;		/* that row: resolved, as spent */
	uint8_t		 closed;	/* a verified or rejected row names it */
};

/* A credit in doubt, and the `resolved` rows that name it. */
struct recon_doubt {
	long long	 seq;
	long long	 rowid;
	uint32_t	 card;
	uint32_t	 ins;		/* its insertion */
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
	uint32_t	 ins;		/* its insertion */
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

/*
 * A batch card as rows without a label tell it: station, reader and ATR
 * (the identity of the counts with no label, and the table's lines).
 */
struct recon_card {
	uint32_t		 station;
	struct recon_text	 reader, atr;
	struct recon_count	*counts;	/* those with no label */
	size_t			 ncounts, capcounts;
	long long		*seg_gen;	/* generated rows per segment */
	uint32_t		 legacy;	/* its insertion before any batch-in
						   row of the reader, + 1; 0: none */
};

/*
 * An insertion of a batch card: from its `batch-in` row (seq) to the
 * reader's next one; or, with seq 0, a reader's rows of one ATR before
 * any `batch-in` row of that reader (a file from before them).
 */
struct recon_ins {
	long long	 seq;
	uint32_t	 station;
	uint32_t	 card;		/* its reader and ATR */
	int32_t		 label;		/* r->lab, or -1: no count named it */
	long long	 label_seq;	/* the count that named it */
};

/* A reader's current insertion, in a station. */
struct recon_cur {
	struct recon_text	 reader;
	uint32_t		 ins;
};

/* A count with a label: what an admin read from the card of that name. */
struct recon_lcount {
	uint32_t		 station;
	uint32_t		 card;		/* its reader and ATR */
	uint32_t		 ins;
	int32_t			 label;
	long long		 seq;
	long long		 count;
	struct recon_text	 count_txt, when, reason;
	struct recon_text	 eff;	/* its place in time (recon_eff) */
	long long		*pos;	/* per station: its place in its rows */
};

/*
 * The credits of a label's insertions (known, its spent words, and the
 * undecided), and of insertions with no label (other), between one of
 * its counts and the one before, or after its last.
 */
struct recon_seg {
	long long	 n[3];	/* generated, resolved as spent, undecided */
	long long	 other;
	char		 doubts[400], others[400];
	size_t		 nd, no;
};

/* A batch card as an admin named it, and its counts in time order. */
struct recon_label {
	struct recon_text	 name;		/* the serial's exact bytes */
	struct recon_lcount	*counts;
	size_t			 ncounts, capcounts;
	struct recon_seg	*seg;		/* ncounts + 1 */
};

/* A line of the table: a batch card's reader and ATR, and its label. */
struct recon_line {
	uint32_t	 card;
	int32_t		 label;
	long long	 spent, verified, pending, rejected, doubt, lost;
};

struct recon_station {
	struct recon_text	 name;
	long long		 next;		/* the seq the next row must have */
	struct recon_text	 eff;		/* the latest utc so far */
	size_t			 capeff;
	struct recon_cur	*cur;
	size_t			 ncur, capcur;
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
	struct recon_ins	*ins;
	size_t			 nins, capins;
	struct recon_label	*lab;
	size_t			 nlab, caplab;
	struct recon_lcount	*conf;	/* counts that name a named insertion */
	size_t			 nconf, capconf;
	struct recon_line	*line;
	size_t			 nline, capline;
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
"say the same.  Where the counter was typed in (cardlicctl batch-count\n"
"--card LABEL), a batch card is its label: a count names the insertion\n"
"of the card in its reader (its batch-in row), and that insertion's\n"
"credits are the card's, in whatever reader or station.  Its counter's\n"
"rise between two counts must equal the credits that the rows between\n"
"them say were spent on it (licenses generated, and credits in doubt\n"
"resolved as spent); the first count is the baseline.  A difference is\n"
"shown with both counts; credits in doubt not yet decided, and credits\n"
"spent between the two counts on batch cards that no count names, may\n"
"explain one (\"possibly\").  A count with no label (an older file) is\n"
"held against its station, reader and ATR, as before.\n"
"Then every credit with no card to show for it is listed: a license still\n"
"pending (its card has not come back), a credit in doubt (decide with\n"
"cardlicctl resolve), and a license asked for with no outcome (cardlicd\n"
"stopped after asking, or is issuing that card now), which counts as a\n"
"credit in doubt.  The exit status is 1 while any difference, possible\n"
"or not, or any such credit is listed.  reconcile reads the rows as they\n"
"are: verify --key proves that they are the station's.\n";

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
	    "requested", "batch-in" };
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
enum { RM_REASON, RM_COUNT, RM_WHEN, RM_SERIAL };

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

/* A new insertion, at seq (0: before any batch-in row), in *idx. */
static int
recon_ins_new(struct recon *r, uint32_t station, uint32_t card,
    long long seq, uint32_t *idx)
{
	struct recon_ins *i;

	if (recon_grow(&r->ins, &r->capins, r->nins, sizeof(*r->ins)) != 0)
		return -1;
	i = &r->ins[r->nins];
	i->seq = seq;
	i->station = station;
	i->card = card;
	i->label = -1;
	i->label_seq = 0;
	*idx = (uint32_t)r->nins++;
	return 0;
}

/* The current insertion of the reader in column ri, or NULL. */
static struct recon_cur *
recon_cur_of(struct recon_station *s, sqlite3_stmt *st, int ri)
{
	size_t k;

	if (sqlite3_column_type(st, ri) == SQLITE_NULL)
		return NULL;
	for (k = 0; k < s->ncur; k++)
		if (recon_text_eq(&s->cur[k].reader, st, ri))
			return &s->cur[k];
	return NULL;
}

/*
 * A `batch-in` row: a new insertion, its reader's current one from now
 * on.  -1: no memory.
 */
static int
recon_batch_in(struct recon *r, uint32_t si, sqlite3_stmt *st, long long seq)
{
	struct recon_station *s = &r->st[si];
	struct recon_cur *c;
	uint32_t ci, ii;

	/* Never cardlicd's: no reader, no insertion. */
	if (sqlite3_column_type(st, RC_READER) == SQLITE_NULL)
		return 0;
	if (recon_card(r, si, st, RC_READER, RC_ATR, &ci) != 0 ||
	    recon_ins_new(r, si, ci, seq, &ii) != 0)
		return -1;
	if ((c = recon_cur_of(s, st, RC_READER)) == NULL) {
		if (recon_grow(&s->cur, &s->capcur, s->ncur,
		    sizeof(*s->cur)) != 0)
			return -1;
		c = &s->cur[s->ncur];
		if (recon_text_set(&c->reader, st, RC_READER) != 0)
			return -1;
		s->ncur++;
	}
	c->ins = ii;
	return 0;
}

/*
 * The insertion of a row that names batch card ci: the last `batch-in`
 * row of its reader before it, else the card's insertion from before
 * such rows.  -1: no memory.
 */
static int
recon_ins_of(struct recon *r, uint32_t si, sqlite3_stmt *st, uint32_t ci,
    uint32_t *ii)
{
	struct recon_cur *c = recon_cur_of(&r->st[si], st, RC_READER);

	if (c != NULL) {
		*ii = c->ins;
		return 0;
	}
	if (r->card[ci].legacy == 0) {
		if (recon_ins_new(r, si, ci, 0, ii) != 0)
			return -1;
		r->card[ci].legacy = *ii + 1;
	}
	*ii = r->card[ci].legacy - 1;
	return 0;
}

/*
 * The station's latest utc so far, as TEXT sorts (NULL first): a row's
 * place in time, which never goes back within a station, whatever its
 * clock did (recon_place_cmp).  -1: no memory.
 */
static int
recon_eff(struct recon_station *s, sqlite3_stmt *st, int i)
{
	struct recon_text t;
	char *p;

	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return 0;
	t.p = (char *)sqlite3_column_blob(st, i);
	t.n = (size_t)sqlite3_column_bytes(st, i);
	if (t.p == NULL)
		t.p = "";
	if (s->eff.p != NULL && recon_text_cmp(&t, &s->eff) <= 0)
		return 0;
	if (t.n + 1 > s->capeff) {
		if ((p = realloc(s->eff.p, t.n + 1)) == NULL)
			return -1;
		s->eff.p = p;
		s->capeff = t.n + 1;
	}
	memcpy(s->eff.p, t.p, t.n);
	s->eff.p[t.n] = '\0';
	s->eff.n = t.n;
	return 0;
}

static int
recon_text_copy(struct recon_text *to, const struct recon_text *from)
{
	to->n = from->n;
	to->p = NULL;
	if (from->p == NULL)
		return 0;
	if ((to->p = malloc(from->n + 1)) == NULL)
		return -1;
	memcpy(to->p, from->p, from->n + 1);
	return 0;
}

/* The label in column i of m, by its exact bytes; its index in *li. */
static int
recon_label_of(struct recon *r, sqlite3_stmt *m, int i, int32_t *li)
{
	const void *b = sqlite3_column_blob(m, i);
	size_t k, n = (size_t)sqlite3_column_bytes(m, i);
	struct recon_label *l;

	for (k = 0; k < r->nlab; k++)
		if (r->lab[k].name.n == n && (n == 0 ||
		    memcmp(r->lab[k].name.p, b, n) == 0)) {
			*li = (int32_t)k;
			return 0;
		}
	if (recon_grow(&r->lab, &r->caplab, r->nlab, sizeof(*r->lab)) != 0)
		return -1;
	l = &r->lab[r->nlab];
	memset(l, 0, sizeof(*l));
	if ((l->name.p = malloc(n + 1)) == NULL)
		return -1;
	if (n > 0)
		memcpy(l->name.p, b, n);
	l->name.p[n] = '\0';
	l->name.n = n;
	*li = (int32_t)r->nlab++;
	return 0;
}

/*
 * A count with a label (m: its other columns), of insertion ii: the
 * first names the insertion; one that names it otherwise is a conflict,
 * kept apart from both labels' counts.  -1: no memory.
 */
static int
recon_labelled(struct recon *r, uint32_t si, uint32_t ci, uint32_t ii,
    sqlite3_stmt *m, long long seq)
{
	struct recon_lcount k, *to;
	struct recon_label *l;
	int32_t li;

	if (recon_label_of(r, m, RM_SERIAL, &li) != 0)
		return -1;
	memset(&k, 0, sizeof(k));
	k.station = si;
	k.card = ci;
	k.ins = ii;
	k.label = li;
	k.seq = seq;
	k.count = sqlite3_column_int64(m, RM_COUNT);
	if (recon_text_set(&k.count_txt, m, RM_COUNT) != 0 ||
	    recon_text_set(&k.when, m, RM_WHEN) != 0 ||
	    recon_text_set(&k.reason, m, RM_REASON) != 0 ||
	    recon_text_copy(&k.eff, &r->st[si].eff) != 0)
		return -1;
	if (r->ins[ii].label < 0) {
		r->ins[ii].label = li;
		r->ins[ii].label_seq = seq;
	}
	l = &r->lab[li];
	if (r->ins[ii].label != li) {
		if (recon_grow(&r->conf, &r->capconf, r->nconf,
		    sizeof(*r->conf)) != 0)
			return -1;
		to = &r->conf[r->nconf++];
	} else {
		if (recon_grow(&l->counts, &l->capcounts, l->ncounts,
		    sizeof(*l->counts)) != 0)
			return -1;
		to = &l->counts[l->ncounts++];
	}
	*to = k;
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
 * any; a `requested` row opens one (seq, rowid, card ci, insertion ii).
 * -1: no memory.
 */
static int
recon_request(struct recon *r, uint32_t si, long long job, int requested,
    long long seq, long long rowid, uint32_t ci, uint32_t ii)
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
	q->ins = ii;
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
 * A row that names a batch card (state): a count, a license generated,
 * a credit in doubt, of card ci and insertion ii.  -1: out of memory;
 * -3: SQLite's error.
 */
static int
recon_card_row(struct recon *r, uint32_t si, sqlite3_stmt *st,
    enum recon_state state, uint32_t ci, uint32_t ii)
{
	struct recon_station *s = &r->st[si];
	long long seq = sqlite3_column_int64(st, RC_SEQ);
	struct recon_lic *l;
	struct recon_doubt *d;
	sqlite3_stmt *m;

	if (state == RS_COUNTED) {
		if ((m = recon_more(r, st)) == NULL)
			return -3;
		/* A count with no label (an older file): as before. */
		if (sqlite3_column_type(m, RM_SERIAL) == SQLITE_NULL)
			return recon_counted(r, ci, m, seq);
		return recon_labelled(r, si, ci, ii, m, seq);
	}
	if (state == RS_GENERATED) {
		if (recon_grow(&s->lic, &s->caplic, s->nlic,
		    sizeof(*s->lic)) != 0)
			return -1;
		l = &s->lic[s->nlic++];
		l->seq = seq;
		l->rowid = sqlite3_column_int64(st, RC_ROWID);
		l->card = ci;
		l->ins = ii;
		l->state = RS_GENERATED;
		l->spent = l->closed = 0;
		r->card[ci].seg_gen[r->card[ci].ncounts]++;
		return 0;
	}
	if (recon_grow(&s->dbt, &s->capdbt, s->ndbt, sizeof(*s->dbt)) != 0)
		return -1;
	d = &s->dbt[s->ndbt++];
	memset(d, 0, sizeof(*d));
	d->seq = seq;
	d->rowid = sqlite3_column_int64(st, RC_ROWID);
	d->card = ci;
	d->ins = ii;
	d->seg = (uint32_t)r->card[ci].ncounts;
	return 0;
}

/*
 * A row that names a license (or a credit in doubt): the license's
 * outcome so far, or a decision on the credit.  -3: SQLite's error.
 */
static int
recon_license_row(struct recon *r, uint32_t si, sqlite3_stmt *st,
    enum recon_state state)
{
	struct recon_station *s = &r->st[si];
	struct recon_lic *l;
	struct recon_doubt *d;
	sqlite3_stmt *m;
	long long lseq;
	int spent = 0;

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

/*
 * One row, in its station's order.  -1: out of memory; -2: broken; -3:
 * SQLite's error.
 */
static int
recon_row(struct recon *r, sqlite3_stmt *st)
{
	struct recon_station *s;
	enum recon_state state;
	uint32_t si, ci = 0, ii = 0;
	long long seq;
	int rc;

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
	if (recon_eff(s, st, RC_MORE) != 0)
		return -1;
	state = recon_state_of(st, RC_STATE);
	if (state == RS_BATCHIN && recon_batch_in(r, si, st, seq) != 0)
		return -1;
	/*
	 * Any row of a job answers its request; a `requested` row is one,
	 * naming the batch card that it asks.
	 */
	if ((state == RS_REQUESTED || state == RS_GENERATED ||
	    state == RS_INDOUBT || state == RS_COUNTED) &&
	    (recon_card(r, si, st, RC_READER, RC_ATR, &ci) != 0 ||
	    recon_ins_of(r, si, st, ci, &ii) != 0))
		return -1;
	if (recon_request(r, si, sqlite3_column_int64(st, RC_JOB),
	    state == RS_REQUESTED, seq, sqlite3_column_int64(st, RC_ROWID),
	    ci, ii) != 0)
		return -1;
	if ((state == RS_GENERATED || state == RS_INDOUBT ||
	    state == RS_COUNTED) && (rc = recon_card_row(r, si, st, state, ci,
	    ii)) != 0)
		return rc;
	if (sqlite3_column_type(st, RC_LICENSE) != SQLITE_INTEGER)
		return 0;
	return recon_license_row(r, si, st, state);
}

/* The whole table, once, by rowid: 0, -1 (said), or -2 (broken). */
static int
recon_pass(struct ctl *c, struct recon *r)
{
	char sql[300];
	sqlite3_stmt *st;
	int rc = 0, s;

	snprintf(sql, sizeof(sql), "SELECT reason, batch_count, %s, serial "
	    "FROM audit WHERE rowid = ?1", ctl_time(c, "utc"));
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

/*
 * The table's line of batch card ci (station, reader, ATR) and of the
 * label of insertion ii; NULL when out of memory.
 */
static struct recon_line *
recon_line_of(struct recon *r, uint32_t ci, uint32_t ii)
{
	static size_t last;
	int32_t label = r->ins[ii].label;
	struct recon_line *n;
	size_t k;

	if (last < r->nline && r->line[last].card == ci &&
	    r->line[last].label == label)
		return &r->line[last];
	for (k = 0; k < r->nline; k++)
		if (r->line[k].card == ci && r->line[k].label == label)
			return &r->line[last = k];
	if (recon_grow(&r->line, &r->capline, r->nline, sizeof(*r->line)) !=
	    0)
		return NULL;
	n = &r->line[last = r->nline++];
	memset(n, 0, sizeof(*n));
	n->card = ci;
	n->label = label;
	return n;
}

/*
 * The table's lines, from the licenses' outcomes and the credits in
 * doubt, per batch card and label.  -1: no memory.
 */
static int
recon_totals(struct recon *r)
{
	struct recon_station *s;
	struct recon_line *c;
	struct recon_lic *l;
	struct recon_doubt *d;
	size_t i, k;

	for (i = 0; i < r->nst; i++) {
		s = &r->st[i];
		for (k = 0; k < s->nlic; k++) {
			l = &s->lic[k];
			if ((c = recon_line_of(r, l->card, l->ins)) == NULL)
				return -1;
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
			if ((c = recon_line_of(r, d->card, d->ins)) == NULL)
				return -1;
			if (d->nres == 0) {
				c->spent++;
				c->doubt++;
			}
			c->spent += d->nspent;
			c->lost += d->nspent;
		}
		/* A request with no outcome: in doubt, not decided. */
		for (k = 0; k < s->nreq; k++) {
			if ((c = recon_line_of(r, s->req[k].card,
			    s->req[k].ins)) == NULL)
				return -1;
			c->spent++;
			c->doubt++;
		}
	}
	return 0;
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
recon_counts(const struct recon *r, const uint32_t *order, int *shown)
{
	const struct recon_card *c;
	char doubts[400];
	long long n[3];
	size_t i, g;
	int diffs = 0;

	for (i = 0; i < r->ncard; i++) {
		c = &r->card[order[i]];
		for (g = 0; g < c->ncounts; g++) {
			if ((*shown)++ == 0)
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

/* Two rows' places in time: (utc so far, station, seq). */
static int
recon_place_cmp(const struct recon *r, const struct recon_text *ea,
    uint32_t sa, long long qa, const struct recon_text *eb, uint32_t sb,
    long long qb)
{
	int c;

	if ((c = recon_text_cmp(ea, eb)) != 0)
		return c;
	if (sa != sb)
		return recon_text_cmp(&r->st[sa].name, &r->st[sb].name);
	return (qa > qb) - (qa < qb);
}

static int
recon_lcount_order(const void *a, const void *b)
{
	const struct recon_lcount *x = *(const struct recon_lcount *const *)a;
	const struct recon_lcount *y = *(const struct recon_lcount *const *)b;

	return recon_place_cmp(recon_sorting, &x->eff, x->station, x->seq,
	    &y->eff, y->station, y->seq);
}

static int
recon_lcount_order_v(const void *a, const void *b)
{
	const struct recon_lcount *x = a, *y = b;

	return recon_lcount_order(&x, &y);
}

/*
 * With several stations (a merged file): each count's place in every
 * station's rows, pos[si] the last row of station si before it in time,
 * in one more pass over the table, each station's rows in seq order.
 * -1: said.
 */
static int
recon_places_pass(struct ctl *c, struct recon *r, struct recon_lcount **all,
    size_t n)
{
	struct recon_station *s;
	sqlite3_stmt *st;
	size_t *at, i, nst = r->nst;
	uint32_t si;
	long long seq;
	int rc = 0;

	if ((at = calloc(r->nst, sizeof(*at))) == NULL)
		return ctl_fail("%s: out of memory", c->db_path), -1;
	/* The time of each station again, from its first row. */
	for (i = 0; i < r->nst; i++) {
		free(r->st[i].eff.p);
		memset(&r->st[i].eff, 0, sizeof(r->st[i].eff));
		r->st[i].capeff = 0;
	}
	if ((st = ctl_prepare(c, "SELECT station, seq, utc FROM audit NOT "
	    "INDEXED ORDER BY rowid")) == NULL) {
		free(at);
		return -1;
	}
	while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
		seq = sqlite3_column_int64(st, 1);
		/* One snapshot: the stations of the first pass. */
		if ((s = recon_station(r, st, 0, &si)) == NULL || si >= nst ||
		    recon_eff(s, st, 2) != 0) {
			rc = -1;
			break;
		}
		for (; at[si] < n && recon_place_cmp(r,
		    &all[at[si]]->eff, all[at[si]]->station, all[at[si]]->seq,
		    &s->eff, si, seq) < 0; at[si]++)
			all[at[si]]->pos[si] = seq - 1;
	}
	sqlite3_finalize(st);
	for (si = 0; si < nst; si++)
		for (; at[si] < n; at[si]++)
			all[at[si]]->pos[si] = r->st[si].next - 1;
	free(at);
	if (rc != 0)
		ctl_fail("%s: out of memory", c->db_path);
	return rc;
}
/*
 * Each label's counts in time order, and their places in each station's
 * rows (pos): in one station, a count's place is its seq.  -1: said.
 */
static int
recon_places(struct ctl *c, struct recon *r)
{
	struct recon_lcount **all = NULL, *k;
	struct recon_label *l;
	size_t i, j, n = 0;
	int rc;

	for (i = 0; i < r->nlab; i++) {
		l = &r->lab[i];
		qsort(l->counts, l->ncounts, sizeof(*l->counts),
		    recon_lcount_order_v);
		if ((l->seg = calloc(l->ncounts + 1, sizeof(*l->seg))) == NULL)
			return ctl_fail("%s: out of memory", c->db_path), -1;
		for (j = 0; j < l->ncounts; j++) {
			k = &l->counts[j];
			if ((k->pos = calloc(r->nst, sizeof(*k->pos))) == NULL)
				return ctl_fail("%s: out of memory",
				    c->db_path), -1;
			k->pos[0] = k->seq;
			n++;
		}
	}
	if (r->nst < 2 || n == 0)
		return 0;
	if ((all = calloc(n, sizeof(*all))) == NULL)
		return ctl_fail("%s: out of memory", c->db_path), -1;
	for (i = 0, n = 0; i < r->nlab; i++)
		for (j = 0; j < r->lab[i].ncounts; j++)
			all[n++] = &r->lab[i].counts[j];
	qsort(all, n, sizeof(*all), recon_lcount_order);
	rc = recon_places_pass(c, r, all, n);
	free(all);
	return rc;
}

/* How many counts of label l the row seq of station si comes after. */
static size_t
recon_seg_of(const struct recon_label *l, uint32_t si, long long seq)
{
	size_t lo = 0, hi = l->ncounts, m;

	while (lo < hi) {
		m = lo + (hi - lo) / 2;
		if (l->counts[m].pos[si] < seq)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

/* "#12" in a list, or "#12 of line-2" for a row of another station. */
static void
recon_seg_name(const struct recon *r, char *buf, size_t len, size_t *o,
    uint32_t si, long long seq, uint32_t ref)
{
	if (*o >= len)
		return;
	if (si == ref)
		*o += (size_t)snprintf(buf + *o, len - *o, "%s#%lld",
		    *o > 0 ? ", " : "", seq);
	else
		*o += (size_t)snprintf(buf + *o, len - *o, "%s#%lld of %s",
		    *o > 0 ? ", " : "", seq, recon_show(&r->st[si].name));
}

/*
 * A credit (w: generated, resolved as spent, not decided) of insertion
 * ii, row seq of station si: its label's, between two of its counts; or,
 * of an insertion with no label, possibly any label's.
 */
static void
recon_seg_credit(struct recon *r, uint32_t si, long long seq, uint32_t ii,
    const long long w[3])
{
	int32_t li = r->ins[ii].label;
	struct recon_label *l;
	struct recon_seg *g;
	size_t k, at;
	uint32_t ref;

	for (k = li >= 0 ? (size_t)li : 0; k < r->nlab; k++) {
		l = &r->lab[k];
		if (l->ncounts > 0 && (at = recon_seg_of(l, si, seq)) > 0) {
			g = &l->seg[at];
			ref = l->counts[at < l->ncounts ? at :
			    l->ncounts - 1].station;
			if (li >= 0) {
				g->n[0] += w[0];
				g->n[1] += w[1];
				g->n[2] += w[2];
				if (w[2] > 0)
					recon_seg_name(r, g->doubts,
					    sizeof(g->doubts), &g->nd, si, seq,
					    ref);
			} else if (w[0] + w[1] + w[2] > 0) {
				g->other += w[0] + w[1] + w[2];
				recon_seg_name(r, g->others, sizeof(g->others),
				    &g->no, si, seq, ref);
			}
		}
		if (li >= 0)
			break;
	}
}

/*
 * Every credit, station by station (order) and in seq order, into the
 * labels' segments: licenses generated, credits in doubt (resolved as
 * spent, or not decided), requests with no outcome.
 */
static void
recon_seg_all(struct recon *r, const uint32_t *order)
{
	const struct recon_station *s;
	long long w[3], seq;
	size_t i, a, b, q;
	uint32_t ii;

	for (i = 0; i < r->nst; i++) {
		s = &r->st[order[i]];
		for (a = b = q = 0; a < s->nlic || b < s->ndbt ||
		    q < s->nreq; ) {
			w[0] = w[1] = w[2] = 0;
			if (a < s->nlic && (b == s->ndbt || s->lic[a].seq <
			    s->dbt[b].seq) && (q == s->nreq || s->lic[a].seq <
			    s->req[q].seq)) {
				seq = s->lic[a].seq;
				ii = s->lic[a++].ins;
				w[0] = 1;
			} else if (b < s->ndbt && (q == s->nreq ||
			    s->dbt[b].seq < s->req[q].seq)) {
				seq = s->dbt[b].seq;
				ii = s->dbt[b].ins;
				w[1] = s->dbt[b].nspent;
				w[2] = s->dbt[b++].nres == 0;
			} else {
				seq = s->req[q].seq;
				ii = s->req[q++].ins;
				w[2] = 1;
			}
			recon_seg_credit(r, order[i], seq, ii, w);
		}
	}
}

/* "BC-1 (in line-1 Sim Line A 00 00, ATR 3B88...)" */
static const char *
recon_label_words(const struct recon *r, const struct recon_lcount *k)
{
	static char buf[1024];
	const struct recon_text *n = &r->lab[k->label].name;
	const struct recon_card *c = &r->card[k->card];

	snprintf(buf, sizeof(buf), "%s (in %s %s, ATR %s)", ctl_esc(n->p,
	    dbhash_trimmed((const uint8_t *)n->p, n->n)),
	    recon_show(&r->st[k->station].name), recon_show(&c->reader),
	    recon_show(&c->atr));
	return buf;
}

/* "#9", or "#9 of line-2" for a count of another station than ref's. */
static const char *
recon_count_name(const struct recon *r, const struct recon_lcount *k,
    uint32_t ref)
{
	static char buf[300];

	if (k->station == ref)
		snprintf(buf, sizeof(buf), "#%lld", k->seq);
	else
		snprintf(buf, sizeof(buf), "#%lld of %s", k->seq,
		    recon_show(&r->st[k->station].name));
	return buf;
}

static void
recon_lcount_line(const struct recon *r, const struct recon_lcount *k)
{
	printf("    count #%lld %s, in %s %s: %s, %s\n", k->seq,
	    recon_show(&k->when), recon_show(&r->st[k->station].name),
	    recon_show(&r->card[k->card].reader), recon_show(&k->count_txt),
	    recon_show(&k->reason));
}

/*
 * Count g of label l against the one before: 0 when they agree, 1 for a
 * difference, 2 for a possible one (credits not decided, or spent on
 * batch cards with no label, may explain it).
 */
static int
recon_lcount_check(const struct recon *r, const struct recon_label *l,
    size_t g)
{
	const struct recon_lcount *k = &l->counts[g], *p = &l->counts[g - 1];
	const struct recon_seg *sg = &l->seg[g];
	long long rise = k->count - p->count, known = sg->n[0] + sg->n[1];
	long long undecided = sg->n[2], other = sg->other;
	int maybe;

	if (rise == known && undecided == 0) {
		printf("  batch card %s: count #%lld %s: %s, up %lld since %s: "
		    "agrees with the rows (%s)\n", recon_label_words(r, k),
		    k->seq, recon_show(&k->when), recon_show(&k->count_txt),
		    rise, recon_count_name(r, p, k->station),
		    recon_spent_words(sg->n));
		return 0;
	}
	maybe = rise >= known && rise <= known + undecided + other;
	printf("  %s on batch card %s:\n", maybe ? "POSSIBLE DIFFERENCE" :
	    "DIFFERENCE", recon_label_words(r, k));
	recon_lcount_line(r, p);
	recon_lcount_line(r, k);
	if (rise < 0)
		printf("    the counter went down, by %lld: not the same batch "
		    "card, or a count typed in wrong\n", -rise);
	else
		printf("    the counter rose by %lld; the rows between say "
		    "%lld were spent (%s)\n", rise, known,
		    recon_spent_words(sg->n));
	if (undecided > 0)
		printf("    and %lld credit(s) in doubt are not decided (%s): "
		    "possibly %s\n", undecided, sg->doubts, maybe ? "those; "
		    "decide them with cardlicctl resolve" : "spent, still no "
		    "match");
	if (other > 0)
		printf("    and %lld credit(s) were spent between the two counts "
		    "on batch cards with no label (%s): possibly %s\n", other,
		    sg->others, maybe ? "this card's; count each batch card "
		    "(batch-count --card) when it is inserted" : "this card's, "
		    "still no match");
	if (!maybe && rise > known + undecided + other)
		printf("    %lld credit(s) spent that no row shows\n",
		    rise - known - undecided - other);
	else if (!maybe && rise >= 0)
		printf("    %lld credit(s) in the rows that the counter did "
		    "not count\n", known - rise);
	return maybe ? 2 : 1;
}

/* After a label's last count: what its counter should say now. */
static void
recon_label_since(const struct recon_label *l)
{
	const struct recon_lcount *k = &l->counts[l->ncounts - 1];
	const struct recon_seg *sg = &l->seg[l->ncounts];

	if (sg->n[0] + sg->n[1] + sg->n[2] + sg->other == 0)
		return;
	printf("    since #%lld: %lld spent (%s)%s%s%s%s%s%s; the counter "
	    "should now say %lld\n", k->seq, sg->n[0] + sg->n[1],
	    recon_spent_words(sg->n), sg->n[2] > 0 ? ", and in doubt not "
	    "decided: " : "", sg->doubts, sg->n[2] > 0 ? " (possibly more)" :
	    "", sg->other > 0 ? ", and on batch cards with no label: " : "",
	    sg->others, sg->other > 0 ? " (possibly this card's)" : "",
	    k->count + sg->n[0] + sg->n[1]);
}

static int
recon_label_order(const void *a, const void *b)
{
	return recon_text_cmp(&recon_sorting->lab[*(const uint32_t *)a].name,
	    &recon_sorting->lab[*(const uint32_t *)b].name);
}

static int
recon_conf_order(const void *a, const void *b)
{
	const struct recon_lcount *x = a, *y = b;
	int c;

	if (x->station != y->station && (c = recon_text_cmp(
	    &recon_sorting->st[x->station].name,
	    &recon_sorting->st[y->station].name)) != 0)
		return c;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/*
 * A count that names an insertion that an earlier count named otherwise:
 * one card, two labels.  A difference; the count is in neither series.
 */
static void
recon_conflict(const struct recon *r, const struct recon_lcount *k)
{
	const struct recon_ins *in = &r->ins[k->ins];
	const struct recon_text *o = &r->lab[in->label].name;
	char at[64];

	if (in->seq > 0)
		snprintf(at, sizeof(at), "inserted at #%lld", in->seq);
	else
		snprintf(at, sizeof(at), "in that reader before any batch-in "
		    "row");
	printf("  DIFFERENCE on batch card %s:\n", recon_label_words(r, k));
	recon_lcount_line(r, k);
	printf("    but count #%lld named the batch card %s %s: a card has "
	    "one label; count it again with its own\n", in->label_seq, at,
	    ctl_esc(o->p, dbhash_trimmed((const uint8_t *)o->p, o->n)));
}

/*
 * The labelled counts, label by label, then the conflicts: the number of
 * differences, and of possible ones in *maybes.
 */
static int
recon_labels(struct recon *r, int *shown, int *maybes)
{
	const struct recon_label *l;
	uint32_t *order;
	size_t i, g;
	int diffs = 0, v;

	if ((order = calloc(r->nlab + 1, sizeof(*order))) == NULL)
		return -1;
	for (i = 0; i < r->nlab; i++)
		order[i] = (uint32_t)i;
	qsort(order, r->nlab, sizeof(*order), recon_label_order);
	for (i = 0; i < r->nlab; i++) {
		l = &r->lab[order[i]];
		for (g = 0; g < l->ncounts; g++) {
			if ((*shown)++ == 0)
				printf("\nbatch card counters (cardlicctl "
				    "batch-count):\n");
			if (g == 0)
				printf("  batch card %s: count #%lld %s: %s, "
				    "the first: the baseline\n",
				    recon_label_words(r, &l->counts[0]),
				    l->counts[0].seq,
				    recon_show(&l->counts[0].when),
				    recon_show(&l->counts[0].count_txt));
			else if ((v = recon_lcount_check(r, l, g)) == 1)
				diffs++;
			else if (v == 2)
				(*maybes)++;
		}
		if (l->ncounts > 0)
			recon_label_since(l);
	}
	free(order);
	qsort(r->conf, r->nconf, sizeof(*r->conf), recon_conf_order);
	for (i = 0; i < r->nconf; i++) {
		if ((*shown)++ == 0)
			printf("\nbatch card counters (cardlicctl "
			    "batch-count):\n");
		recon_conflict(r, &r->conf[i]);
		diffs++;
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
recon_lcount_free(struct recon_lcount *k)
{
	free(k->count_txt.p);
	free(k->when.p);
	free(k->reason.p);
	free(k->eff.p);
	free(k->pos);
}

static void
recon_free(struct recon *r)
{
	struct recon_station *s;
	struct recon_card *c;
	size_t i, k;

	for (i = 0; i < r->nst; i++) {
		s = &r->st[i];
		free(s->name.p);
		free(s->eff.p);
		for (k = 0; k < s->ncur; k++)
			free(s->cur[k].reader.p);
		free(s->cur);
		free(s->lic);
		free(s->dbt);
		free(s->req);
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
	for (i = 0; i < r->nlab; i++) {
		for (k = 0; k < r->lab[i].ncounts; k++)
			recon_lcount_free(&r->lab[i].counts[k]);
		free(r->lab[i].counts);
		free(r->lab[i].seg);
		free(r->lab[i].name.p);
	}
	for (i = 0; i < r->nconf; i++)
		recon_lcount_free(&r->conf[i]);
	free(r->st);
	free(r->card);
	free(r->ins);
	free(r->lab);
	free(r->conf);
	free(r->line);
	free(r->open);
}

/* The table: one line per batch card (station, reader, ATR) and label. */
static void
recon_table(const struct recon *r)
{
	const struct recon_line *k;
	const struct recon_card *c;
	const struct recon_text *n;
	size_t i;

	printf("%-10s  %-20s  %-28s  %5s  %8s  %7s  %8s  %8s  %4s  %s\n",
	    "STATION", "BATCH READER", "BATCH ATR", "SPENT", "VERIFIED",
	    "PENDING", "REJECTED", "IN-DOUBT", "LOST", "BATCH CARD");
	for (i = 0; i < r->nline; i++) {
		k = &r->line[i];
		c = &r->card[k->card];
		n = k->label >= 0 ? &r->lab[k->label].name : NULL;
		printf("%-10s  %-20s  %-28s  %5lld  %8lld  %7lld  %8lld  %8lld"
		    "  %4lld  %s\n", recon_show(&r->st[c->station].name),
		    recon_show(&c->reader), recon_show(&c->atr), k->spent,
		    k->verified, k->pending, k->rejected, k->doubt, k->lost,
		    n == NULL ? "-" : ctl_esc(n->p, dbhash_trimmed((const
		    uint8_t *)n->p, n->n)));
	}
}

/* Lines in the order of station, reader, ATR, then label (none first). */
static int
recon_line_order(const void *a, const void *b)
{
	const struct recon_line *x = a, *y = b;
	int c = recon_card_order(&x->card, &y->card);

	if (c != 0)
		return c;
	if (x->label < 0 || y->label < 0)
		return (x->label >= 0) - (y->label >= 0);
	return recon_text_cmp(&recon_sorting->lab[x->label].name,
	    &recon_sorting->lab[y->label].name);
}

/* The last lines: accounted for, or how many differences.  An exit. */
static int
recon_summary(int diffs, int maybes, int open)
{
	if (diffs + maybes + open == 0) {
		printf("\nevery credit spent is accounted for\n");
		return CTL_OK;
	}
	if (diffs > 0)
		printf("\n%d difference(s) between the batch cards' counters "
		    "and the rows\n", diffs);
	if (maybes > 0)
		printf("%s%d possible difference(s) between the batch cards' "
		    "counters and the rows, until the credits named are decided "
		    "or counted\n", diffs > 0 ? "" : "\n", maybes);
	return CTL_NOTHING;
}

/* The table, the counters, the open credits.  An exit status. */
static int
recon_report(struct ctl *c, struct recon *r)
{
	uint32_t *cards, *stations;
	size_t i;
	int diffs, labelled, maybes = 0, open, shown = 0, rc = CTL_USAGE;

	cards = calloc(r->ncard + 1, sizeof(*cards));
	stations = calloc(r->nst + 1, sizeof(*stations));
	if (cards == NULL || stations == NULL || recon_totals(r) != 0) {
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
	qsort(r->line, r->nline, sizeof(*r->line), recon_line_order);
	if (recon_places(c, r) != 0)
		goto out;
	recon_seg_all(r, stations);
	recon_table(r);
	diffs = recon_counts(r, cards, &shown);
	if ((labelled = recon_labels(r, &shown, &maybes)) < 0) {
		ctl_fail("%s: out of memory", c->db_path);
		goto out;
	}
	diffs += labelled;
	if ((open = recon_open(c, r, stations)) >= 0)
		rc = recon_summary(diffs, maybes, open);
out:
	free(cards);
	free(stations);
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
