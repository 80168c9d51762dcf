/*
 * The spill file: where a generated license waits until its `generated`
 * row is committed.  Its space is reserved before GENERATE is sent, so
 * that a full disk or a database locked by another writer cannot leave a
 * paid license only in memory: if the space cannot be reserved, no credit
 * is asked for (invariant 1).  At start-up, spill files left by a crash
 * are turned into their `generated` rows (db.c).
 *
 * One file per job, next to the database: DB.spill-JOB.  A SHA-256 at the
 * record's end tells a whole record from a torn or empty one.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cardlicd.h"

#define SPILL_SIZE	4096
#define SPILL_MAGIC	"CARDLIC-SPILL-1\n"

struct spill_rec {
	char			magic[16];
	long long		job;
	struct spill_license	l;
	uint8_t			sum[32];
};

static char	spill_base[4096];	/* the database's path */

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
	unsigned n = 32;

	EVP_Digest(r, offsetof(struct spill_rec, sum), out, &n, EVP_sha256(),
	    NULL);
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

/*
 * Reserve the space for one job's license before GENERATE.  Returns an
 * open descriptor, or -1 with err set: then no credit may be asked for.
 */
int
spill_reserve(long job, char *err, size_t len)
{
	char path[4200];
	int fd, rc;

	spill_path(job, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		snprintf(err, len, "%s: %s", path, strerror(errno));
		return -1;
	}
	/* Real blocks, not a sparse file: the write must not need space. */
	if ((rc = posix_fallocate(fd, 0, SPILL_SIZE)) != 0) {
		snprintf(err, len, "%s: cannot reserve %d bytes: %s", path,
		    SPILL_SIZE, strerror(rc));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
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

/* The `generated` row could not be committed: the file must now hold. */
int
spill_sync(int fd, long job, char *err, size_t len)
{
	if (fdatasync(fd) != 0 || spill_sync_dir() != 0) {
		snprintf(err, len, "spill file of job %ld: %s", job,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* The `generated` row is committed: the spill file has done its work. */
void
spill_release(int fd, long job)
{
	char path[4200];

	if (fd >= 0)
		close(fd);
	spill_path(job, path, sizeof(path));
	/* Not synced: a file back after a power cut has its row (above). */
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
	int fd, left = 0, whole;

	snprintf(dir, sizeof(dir), "%s", spill_base);
	snprintf(base, sizeof(base), "%s", spill_base);
	d = dirname(dir);
	b = basename(base);
	blen = strlen(b);
	if ((dp = opendir(d)) == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL) {
		if (strncmp(e->d_name, b, blen) != 0 ||
		    strncmp(e->d_name + blen, ".spill-", 7) != 0)
			continue;
		job = strtol(e->d_name + blen + 7, NULL, 10);
		snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
		if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
			continue;
		whole = read(fd, &r, sizeof(r)) == (ssize_t)sizeof(r) &&
		    memcmp(r.magic, SPILL_MAGIC, sizeof(r.magic)) == 0;
		close(fd);
		if (whole) {
			spill_sum(&r, sum);
			whole = memcmp(sum, r.sum, 32) == 0 && r.job == job;
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
