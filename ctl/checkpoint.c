/*
 * verify --checkpoints FILE|journal: the database against the signed
 * checkpoints that cardlicd wrote outside it (daemon/checkpoint.c).
 *
 * For each station, in each source: every line is a checkpoint, signed by
 * the station's key; each follows the one before it (n + 1, and prev is
 * the SHA-256 of the line before), and only the first may start a series
 * (n=1, prev all zero: the daemon found no earlier checkpoint); the row it
 * names exists with the head it names, and the batch counts it gives are
 * what the rows up to it say.  Between sources: no two checkpoints follow
 * the same one (a fork), and no source stops where another goes on (its
 * tail was dropped).  Then the rows written after the newest checkpoint.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-journal.h>

#include "cardlicctl.h"
#include "../daemon/dbhash.h"
#include "../daemon/sign.h"

#define CP_MAX_SOURCES	8
#define CP_MAGIC	"cardlicd-checkpoint v1 "
/* daemon/log.c: the MESSAGE_ID of a checkpoint, fixed for ever. */
#define CP_MESSAGE_ID	"c08c406bc46841f4824041f32851faaa"
#define CP_FIELD	"CARDLICD_CHECKPOINT="

struct cp {
	char		*line;		/* without its newline */
	size_t		 len;
	char		 where[300];	/* FILE:LINE, or journal entry K */
	int		 parsed;
	int		 good;		/* signed by the station's key */
	long		 n;
	char		 station[64];
	long		 seq;
	uint8_t		 head[32];
	uint8_t		 prev[32];
	char		*batch;		/* a copy of the field's value */
	size_t		 signed_len;	/* up to " sig=" */
	uint8_t		 sig[64];
	uint8_t		 hash[32];	/* SHA-256 of the line */
};

struct cp_source {
	const char	*name;
	struct cp	*v;
	size_t		 n, cap;
};

static struct cp_source	cp_src[CP_MAX_SOURCES];
static int		cp_nsrc;
static const char	*cp_station_only;

/* --checkpoints SOURCE: 0, or -1 when there are too many. */
int
checkpoint_add_source(const char *name)
{
	if (cp_nsrc == CP_MAX_SOURCES)
		return -1;
	memset(&cp_src[cp_nsrc], 0, sizeof(cp_src[0]));
	cp_src[cp_nsrc++].name = name;
	return 0;
}

void
checkpoint_station(const char *s)
{
	cp_station_only = s;
}

int
checkpoint_sources(void)
{
	return cp_nsrc;
}

static long
checkpoint_num(const char *s, size_t len)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 18)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/*
 * The fields, each "key=value" with no blank inside, in the order the
 * daemon writes them; anything else is not a checkpoint.
 */
static int
checkpoint_parse(struct cp *p)
{
	static const char *const keys[] = { "n", "station", "seq", "head",
	    "prev", "batch", "utc", "sig" };
	const char *s, *e, *v, *end = p->line + p->len;
	size_t k, vl;

	dbhash_sha256(p->line, p->len, p->hash);
	if (p->len < sizeof(CP_MAGIC) || memchr(p->line, '\0', p->len) !=
	    NULL || strncmp(p->line, CP_MAGIC, sizeof(CP_MAGIC) - 1) != 0)
		return -1;
	s = p->line + sizeof(CP_MAGIC) - 1;
	for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		if (s >= end)
			return -1;
		e = memchr(s, ' ', (size_t)(end - s));
		if (e == NULL)
			e = end;
		vl = strlen(keys[k]);
		if ((size_t)(e - s) <= vl || strncmp(s, keys[k], vl) != 0 ||
		    s[vl] != '=')
			return -1;
		v = s + vl + 1;
		vl = (size_t)(e - v);
		switch (k) {
		case 0:
			if ((p->n = checkpoint_num(v, vl)) < 1)
				return -1;
			break;
		case 1:
			if (vl == 0 || vl >= sizeof(p->station))
				return -1;
			memcpy(p->station, v, vl);
			p->station[vl] = '\0';
			break;
		case 2:
			if ((p->seq = checkpoint_num(v, vl)) < 0)
				return -1;
			break;
		case 3:
			if (dbhash_unhex(v, vl, p->head, 32) != 0)
				return -1;
			break;
		case 4:
			if (dbhash_unhex(v, vl, p->prev, 32) != 0)
				return -1;
			break;
		case 5:
			if ((p->batch = strndup(v, vl)) == NULL)
				return -1;
			break;
		case 7:
			p->signed_len = (size_t)(s - 1 - p->line);
			if (dbhash_unhex(v, vl, p->sig, 64) != 0 ||
			    e != end)
				return -1;
			break;
		}
		s = e + 1;
	}
	return 0;
}

static int
checkpoint_push(struct cp_source *src, const char *line, size_t len,
    const char *where)
{
	struct cp *p;

	if (src->n == src->cap) {
		src->cap = src->cap == 0 ? 64 : 2 * src->cap;
		if ((p = realloc(src->v, src->cap * sizeof(*p))) == NULL)
			return -1;
		src->v = p;
	}
	p = &src->v[src->n++];
	memset(p, 0, sizeof(*p));
	if ((p->line = malloc(len + 1)) == NULL)
		return -1;
	memcpy(p->line, line, len);
	p->line[len] = '\0';
	p->len = len;
	snprintf(p->where, sizeof(p->where), "%s", where);
	p->parsed = checkpoint_parse(p) == 0;
	return 0;
}

static int
checkpoint_read_file(struct cp_source *src)
{
	char *line = NULL, where[300];
	size_t cap = 0;
	ssize_t len;
	long no = 0;
	FILE *f;

	if ((f = fopen(src->name, "re")) == NULL)
		return ctl_fail("--checkpoints %s: %s", src->name,
		    strerror(errno)), -1;
	while ((len = getline(&line, &cap, f)) >= 0) {
		no++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		snprintf(where, sizeof(where), "%s:%ld", src->name, no);
		if (checkpoint_push(src, line, (size_t)len, where) != 0)
			break;
	}
	free(line);
	fclose(f);
	return 0;
}

/*
 * libsystemd, loaded only to read the journal: linked, it and the
 * libraries it pulls cost every cardlicctl command about 2.5 ms to start
 * (issue 12: show and list --serial, under 5 ms, spent half of it there).
 */
struct cp_sd {
	int	(*open)(sd_journal **, int);
	int	(*add_match)(sd_journal *, const void *, size_t);
	int	(*seek_head)(sd_journal *);
	int	(*next)(sd_journal *);
	int	(*get_data)(sd_journal *, const char *, const void **,
		    size_t *);
	void	(*close)(sd_journal *);
};

static int
checkpoint_sd_load(struct cp_sd *sd)
{
	void *h;

	if ((h = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL)) == NULL)
		return ctl_fail("--checkpoints journal: cannot load "
		    "libsystemd.so.0: %s", dlerror()), -1;
	*(void **)&sd->open = dlsym(h, "sd_journal_open");
	*(void **)&sd->add_match = dlsym(h, "sd_journal_add_match");
	*(void **)&sd->seek_head = dlsym(h, "sd_journal_seek_head");
	*(void **)&sd->next = dlsym(h, "sd_journal_next");
	*(void **)&sd->get_data = dlsym(h, "sd_journal_get_data");
	*(void **)&sd->close = dlsym(h, "sd_journal_close");
	if (sd->open == NULL || sd->add_match == NULL ||
	    sd->seek_head == NULL || sd->next == NULL ||
	    sd->get_data == NULL || sd->close == NULL)
		return ctl_fail("--checkpoints journal: libsystemd.so.0 "
		    "lacks the journal's functions"), -1;
	return 0;
}

/* The entries with the checkpoints' MESSAGE_ID, oldest first. */
static int
checkpoint_read_journal(struct cp_source *src)
{
	struct cp_sd sd;
	char where[64];
	sd_journal *j;
	const void *d;
	size_t len;
	long no = 0;
	int r;

	if (checkpoint_sd_load(&sd) != 0)
		return -1;
	if ((r = sd.open(&j, SD_JOURNAL_LOCAL_ONLY)) < 0)
		return ctl_fail("--checkpoints journal: cannot open the "
		    "journal: %s", strerror(-r)), -1;
	if (sd.add_match(j, "MESSAGE_ID=" CP_MESSAGE_ID, 0) < 0 ||
	    sd.seek_head(j) < 0) {
		sd.close(j);
		return ctl_fail("--checkpoints journal: cannot search the "
		    "journal"), -1;
	}
	while (sd.next(j) > 0) {
		no++;
		if (sd.get_data(j, "CARDLICD_CHECKPOINT", &d, &len) < 0 ||
		    len <= sizeof(CP_FIELD) - 1)
			continue;
		snprintf(where, sizeof(where), "journal entry %ld", no);
		if (checkpoint_push(src, (const char *)d + sizeof(CP_FIELD) -
		    1, len - (sizeof(CP_FIELD) - 1), where) != 0)
			break;
	}
	sd.close(j);
	return 0;
}

/* The station's public keys: those given, then the database's key rows. */
struct cp_keys {
	const uint8_t	(*given)[32];
	int		 ngiven;
	uint8_t		 (*db)[32];
	int		 ndb;
};

static void
checkpoint_db_keys(struct ctl *c, const char *station, struct cp_keys *k)
{
	struct chain_keyrow kr;
	sqlite3_stmt *st;
	uint8_t (*v)[32];

	k->ndb = 0;
	/* No key state before migration 5: no rows, no key. */
	if (sqlite3_prepare_v2(c->db, "SELECT reason FROM audit WHERE state = "
	    "'key' AND station = ?1 ORDER BY seq", -1, &st, NULL) !=
	    SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, station, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		/* A key row's reason as verify reads it, byte for byte. */
		if (chain_key_reason(sqlite3_column_blob(st, 0), (size_t)
		    sqlite3_column_bytes(st, 0), &kr) != 0)
			continue;
		if ((v = realloc(k->db, (size_t)(k->ndb + 1) * 32)) == NULL)
			break;
		k->db = v;
		memcpy(k->db[k->ndb++], kr.pub, 32);
	}
	sqlite3_finalize(st);
}

static int
checkpoint_sig_ok(const struct cp *p, const struct cp_keys *k)
{
	int i;

	for (i = 0; i < k->ngiven; i++)
		if (sign_check(k->given[i], SIGN_DOMAIN_CHECKPOINT,
		    (const uint8_t *)p->line, p->signed_len, p->sig) == 1)
			return 1;
	for (i = 0; i < k->ndb; i++)
		if (sign_check(k->db[i], SIGN_DOMAIN_CHECKPOINT,
		    (const uint8_t *)p->line, p->signed_len, p->sig) == 1)
			return 1;
	return 0;
}

static const uint8_t cp_zero[32];

static int
checkpoint_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
checkpoint_fail(const char *fmt, ...)
{
	va_list ap;

	printf("checkpoints: BROKEN: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return 1;
}

/*
 * The row a checkpoint names, and its batch counts, against the rows.
 * 0 when they hold.
 */
static int
checkpoint_rows(struct ctl *c, const struct cp *p)
{
	sqlite3_stmt *st;
	char hex[65], *b, *e, *r, *atr, *cnt, *save = NULL;
	const char *esc;
	long have = -1, last = 0, n;
	int bad = 0, i, o;

	if (p->seq == 0)
		return 0;	/* the database was empty then */
	st = ctl_prepare(c, "SELECT (SELECT hash FROM audit WHERE station = "
	    "?1 AND seq = ?2), (SELECT coalesce(max(seq), 0) FROM audit WHERE "
	    "station = ?1)");
	if (st == NULL)
		return 1;
	sqlite3_bind_text(st, 1, p->station, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, p->seq);
	if (sqlite3_step(st) == SQLITE_ROW) {
		have = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 :
		    sqlite3_column_bytes(st, 0) == 32 &&
		    memcmp(sqlite3_column_blob(st, 0), p->head, 32) == 0 ? 1 :
		    2;
		last = (long)sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	dbhash_hex(p->head, 32, 0, hex);
	if (have == 0)
		return checkpoint_fail("%s: checkpoint n=%ld names row %ld of "
		    "station %s (head %s), but the station's rows end at row "
		    "%ld: rows %ld..%ld were cut off (truncated)", p->where,
		    p->n, p->seq, p->station, hex, last, last + 1, p->seq);
	if (have != 1)
		return checkpoint_fail("%s: checkpoint n=%ld: row %ld of "
		    "station %s does not have the head it names (%s): the row "
		    "was altered or the chain re-computed", p->where, p->n,
		    p->seq, p->station, hex);
	/* READER|ATR|COUNT;...: the generated rows up to seq, per card. */
	if (strcmp(p->batch, "-") == 0 || (b = strdup(p->batch)) == NULL)
		return 0;
	for (e = strtok_r(b, ";", &save); e != NULL;
	    e = strtok_r(NULL, ";", &save)) {
		r = e;
		if ((atr = strchr(r, '|')) == NULL ||
		    (cnt = strchr(atr + 1, '|')) == NULL) {
			bad = checkpoint_fail("%s: checkpoint n=%ld: batch= "
			    "is not READER|ATR|COUNT", p->where, p->n);
			break;
		}
		*atr++ = '\0';
		*cnt++ = '\0';
		/*
		 * %XX back to the reader's bytes, compared with their
		 * length: a %00 is a byte of the name, not its end.
		 */
		for (i = 0, o = 0; r[i] != '\0'; o++)
			if (r[i] == '%' && r[i + 1] != '\0' && r[i + 2] != '\0')
			{
				unsigned v = 0;

				sscanf(r + i + 1, "%2x", &v);
				r[o] = (char)v;
				i += 3;
			} else
				r[o] = r[i++];
		r[o] = '\0';
		st = ctl_prepare(c, "SELECT count(*) FROM audit WHERE station ="
		    " ?1 AND state = 'generated' AND batch_reader = ?2 AND "
		    "batch_atr = ?3 AND seq <= ?4");
		if (st == NULL)
			break;
		sqlite3_bind_text(st, 1, p->station, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, r, o, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, atr, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, p->seq);
		n = sqlite3_step(st) == SQLITE_ROW ?
		    (long)sqlite3_column_int64(st, 0) : -1;
		sqlite3_finalize(st);
		if (n != strtol(cnt, NULL, 10)) {
			esc = ctl_esc(r, (size_t)o);
			bad = checkpoint_fail("%s: checkpoint n=%ld: batch "
			    "card %s (ATR %s) had generated %s licenses at row "
			    "%ld, the rows up to it now show %ld", p->where,
			    p->n, esc, atr, cnt, p->seq, n);
		}
	}
	free(b);
	return bad;
}

/*
 * An earlier first line of a series with the same text (hash): the
 * daemon never writes one twice, so a copy, which would otherwise read as
 * a new series.  (A copy of any later line breaks the n sequence.)  Only
 * first lines are compared: there are few.
 */
static const struct cp *
checkpoint_seen(const struct cp_source *src, size_t i)
{
	size_t j;

	for (j = 0; j < i; j++)
		if (src->v[j].parsed && src->v[j].n == 1 &&
		    memcmp(src->v[j].hash, src->v[i].hash, 32) == 0)
			return &src->v[j];
	return NULL;
}

/* One source's checkpoints of one station, in order. */
static int
checkpoint_one_source(struct ctl *c, struct cp_source *src,
    const char *station, const struct cp_keys *k, long *count)
{
	struct cp *p, *last = NULL;
	const struct cp *dup;
	int bad = 0;
	size_t i;

	for (i = 0; i < src->n; i++) {
		p = &src->v[i];
		if (!p->parsed || strcmp(p->station, station) != 0)
			continue;
		(*count)++;
		if (!checkpoint_sig_ok(p, k)) {
			bad |= checkpoint_fail("%s: checkpoint n=%ld: bad "
			    "signature: the station's key did not sign this "
			    "line (forged or altered)", p->where, p->n);
			continue;
		}
		p->good = 1;
		if (p->n == 1 && (dup = checkpoint_seen(src, i)) != NULL)
			bad |= checkpoint_fail("%s: checkpoint n=%ld repeats %s "
			    "word for word: a copied line, not one the daemon "
			    "wrote", p->where, p->n, dup->where);
		/*
		 * Only the station's first checkpoint may start a series: a
		 * later one that does was written by a daemon that did not
		 * find the series (under the installed unit, its user could
		 * not read the journal), or it replaces the series, and
		 * whatever was dropped between the two cannot show.
		 */
		else if (last != NULL && p->n == 1 &&
		    memcmp(p->prev, cp_zero, 32) == 0)
			bad |= checkpoint_fail("%s: checkpoint n=1 starts a "
			    "new series after n=%ld (%s): only the station's "
			    "first checkpoint may; checkpoints after n=%ld may "
			    "have been dropped, and none shows it", p->where,
			    last->n, last->where, last->n);
		else if (last != NULL && p->n != last->n + 1)
			bad |= checkpoint_fail("%s: checkpoint n=%ld follows "
			    "n=%ld (%s): %s dropped", p->where, p->n,
			    last->n, last->where, p->n > last->n + 1 ?
			    "the checkpoints between them were" :
			    "the order is wrong, or one was");
		else if (last != NULL && memcmp(p->prev, last->hash, 32) != 0)
			bad |= checkpoint_fail("%s: checkpoint n=%ld does not "
			    "chain to the line before it (%s): a checkpoint "
			    "was replaced or dropped", p->where, p->n,
			    last->where);
		bad |= checkpoint_rows(c, p);
		last = p;
	}
	return bad;
}

static int
checkpoint_cmp_hash(const void *a, const void *b)
{
	return memcmp((*(const struct cp *const *)a)->hash,
	    (*(const struct cp *const *)b)->hash, 32);
}

static int
checkpoint_cmp_prev(const void *a, const void *b)
{
	return memcmp((*(const struct cp *const *)a)->prev,
	    (*(const struct cp *const *)b)->prev, 32);
}

/* A source's checkpoints of the station, by hash or by prev. */
static const struct cp **
checkpoint_index(const struct cp_source *src, const char *station,
    size_t *n, int (*cmp)(const void *, const void *))
{
	const struct cp **v;
	size_t i;

	*n = 0;
	if ((v = calloc(src->n + 1, sizeof(*v))) == NULL)
		return NULL;
	for (i = 0; i < src->n; i++)
		if (src->v[i].good && strcmp(src->v[i].station, station) == 0)
			v[(*n)++] = &src->v[i];
	qsort(v, *n, sizeof(*v), cmp);
	return v;
}

/*
 * Two sources of one station: a checkpoint that follows the same one as
 * another, but differs, is a fork; a source whose last checkpoint the
 * other has, with more after it, lost its tail.
 */
static int
checkpoint_two(const struct cp_source *a, const struct cp_source *b,
    const char *station)
{
	const struct cp **bh, **bp, *key, *la = NULL, **f;
	size_t nh, np, i, at = 0;
	long lastb = 0;
	int bad = 0;

	bh = checkpoint_index(b, station, &nh, checkpoint_cmp_hash);
	bp = checkpoint_index(b, station, &np, checkpoint_cmp_prev);
	if (bh == NULL || bp == NULL) {
		free(bh);
		free(bp);
		return 0;
	}
	for (i = 0; i < a->n; i++) {
		key = &a->v[i];
		if (!key->good || strcmp(key->station, station) != 0)
			continue;
		la = key;
		if (memcmp(key->prev, cp_zero, 32) == 0)
			continue;
		f = bsearch(&key, bp, np, sizeof(*bp), checkpoint_cmp_prev);
		if (f != NULL && memcmp((*f)->hash, key->hash, 32) != 0)
			bad |= checkpoint_fail("%s and %s disagree: two "
			    "different checkpoints n=%ld follow the same one",
			    key->where, (*f)->where, key->n);
	}
	if (la != NULL && (f = bsearch(&la, bh, nh, sizeof(*bh),
	    checkpoint_cmp_hash)) != NULL) {
		for (i = 0; i < b->n; i++)
			if (&b->v[i] == *f)
				at = i;
		for (i = at + 1; i < b->n; i++)
			if (b->v[i].good && strcmp(b->v[i].station, station)
			    == 0)
				lastb = b->v[i].n;
		if (lastb > 0)
			bad |= checkpoint_fail("%s and %s disagree: %s ends at "
			    "checkpoint n=%ld (%s), %s goes on to n=%ld: "
			    "checkpoints were dropped from %s", a->name,
			    b->name, a->name, la->n, la->where, b->name, lastb,
			    a->name);
	}
	free(bh);
	free(bp);
	return bad;
}

/* The newest checkpoint of the station in any source: the highest seq. */
static void
checkpoint_report_after(struct ctl *c, const char *station)
{
	const struct cp *best = NULL, *p;
	sqlite3_stmt *st;
	long last = 0;
	size_t i;
	int s;

	for (s = 0; s < cp_nsrc; s++)
		for (i = 0; i < cp_src[s].n; i++) {
			p = &cp_src[s].v[i];
			if (p->good && strcmp(p->station, station) == 0 &&
			    (best == NULL || p->seq > best->seq ||
			    (p->seq == best->seq && p->n > best->n)))
				best = p;
		}
	if (best == NULL)
		return;
	if ((st = ctl_prepare(c, "SELECT coalesce(max(seq), 0) FROM audit "
	    "WHERE station = ?1")) != NULL) {
		sqlite3_bind_text(st, 1, station, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			last = (long)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	if (last < best->seq)
		printf("checkpoints: station %s: the last checkpoint is n=%ld "
		    "(%s), row %ld; the database ends before it, at row %ld\n",
		    station, best->n, best->where, best->seq, last);
	else
		printf("checkpoints: station %s: the last checkpoint is n=%ld "
		    "(%s), row %ld; %ld rows were written after it, which no "
		    "checkpoint covers yet\n", station, best->n, best->where,
		    best->seq, last - best->seq);
}

/*
 * The stations named by any checkpoint (or --station), each checked in
 * every source, then the sources against each other.  The signatures are
 * checked under the keys given and, without any or when the rows' walk
 * held under them (chains_ok), the database's key rows.  CTL_OK when all
 * hold, CTL_NOTHING when something does not, CTL_USAGE when a source
 * cannot be read.
 */
int
checkpoint_verify(struct ctl *c, const uint8_t (*keys)[32], int nkeys,
    int chains_ok)
{
	struct cp_keys k;
	char stations[16][64];
	long count, total = 0;
	int ns = 0, s, t, i, bad = 0, rc;
	size_t j;

	for (s = 0; s < cp_nsrc; s++) {
		rc = strcmp(cp_src[s].name, "journal") == 0 ?
		    checkpoint_read_journal(&cp_src[s]) :
		    checkpoint_read_file(&cp_src[s]);
		if (rc != 0)
			return CTL_USAGE;
		for (j = 0; j < cp_src[s].n; j++) {
			const struct cp *p = &cp_src[s].v[j];

			if (!p->parsed) {
				bad |= checkpoint_fail("%s: not a checkpoint "
				    "line: %s", p->where,
				    ctl_esc(p->line, p->len > 80 ? 80 :
				    p->len));
				continue;
			}
			if (cp_station_only != NULL &&
			    strcmp(p->station, cp_station_only) != 0)
				continue;
			for (i = 0; i < ns; i++)
				if (strcmp(stations[i], p->station) == 0)
					break;
			if (i == ns && ns < 16)
				snprintf(stations[ns++], 64, "%s",
				    p->station);
		}
		if (cp_src[s].n == 0)
			printf("checkpoints: %s: no checkpoint in it%s\n",
			    cp_src[s].name, strcmp(cp_src[s].name, "journal")
			    == 0 ? " (none written yet, or the journal is "
			    "not readable by this user: systemd-journal or "
			    "adm group)" : "");
	}
	if (ns == 0) {
		printf("checkpoints: BROKEN: no checkpoint%s to check the "
		    "database against\n", cp_station_only != NULL ?
		    " of that station" : "");
		return CTL_NOTHING;
	}
	memset(&k, 0, sizeof(k));
	k.given = keys;
	k.ngiven = nkeys;
	for (i = 0; i < ns; i++) {
		if (nkeys == 0 || chains_ok)
			checkpoint_db_keys(c, stations[i], &k);
		if (k.ngiven + k.ndb == 0) {
			bad |= checkpoint_fail("station %s: no public key to "
			    "check the checkpoints with (give --key, or the "
			    "database has no key row)", stations[i]);
			continue;
		}
		for (s = 0; s < cp_nsrc; s++) {
			count = 0;
			bad |= checkpoint_one_source(c, &cp_src[s],
			    stations[i], &k, &count);
			total += count;
		}
		for (s = 0; s < cp_nsrc; s++)
			for (t = 0; t < cp_nsrc; t++)
				if (s != t)
					bad |= checkpoint_two(&cp_src[s],
					    &cp_src[t], stations[i]);
		checkpoint_report_after(c, stations[i]);
	}
	free(k.db);
	printf("checkpoints: %ld checked%s: %s\n", total, nkeys == 0 ?
	    " under the database's own key rows (unanchored: give --key "
	    "to anchor them)" : "", bad ? "BROKEN" : "every one holds");
	return bad ? CTL_NOTHING : CTL_OK;
}
