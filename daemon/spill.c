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

#define SPILL_SIZE	4096
#define SPILL_MAGIC	"CARDLIC-SPILL-1\n"

struct spill_rec {
	char			magic[16];
	long long		job;
	struct spill_license	l;
	uint8_t			sum[32];
};

static char	spill_base[4096];	/* the database's path */

#define SPILL_ROOMS	64
static pthread_mutex_t	spill_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int	fd;		/* 0: not open yet (fds 0-2 are never ours) */
	int	busy;
	long	renamed;	/* the job whose DB.spill-JOB it became, or 0 */
} spill_rooms[SPILL_ROOMS];

void
spill_init(const char *db_path)
{
	snprintf(spill_base, sizeof(spill_base), "%s", db_path);
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
	r.l = *l;
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
 * At start-up: hand every whole record left by a crash to cb (which
 * records it), and remove the file once cb succeeded.  A torn or empty
 * record means the crash came before the license was in: its job's
 * `requested` row then becomes an in-doubt record.  Returns the number of
 * records that could not be recorded (their files stay), or -1.
 */
int
spill_recover(int (*cb)(long, const struct spill_license *))
{
	char dir[4096], base[4096], path[8300], *d, *b;
	struct spill_license l;
	struct spill_rec r;
	struct dirent *e;
	uint8_t sum[32];
	size_t blen;
	DIR *dp;
	long job;
	int fd, left = 0, whole, room;

	snprintf(dir, sizeof(dir), "%s", spill_base);
	snprintf(base, sizeof(base), "%s", spill_base);
	d = dirname(dir);
	b = basename(base);
	blen = strlen(b);
	if ((dp = opendir(d)) == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL) {
		if (strncmp(e->d_name, b, blen) != 0)
			continue;
		/* A room names no job: its record does (0: none). */
		room = strncmp(e->d_name + blen, ".room-", 6) == 0;
		if (!room && strncmp(e->d_name + blen, ".spill-", 7) != 0)
			continue;
		job = room ? 0 : strtol(e->d_name + blen + 7, NULL, 10);
		snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
			continue;
		whole = read(fd, &r, sizeof(r)) == (ssize_t)sizeof(r) &&
		    memcmp(r.magic, SPILL_MAGIC, sizeof(r.magic)) == 0;
		close(fd);
		if (whole) {
			spill_sum(&r, sum);
			if (room)
				job = r.job;
			whole = memcmp(sum, r.sum, 32) == 0 && r.job == job &&
			    job > 0;
		}
		if (whole) {
			/* The sum held, but the strings end where they must. */
			l = r.l;
			l.start[DATE_LEN] = l.end[DATE_LEN] = '\0';
			l.reader[READER_MAX - 1] = '\0';
			l.batch_reader[READER_MAX - 1] = '\0';
			l.batch_atr[2 * ATR_MAX] = '\0';
			l.sw[sizeof(l.sw) - 1] = '\0';
			if (cb(job, &l) != 0) {
				left++;
				continue;
			}
			log_alert("job %ld: a license generated before a crash "
			    "was recovered from %s", job, path);
		}
		unlink(path);
	}
	closedir(dp);
	spill_sync_dir();
	return left;
}
