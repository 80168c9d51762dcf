/*
 * Whose turn it is to try the configured PIN (invariant 4), and the marks
 * on disk of what cards said of it (DB.pin-trying, DB.pin-refused): this
 * file alone writes and reads them.  Until a
 * configuration's PIN has been accepted once, logins take turns: two
 * cards inserted together must not both meet a wrong PIN.  Once it was
 * accepted, logins run side by side; once refused, no card is tried with
 * it again.  The state is kept by the configuration's generation (not in
 * the configuration, which stays as it was loaded), for the last few
 * configurations whose jobs may still be running after a reload.
 *
 * What a card said of the PIN must outlive the daemon: the holder of the
 * first turn marks DB.pin-trying (the PIN's source, never the PIN) before
 * the login, and turns it into DB.pin-refused if the card refuses, before
 * anything else; a SIGKILL in between leaves the mark.  The mark also
 * names the card and its token flags before the try: when that card comes
 * back, its flags tell whether the try was refused (line.c, issue.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cardlicd.h"
#include "dbhash.h"

#define PINTURN_GENS	16

/*
 * The lock guards the table only, and is never held across a login or
 * an fsync: the turn is a flag of the configuration's slot, waited for
 * on pinturn_cond.
 */
static pthread_mutex_t	pinturn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	pinturn_cond = PTHREAD_COND_INITIALIZER;
static struct {
	unsigned long	gen;
	int		state;		/* 0 untried, 1 accepted, -1 refused */
	int		turn;		/* an untried PIN's login under way */
} pinturn_gens[PINTURN_GENS];

/* Under pinturn_lock.  A configuration 16 reloads later reuses a slot. */
static int
pinturn_slot(unsigned long gen)
{
	int i = (int)(gen % PINTURN_GENS);

	if (pinturn_gens[i].gen != gen) {
		pinturn_gens[i].gen = gen;
		pinturn_gens[i].state = 0;
		pinturn_gens[i].turn = 0;
	}
	return i;
}

/*
 * Before a login.  PINTURN_REFUSED: do not try.  PINTURN_ALONE: the
 * caller has the turn (no other login of this PIN until pinturn_end).
 * PINTURN_FREE: the PIN is known good, go.  Waits while another card has
 * the turn.
 */
enum pinturn
pinturn_begin(unsigned long gen)
{
	enum pinturn how;
	int i;

	pthread_mutex_lock(&pinturn_lock);
	for (;;) {
		i = pinturn_slot(gen);
		if (pinturn_gens[i].state != 0 || !pinturn_gens[i].turn)
			break;
		pthread_cond_wait(&pinturn_cond, &pinturn_lock);
	}
	if (pinturn_gens[i].state < 0)
		how = PINTURN_REFUSED;
	else if (pinturn_gens[i].state > 0)
		how = PINTURN_FREE;
	else {
		pinturn_gens[i].turn = 1;
		how = PINTURN_ALONE;
	}
	pthread_mutex_unlock(&pinturn_lock);
	return how;
}

/* After the login: what it taught about the PIN, and the turn's end. */
void
pinturn_end(unsigned long gen, enum pinturn how, int accepted, int refused)
{
	int i;

	if (how == PINTURN_REFUSED || (how == PINTURN_FREE && !refused))
		return;
	pthread_mutex_lock(&pinturn_lock);
	i = pinturn_slot(gen);
	if (refused)
		pinturn_gens[i].state = -1;
	else if (accepted && pinturn_gens[i].state == 0)
		pinturn_gens[i].state = 1;
	if (how == PINTURN_ALONE)
		pinturn_gens[i].turn = 0;
	pthread_cond_broadcast(&pinturn_cond);
	pthread_mutex_unlock(&pinturn_lock);
}

static void
pinturn_path(const struct conf *c, const char *what, char *out, size_t len)
{
	snprintf(out, len, "%s.%s", c->database, what);
}

static void
pinturn_sync_dir(const char *path)
{
	char dir[4200];
	int fd;

	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

/*
 * Writes the PIN's source into DB.what, durably, then the card it is
 * tried on (if any): "card MODEL SERIAL FLAGS", in hex.
 */
static void
pinturn_mark(const struct conf *c, const char *what, const struct token *t)
{
	char path[4200], id[8400], model[2 * FIELD_LEN + 1];
	char serial[2 * FIELD_LEN + 1];
	size_t n;
	int fd, ok;

	pinturn_path(c, what, path, sizeof(path));
	pin_identity(c, id, sizeof(id));
	if (t != NULL) {
		dbhash_hex(t->model, FIELD_LEN, 1, model);
		dbhash_hex(t->serial, FIELD_LEN, 1, serial);
		n = strlen(id);
		snprintf(id + n, sizeof(id) - n, "card %s %s %lx\n", model,
		    serial, t->flags);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	ok = fd >= 0 && write(fd, id, strlen(id)) == (ssize_t)strlen(id) &&
	    fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok)
		log_warnx("%s: %s; a refusal of the PIN could be forgotten by "
		    "a crash", path, strerror(errno));
	pinturn_sync_dir(path);
}

/* Before the first login of an untried PIN (the turn's holder only). */
void
pinturn_trying(const struct conf *c, const struct token *t)
{
	pinturn_mark(c, "pin-trying", t);
}

/* What follows the PIN's source in a DB.pin-trying mark.  0: a card. */
int
pinturn_doubt_parse(const char *text, struct pin_doubt *d)
{
	char model[2 * FIELD_LEN + 2], serial[2 * FIELD_LEN + 2];

	memset(d, 0, sizeof(*d));
	d->on = 1;
	if (sscanf(text, "card %33s %33s %lx", model, serial,
	    &d->flags) != 3 ||
	    dbhash_unhex(model, strlen(model), d->model, FIELD_LEN) != 0 ||
	    dbhash_unhex(serial, strlen(serial), d->serial, FIELD_LEN) != 0)
		return -1;
	d->known = 1;
	return 0;
}

/*
 * DB.pin-refused, whole or not at all (a temporary file, synced, then
 * renamed): the PIN's source that a card refused, kept across restarts.
 */
static void
pinturn_keep_refusal(const struct conf *c)
{
	char path[4200], tmp[4300], id[8400];
	int fd;

	pinturn_path(c, "pin-refused", path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	pin_identity(c, id, sizeof(id));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0 || write(fd, id, strlen(id)) != (ssize_t)strlen(id) ||
	    fsync(fd) != 0 || rename(tmp, path) != 0)
		log_alert("%s: cannot keep the PIN's refusal across a restart:"
		    " %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* After it: a refusal is kept at once; anything else drops the mark. */
void
pinturn_tried(const struct conf *c, int refused)
{
	char trying[4200], done[4200];

	pinturn_path(c, "pin-trying", trying, sizeof(trying));
	pinturn_path(c, "pin-refused", done, sizeof(done));
	if (refused) {
		/* No mark when a PIN known good was refused: write one. */
		if (rename(trying, done) != 0)
			pinturn_keep_refusal(c);
	} else if (unlink(trying) != 0 && errno != ENOENT)
		log_warnx("%s: %s", trying, strerror(errno));
	pinturn_sync_dir(trying);
}

/* A reload that changed the PIN or its source: both marks go. */
void
pinturn_clear(const struct conf *c)
{
	char path[4200];

	pinturn_path(c, "pin-refused", path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT)
		log_warnx("%s: %s", path, strerror(errno));
	pinturn_path(c, "pin-trying", path, sizeof(path));
	if (unlink(path) != 0 && errno != ENOENT)
		log_warnx("%s: %s", path, strerror(errno));
}

/*
 * At start-up, a mark (DB.pin-refused, DB.pin-trying): 1 when it is there
 * and names the PIN source that c has, 0 when it names another (then it
 * is removed), -1 when there is none.  What follows the PIN's source
 * (pin_identity's lines) goes to rest.
 */
int
pinturn_mark_read(const struct conf *c, const char *what, char *rest,
    size_t restlen)
{
	char path[4200], id[8400], was[8400];
	ssize_t n;
	int fd;

	pinturn_path(c, what, path, sizeof(path));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -1;
	n = read(fd, was, sizeof(was) - 1);
	close(fd);
	was[n > 0 ? n : 0] = '\0';
	pin_identity(c, id, sizeof(id));
	if (strncmp(id, was, strlen(id)) == 0) {
		if (rest != NULL)
			snprintf(rest, restlen, "%s", was + strlen(id));
		return 1;
	}
	unlink(path);
	return 0;
}
