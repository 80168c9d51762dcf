/*
 * Crash recovery, at start-up, before the loop and before any card: what
 * a stop left between a credit and its outcome is recorded first.
 *
 *  - A license left in a spill file (spill.c) becomes its `generated`
 *    row, but only when it is the answer to a request that this station
 *    made and never closed: a `requested` row of the file's job, of this
 *    station, for the same card and start, with no row after it; and,
 *    where the station signs, only when the file carries the station's
 *    signature (issue 18, case 2: the file's sum is a plain SHA-256, so a
 *    file written by hand had the daemon sign a license of the forger's
 *    choosing).  Anything else is kept aside with an alert, and is never
 *    recorded or loaded.
 *  - Every `requested` row with no outcome becomes an in-doubt row
 *    (invariant 6): the batch card may have spent its credit.
 *
 * Before either, and before any row is appended, the database must be as
 * the station left it (recover_check_start, issue 18, cases 3 and 10): it
 * still holds the last row this station wrote (its note, DB.note, which
 * db.c writes after every commit) and the row of its last checkpoint,
 * and every row after them is the station's own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicd.h"
#include "dbhash.h"
#include "sign.h"

/* What the note says, and where it is. */
struct recover_note {
	char		path[4200];
	int		found;		/* 1 found, 0 none, -1 not good */
	long		seq;
	uint8_t		head[32];
};

/*
 * The note's line checked: this station's, whole (its sum), and (need_sig)
 * signed by the key that the station's rows say was active at its row (a
 * station with no key row writes unsigned notes).  0, or -1 with why.
 */
static int
recover_note_line(char *line, struct recover_note *n, int need_sig,
    char *why, size_t len)
{
	char want[128], station[64], hex[65], *p, *end, *sg;
	uint8_t h[32], pub[32], sig[64];
	long kseq = 0;
	int keyed;

	db_station_now(station, sizeof(station));
	snprintf(want, sizeof(want), NOTE_MAGIC "station=%s seq=", station);
	if ((p = strstr(line, " sum=")) == NULL || strlen(p) < 5 + 16 ||
	    strncmp(line, NOTE_MAGIC, sizeof(NOTE_MAGIC) - 1) != 0)
		return snprintf(why, len, "%s is not a note that cardlicd wrote",
		    n->path), -1;
	dbhash_sha256(line, (size_t)(p - line), h);
	dbhash_hex(h, 32, 0, hex);
	if (strncmp(p + 5, hex, 16) != 0)
		return snprintf(why, len, "%s is torn or was edited (its sum "
		    "does not hold)", n->path), -1;
	*p = '\0';
	if (strncmp(line, want, strlen(want)) != 0)
		return snprintf(why, len, "%s is the note of another station, "
		    "not %s", n->path, station), -1;
	n->seq = strtol(line + strlen(want), &end, 10);
	if (strncmp(end, " head=", 6) != 0 || n->seq < 0 ||
	    dbhash_unhex(end + 6, 64, n->head, 32) != 0)
		return snprintf(why, len, "%s cannot be read", n->path), -1;
	sg = strstr(end, " sig=");
	if ((keyed = db_key_at(n->seq, pub, &kseq, NULL)) < 0)
		return snprintf(why, len, "the key row %ld cannot be read",
		    kseq), -1;
	if (keyed && need_sig && (sg == NULL ||
	    dbhash_unhex(sg + 5, 128, sig, 64) != 0 ||
	    !sign_check(pub, SIGN_DOMAIN_NOTE, (const uint8_t *)line,
	    (size_t)(sg - line), sig)))
		return snprintf(why, len, "%s is not signed by the station's "
		    "key (row %ld): someone else wrote it", n->path, kseq), -1;
	return 0;
}

/* The note as the last run left it (need_sig: see recover_note_line). */
static void
recover_note_read(const char *db, struct recover_note *n, int need_sig,
    char *why, size_t len)
{
	char line[NOTE_LEN + 1];
	ssize_t k = 0;
	int fd;

	memset(n, 0, sizeof(*n));
	snprintf(n->path, sizeof(n->path), "%s.note", db);
	if ((fd = open(n->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
		k = pread(fd, line, NOTE_LEN, 0);
		close(fd);
	}
	if (k <= 0)
		return;
	line[k] = '\0';
	n->found = recover_note_line(line, n, need_sig, why, len) == 0 ? 1 :
	    -1;
}

/*
 * The file holds, unchanged, the row that the note names and the row
 * that the last checkpoint names.  0, or -1 with err.
 */
static int
recover_rows_still_there(const struct recover_note *n, long last,
    long cp_seq, const uint8_t cp_head[32], char *err, size_t len)
{
	uint8_t h[32];

	if (n->found == 1 && n->seq > last)
		return snprintf(err, len, "the file ends with row %ld, but this "
		    "station wrote up to row %ld (%s): rows were lost (a -wal "
		    "file removed, an older copy put back?); restore them, or "
		    "move the note aside to go on from the file as it is (see "
		    "cardlicd(8), \"The note\")", last, n->seq, n->path), -1;
	if (cp_seq > last)
		return snprintf(err, len, "the file ends with row %ld, but the "
		    "last checkpoint names row %ld: rows were lost", last,
		    cp_seq), -1;
	if (n->found == 1 && n->seq > 0 && (db_row_hash(n->seq, h) != 1 ||
	    memcmp(h, n->head, 32) != 0))
		return snprintf(err, len, "row %ld is not the row this station "
		    "wrote there (%s): the file was altered or replaced",
		    n->seq, n->path), -1;
	if (cp_seq > 0 && (db_row_hash(cp_seq, h) != 1 ||
	    memcmp(h, cp_head, 32) != 0))
		return snprintf(err, len, "row %ld is not the row that the last "
		    "checkpoint names: the file was altered or replaced",
		    cp_seq), -1;
	return 0;
}

/*
 * At start-up, before any row is appended: the database is as this
 * station left it.  mine: the key it signs with (NULL: none); cp_seq and
 * cp_head: its last checkpoint (cp_seq 0: none known).  The rows after
 * the later of the note and the checkpoint must be the station's own
 * (db_check_after): those of a crash between a commit and its note are.
 * With neither, only the last row can be checked, and the log says so.
 * -1 with err when the daemon must not go on from the file.
 */
int
recover_check_start(const char *db, const uint8_t *mine, long cp_seq,
    const uint8_t cp_head[32], char *err, size_t len)
{
	struct recover_note n;
	uint8_t head[32], h[32];
	const uint8_t *fhead = NULL;
	char why[4800];
	long last = db_tail(head), from = 0;

	/* Without the key now, nothing here can be told from a forgery. */
	recover_note_read(db, &n, mine != NULL, why, sizeof(why));
	if (n.found < 0)
		return snprintf(err, len, "%s; move it aside to start from the "
		    "file as it is (see cardlicd(8), \"The note\")", why), -1;
	if (n.found == 1) {
		from = n.seq;
		fhead = n.head;
	}
	if (cp_seq > from) {
		from = cp_seq;
		fhead = cp_head;
	}
	if (recover_rows_still_there(&n, last, cp_seq, cp_head, err, len) != 0)
		return -1;
	if (n.found != 1 && last > 0)
		log_alert("%s: no note of the last row this station wrote: %s",
		    n.path, fhead != NULL ? "rows lost from the file's end "
		    "after its last checkpoint cannot be noticed at this start; "
		    "checking the rows after that one" : "and no checkpoint: "
		    "rows lost from the file's end cannot be noticed at this "
		    "start; checking the last row only");
	if (fhead == NULL) {
		from = last > 0 ? last - 1 : 0;
		memset(h, 0, 32);
		if (from > 0 && db_row_hash(from, h) != 1)
			return snprintf(err, len, "row %ld cannot be read",
			    from), -1;
		fhead = h;
	}
	return db_check_after(from, fhead, mine, err, len);
}

/* The check of one spill record, inside the write transaction. */
struct recover_spill {
	const struct spill_found	*f;
	const uint8_t			*mine;	/* the key now; NULL: none */
	int				 done;	/* recorded before the crash */
};

/*
 * The record answers an open request of this station, and carries the
 * signature it must: 0, or -1 with why (the file is kept aside, or, with
 * rs->done, it was recorded already and may go).
 */
static int
recover_spill_check(void *arg, char *why, size_t len)
{
	struct recover_spill *rs = arg;
	const struct spill_found *f = rs->f;
	const struct spill_license *l = &f->l;
	struct db_job j;
	char station[64];

	if (db_job_in_tx(f->job, &j) != 0) {
		snprintf(why, len, "the audit database cannot be read");
		return -1;
	}
	db_station_now(station, sizeof(station));
	if (strcmp(f->station, station) != 0) {
		snprintf(why, len, "it names station \"%.63s\", not %s",
		    f->station, station);
		return -1;
	}
	if (j.requested == 0) {
		snprintf(why, len, "this station has no request of job %ld",
		    f->job);
		return -1;
	}
	if (memcmp(j.model, l->model, FIELD_LEN) != 0 ||
	    memcmp(j.serial, l->serial, FIELD_LEN) != 0 ||
	    strcmp(j.start, l->start) != 0) {
		snprintf(why, len, "its card or start date is not the one that "
		    "job %ld asked for (row %ld)", f->job, j.requested);
		return -1;
	}
	/* The station's signature, by the key of the request or of now. */
	if ((j.keyed || rs->mine != NULL) && (!f->has_sig ||
	    !((j.keyed && sign_check(j.key, SIGN_DOMAIN_SPILL, f->signed_part,
	    f->signed_len, f->sig)) || (rs->mine != NULL &&
	    sign_check(rs->mine, SIGN_DOMAIN_SPILL, f->signed_part,
	    f->signed_len, f->sig))))) {
		snprintf(why, len, "it does not carry the station's signature "
		    "(written by hand, or altered)");
		return -1;
	}
	if (j.generated != 0) {
		if (!j.has_license || memcmp(j.license, l->license,
		    LICENSE_LEN) != 0) {
			snprintf(why, len, "job %ld's license (row %ld) is not "
			    "the one in the file", f->job, j.generated);
			return -1;
		}
		rs->done = 1;
		snprintf(why, len, "recorded before the stop (row %ld)",
		    j.generated);
		return -1;
	}
	if (j.after != 0) {
		snprintf(why, len, "job %ld was closed (row %ld) with no "
		    "license", f->job, j.after);
		return -1;
	}
	return 0;
}

static int
recover_spill(const struct spill_found *f, char *why, size_t len)
{
	struct recover_spill rs;
	const struct sign_key *k = db_signing_key();
	struct db_row r;
	uint8_t pub[32];
	char reason[300];
	long seq;

	memset(&rs, 0, sizeof(rs));
	rs.f = f;
	if (k != NULL) {
		sign_key_public(k, pub);
		rs.mine = pub;
	}
	memset(&r, 0, sizeof(r));
	snprintf(reason, sizeof(reason), "generated by the batch card in %s; "
	    "recorded after a restart from the spill file", f->l.batch_reader);
	r.reader = f->l.reader;
	r.job = f->job;
	r.state = "generated";
	r.reason = reason;
	r.model = f->l.model;
	r.serial = f->l.serial;
	r.start_date = f->l.start;
	r.end_date = f->l.end;
	r.license = f->l.license;
	r.batch_reader = f->l.batch_reader;
	r.batch_atr = f->l.batch_atr;
	r.batch_count = db_batch_count(f->l.batch_reader, f->l.batch_atr) + 1;
	r.sw = f->l.sw;
	seq = db_append_if(&r, 1, recover_spill_check, &rs, why, len);
	if (seq > 0)
		return SPILL_RECORDED;
	if (seq == 0)
		return rs.done ? SPILL_DONE_BEFORE : SPILL_REFUSED;
	log_alert("job %ld: cannot record the license of %s: %s", f->job,
	    f->path, why);
	return SPILL_RETRY;
}

/* Every `requested` row with no outcome: an in-doubt row.  -1, or how many. */
static int
recover_requests(char *err, size_t len)
{
	struct db_card c;
	struct db_row r;
	char reason[300], e[512];
	long rseq;
	int n = 0, rc;

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
 * Licenses left in spill files first (they close their requests), then
 * the requests left open.  The number of credits found in doubt, or -1
 * with err: the daemon must not start, as it could not record anything.
 */
int
recover_run(char *err, size_t len)
{
	int left;

	if ((left = spill_recover(recover_spill)) != 0) {
		snprintf(err, len, "%d license(s) left in spill files next to "
		    "the database could not be recorded; they stay there",
		    left < 0 ? 0 : left);
		return -1;
	}
	return recover_requests(err, len);
}
