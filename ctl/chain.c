/*
 * The hash chain: verify walks each station's rows in sequence and
 * recomputes every hash with the daemon's own function (daemon/dbhash.c);
 * merge copies verified chains into one database, only ever appending.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cardlicctl.h"
#include "../daemon/dbhash.h"
#include "../daemon/sign.h"

/*
 * The signatures (issue 11).  A station's rows before its first `key` row
 * were written before signing: their sig is NULL and they are counted as
 * unsigned.  From the first key row on, every row carries the signature
 * of the active key over (domain || its hash); a key row makes its key
 * the active one, and is signed by it.  A key is accepted when it is the
 * station's first (and, with --key, one of the files given), or endorsed
 * by the active key (cardlicctl keygen --rotate), or one of the files
 * given, or the active key published again.
 *
 * Two domains (daemon/sign.h).  A row signed "cardlicd-row-v1" vouches
 * for its hash, and so for the chain before it, but not for the rows
 * under it: the cardlicd that signed so chained each append to whatever
 * row ended the file, so that a row forged without the key and followed
 * by one more card lay under a good signature (independent test round,
 * case 3).  Each v1 row's own signature is checked, then.  A row signed
 * "cardlicd-row-v2" also says that the signer wrote, or checked, the row
 * before it: cardlicd signs so only on top of its own last row, or of
 * rows it checked at start-up.  A key row whose reason ends in " v2"
 * starts that; every row from it on, up to the next key row (a span),
 * must be signed v2 by its key, and every later key row must be v2 too.
 * In a v2 span, the last row's signature proves through the chain every
 * row of the span, and that none of them was appended by someone else;
 * so verify checks that one (and the key row's own), and walks the
 * station again checking each signature only when something fails, to
 * name the first bad row.  --every-signature checks each row's own.
 */
/*
 * Checking a signature is the bulk of a walk's time (about 55 us a row
 * here, against 5 us for the rest), so the walk hands those it checks
 * one by one to a pool of threads, one per CPU (chain_pool), and names
 * the first row that failed.
 */
#define CHAIN_BLOCK	256	/* signatures handed over at once */
#define CHAIN_QUEUE	8	/* blocks waiting, at most */
#define CHAIN_THREADS	16

struct chain_sig {
	long		 seq;
	long		 key_seq;
	int		 v2;		/* the domain that its span calls for */
	uint8_t		 pub[32];
	uint8_t		 hash[32];
	uint8_t		 sig[64];
};

struct chain_block {
	size_t			 n;
	struct chain_block	*next;		/* in the pool's free list */
	struct chain_sig	 v[CHAIN_BLOCK];
};

struct chain_pool {
	pthread_mutex_t		 lock;
	pthread_cond_t		 work;		/* a block queued, or stop */
	pthread_cond_t		 done;		/* a block checked */
	struct chain_block	*queue[CHAIN_QUEUE];
	size_t			 head, count;	/* under lock */
	size_t			 busy;		/* blocks being checked */
	struct chain_block	*spare;		/* checked, to fill again */
	struct chain_block	*fill;		/* the walk's, not queued */
	struct chain_sig	 bad;		/* first that failed (seq 0: none) */
	int			 stop;
	int			 nthreads;
	pthread_t		 t[CHAIN_THREADS];
};

struct chain_state {
	const uint8_t	(*trust)[32];	/* the --key files */
	int		 n_trust;
	const char	*station;	/* its exact bytes, NUL-terminated */
	size_t		 station_len;
	uint8_t		 prev[32];
	long		 expect, rows, unsigned_rows, signed_rows, key_rows;
	int		 have_key;
	uint8_t		 active[32];
	long		 key_seq;	/* the active key's row */
	struct chain_retired {
		uint8_t	 pub[32];
		long	 published;	/* its key row */
		long	 retired;	/* the key row that replaced it */
	}		*retired;	/* chain_state_free */
	size_t		 n_retired;
	struct chain_pool *pool;	/* checks the signatures */
	int		 every;		/* each row's own signature */
	int		 v2;		/* the active key's span is v2 */
	long		 v2_from;	/* the first v2 key row, or 0 */
	long		 v2_rows;	/* rows signed v2 */
	struct chain_sig last;		/* a v2 span's last row, unchecked */
};

static int	chain_every_signature;	/* verify --every-signature */

static void
chain_state_init(struct chain_state *cs, const char *station, size_t len,
    const uint8_t (*trust)[32], int n_trust, struct chain_pool *pool)
{
	memset(cs, 0, sizeof(*cs));
	cs->station = station;
	cs->station_len = len;
	cs->trust = trust;
	cs->n_trust = n_trust;
	cs->expect = 1;
	cs->pool = pool;
	cs->every = chain_every_signature;
}

static const char *
chain_domain(int v2)
{
	return v2 ? SIGN_DOMAIN_ROW_V2 : SIGN_DOMAIN_ROW;
}

/* One block's signatures; the first that fails, in p->bad. */
static void
chain_pool_check(struct chain_pool *p, struct chain_block *b)
{
	const struct chain_sig *first = NULL, *v;
	long bad;
	size_t i;

	pthread_mutex_lock(&p->lock);
	bad = p->bad.seq;
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < b->n; i++) {
		v = &b->v[i];
		/* Rows after one that failed need no answer. */
		if (bad != 0 && v->seq > bad)
			break;
		if (!sign_check(v->pub, chain_domain(v->v2), v->hash, 32,
		    v->sig)) {
			first = v;
			break;
		}
	}
	pthread_mutex_lock(&p->lock);
	if (first != NULL && (p->bad.seq == 0 || first->seq < p->bad.seq))
		p->bad = *first;
	b->n = 0;
	b->next = p->spare;
	p->spare = b;
	p->busy--;
	pthread_cond_broadcast(&p->done);
	pthread_mutex_unlock(&p->lock);
}

/* The oldest queued block, taken under the lock; NULL if none. */
static struct chain_block *
chain_pool_take(struct chain_pool *p)
{
	struct chain_block *b;

	if (p->count == 0)
		return NULL;
	b = p->queue[p->head];
	p->head = (p->head + 1) % CHAIN_QUEUE;
	p->count--;
	p->busy++;
	return b;
}

static void *
chain_pool_main(void *arg)
{
	struct chain_pool *p = arg;
	struct chain_block *b;

	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (p->count == 0 && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		b = chain_pool_take(p);
		pthread_mutex_unlock(&p->lock);
		if (b == NULL)
			return NULL;
		chain_pool_check(p, b);
	}
}

/* The CPUs this process may run on. */
static int
chain_cpus(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/*
 * A pool of one thread per CPU but one: the walk's own thread checks
 * signatures too whenever the queue is full, and at the end.  With no
 * thread (one CPU, or none could start) it checks them all.
 */
static void
chain_pool_start(struct chain_pool *p)
{
	int i, n = chain_cpus() - 1;

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	if (n > CHAIN_THREADS)
		n = CHAIN_THREADS;
	for (i = 0; i < n; i++)
		if (pthread_create(&p->t[p->nthreads], NULL, chain_pool_main,
		    p) == 0)
			p->nthreads++;
}

static void
chain_pool_end(struct chain_pool *p)
{
	struct chain_block *b;
	int i;

	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->t[i], NULL);
	free(p->fill);
	while ((b = p->spare) != NULL) {
		p->spare = b->next;
		free(b);
	}
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
}

/*
 * The walk's block, full or at a station's end, into the queue.  While
 * the queue is full, the walk checks the oldest block itself.  0, or -1
 * when a signature has failed already: the walk may stop.
 */
static int
chain_pool_queue(struct chain_pool *p)
{
	struct chain_block *b;
	long bad;

	pthread_mutex_lock(&p->lock);
	while (p->count == CHAIN_QUEUE) {
		b = chain_pool_take(p);
		pthread_mutex_unlock(&p->lock);
		chain_pool_check(p, b);
		pthread_mutex_lock(&p->lock);
	}
	if (p->fill != NULL && p->fill->n > 0) {
		p->queue[(p->head + p->count) % CHAIN_QUEUE] = p->fill;
		p->count++;
		p->fill = NULL;
		pthread_cond_signal(&p->work);
	}
	bad = p->bad.seq;
	pthread_mutex_unlock(&p->lock);
	return bad != 0 ? -1 : 0;
}

/*
 * One row's signature, to be checked.  0, -1 (as chain_pool_queue), or
 * -2 when out of memory.
 */
static int
chain_pool_add(struct chain_pool *p, const struct chain_sig *s)
{
	if (p->fill == NULL) {
		pthread_mutex_lock(&p->lock);
		if ((p->fill = p->spare) != NULL)
			p->spare = p->fill->next;
		pthread_mutex_unlock(&p->lock);
		if (p->fill == NULL && (p->fill = malloc(sizeof(*p->fill))) ==
		    NULL)
			return -2;
		p->fill->n = 0;
	}
	p->fill->v[p->fill->n++] = *s;
	return p->fill->n == CHAIN_BLOCK ? chain_pool_queue(p) : 0;
}

/*
 * Every signature handed over so far, checked (the walk's thread helps):
 * the first row that failed, in *bad (seq 0: none), or 0.  The pool is
 * ready for another station.
 */
static long
chain_pool_wait(struct chain_pool *p, struct chain_sig *bad)
{
	struct chain_block *b;

	chain_pool_queue(p);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if ((b = chain_pool_take(p)) != NULL) {
			pthread_mutex_unlock(&p->lock);
			chain_pool_check(p, b);
			pthread_mutex_lock(&p->lock);
		} else if (p->busy > 0)
			pthread_cond_wait(&p->done, &p->lock);
		else
			break;
	}
	*bad = p->bad;
	p->bad.seq = 0;
	pthread_mutex_unlock(&p->lock);
	return bad->seq;
}

static void
chain_state_free(struct chain_state *cs)
{
	free(cs->retired);
	cs->retired = NULL;
	cs->n_retired = 0;
}

#define CHAIN_MAX_KEYS	16
#define CHAIN_STATION_MAX	64	/* [station] id, and its NUL */

static const char	*chain_short(const uint8_t [32]);

/*
 * What each --key file anchors: the station it was given for (--key
 * STATION=FILE), and the first station whose rows relied on it.  A key
 * given once anchors one station: an adversary holding one station's key
 * made a database in the name of another, and appended rows signed with
 * it to another station's own chain, in a merged file that the auditor
 * checked with both stations' keys, and both passed.
 */
static struct chain_given {
	char	for_station[CHAIN_STATION_MAX];	/* "": any one station */
	char	used_by[CHAIN_STATION_MAX];	/* "": none yet */
}		chain_given[CHAIN_MAX_KEYS];

/*
 * Is pub one of the --key files, given for this station?  1, or 0 with
 * msg when it is one given for, or already relied on by, another.
 */
static int
chain_trusted(const struct chain_state *cs, const uint8_t pub[32],
    char *msg, size_t len)
{
	struct chain_given *g;
	const char *other;
	int i;

	for (i = 0; i < cs->n_trust; i++)
		if (memcmp(cs->trust[i], pub, 32) == 0)
			break;
	if (i == cs->n_trust || i >= CHAIN_MAX_KEYS) {
		msg[0] = '\0';
		return 0;
	}
	g = &chain_given[i];
	if (g->for_station[0] == '\0' && g->used_by[0] == '\0')
		snprintf(g->used_by, sizeof(g->used_by), "%s", cs->station);
	if (strcmp(g->for_station[0] != '\0' ? g->for_station : g->used_by,
	    cs->station) == 0)
		return 1;
	other = g->for_station[0] != '\0' ? g->for_station : g->used_by;
	snprintf(msg, len, "is the --key %s station %s, not this one's (one "
	    "key for two stations could write either's rows; give each "
	    "station's key as --key STATION=FILE)", g->for_station[0] !=
	    '\0' ? "given for" : "already relied on by", ctl_esc(other,
	    strlen(other)));
	return 0;
}

/*
 * --key [STATION=]FILE: the public key, and the station it is given
 * for when the argument is not a file's name itself.  0, or -1 with err.
 */
static int
chain_key_arg(const char *arg, int i, uint8_t pub[32], char *err,
    size_t len)
{
	const char *eq = strchr(arg, '=');

	memset(&chain_given[i], 0, sizeof(chain_given[i]));
	if (eq == NULL || access(arg, F_OK) == 0)
		return sign_pub_read(arg, pub, err, len);
	if (eq == arg || (size_t)(eq - arg) >= CHAIN_STATION_MAX) {
		snprintf(err, len, "--key %s: the station before '=' must be "
		    "1 to %d bytes", arg, CHAIN_STATION_MAX - 1);
		return -1;
	}
	snprintf(chain_given[i].for_station, CHAIN_STATION_MAX, "%.*s",
	    (int)(eq - arg), arg);
	return sign_pub_read(eq + 1, pub, err, len);
}

/*
 * A key row's reason: "ed25519 PUB" or "ed25519 PUB endorsed-by PREV
 * ENDORSEMENT", with SIGN_V2_MARK after either when the key's rows are
 * signed v2, and not a byte more.  0 when it reads so.  verify, pubkey
 * and --checkpoints read key rows with this one function.
 */
int
chain_key_reason(const void *reason, size_t n, struct chain_keyrow *k)
{
	const char *r = reason;
	size_t m = strlen(SIGN_V2_MARK);

	memset(k, 0, sizeof(*k));
	if (r == NULL)
		return -1;
	if (n > m && memcmp(r + n - m, SIGN_V2_MARK, m) == 0) {
		k->v2 = 1;
		n -= m;
	}
	if (n < 72 || memcmp(r, "ed25519 ", 8) != 0 ||
	    dbhash_unhex(r + 8, 64, k->pub, 32) != 0)
		return -1;
	if (n == 72)
		return 0;
	if (n != 72 + 13 + 64 + 1 + 128 ||
	    memcmp(r + 72, " endorsed-by ", 13) != 0 || r[149] != ' ' ||
	    dbhash_unhex(r + 85, 64, k->prev, 32) != 0 ||
	    dbhash_unhex(r + 150, 128, k->e, 64) != 0)
		return -1;
	k->endorsed = 1;
	return 0;
}

static const char *
chain_short(const uint8_t pub[32])
{
	static char hex[65];

	dbhash_hex(pub, 32, 0, hex);
	return hex;
}

/*
 * A key row's key, where the station has one already: the active key
 * again (its rows signed v2 from here, no endorsement needed), or a new
 * one, endorsed by the active key or given with --key, which retires the
 * active key.  0, or -1 with msg.
 */
static int
chain_key_change(struct chain_state *cs, long seq,
    const struct chain_keyrow *k, char *msg, size_t len)
{
	struct chain_retired *r;
	char why[300];

	if (memcmp(k->pub, cs->active, 32) == 0)
		return 0;
	/* The station holds no NUL: chain_nul saw this row first. */
	if (!(k->endorsed && memcmp(k->prev, cs->active, 32) == 0 &&
	    sign_endorsed(cs->active, cs->station, k->pub, k->e)) &&
	    !chain_trusted(cs, k->pub, why, sizeof(why))) {
		snprintf(msg, len, "row %ld: the key changes to %s with no "
		    "valid endorsement by the active key (row %ld), and it %s",
		    seq, chain_short(k->pub), cs->key_seq, why[0] != '\0' ?
		    why : "is none of the --key files");
		return -1;
	}
	if ((r = realloc(cs->retired, (cs->n_retired + 1) * sizeof(*r))) ==
	    NULL) {
		snprintf(msg, len, "row %ld: out of memory", seq);
		return -1;
	}
	cs->retired = r;
	memcpy(r[cs->n_retired].pub, cs->active, 32);
	r[cs->n_retired].published = cs->key_seq;
	r[cs->n_retired++].retired = seq;
	return 0;
}

/* A key row: is its key accepted?  0, or -1 with msg. */
static int
chain_key_row(struct chain_state *cs, long seq, const struct dbhash_val *v,
    char *msg, size_t len)
{
	struct chain_keyrow k;
	char why[300];
	size_t i;

	if (v[AUDITROW_reason].type != SQLITE_TEXT ||
	    chain_key_reason(v[AUDITROW_reason].p, v[AUDITROW_reason].len,
	    &k) != 0) {
		snprintf(msg, len, "row %ld: a key row whose reason does not "
		    "read \"ed25519 PUBLICKEY [endorsed-by KEY SIGNATURE] "
		    "[v2]\"", seq);
		return -1;
	}
	/*
	 * A v1 key row after a v2 one: rows signed v1 again, by a cardlicd
	 * that may sign on top of a row it did not write.
	 */
	if (cs->v2_from != 0 && !k.v2) {
		snprintf(msg, len, "row %ld: a key row without the v2 mark, "
		    "after key row %ld began signing v2: every key row after "
		    "a v2 one is v2 (a cardlicd from before v2 published it, "
		    "and signs v1 on top of whatever row ends the file)", seq,
		    cs->v2_from);
		return -1;
	}
	/*
	 * A rotation retires the old key for every row after it: whoever
	 * kept a retired private key could otherwise append a key row back
	 * to it, and sign from there, with or without an endorsement, and
	 * --key with the station's first key accepted it (independent test
	 * round, case 12).
	 */
	for (i = 0; i < cs->n_retired; i++)
		if (memcmp(cs->retired[i].pub, k.pub, 32) == 0) {
			snprintf(msg, len, "row %ld: a key row brings back key "
			    "%s, which key row %ld retired (it was published "
			    "in row %ld): a key never comes back once "
			    "replaced", seq, chain_short(k.pub),
			    cs->retired[i].retired, cs->retired[i].published);
			return -1;
		}
	if (!cs->have_key) {
		if (cs->n_trust > 0 && !chain_trusted(cs, k.pub, why,
		    sizeof(why))) {
			snprintf(msg, len, "row %ld: the station's first key "
			    "%s %s", seq, chain_short(k.pub), why[0] != '\0' ?
			    why : "is none of the --key files (the key was "
			    "replaced)");
			return -1;
		}
	} else if (chain_key_change(cs, seq, &k, msg, len) != 0)
		return -1;
	cs->have_key = 1;
	memcpy(cs->active, k.pub, 32);
	cs->key_seq = seq;
	cs->key_rows++;
	cs->v2 = k.v2;
	if (k.v2 && cs->v2_from == 0)
		cs->v2_from = seq;
	return 0;
}

/*
 * A TEXT column with a NUL byte: cardlicd never writes one (its text
 * comes from C strings; card bytes go to BLOBs), and whatever reads the
 * value as a C string stops there.  A station "demo-line\0" walked as
 * "demo-line" twice hid a whole forged chain from verify (independent
 * test round, case 4): every value is compared with its length now, and
 * such a row is named.  0, or -1 with msg.
 */
static int
chain_nul(const struct dbhash_val *v, long seq, char *msg, size_t len)
{
	const uint8_t *at;
	int i;

	for (i = 0; i < AUDITROW_HASHED; i++) {
		if (v[i].type != SQLITE_TEXT || v[i].len == 0 ||
		    (at = memchr(v[i].p, '\0', v[i].len)) == NULL)
			continue;
		snprintf(msg, len, "row %ld: its %s holds a NUL byte (byte %zu "
		    "of %zu: \"%s\"): cardlicd never writes one, and read up "
		    "to the NUL it passes for \"%s\" (a row made to be taken "
		    "for another's)", seq, auditrow_cols[i].name,
		    (size_t)(at - v[i].p) + 1, v[i].len,
		    ctl_esc(v[i].p, v[i].len),
		    ctl_esc(v[i].p, (size_t)(at - v[i].p)));
		return -1;
	}
	return 0;
}

/*
 * A signature that failed: said as what it is, when it is the key's
 * under the other domain.
 */
static void
chain_bad_sig(char *msg, size_t len, const struct chain_sig *s)
{
	if (s->v2 && sign_check(s->pub, SIGN_DOMAIN_ROW, s->hash, 32, s->sig))
		snprintf(msg, len, "row %ld: signed v1, though its key row "
		    "%ld is v2, after which every row is signed v2: a cardlicd "
		    "from before v2 signed it (run again on this file), and may "
		    "have signed on top of a row that it did not write", s->seq,
		    s->key_seq);
	else if (!s->v2 && sign_check(s->pub, SIGN_DOMAIN_ROW_V2, s->hash,
	    32, s->sig))
		snprintf(msg, len, "row %ld: signed v2, though its key row "
		    "%ld is not: v2 signatures come after a key row that says "
		    "v2 (was the mark taken off a key row?)", s->seq,
		    s->key_seq);
	else
		snprintf(msg, len, "row %ld: its signature is not the "
		    "station's key's (key row %ld): the row was forged or "
		    "re-chained without the key, or its signature was "
		    "altered", s->seq, s->key_seq);
}

/*
 * The end of a v2 span (a key row, or the station's end), in a walk that
 * checks only the last signature of each: that one, with v2.  0, or -1
 * with msg (the walk again names the first bad row).
 */
static int
chain_span_end(struct chain_state *cs, char *msg, size_t len)
{
	struct chain_sig *s = &cs->last;

	if (s->seq == 0)
		return 0;
	if (!sign_check(s->pub, SIGN_DOMAIN_ROW_V2, s->hash, 32, s->sig)) {
		chain_bad_sig(msg, len, s);
		return -1;
	}
	s->seq = 0;
	return 0;
}

/*
 * A signed row's signature (64 bytes): checked by the pool (each v1
 * row's, and each v2 row's with --every-signature), at once (a v2 key
 * row's), or at the end of its v2 span (the last row's).  0; -1 with msg
 * when it failed or memory ran out; -2 when the pool has seen a failure.
 */
static int
chain_signed(struct chain_state *cs, long seq, int key, const uint8_t h[32],
    const uint8_t sig[64], char *msg, size_t len)
{
	struct chain_sig s;
	int rc;

	s.seq = seq;
	s.key_seq = cs->key_seq;
	s.v2 = cs->v2;
	memcpy(s.pub, cs->active, 32);
	memcpy(s.hash, h, 32);
	memcpy(s.sig, sig, 64);
	cs->signed_rows++;
	cs->v2_rows += cs->v2;
	if (cs->every || !cs->v2) {
		if ((rc = chain_pool_add(cs->pool, &s)) == -2)
			snprintf(msg, len, "row %ld: out of memory", seq);
		return rc == -2 ? -1 : rc != 0 ? -2 : 0;
	}
	if (key && !sign_check(s.pub, SIGN_DOMAIN_ROW_V2, h, 32, sig)) {
		chain_bad_sig(msg, len, &s);
		return -1;
	}
	if (!key)
		cs->last = s;
	return 0;
}

/*
 * One row of a station, in order: its seq, its hash, its signature.  v
 * holds the hashed columns; hash and sig are the stored ones (sig NULL
 * when the column is NULL).  0, or -1 with msg naming the row and why;
 * -2 when a signature handed to the pool earlier has failed.
 */
static int
chain_row(struct chain_state *cs, const struct dbhash_val *v,
    const uint8_t *hash, size_t hlen, const uint8_t *sig, size_t slen,
    char *msg, size_t len)
{
	uint8_t h[32];
	long seq = (long)v[AUDITROW_seq].i;
	int key, rc;

	if (chain_nul(v, seq, msg, len) != 0)
		return -1;
	if (v[AUDITROW_seq].type != SQLITE_INTEGER || seq != cs->expect) {
		if (v[AUDITROW_seq].type == SQLITE_INTEGER && seq > cs->expect)
			snprintf(msg, len, "row %ld is missing: the rows go "
			    "from %ld to %ld (removed)", cs->expect,
			    cs->expect - 1, seq);
		else
			snprintf(msg, len, "row %ld is out of order (after row "
			    "%ld)", seq, cs->expect - 1);
		return -1;
	}
	dbhash_row(cs->prev, v, h);
	if (hash == NULL || hlen != 32 || memcmp(h, hash, 32) != 0) {
		snprintf(msg, len, "row %ld was altered: its contents or its "
		    "place no longer match its hash", seq);
		return -1;
	}
	key = v[AUDITROW_state].type == SQLITE_TEXT &&
	    v[AUDITROW_state].len == 3 &&
	    memcmp(v[AUDITROW_state].p, "key", 3) == 0;
	/* A key row ends the span of the key before it. */
	if (key && (chain_span_end(cs, msg, len) != 0 ||
	    chain_key_row(cs, seq, v, msg, len) != 0))
		return -1;
	if (!cs->have_key) {
		if (sig != NULL) {
			snprintf(msg, len, "row %ld is signed, but no key row "
			    "comes before it", seq);
			return -1;
		}
		cs->unsigned_rows++;
	} else if (sig == NULL) {
		snprintf(msg, len, "row %ld has no signature, though the "
		    "station signs its rows since its key row %ld (a row "
		    "written without the station's key)", seq, cs->key_seq);
		return -1;
	} else if (slen != 64) {
		snprintf(msg, len, "row %ld: its signature is not the "
		    "station's key's (key row %ld): %zu bytes, not 64", seq,
		    cs->key_seq, slen);
		return -1;
	} else if ((rc = chain_signed(cs, seq, key, h, sig, msg, len)) != 0)
		return rc;
	memcpy(cs->prev, h, 32);
	cs->rows++;
	cs->expect++;
	return 0;
}

/*
 * The end of a station's rows: its last v2 span's last signature; with
 * --key, some row must be signed.
 */
static int
chain_end(struct chain_state *cs, char *msg, size_t len)
{
	if (chain_span_end(cs, msg, len) != 0)
		return -1;
	if (cs->n_trust > 0 && !cs->have_key && cs->rows > 0) {
		snprintf(msg, len, "row %ld: the station has no key row, so "
		    "none of its %ld rows is signed, though --key was given",
		    cs->rows, cs->rows);
		return -1;
	}
	return 0;
}

/*
 * The rows of one station, in order, their signatures handed to the pool.
 * 0 when they hold so far; -1 with msg naming the first row that does
 * not; -2 when the pool found a signature that failed.
 */
static int
chain_walk_rows(sqlite3 *db, struct chain_state *cs, char *msg, size_t len)
{
	struct dbhash_val v[AUDITROW_HASHED];
	const uint8_t *sig;
	sqlite3_stmt *st;
	int i, rc;

	/* A database that cardlicd has not migrated to 5 has no sig. */
	if (sqlite3_prepare_v2(db, "SELECT " AUDITROW_NAMES " FROM audit NOT "
	    "INDEXED WHERE station = ?1 ORDER BY seq", -1, &st, NULL) !=
	    SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT " AUDITROW_HASHED_COLUMNS(
	    AUDITROW_NAME) "hash, NULL AS sig FROM audit NOT INDEXED WHERE "
	    "station = ?1 "
	    "ORDER BY seq", -1, &st, NULL) != SQLITE_OK) {
		snprintf(msg, len, "%s", sqlite3_errmsg(db));
		return -1;
	}
	/* The station's exact bytes: a NUL inside is no end. */
	sqlite3_bind_text(st, 1, cs->station, (int)cs->station_len,
	    SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/*
		 * Text as a BLOB: the same bytes, with no copy made to end
		 * them with a NUL (the hash has their length).
		 */
		for (i = 0; i < AUDITROW_HASHED; i++) {
			v[i].type = sqlite3_column_type(st, i);
			v[i].i = v[i].type == SQLITE_INTEGER ?
			    sqlite3_column_int64(st, i) : 0;
			v[i].p = v[i].type == SQLITE_BLOB ||
			    v[i].type == SQLITE_TEXT ?
			    sqlite3_column_blob(st, i) : NULL;
			v[i].len = v[i].p != NULL ?
			    (size_t)sqlite3_column_bytes(st, i) : 0;
		}
		sig = sqlite3_column_type(st, AUDITROW_sig) == SQLITE_NULL ?
		    NULL : sqlite3_column_blob(st, AUDITROW_sig);
		if ((rc = chain_row(cs, v, sqlite3_column_blob(st,
		    AUDITROW_hash), (size_t)sqlite3_column_bytes(st,
		    AUDITROW_hash), sig, (size_t)sqlite3_column_bytes(st,
		    AUDITROW_sig), msg, len)) != 0) {
			sqlite3_finalize(st);
			return rc;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(msg, len, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return chain_end(cs, msg, len);
}

/*
 * Walk one station's chain.  0 when intact; -1 with msg naming the first
 * row that was altered, removed, put out of order or not signed, and
 * cs->rows the rows before it.
 */
static int
chain_walk_once(sqlite3 *db, struct chain_state *cs, char *msg, size_t len)
{
	struct chain_sig bad;
	int rc = chain_walk_rows(db, cs, msg, len);

	/*
	 * Only rows before the one that stopped the walk were handed over:
	 * a signature that failed is the first bad row.
	 */
	if (chain_pool_wait(cs->pool, &bad) != 0) {
		chain_bad_sig(msg, len, &bad);
		cs->rows = bad.seq - 1;
		rc = -1;
	}
	chain_state_free(cs);
	return rc == 0 ? 0 : -1;
}

/*
 * Walk one station's chain, as chain_walk_once.  When it fails after v2
 * rows whose own signatures were not checked (the span's last signature
 * failed, or something after it: a row under it may have failed first),
 * the station is walked again, checking every signature, so that the
 * first bad row is named.
 */
static int
chain_walk(sqlite3 *db, struct chain_state *cs, char *msg, size_t len)
{
	struct chain_state again;

	if (chain_walk_once(db, cs, msg, len) == 0)
		return 0;
	if (cs->every || cs->v2_rows == 0)
		return -1;
	chain_state_init(&again, cs->station, cs->station_len, cs->trust,
	    cs->n_trust, cs->pool);
	again.every = 1;
	/* It fails again, at the same row or before; else keep the first. */
	if (chain_walk_once(db, &again, msg, len) != 0)
		*cs = again;
	return -1;
}

/*
 * "; 12 signed, key ... (row 6); 3 v1, each signature checked; 9 v2 since
 * row 6, proven by ...; 2 unsigned (written before signing)"
 */
static void
chain_print_sigs(const struct chain_state *cs)
{
	if (cs->have_key)
		printf("; %ld signed, key %s (row %ld)", cs->signed_rows,
		    chain_short(cs->active), cs->key_seq);
	else
		printf("; no key row");
	if (cs->v2_rows > 0 && cs->v2_rows < cs->signed_rows)
		printf("; %ld v1, each signature checked", cs->signed_rows -
		    cs->v2_rows);
	if (cs->v2_rows > 0)
		printf("; %ld v2 since row %ld, %s", cs->v2_rows, cs->v2_from,
		    cs->every ? "each signature checked" : "proven by the "
		    "last signature of each key row's rows");
	if (cs->unsigned_rows > 0)
		printf("; %ld unsigned (written before signing)",
		    cs->unsigned_rows);
}

/*
 * Every station's chain; prints one line per station. 0 when all hold.
 * keys are the --key files (n 0: none, the verify is unanchored).
 */
int
chain_verify_all(sqlite3 *db, const char *name, int quiet, long *total,
    const uint8_t (*keys)[32], int n_keys)
{
	struct chain_state cs;
	struct chain_pool pool;
	sqlite3_stmt *st;
	char msg[512], hex[65];
	int bad = 0, keyed = 0, rc;

	*total = 0;
	/* A station the daemon wrote is text: anything else was altered. */
	if (sqlite3_prepare_v2(db, "SELECT DISTINCT station FROM audit NOT "
	    "INDEXED WHERE "
	    "typeof(station) = 'text' ORDER BY station", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	chain_pool_start(&pool);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 0);
		size_t sl = (size_t)sqlite3_column_bytes(st, 0);

		/*
		 * A corrupt file (or no memory) can still give NULL; its
		 * index may even loop: stop there.
		 */
		if (s == NULL) {
			printf("%s: BROKEN: a station is unreadable: %s\n", name,
			    sqlite3_errmsg(db));
			bad = 1;
			break;
		}
		chain_state_init(&cs, s, sl, keys, n_keys, &pool);
		rc = chain_walk(db, &cs, msg, sizeof(msg));
		if (rc != 0) {
			printf("%s: station %s: BROKEN at %s; %ld rows checked "
			    "before it\n", name, ctl_esc(s, sl), msg, cs.rows);
			bad = 1;
		} else if (!quiet) {
			dbhash_hex(cs.prev, 32, 0, hex);
			printf("%s: station %s: %ld rows, chain intact, head "
			    "%s", name, ctl_esc(s, sl), cs.rows, hex);
			chain_print_sigs(&cs);
			printf("\n");
		}
		keyed |= cs.have_key;
		*total += cs.rows;
	}
	sqlite3_finalize(st);
	chain_pool_end(&pool);
	/*
	 * Every row must be in the chain that was walked: a row whose
	 * station is not text (or not a station's at all) would be in none.
	 */
	if (!bad && sqlite3_prepare_v2(db, "SELECT count(*), min(seq) FILTER "
	    "(WHERE typeof(station) <> 'text') FROM audit NOT INDEXED", -1,
	    &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_int64(st, 0) != *total) {
			printf("%s: BROKEN at row %lld: %lld rows are in no "
			    "station's chain (their station is not text: "
			    "altered)\n", name, sqlite3_column_int64(st, 1),
			    sqlite3_column_int64(st, 0) - *total);
			bad = 1;
		}
		sqlite3_finalize(st);
	}
	if (!quiet && !bad && keyed && n_keys == 0)
		printf("unanchored: no --key given, so the keys are the "
		    "database's own key rows, which whoever can write the "
		    "file could replace; give the station's public key with "
		    "--key\n");
	return bad ? -1 : 0;
}

static const char *const verify_help =
"usage: cardlicctl verify [--key [STATION=]PUB]... [--every-signature]\n"
"                         [--head HASH]\n"
"                         [--checkpoints FILE|journal]... [--station ID]\n"
"       cardlicctl verify --export FILE [--key PUB]...\n"
"Walks each station's rows in order, checks that the sequence numbers\n"
"have no gap, recomputes every row's hash and checks the rows' Ed25519\n"
"signatures.  Names the first row that was altered, removed, put\n"
"out of order or not signed by the station's key, and prints how many\n"
"rows were checked.  Rows written before the station had a key are\n"
"counted as unsigned.  --key PUB (a PEM public key, as cardlicctl\n"
"pubkey or keygen gives it; repeatable) anchors the check: the station's\n"
"first key must be one of them, and a new key must be endorsed by the\n"
"previous one or be one of them.  A key anchors one station: the one\n"
"named as STATION=PUB, or else the first whose rows rely on it.\n"
"Without --key the database's own key\n"
"rows are trusted, and the result says it is unanchored.  The chain\n"
"cannot show that its newest rows were cut off: --head HASH (from\n"
"CARDLIC_CHAIN_HEAD in the journal) checks that the database still holds\n"
"that row.  --checkpoints (repeatable) checks the signed checkpoints\n"
"that cardlicd wrote to FILE ([audit] checkpoint-file) or the journal:\n"
"their signatures (under --key, else the key rows), their chain, that\n"
"each named row is still there with its head, and that the sources\n"
"agree; --station keeps one station's.  --export FILE checks a file\n"
"made by export --signed (CSV or JSONL), with no database.  Rows signed\n"
"v1 (before the station's first key row that says v2) are checked one\n"
"by one, by one thread per CPU (about 55 us of CPU a row); from a v2 key\n"
"row on, the last signature of each key row's rows proves them all, as\n"
"cardlicd signs v2 only on top of rows that it wrote or checked; when it\n"
"fails, every signature is checked, to name the first bad row.\n"
"--every-signature checks each row's own signature.  Exit 1 when\n"
"anything is wrong.\n";

int
cmd_verify(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "head", required_argument, NULL, 'H' },
		{ "key", required_argument, NULL, 'k' },
		{ "export", required_argument, NULL, 'e' },
		{ "every-signature", no_argument, NULL, 'E' },
		{ "checkpoints", required_argument, NULL, 'C' },
		{ "station", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	uint8_t keys[CHAIN_MAX_KEYS][32];
	const char *want = NULL, *export = NULL;
	struct schema_bg *bg;
	char err[4300];
	sqlite3_stmt *st;
	long total;
	int ch, rc, n_keys = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'H': want = optarg; break;
		case 'e': export = optarg; break;
		case 'E': chain_every_signature = 1; break;
		case 'k':
			if (n_keys == CHAIN_MAX_KEYS)
				return ctl_fail("verify: at most %d --key",
				    CHAIN_MAX_KEYS);
			if (chain_key_arg(optarg, n_keys, keys[n_keys], err,
			    sizeof(err)) != 0)
				return ctl_fail("%s", err);
			n_keys++;
			break;
		case 'C':
			if (checkpoint_add_source(optarg) != 0)
				return ctl_usage(verify_help);
			break;
		case 'S': checkpoint_station(optarg); break;
		case 'h': fputs(verify_help, stdout); return CTL_OK;
		default: return ctl_usage(verify_help);
		}
	}
	if (optind != argc || (want != NULL && (strlen(want) != 64 ||
	    strspn(want, "0123456789abcdefABCDEF") != 64)) ||
	    (export != NULL && want != NULL))
		return ctl_usage(verify_help);
	if (export != NULL)
		return vexport_verify(export, (const uint8_t (*)[32])keys,
		    n_keys);
	if (ctl_open(c) != 0) {
		if (c->broken[0] == '\0')
			return CTL_USAGE;
		printf("%s: BROKEN: %s\n", c->db_path, c->broken);
		return CTL_NOTHING;
	}
	if ((bg = schema_integrity_start(c)) == NULL &&
	    schema_integrity(c) != 0)
		return CTL_NOTHING;
	rc = chain_verify_all(c->db, c->db_path, 0, &total,
	    (const uint8_t (*)[32])keys, n_keys);
	printf("%ld rows checked\n", total);
	if (bg != NULL && schema_integrity_end(c, bg) != 0)
		return CTL_NOTHING;
	/*
	 * Also when the chain is broken: a cut-off end shows only here.
	 * The key rows are trusted only if the walk held (under --key).
	 */
	if (checkpoint_sources() > 0 && (ch = checkpoint_verify(c,
	    (const uint8_t (*)[32])keys, n_keys, rc == 0)) != CTL_OK) {
		if (ch == CTL_USAGE)
			return CTL_USAGE;
		rc = -1;
	}
	if (rc != 0)
		return CTL_NOTHING;
	if (want == NULL)
		return CTL_OK;
	/* In hex: Debian 12's SQLite (3.40) has no unhex(). */
	st = ctl_prepare(c, "SELECT station, seq, (SELECT max(seq) FROM audit "
	    "b WHERE b.station = a.station) FROM audit a WHERE hex(hash) = "
	    "upper(?1)");
	if (st == NULL)
		return CTL_USAGE;
	sqlite3_bind_text(st, 1, want, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		printf("head %s is row %lld of station %s (%lld rows after "
		    "it)\n", want, sqlite3_column_int64(st, 1),
		    ctl_esc(sqlite3_column_text(st, 0), (size_t)
		    sqlite3_column_bytes(st, 0)), sqlite3_column_int64(st, 2) -
		    sqlite3_column_int64(st, 1));
		sqlite3_finalize(st);
		return CTL_OK;
	}
	sqlite3_finalize(st);
	st = ctl_prepare(c, "SELECT station, max(seq) FROM audit GROUP BY "
	    "station");
	printf("head %s is NOT in the database: rows were cut off", want);
	while (st != NULL && sqlite3_step(st) == SQLITE_ROW)
		printf("; station %s now ends at row %lld",
		    ctl_esc(sqlite3_column_text(st, 0), (size_t)
		    sqlite3_column_bytes(st, 0)), sqlite3_column_int64(st, 1));
	printf("\n");
	sqlite3_finalize(st);
	return CTL_NOTHING;
}

/*
 * A merged database: the audit table of migration 1 keyed by (station,
 * seq) instead of seq, with the same append-only triggers per station,
 * then the views.  The table is taken from the migration itself, so that
 * the columns cannot drift.
 */
int
chain_create_merged(sqlite3 *db, int upto, char *err, size_t len)
{
	const char *m = sql_migrations[0], *a, *b;
	char *table, *p, *e = NULL;
	size_t n;
	int i;

	a = strstr(m, "CREATE TABLE audit (");
	b = a != NULL ? strstr(a, ") STRICT;") : NULL;
	if (a == NULL || b == NULL) {
		snprintf(err, len, "cannot find the audit table");
		return -1;
	}
	n = (size_t)(b - a);
	if ((table = malloc(n + 128)) == NULL)
		return -1;
	memcpy(table, a, n);
	table[n] = '\0';
	if ((p = strstr(table, "INTEGER PRIMARY KEY,")) != NULL)
		memcpy(p, "INTEGER NOT NULL,   ", 20);
	strcat(table, ",\n\tPRIMARY KEY (station, seq)\n) STRICT;");
	if (sqlite3_exec(db, table, NULL, NULL, &e) != SQLITE_OK ||
	    sqlite3_exec(db,
	    "CREATE INDEX audit_card ON audit (serial, model);"
	    "CREATE INDEX audit_license ON audit (station, license_seq);"
	    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN"
	    " SELECT RAISE(ABORT, 'audit rows are append-only: UPDATE"
	    " refused'); END;"
	    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN"
	    " SELECT RAISE(ABORT, 'audit rows are append-only: DELETE"
	    " refused'); END;"
	    "CREATE TRIGGER audit_append_only BEFORE INSERT ON audit WHEN"
	    " NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit"
	    " WHERE station = NEW.station) BEGIN SELECT RAISE(ABORT,"
	    " 'audit rows are append-only: seq must be the next'); END;"
	    "CREATE TABLE merges (utc TEXT NOT NULL, source TEXT NOT NULL,"
	    " station TEXT NOT NULL, rows_added INTEGER NOT NULL,"
	    " head TEXT NOT NULL) STRICT;", NULL, NULL, &e) != SQLITE_OK) {
		snprintf(err, len, "%s", e != NULL ? e : "schema");
		sqlite3_free(e);
		free(table);
		return -1;
	}
	free(table);
	for (i = 1; i < upto; i++)
		if (sqlite3_exec(db, sql_migrations[i], NULL, NULL, &e) !=
		    SQLITE_OK) {
			snprintf(err, len, "%s", e);
			sqlite3_free(e);
			return -1;
		}
	return 0;
}

/* The rows of station s in the attached input after row after. */
static long
chain_src_rows(sqlite3 *out, const char *s, size_t sl, long after)
{
	sqlite3_stmt *st;
	long n = -1;

	if (sqlite3_prepare_v2(out, "SELECT count(*) FROM src.audit NOT "
	    "INDEXED WHERE station = ?1 AND seq > ?2", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, s, (int)sl, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, after);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = (long)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* Copy the stations of one input, appending only what OUT lacks. */
static int
chain_merge_one(sqlite3 *out, const char *in, long *added)
{
	char sql[4400], msg[512], hex[65], now[32];
	struct chain_state cs;
	struct chain_pool pool;
	sqlite3_stmt *st, *hs;
	struct tm tm;
	time_t t = time(NULL);
	sqlite3 *src;
	long total, omax, rows;
	uint8_t head[32];
	int rc = 0, ok;

	*added = 0;
	if (sqlite3_open_v2(in, &src, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK || sqlite3_exec(src, "SELECT 1 FROM audit LIMIT 1",
	    NULL, NULL, NULL) != SQLITE_OK) {
		ctl_fail("%s: not a cardlicd audit database (%s)", in,
		    sqlite3_errmsg(src));
		sqlite3_close(src);
		return -1;
	}
	/*
	 * The input's schema is cardlicd's (the statements below read its
	 * table and may go through its indexes), and each station's chain
	 * holds, before anything is taken from it.
	 */
	if ((ok = schema_check(src, msg, sizeof(msg))) != 0) {
		ctl_fail("%s: BROKEN: %s%s; nothing merged from it", in,
		    ok > 0 ? "the schema is not cardlicd's: " : "", msg);
		sqlite3_close(src);
		return -1;
	}
	if (chain_verify_all(src, in, 1, &total, NULL, 0) != 0) {
		sqlite3_close(src);
		ctl_fail("%s: its chain is broken; nothing merged from it", in);
		return -1;
	}
	sqlite3_close(src);
	if (strpbrk(in, "'?#%") != NULL)
		return ctl_fail("%s: unsupported character in the path", in),
		    -1;
	snprintf(sql, sizeof(sql), "ATTACH 'file:%s?mode=ro' AS src", in);
	if (sqlite3_exec(out, sql, NULL, NULL, NULL) != SQLITE_OK)
		return ctl_fail("%s: %s", in, sqlite3_errmsg(out)), -1;
	sqlite3_exec(out, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (sqlite3_prepare_v2(out, "SELECT DISTINCT station FROM src.audit",
	    -1, &st, NULL) != SQLITE_OK) {
		rc = -1;
		goto done;
	}
	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	chain_pool_start(&pool);
	while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 0);
		size_t sl = (size_t)sqlite3_column_bytes(st, 0);

		/* OUT's last row of the station, and whether IN has it too. */
		sqlite3_prepare_v2(out, "SELECT m.n, (SELECT hash FROM "
		    "main.audit WHERE station = ?1 AND seq = m.n) = (SELECT hash "
		    "FROM src.audit WHERE station = ?1 AND seq = m.n) FROM "
		    "(SELECT coalesce(max(seq), 0) AS n FROM main.audit WHERE "
		    "station = ?1) AS m", -1, &hs, NULL);
		sqlite3_bind_text(hs, 1, s, (int)sl, SQLITE_TRANSIENT);
		sqlite3_step(hs);
		omax = (long)sqlite3_column_int64(hs, 0);
		ok = omax == 0 || sqlite3_column_int(hs, 1) == 1;
		sqlite3_finalize(hs);
		if (!ok) {
			ctl_fail("%s: station %s does not continue the chain "
			    "already merged (they differ at row %ld)", in,
			    ctl_esc(s, sl), omax);
			rc = -1;
			break;
		}
		/* A source from before migration 5 has no sig: NULL. */
		if (sqlite3_prepare_v2(out, "INSERT INTO main.audit ("
		    AUDITROW_NAMES ") SELECT " AUDITROW_NAMES " FROM src.audit "
		    "WHERE station = ?1 AND seq > ?2 ORDER BY seq", -1, &hs,
		    NULL) != SQLITE_OK)
			sqlite3_prepare_v2(out, "INSERT INTO main.audit ("
			    AUDITROW_NAMES ") SELECT " AUDITROW_HASHED_COLUMNS(
			    AUDITROW_NAME) "hash, NULL FROM src.audit WHERE "
			    "station = ?1 AND seq > ?2 ORDER BY seq", -1, &hs,
			    NULL);
		sqlite3_bind_text(hs, 1, s, (int)sl, SQLITE_TRANSIENT);
		sqlite3_bind_int64(hs, 2, omax);
		if (sqlite3_step(hs) != SQLITE_DONE) {
			ctl_fail("%s: station %s: %s", in,
			    ctl_esc(s, sl), sqlite3_errmsg(out));
			rc = -1;
		}
		sqlite3_finalize(hs);
		rows = sqlite3_changes(out);
		/*
		 * Every row asked for went in: a trigger's RAISE(IGNORE)
		 * drops a row with no error, and the chain left behind may
		 * still hold (its end cut off).
		 */
		if (rc == 0 && rows != chain_src_rows(out, s, sl, omax)) {
			ctl_fail("%s: station %s: %ld rows went in of %ld: "
			    "rows were dropped on the way", in,
			    ctl_esc(s, sl), rows,
			    chain_src_rows(out, s, sl, omax));
			rc = -1;
		}
		*added += rows;
		chain_state_init(&cs, s, sl, NULL, 0, &pool);
		if (rc == 0 && chain_walk(out, &cs, msg, sizeof(msg)) != 0) {
			ctl_fail("%s: station %s: merged chain broken: %s", in,
			    ctl_esc(s, sl), msg);
			rc = -1;
		}
		total = cs.rows;
		memcpy(head, cs.prev, 32);
		dbhash_hex(head, 32, 0, hex);
		sqlite3_prepare_v2(out, "INSERT INTO merges VALUES (?1, ?2, ?3,"
		    " ?4, ?5)", -1, &hs, NULL);
		sqlite3_bind_text(hs, 1, now, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(hs, 2, in, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(hs, 3, s, (int)sl, SQLITE_TRANSIENT);
		sqlite3_bind_int64(hs, 4, rows);
		sqlite3_bind_text(hs, 5, hex, -1, SQLITE_TRANSIENT);
		if (rc == 0 && sqlite3_step(hs) != SQLITE_DONE)
			rc = -1;
		sqlite3_finalize(hs);
		if (rc == 0)
			printf("%s: station %s: %ld rows added, %ld in all\n",
			    in, ctl_esc(s, sl), rows, total);
	}
	sqlite3_finalize(st);
	chain_pool_end(&pool);
done:
	sqlite3_exec(out, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
	sqlite3_exec(out, "DETACH src", NULL, NULL, NULL);
	return rc;
}

static const char *const merge_help =
"usage: cardlicctl merge OUT.db IN.db...\n"
"Consolidates the audit databases of several stations into OUT.db (made\n"
"if missing), keyed by station and row.  Each input's schema and chains\n"
"are verified first, and OUT.db's schema; only rows OUT.db lacks are\n"
"appended, after checking that they continue the chain already there, so\n"
"merging the same station twice adds nothing.  OUT.db has the same views;\n"
"cardlicctl verify works on it.\n";

int
cmd_merge(struct ctl *c, int argc, char **argv)
{
	sqlite3 *out;
	char err[512];
	long added;
	int i, fresh, rc = CTL_OK;

	(void)c;
	if (ctl_has_opt(argc, argv, "--help")) {
		fputs(merge_help, stdout);
		return CTL_OK;
	}
	if (argc < 3)
		return ctl_usage(merge_help);
	if (sqlite3_open_v2(argv[1], &out, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
		return ctl_fail("%s: %s", argv[1], sqlite3_errmsg(out));
	sqlite3_busy_timeout(out, 5000);
	fresh = sqlite3_exec(out, "SELECT 1 FROM audit LIMIT 1", NULL, NULL,
	    NULL) != SQLITE_OK;
	if (fresh) {
		sqlite3_exec(out, "PRAGMA journal_mode = WAL; BEGIN IMMEDIATE",
		    NULL, NULL, NULL);
		if (chain_create_merged(out, sql_migrations_count, err,
		    sizeof(err)) != 0) {
			sqlite3_exec(out, "ROLLBACK", NULL, NULL, NULL);
			sqlite3_close(out);
			return ctl_fail("%s: %s", argv[1], err);
		}
		sqlite3_exec(out, "COMMIT", NULL, NULL, NULL);
	} else if (sqlite3_exec(out, "SELECT 1 FROM merges LIMIT 1", NULL,
	    NULL, NULL) != SQLITE_OK) {
		sqlite3_close(out);
		return ctl_fail("%s is a station's database, not a merged one;"
		    " merge into a new file", argv[1]);
	} else if ((fresh = schema_check(out, err, sizeof(err))) != 0) {
		/* A trigger of its own could drop or change what comes in. */
		sqlite3_close(out);
		return ctl_fail("%s: BROKEN: %s%s; nothing merged into it",
		    argv[1], fresh > 0 ? "the schema is not cardlicd's: " : "",
		    err);
	}
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], argv[1]) == 0) {
			rc = ctl_fail("%s: cannot merge a database into "
			    "itself", argv[i]);
			continue;
		}
		if (chain_merge_one(out, argv[i], &added) != 0)
			rc = CTL_USAGE;
	}
	sqlite3_close(out);
	return rc;
}

static const char *const backup_help =
"usage: cardlicctl backup FILE\n"
"Copies the database into FILE with SQLite's online backup, as one\n"
"consistent snapshot, while cardlicd goes on writing.  FILE must not\n"
"exist: a backup never overwrites.  Then FILE is checked as verify checks\n"
"a database (and with PRAGMA integrity_check), and each station's rows and\n"
"chain head are printed.  Exit 0 only when the copy verifies, 1 when it was\n"
"made but does not verify (it is kept, for inspection), 2 when it could\n"
"not be made (nothing is left behind).\n";

/* A copy that could not be made leaves nothing behind. */
static int
chain_backup_fail(sqlite3 *dst, const char *file, const char *what)
{
	ctl_fail("backup %s: %s", file, what);
	sqlite3_close(dst);
	unlink(file);
	return CTL_USAGE;
}

int
cmd_backup(struct ctl *c, int argc, char **argv)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *bk;
	sqlite3_stmt *st;
	struct stat sb;
	const char *file;
	char *ok = NULL;
	long total;
	int fd, rc, tries;

	if (ctl_has_opt(argc, argv, "--help")) {
		fputs(backup_help, stdout);
		return CTL_OK;
	}
	if (argc != 2)
		return ctl_usage(backup_help);
	file = argv[1];
	/*
	 * O_EXCL: never overwrite, not even a file that appears between a
	 * check and the copy.  SQLite takes an empty file as an empty
	 * database.  The copy is no more readable than the original.
	 */
	if (stat(c->db_path, &sb) != 0)
		return ctl_fail("%s: %s", c->db_path, strerror(errno));
	if ((fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, sb.st_mode & 0666)) < 0)
		return ctl_fail("backup %s: %s%s", file, strerror(errno),
		    errno == EEXIST ? " (a backup never overwrites a file)" :
		    "");
	close(fd);
	if (sqlite3_open_v2(file, &dst, SQLITE_OPEN_READWRITE, NULL) !=
	    SQLITE_OK)
		return chain_backup_fail(dst, file, sqlite3_errmsg(dst));
	if ((bk = sqlite3_backup_init(dst, "main", c->db, "main")) == NULL)
		return chain_backup_fail(dst, file, sqlite3_errmsg(dst));
	/* All pages in one step: one read transaction, one snapshot. */
	for (tries = 0; (rc = sqlite3_backup_step(bk, -1)) == SQLITE_BUSY ||
	    rc == SQLITE_LOCKED; tries++) {
		if (tries == 50)
			break;
		sqlite3_sleep(100);
	}
	sqlite3_backup_finish(bk);
	if (rc != SQLITE_DONE)
		return chain_backup_fail(dst, file, rc == SQLITE_BUSY ||
		    rc == SQLITE_LOCKED ? "the database stayed locked for 5 "
		    "seconds" : sqlite3_errstr(rc));
	/* One self-contained file, readable from read-only media. */
	if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL,
	    NULL) != SQLITE_OK)
		return chain_backup_fail(dst, file, sqlite3_errmsg(dst));
	if (sqlite3_close(dst) != SQLITE_OK)
		return chain_backup_fail(NULL, file, "cannot close the copy");
	/* Verify what is on the disk, through a fresh connection. */
	if (sqlite3_open_v2(file, &dst, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK || sqlite3_prepare_v2(dst, "PRAGMA integrity_check",
	    -1, &st, NULL) != SQLITE_OK) {
		ctl_fail("backup %s: %s", file, sqlite3_errmsg(dst));
		sqlite3_close(dst);
		return CTL_NOTHING;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		ok = sqlite3_mprintf("%s", sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (ok == NULL || strcmp(ok, "ok") != 0) {
		printf("%s: the copy is damaged: %s\n", file, ok != NULL ?
		    ctl_esc(ok, strlen(ok)) : sqlite3_errmsg(dst));
		rc = CTL_NOTHING;
	} else if (chain_verify_all(dst, file, 0, &total, NULL, 0) != 0) {
		printf("%s: the copy does NOT verify (kept for inspection); "
		    "%ld rows checked\n", file, total);
		rc = CTL_NOTHING;
	} else {
		printf("%s: %ld rows copied, the copy verifies\n", file, total);
		rc = CTL_OK;
	}
	sqlite3_free(ok);
	sqlite3_close(dst);
	return rc;
}
