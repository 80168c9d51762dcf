/*
 * The spill file: where a generated license waits until its `generated`
 * row is committed.  Its space is reserved before GENERATE is sent, so
 * that a full disk or a database locked by another writer cannot leave a
 * paid license only in memory: if the space cannot be reserved, no credit
 * is asked for (invariant 1).  At start-up, spill files left by a crash
 * are turned into their `generated` rows (db.c).
 *
 * The room is kept from one job to the next: files DB.room-K next to the
 * database, one per job at once, made (and their blocks allocated) when
 * first needed.  Making and removing a file per job cost 0.7 ms on ext4
 * (issue 12).  When a commit fails, the job's file is renamed
 * DB.spill-JOB, the name an admin and the start-up look for, and removed
 * once its row is in.  A SHA-256 at the record's end tells a whole record
 * from a torn or empty one; a record whose row is in is wiped, so that a
 * room file never shows a license that is not waiting.
 *
 * Why no fsync on the way of a card that goes well (issue 12: each one
 * cost a millisecond, and there were four):
 *  - a crash of the daemon (SIGKILL, abort) keeps what was written, as the
 *    kernel holds it; only a power cut or a kernel crash can drop it;
 *  - the record is made durable (fdatasync, and the directory) as soon as
 *    the `generated` commit fails once (spill_sync): that is when the file
 *    must carry the license for a while;
 *  - a power cut before the `generated` commit's own fsync loses the
 *    license either way: a synced spill only moves that window from "until
 *    the commit's fsync" to "until the spill's fsync", about as long.  The
 *    `requested` row, durable before GENERATE, then marks the credit in
 *    doubt (invariant 6), never silently lost;
 *  - a file that a power cut brings back after its row was committed is
 *    found at start-up and dropped, as its `generated` row exists.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardlicd.h"
#include "dbhash.h"
#include "sign.h"

#define SPILL_SIZE	4096
#define SPILL_MAGIC	"CARDLIC-SPILL-2\n"

/*
 * A record: what sig covers (the station's key over everything before
 * sig, issue 18 case 2: the sum alone is a plain SHA-256 that anyone can
 * make), then the sum over all of it, which tells a whole record from a
 * torn one.  Version 1 had no station and no signature.
 */
struct spill_rec {
	char			magic[16];
	long long		job;
	char			station[64];
	struct spill_license	l;
	uint8_t			sig[64];
	int32_t			has_sig;
	uint8_t			sum[32];
};

static char	spill_base[4096];	/* the database's path */
static char	spill_station[64];
static const struct sign_key *spill_key;	/* NULL: none, unsigned */

#define SPILL_ROOMS	64
static pthread_mutex_t	spill_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int	fd;		/* 0: not open yet (fds 0-2 are never ours) */
	int	busy;
	long	renamed;	/* the job whose DB.spill-JOB it became, or 0 */
} spill_rooms[SPILL_ROOMS];

/* The database, the station and its key (NULL: none), before recovery. */
void
spill_init(const char *db_path, const char *station,
    const struct sign_key *key)
{
	snprintf(spill_base, sizeof(spill_base), "%s", db_path);
	snprintf(spill_station, sizeof(spill_station), "%s", station);
	spill_key = key;
}

static void
spill_path(long job, char *out, size_t len)
{
	snprintf(out, len, "%s.spill-%ld", spill_base, job);
}

static void
spill_sum(const struct spill_rec *r, uint8_t out[32])
{
	dbhash_sha256(r, offsetof(struct spill_rec, sum), out);
}

/* Durable directory entry: a new or removed file survives a crash. */
static int
spill_sync_dir(void)
{
	char dir[4096];
	int fd, rc;

	snprintf(dir, sizeof(dir), "%s", spill_base);
	if ((fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static void
spill_room_path(int k, char *out, size_t len)
{
	snprintf(out, len, "%s.room-%d", spill_base, k);
}

/*
 * Reserve the space for one job's license before GENERATE: a free room,
 * or a new one.  Returns an open descriptor, or -1 with err set: then no
 * credit may be asked for.
 */
int
spill_reserve(char *err, size_t len)
{
	char path[4200];
	int fd = -1, rc, k;

	pthread_mutex_lock(&spill_lock);
	for (k = 0; k < SPILL_ROOMS && fd < 0; k++)
		if (!spill_rooms[k].busy && spill_rooms[k].fd > 0) {
			spill_rooms[k].busy = 1;
			fd = spill_rooms[k].fd;
		}
	for (k = 0; k < SPILL_ROOMS && fd < 0; k++) {
		if (spill_rooms[k].busy || spill_rooms[k].fd > 0)
			continue;
		spill_room_path(k, path, sizeof(path));
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		    0600);
		if (fd < 0) {
			snprintf(err, len, "%s: %s", path, strerror(errno));
			break;
		}
		/* Real blocks, not a sparse file: a write must not need space. */
		if ((rc = posix_fallocate(fd, 0, SPILL_SIZE)) != 0) {
			snprintf(err, len, "%s: cannot reserve %d bytes: %s",
			    path, SPILL_SIZE, strerror(rc));
			close(fd);
			unlink(path);
			fd = -1;
			break;
		}
		spill_rooms[k].fd = fd;
		spill_rooms[k].busy = 1;
		spill_rooms[k].renamed = 0;
	}
	if (fd < 0 && k == SPILL_ROOMS)
		snprintf(err, len, "more than %d jobs at once hold a license",
		    SPILL_ROOMS);
	pthread_mutex_unlock(&spill_lock);
	return fd;
}

static int
spill_room_of(int fd)
{
	int k;

	for (k = 0; k < SPILL_ROOMS; k++)
		if (spill_rooms[k].fd == fd && fd > 0)
			return k;
	return -1;
}

/* The license is in: into the reserved block (see above for durability). */
int
spill_write(int fd, long job, const struct spill_license *l, char *err,
    size_t len)
{
	struct spill_rec r;
	ssize_t n;

	memset(&r, 0, sizeof(r));
	memcpy(r.magic, SPILL_MAGIC, sizeof(r.magic));
	r.job = job;
	snprintf(r.station, sizeof(r.station), "%s", spill_station);
	r.l = *l;
	if (spill_key != NULL) {
		if (sign_bytes(spill_key, SIGN_DOMAIN_SPILL,
		    (const uint8_t *)&r, offsetof(struct spill_rec, sig),
		    r.sig) != 0) {
			snprintf(err, len, "spill file of job %ld: cannot sign "
			    "it", job);
			return -1;
		}
		r.has_sig = 1;
	}
	spill_sum(&r, r.sum);
	n = pwrite(fd, &r, sizeof(r), 0);
	if (n != (ssize_t)sizeof(r)) {
		snprintf(err, len, "spill file of job %ld: %s", job,
		    n < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 0;
}

/*
 * The `generated` row could not be committed: the file must now hold, on
 * disk, under the job's name (DB.spill-JOB), until the row is in.
 */
int
spill_sync(int fd, long job, char *err, size_t len)
{
	char from[4200], to[4200];
	int k, rc = 0;

	pthread_mutex_lock(&spill_lock);
	k = spill_room_of(fd);
	if (k >= 0 && spill_rooms[k].renamed == 0) {
		spill_room_path(k, from, sizeof(from));
		spill_path(job, to, sizeof(to));
		if (rename(from, to) == 0)
			spill_rooms[k].renamed = job;
		else
			rc = -1;
	}
	pthread_mutex_unlock(&spill_lock);
	if (rc != 0 || fdatasync(fd) != 0 || spill_sync_dir() != 0) {
		snprintf(err, len, "spill file of job %ld: %s", job,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The `generated` row is committed, or no license came: the room is free
 * again, its record wiped (not synced: a record back after a power cut
 * has its row, and start-up drops it).  A room renamed to the job's
 * spill file goes with it; the next job makes a new one.
 */
void
spill_release(int fd, long job)
{
	static const char zero[sizeof(((struct spill_rec *)0)->magic)];
	char path[4200];
	int k;

	if (fd < 0)
		return;
	pthread_mutex_lock(&spill_lock);
	k = spill_room_of(fd);
	if (k >= 0 && spill_rooms[k].renamed == 0) {
		if (pwrite(fd, zero, sizeof(zero), 0) != (ssize_t)sizeof(zero))
			log_warnx("spill room %d: %s", k, strerror(errno));
		spill_rooms[k].busy = 0;
		pthread_mutex_unlock(&spill_lock);
		return;
	}
	if (k >= 0)
		memset(&spill_rooms[k], 0, sizeof(spill_rooms[k]));
	pthread_mutex_unlock(&spill_lock);
	close(fd);
	spill_path(job, path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT)
		log_warnx("%s: %s", path, strerror(errno));
}

/*
 * A file that recovery refused (not this station's, or its check does
 * not hold): kept aside, never a row, never loaded; the admin looks.
 */
static void
spill_aside(const char *path, const char *why)
{
	char to[8400];

	snprintf(to, sizeof(to), "%s.refused", path);
	if (rename(path, to) != 0)
		log_alert("%s: refused (%s), and cannot be set aside: %s", path,
		    why, strerror(errno));
	else
		log_alert("%s: refused and kept aside as %s: %s; it is not "
		    "recorded and its license is never loaded", path, to, why);
}

/* DB.spill-JOB, DB.room-K; not a file kept aside (DB.spill-JOB.refused). */
static int
spill_name(const char *name, const char *b, size_t blen, int *room,
    long *job)
{
	const char *p;
	char *end;

	if (strncmp(name, b, blen) != 0)
		return 0;
	p = name + blen;
	if (strncmp(p, ".room-", 6) == 0)
		p += 6, *room = 1;
	else if (strncmp(p, ".spill-", 7) == 0)
		p += 7, *room = 0;
	else
		return 0;
	if (*p < '0' || *p > '9')
		return 0;
	*job = strtol(p, &end, 10);
	if (*end != '\0')
		return 0;
	if (*room)
		*job = 0;
	return 1;
}

/*
 * One file: its record, if whole, goes to cb.  1 when the file may go,
 * 0 when it stays (cb could not record it now).
 */
static int
spill_recover_one(const char *path, int room, long job,
    int (*cb)(const struct spill_found *, char *, size_t))
{
	struct spill_found f;
	struct spill_rec r;
	uint8_t sum[32];
	char why[600];
	ssize_t n;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return 0;
	memset(&r, 0, sizeof(r));
	n = read(fd, &r, sizeof(r));
	close(fd);
	/* Empty or wiped (a room whose row is in): nothing waits here. */
	if (n <= 0 || r.magic[0] == '\0')
		return 1;
	/*
	 * Anything else that is not recovered is kept, aside: a torn record
	 * (its request becomes a credit in doubt), another version's, or
	 * not cardlicd's at all.
	 */
	if (n < (ssize_t)sizeof(r.magic) ||
	    memcmp(r.magic, SPILL_MAGIC, sizeof(r.magic)) != 0) {
		spill_aside(path, "it is not a record of this cardlicd (an "
		    "older version's, or not cardlicd's at all)");
		return 0;
	}
	spill_sum(&r, sum);
	if (n != (ssize_t)sizeof(r) || memcmp(sum, r.sum, 32) != 0) {
		spill_aside(path, "its record is torn or was altered (its sum "
		    "does not hold)");
		return 0;
	}
	if (room)
		job = r.job;
	if (r.job != job || job <= 0) {
		spill_aside(path, "the job in the file is not the one its "
		    "name says");
		return 0;
	}
	memset(&f, 0, sizeof(f));
	f.job = job;
	f.l = r.l;
	/* The sum held, but the strings end where they must. */
	f.l.start[DATE_LEN] = f.l.end[DATE_LEN] = '\0';
	f.l.reader[READER_MAX - 1] = '\0';
	f.l.batch_reader[READER_MAX - 1] = '\0';
	f.l.batch_atr[2 * ATR_MAX] = '\0';
	f.l.sw[sizeof(f.l.sw) - 1] = '\0';
	r.station[sizeof(r.station) - 1] = '\0';
	f.station = r.station;
	f.signed_part = (const uint8_t *)&r;
	f.signed_len = offsetof(struct spill_rec, sig);
	f.has_sig = r.has_sig == 1;
	memcpy(f.sig, r.sig, 64);
	f.path = path;
	rc = cb(&f, why, sizeof(why));
	if (rc == SPILL_REFUSED) {
		spill_aside(path, why);
		return 0;
	}
	if (rc == SPILL_RECORDED)
		log_alert("job %ld: a license generated before a crash was "
		    "recovered from %s", job, path);
	return rc != SPILL_RETRY;
}

/*
 * At start-up: hand every whole record left by a crash to cb, which
 * records it (SPILL_RECORDED), finds it recorded already
 * (SPILL_DONE_BEFORE), refuses it (SPILL_REFUSED: the file is kept
 * aside) or cannot record it now (SPILL_RETRY: it stays).  A file that
 * is done with is removed.  A torn or empty record means the crash came
 * before the license was in: its job's `requested` row then becomes an
 * in-doubt record.  Returns the number of records left to retry, or -1.
 */
int
spill_recover(int (*cb)(const struct spill_found *, char *, size_t))
{
	char dir[4096], base[4096], path[8300], *d, *b;
	struct dirent *e;
	size_t blen;
	DIR *dp;
	long job;
	int left = 0, room;

	snprintf(dir, sizeof(dir), "%s", spill_base);
	snprintf(base, sizeof(base), "%s", spill_base);
	d = dirname(dir);
	b = basename(base);
	blen = strlen(b);
	if ((dp = opendir(d)) == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL) {
		if (!spill_name(e->d_name, b, blen, &room, &job))
			continue;
		snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
		switch (spill_recover_one(path, room, job, cb)) {
		case 1:
			unlink(path);
			break;
		default:
			if (access(path, F_OK) == 0)
				left++;
		}
	}
	closedir(dp);
	spill_sync_dir();
	return left;
}
