/*
 * The PIN: kept in locked memory that is left out of core dumps, read only
 * from regular files, never through a symbolic link, that nobody but root
 * and the daemon's user and group can read, and wiped when dropped.  It
 * never reaches a log, an error message or the database.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyutils.h>

#include "cardlicd.h"

#define PIN_PAGE	8192	/* two pages: a whole PIN file fits */
#define PIN_FILE_MAX	4096

int
pin_alloc(char **out)
{
	void *p;

	p = mmap(NULL, PIN_PAGE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	/* Best effort: a low RLIMIT_MEMLOCK must not stop the line. */
	(void)mlock(p, PIN_PAGE);
	(void)madvise(p, PIN_PAGE, MADV_DONTDUMP);
	*out = p;
	return 0;
}

void
pin_free(char *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, PIN_PAGE);
	munlock(p, PIN_PAGE);
	munmap(p, PIN_PAGE);
}

/*
 * A file that holds the PIN may be read by its owner and its group, and
 * by nobody else: mode 0640 or stricter, owned by root or by the daemon's
 * user (uid), its group root or the daemon's group (gid), so that the
 * recommended root:cardlicd 0640 works under User=cardlicd.  The message
 * names the problem and the fix, not the path (the caller adds it).
 */
int
pin_check_stat(const struct stat *st, uid_t uid, gid_t gid, const char *what,
    char *err, size_t len)
{
	unsigned mode = (unsigned)(st->st_mode & 07777);

	if (st->st_mode & 07) {
		snprintf(err, len, "this file %s but others may read it "
		    "(mode %04o); run chmod 0640 on it", what, mode);
		return -1;
	}
	if (st->st_mode & 020) {
		snprintf(err, len, "this file %s but its group may write it "
		    "(mode %04o); run chmod 0640 on it", what, mode);
		return -1;
	}
	if (st->st_uid != 0 && st->st_uid != uid) {
		snprintf(err, len, "this file %s but belongs to uid %u, "
		    "neither root nor the daemon's user (uid %u)", what,
		    (unsigned)st->st_uid, (unsigned)uid);
		return -1;
	}
	if ((st->st_mode & 040) && st->st_gid != 0 && st->st_gid != gid) {
		snprintf(err, len, "this file %s but its group (gid %u) may "
		    "read it, neither root nor the daemon's group (gid %u); "
		    "run chmod 0600 on it, or chgrp it to the daemon's group",
		    what, (unsigned)st->st_gid, (unsigned)gid);
		return -1;
	}
	return 0;
}

static const char *
pin_file_type(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	return "not a plain file";
}

/*
 * Open a file that may hold a secret: never through a symbolic link (a
 * link could point at another root-only secret), only a regular file
 * (not /dev/zero, not a FIFO that blocks), of at most max bytes.  The
 * message names the path.  O_NONBLOCK keeps open() of a FIFO from
 * waiting for a writer; it changes nothing for a regular file.
 */
int
pin_open_file(const char *path, off_t max, struct stat *st, char *err,
    size_t len)
{
	int fd, e;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
	    O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		if (e == ELOOP)
			snprintf(err, len, "%s: refused: a symbolic link; name "
			    "the file itself", path);
		else
			snprintf(err, len, "%s: cannot open: %s", path,
			    strerror(e));
		return -1;
	}
	if (fstat(fd, st) != 0) {
		snprintf(err, len, "%s: cannot stat: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, len, "%s: refused: %s, not a regular file", path,
		    pin_file_type(st->st_mode));
		close(fd);
		return -1;
	}
	if (st->st_size > max) {
		snprintf(err, len, "%s: refused: %lld bytes, more than the "
		    "%lld allowed", path, (long long)st->st_size,
		    (long long)max);
		close(fd);
		return -1;
	}
	return fd;
}

/* A PIN is one line of 4 to PIN_MAX bytes; one final newline is dropped. */
static int
pin_take(const char *buf, size_t k, char *pin, size_t *pin_len)
{
	if (k > 0 && buf[k - 1] == '\n')
		k--;
	if (k > 0 && buf[k - 1] == '\r')
		k--;
	if (k < 4 || k > PIN_MAX || memchr(buf, '\n', k) != NULL ||
	    memchr(buf, '\0', k) != NULL)
		return -1;
	memcpy(pin, buf, k);
	*pin_len = k;
	return 0;
}

/*
 * The whole file, at most PIN_FILE_MAX bytes, into a locked page that is
 * wiped afterwards; the permissions are checked on the file opened, not
 * on a name that could change in between, unless check is 0 (a systemd
 * credential: systemd owns its directory).
 */
static int
pin_read_path(const char *path, int check, uid_t uid, gid_t gid, char *pin,
    size_t *pin_len, char *err, size_t len)
{
	struct stat st;
	char msg[300], *buf;
	size_t k = 0;
	ssize_t n;
	int fd, rc = -1;

	if ((fd = pin_open_file(path, PIN_FILE_MAX, &st, err, len)) < 0)
		return -1;
	if (check && pin_check_stat(&st, uid, gid, "holds the PIN", msg,
	    sizeof(msg)) != 0) {
		snprintf(err, len, "%s: %s", path, msg);
		close(fd);
		return -1;
	}
	if (pin_alloc(&buf) != 0) {
		snprintf(err, len, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	/* The page holds PIN_FILE_MAX + 1: a file that grew is seen. */
	while (k <= PIN_FILE_MAX &&
	    (n = read(fd, buf + k, PIN_FILE_MAX + 1 - k)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, len, "%s: cannot read: %s", path,
			    strerror(errno));
			goto out;
		}
		k += (size_t)n;
	}
	if (k > PIN_FILE_MAX) {
		snprintf(err, len, "%s: refused: more than %d bytes", path,
		    PIN_FILE_MAX);
		goto out;
	}
	if ((rc = pin_take(buf, k, pin, pin_len)) != 0)
		snprintf(err, len, "%s: the PIN must be one line of 4 to %d "
		    "characters", path, PIN_MAX);
out:
	close(fd);
	pin_free(buf);
	return rc;
}

/* pin-file: the first line, from a file nobody else can read. */
int
pin_read_file(const char *path, uid_t uid, gid_t gid, char *pin,
    size_t *pin_len, char *err, size_t len)
{
	return pin_read_path(path, 1, uid, gid, pin, pin_len, err, len);
}

/*
 * pin-credential: $CREDENTIALS_DIRECTORY/NAME, set up by systemd from
 * LoadCredential= or LoadCredentialEncrypted= (systemd-creds encrypt).
 * systemd owns that directory and makes it readable to this service only.
 */
int
pin_read_credential(const char *name, char *pin, size_t *pin_len, char *err,
    size_t len)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[PATH_MAX];

	if (dir == NULL || dir[0] == '\0') {
		snprintf(err, len, "pin-credential %s: CREDENTIALS_DIRECTORY "
		    "is not set; give the credential with LoadCredential= or "
		    "LoadCredentialEncrypted= in the unit", name);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return pin_read_path(path, 0, 0, 0, pin, pin_len, err, len);
}

/*
 * pin-keyring: a key of type "user" found in the keyrings this process
 * can see (its session keyring, and the user keyring linked there).
 */
int
pin_read_keyring(const char *desc, char *pin, size_t *pin_len, char *err,
    size_t len)
{
	key_serial_t key;
	void *buf = NULL;
	long n;
	int rc;

	key = request_key("user", desc, NULL, 0);
	if (key < 0) {
		snprintf(err, len, "pin-keyring: no key \"%s\" of type user "
		    "in this process's keyrings (%s); add it with: keyctl add "
		    "user %s PIN @u", desc, strerror(errno), desc);
		return -1;
	}
	n = keyctl_read_alloc(key, &buf);
	if (n < 0) {
		snprintf(err, len, "pin-keyring: cannot read key \"%s\": %s",
		    desc, strerror(errno));
		return -1;
	}
	rc = pin_take(buf, (size_t)n, pin, pin_len);
	explicit_bzero(buf, (size_t)n);
	free(buf);
	if (rc != 0)
		snprintf(err, len, "pin-keyring: key \"%s\" is not a PIN of "
		    "4 to %d characters", desc, PIN_MAX);
	return rc;
}

/*
 * Where the PIN comes from, as files are known: the configuration's and
 * the PIN file's or credential's device, inode, size and time.  A refused
 * PIN is remembered by this, never by anything derived from the PIN.
 */
void
pin_identity(const struct conf *c, char *out, size_t len)
{
	struct stat st;
	char path[4200];
	const char *cred;
	size_t n;

	memset(&st, 0, sizeof(st));
	stat(c->path, &st);
	n = (size_t)snprintf(out, len, "conf %s %lu %lu %lld %lld.%09ld\n",
	    c->path, (unsigned long)st.st_dev, (unsigned long)st.st_ino,
	    (long long)st.st_size, (long long)st.st_mtim.tv_sec,
	    st.st_mtim.tv_nsec);
	path[0] = '\0';
	if (c->pin_source == PIN_FILE)
		snprintf(path, sizeof(path), "%s", c->pin_where);
	else if (c->pin_source == PIN_CREDENTIAL &&
	    (cred = getenv("CREDENTIALS_DIRECTORY")) != NULL)
		snprintf(path, sizeof(path), "%s/%s", cred, c->pin_where);
	memset(&st, 0, sizeof(st));
	if (path[0] != '\0')
		stat(path, &st);
	if (n < len)
		snprintf(out + n, len - n,
		    "pin %d %s %lu %lu %lld %lld.%09ld\n", (int)c->pin_source,
		    c->pin_where, (unsigned long)st.st_dev,
		    (unsigned long)st.st_ino, (long long)st.st_size,
		    (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}
