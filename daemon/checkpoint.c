/*
 * Signed checkpoints (anchored heads, issue 11): now and then, and always
 * at shutdown, one line of text that names the audit chain's newest row
 * and its hash, the batch cards' counts, and the time, signed with the
 * station's key and chained to the checkpoint before it:
 *
 *   cardlicd-checkpoint v1 n=K station=S seq=N head=HEX prev=HEX
 *   batch=READER|ATR|COUNT;... utc=TIME sig=HEX
 *
 * (one line).  It goes to the journal (its own MESSAGE_ID, the line in
 * CARDLICD_CHECKPOINT) and, with [audit] checkpoint-file, is appended to
 * that file.  A copy of the head kept outside the database is what shows
 * that rows were cut off its end (cardlicctl verify --checkpoints).
 *
 * The timer fires on the loop, and only wakes the checkpoint thread:
 * reading the head waits for db's lock (an append holds it through its
 * fsync), and the file's fsync may take as long, so neither runs on the
 * loop.  At shutdown, once the loop and the jobs are over, the last
 * checkpoint is written by the main thread, after the thread has ended.
 */
#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-journal.h>

#include "cardlicd.h"
#include "dbhash.h"
#include "sign.h"

#define CP_LINE_MAX	16384	/* 16 batch cards with long reader names */
#define CP_TAIL		65536	/* bytes read back from the file's end */
#define CP_MAGIC	"cardlicd-checkpoint v1 "

static struct event		*cp_timer;
static pthread_t		 cp_thread;
static int			 cp_thread_on;
static pthread_mutex_t		 cp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t		 cp_cond = PTHREAD_COND_INITIALIZER;
static int			 cp_wanted;	/* under cp_lock */
static int			 cp_stopping;	/* under cp_lock */

/*
 * The series: touched only by whoever writes a checkpoint, the thread,
 * or the main thread once the thread has been joined.
 */
static int			 cp_on;
static const struct sign_key	*cp_key;
static char			 cp_station[64];
static char			 cp_path[4096];
static char			 cp_own[4200];	/* DB.checkpoint */
static long			 cp_interval;	/* as read at start-up */
static int			 cp_fd = -1;
static long			 cp_n;		/* the last checkpoint's n */
static uint8_t			 cp_prev[32];	/* SHA-256 of its line */
static long			 cp_seq = -1;	/* the head it named */
static uint8_t			 cp_head[32];

/*
 * A reader's name in the line: pcscd's text, so that no space, '|', ';'
 * or control byte can change where a field ends (invariant 9 in spirit).
 */
static size_t
checkpoint_enc(char *out, size_t len, size_t at, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char ch;

	for (; *s != '\0' && at + 4 < len; s++) {
		ch = (unsigned char)*s;
		if (ch <= 0x20 || ch >= 0x7f || strchr("%|;=", ch) != NULL) {
			out[at++] = '%';
			out[at++] = hex[ch >> 4];
			out[at++] = hex[ch & 15];
		} else
			out[at++] = (char)ch;
	}
	out[at] = '\0';
	return at;
}

/*
 * batch=: each batch card in the pool now, with the licenses the rows up
 * to seq say it generated.  "-" when there is none.
 */
static void
checkpoint_batches(long seq, char *out, size_t len)
{
	struct batch_id ids[BATCH_MAX];
	size_t at = 0;
	int i, k, n = batch_ids(ids);

	out[0] = '\0';
	for (i = 0; i < n; i++) {
		if (at > 0 && at + 1 < len)
			out[at++] = ';';
		at = checkpoint_enc(out, len, at, ids[i].reader);
		k = snprintf(out + at, len - at, "|%s|%ld", ids[i].atr,
		    db_batch_count_upto(ids[i].reader, ids[i].atr, seq));
		if (k < 0 || (size_t)k >= len - at)
			break;
		at += (size_t)k;
	}
	if (at == 0)
		snprintf(out, len, "-");
}

/* One line on the file's end, on the disk before the next one. */
static void
checkpoint_append(const char *line, size_t len)
{
	struct iovec iov[2];
	ssize_t w;

	if (cp_fd < 0)
		return;
	iov[0].iov_base = (void *)(uintptr_t)line;
	iov[0].iov_len = len;
	iov[1].iov_base = (void *)(uintptr_t)"\n";
	iov[1].iov_len = 1;
	/* O_APPEND: one writev lands whole at the end, or reports why. */
	w = writev(cp_fd, iov, 2);
	if (w != (ssize_t)len + 1)
		log_warnx("%s: checkpoint %ld not written: %s", cp_path, cp_n,
		    w < 0 ? strerror(errno) : "short write");
	else if (fsync(cp_fd) != 0)
		log_warnx("%s: checkpoint %ld not on the disk: %s", cp_path,
		    cp_n, strerror(errno));
}

/*
 * The last checkpoint, also in DB.checkpoint beside the database, which
 * the daemon can always read back: the series goes on from it at the
 * next start, even where the service may not read the journal and no
 * checkpoint-file is set (issue 18, case 11).  It is not evidence (it
 * is on the station, next to the rows): only where the series goes on.
 */
static void
checkpoint_keep(const char *line, size_t len)
{
	char tmp[4300];
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", cp_own);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	ok = fd >= 0 && write(fd, line, len) == (ssize_t)len &&
	    write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok || rename(tmp, cp_own) != 0)
		log_warnx("%s: checkpoint %ld not kept: %s; the series may "
		    "start again at the next start", cp_own, cp_n,
		    strerror(errno));
}

/*
 * Write a checkpoint if the head moved since the last one, or always
 * (at shutdown).  Blocks (db's lock, fsync): never on the loop.
 */
static void
checkpoint_take(int always)
{
	char *line, hhex[65], phex[65], utc[64], sighex[129];
	uint8_t head[32], sig[64];
	long seq;
	size_t len;
	int k;

	if (db_head_row(&seq, head) != 0) {
		log_warnx("checkpoint: none is signed: the audit database "
		    "is not as this daemon left it");
		return;
	}
	if (!always && seq == cp_seq && memcmp(head, cp_head, 32) == 0)
		return;
	if ((line = malloc(CP_LINE_MAX)) == NULL) {
		log_warnx("checkpoint: out of memory");
		return;
	}
	dbhash_hex(head, 32, 0, hhex);
	dbhash_hex(cp_prev, 32, 0, phex);
	date_utc_now(utc);
	k = snprintf(line, CP_LINE_MAX, CP_MAGIC "n=%ld station=%s seq=%ld "
	    "head=%s prev=%s batch=", cp_n + 1, cp_station, seq, hhex, phex);
	len = (size_t)k;
	checkpoint_batches(seq, line + len, CP_LINE_MAX - len - 300);
	len += strlen(line + len);
	len += (size_t)snprintf(line + len, CP_LINE_MAX - len, " utc=%s",
	    utc);
	if (sign_bytes(cp_key, SIGN_DOMAIN_CHECKPOINT, (const uint8_t *)line,
	    len, sig) != 0) {
		log_warnx("checkpoint: signing failed; none written");
		free(line);
		return;
	}
	dbhash_hex(sig, 64, 0, sighex);
	len += (size_t)snprintf(line + len, CP_LINE_MAX - len, " sig=%s",
	    sighex);
	cp_n++;
	dbhash_sha256(line, len, cp_prev);
	cp_seq = seq;
	memcpy(cp_head, head, 32);
	log_checkpoint(line);
	checkpoint_append(line, len);
	checkpoint_keep(line, len);
	free(line);
}

static void *
checkpoint_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&cp_lock);
	for (;;) {
		while (!cp_wanted && !cp_stopping)
			pthread_cond_wait(&cp_cond, &cp_lock);
		if (cp_stopping)
			break;
		cp_wanted = 0;
		pthread_mutex_unlock(&cp_lock);
		checkpoint_take(0);
		pthread_mutex_lock(&cp_lock);
	}
	pthread_mutex_unlock(&cp_lock);
	return NULL;
}

/* On the loop: only a wake-up for the thread, never a wait. */
static void
checkpoint_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&cp_lock);
	cp_wanted = 1;
	pthread_cond_signal(&cp_cond);
	pthread_mutex_unlock(&cp_lock);
}

/* A checkpoint line read back: where a series stands after it. */
struct cp_last {
	long	n;
	uint8_t	prev[32];	/* SHA-256 of the line */
	long	seq;
	uint8_t	head[32];
	int	signed_ok;	/* by the key the daemon starts with */
};

/*
 * A line from a file or the journal: 0 and *l filled when it is a
 * checkpoint of this station.  Copied, so that it ends.
 */
static int
checkpoint_parse(const char *text, size_t len, const uint8_t *pub,
    struct cp_last *l)
{
	char want[96], *line, *p;
	uint8_t sig[64];
	int rc = -1;

	if ((line = strndup(text, len)) == NULL)
		return -1;
	len = strlen(line);
	snprintf(want, sizeof(want), " station=%s ", cp_station);
	if (strncmp(line, CP_MAGIC, sizeof(CP_MAGIC) - 1) != 0 ||
	    strstr(line, want) == NULL || (p = strstr(line, " n=")) == NULL)
		goto out;
	memset(l, 0, sizeof(*l));
	l->n = strtol(p + 3, NULL, 10);
	dbhash_sha256(line, len, l->prev);
	if ((p = strstr(line, " seq=")) != NULL)
		l->seq = strtol(p + 5, NULL, 10);
	if ((p = strstr(line, " head=")) == NULL ||
	    dbhash_unhex(p + 6, 64, l->head, 32) != 0) {
		memset(l->head, 0, 32);
		l->seq = 0;
	}
	l->signed_ok = pub != NULL && (p = strstr(line, " sig=")) != NULL &&
	    dbhash_unhex(p + 5, 128, sig, 64) == 0 &&
	    sign_check(pub, SIGN_DOMAIN_CHECKPOINT, (const uint8_t *)line,
	    (size_t)(p - line), sig) == 1;
	rc = l->n > 0 ? 0 : -1;
out:
	free(line);
	return rc;
}

/* A file's last line: 0 when it was a checkpoint of this station. */
static int
checkpoint_last_of_file(const char *path, const uint8_t *pub,
    struct cp_last *l)
{
	char *buf, *end, *s;
	struct stat st;
	off_t from;
	ssize_t n;
	int fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if (fstat(fd, &st) != 0 || st.st_size == 0 ||
	    (buf = malloc(CP_TAIL + 1)) == NULL) {
		close(fd);
		return -1;
	}
	from = st.st_size > CP_TAIL ? st.st_size - CP_TAIL : 0;
	n = pread(fd, buf, CP_TAIL, from);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		end = buf + n;
		while (end > buf && end[-1] == '\n')
			*--end = '\0';
		s = memrchr(buf, '\n', (size_t)(end - buf));
		s = s != NULL ? s + 1 : buf;
		rc = checkpoint_parse(s, (size_t)(end - s), pub, l);
	}
	free(buf);
	return rc;
}

/* The journal's newest checkpoint of this station, if it may be read. */
static int
checkpoint_last_of_journal(const uint8_t *pub, struct cp_last *l)
{
	char match[64];
	sd_journal *j;
	const void *d;
	size_t len;
	int rc = -1;

	if (sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY) < 0)
		return -1;
	snprintf(match, sizeof(match), "MESSAGE_ID=%s", log_id_checkpoint);
	if (sd_journal_add_match(j, match, 0) >= 0 &&
	    sd_journal_seek_tail(j) >= 0)
		while (rc != 0 && sd_journal_previous(j) > 0)
			if (sd_journal_get_data(j, "CARDLICD_CHECKPOINT", &d,
			    &len) >= 0 && len > 20)
				rc = checkpoint_parse((const char *)d + 20,
				    len - 20, pub, l);
	sd_journal_close(j);
	return rc;
}

/*
 * At start-up, before any row is written: where the series of
 * checkpoints stands, from the newest of its copies (DB.checkpoint, the
 * checkpoint-file, the journal), so that it goes on rather than start
 * again at 1.  *seq and head: the row that the newest checkpoint signed
 * by the key the daemon starts with names (db_check_start checks the
 * rows after it); *seq 0 when there is none.
 */
void
checkpoint_load(const struct conf *c, long *seq, uint8_t head[32])
{
	static const char *const names[] = { NULL, NULL, "the journal" };
	struct cp_last l, best;
	uint8_t pub[32];
	const char *from = NULL;
	int i, rc;

	*seq = 0;
	memset(head, 0, 32);
	snprintf(cp_station, sizeof(cp_station), "%s", c->station);
	snprintf(cp_own, sizeof(cp_own), "%s.checkpoint", c->database);
	snprintf(cp_path, sizeof(cp_path), "%s", c->checkpoint_file);
	if (c->key == NULL)
		return;
	sign_key_public(c->key, pub);
	memset(&best, 0, sizeof(best));
	for (i = 0; i < 3; i++) {
		if (i == 0)
			rc = checkpoint_last_of_file(cp_own, pub, &l);
		else if (i == 1)
			rc = cp_path[0] != '\0' ?
			    checkpoint_last_of_file(cp_path, pub, &l) : -1;
		else
			rc = checkpoint_last_of_journal(pub, &l);
		if (rc == 0 && l.n > best.n) {
			best = l;
			from = names[i] != NULL ? names[i] : i == 0 ? cp_own :
			    cp_path;
		}
	}
	if (from == NULL) {
		log_info("checkpoints: no earlier checkpoint of station %s "
		    "found in %s, %s or the journal: a new series starts at 1",
		    cp_station, cp_own, cp_path[0] != '\0' ? cp_path :
		    "(no checkpoint-file)");
		return;
	}
	cp_n = best.n;
	memcpy(cp_prev, best.prev, 32);
	cp_seq = best.seq;
	memcpy(cp_head, best.head, 32);
	log_info("checkpoints: continuing the series after checkpoint %ld "
	    "(row %ld) from %s", cp_n, cp_seq, from);
	/*
	 * Said, not refused: the series goes on from it either way, and
	 * cardlicctl verify --checkpoints judges (a rotated key is fine).
	 */
	if (!best.signed_ok) {
		log_warnx("%s: the last checkpoint (n=%ld) is not signed by "
		    "this key: the key changed, or the line was altered; "
		    "cardlicctl verify --checkpoints will tell", from, cp_n);
		return;
	}
	*seq = best.seq;
	memcpy(head, best.head, 32);
}

/*
 * At start-up, once the database (and its key) is open: the file, the
 * thread and the timer; the series stands where checkpoint_load left
 * it.  Fatal errors here only.
 */
void
checkpoint_init(const struct conf *c, struct event_base *base)
{
	struct timeval tv;

	cp_interval = c->checkpoint_interval;
	if ((cp_key = db_signing_key()) == NULL) {
		log_warnx("no checkpoints: they need the station's key "
		    "([audit] key-file or key-credential)");
		return;
	}
	if (cp_path[0] != '\0' && (cp_fd = open(cp_path, O_WRONLY | O_APPEND |
	    O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640)) < 0)
		fatalx("%s: %s ([audit] checkpoint-file)", cp_path,
		    strerror(errno));
	cp_on = 1;
	if (c->checkpoint_interval == 0)
		return;		/* at shutdown only */
	if (thread_start(&cp_thread, 0, checkpoint_main, NULL) != 0)
		fatalx("cannot start the checkpoint thread");
	cp_thread_on = 1;
	tv.tv_sec = c->checkpoint_interval;
	tv.tv_usec = 0;
	if ((cp_timer = event_new(base, -1, EV_PERSIST, checkpoint_on_timer,
	    NULL)) == NULL || event_add(cp_timer, &tv) != 0)
		fatalx("libevent: cannot add the checkpoint timer");
}

/*
 * A reload keeps the checkpoints as they were started (the file stays
 * open, the series and the timer go on): a change of them is a restart's,
 * and the log says so rather than seem to take it.
 */
void
checkpoint_reload(const struct conf *c)
{
	char every[64];

	if (c->checkpoint_interval == cp_interval &&
	    strcmp(c->checkpoint_file, cp_path) == 0)
		return;
	if (cp_interval > 0)
		snprintf(every, sizeof(every), "every %ld s", cp_interval);
	else
		snprintf(every, sizeof(every), "at shutdown only");
	log_warnx("%s: [audit] checkpoint-interval and checkpoint-file take "
	    "effect at the next restart; until then, checkpoints go on %s%s%s",
	    c->path, every, cp_path[0] != '\0' ? " to " : "", cp_path);
}

/*
 * At shutdown, the loop over and the jobs' rows written: the thread ends,
 * then one last checkpoint, whether the head moved or not, so that the
 * series says where the daemon stopped.
 */
void
checkpoint_finish(void)
{
	if (cp_timer != NULL)
		event_free(cp_timer);
	cp_timer = NULL;
	if (cp_thread_on) {
		pthread_mutex_lock(&cp_lock);
		cp_stopping = 1;
		pthread_cond_signal(&cp_cond);
		pthread_mutex_unlock(&cp_lock);
		pthread_join(cp_thread, NULL);
		cp_thread_on = 0;
	}
	if (cp_on)
		checkpoint_take(1);
	cp_on = 0;
	if (cp_fd >= 0)
		close(cp_fd);
	cp_fd = -1;
}
