/*
 * The PIN: kept in one locked page that is left out of core dumps, read
 * only from files that nobody else can read, and wiped when dropped.  It
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

#define PIN_PAGE	4096

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
 * A file that holds the PIN must be mode 0600 or stricter and owned by
 * root or by the user the daemon runs as.  The message names the problem
 * and the fix, not the path (the caller adds it).
 */
int
pin_check_perms(const char *path, const char *what, char *err, size_t len)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(err, len, "cannot stat: %s", strerror(errno));
		return -1;
	}
	if (st.st_mode & 077) {
		snprintf(err, len, "this file %s but others may read it "
		    "(mode %04o); run chmod 600 on it", what,
		    (unsigned)(st.st_mode & 07777));
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(err, len, "this file %s but belongs to uid %u, "
		    "neither root nor the daemon's user (uid %u)", what,
		    (unsigned)st.st_uid, (unsigned)geteuid());
		return -1;
	}
	return 0;
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

static int
pin_read_path(const char *path, char *pin, size_t *pin_len, char *err,
    size_t len)
{
	char buf[PIN_MAX + 3];
	ssize_t n;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, len, "%s: cannot open: %s", path,
		    strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		snprintf(err, len, "%s: cannot read: %s", path,
		    strerror(errno));
		return -1;
	}
	rc = pin_take(buf, (size_t)n, pin, pin_len);
	explicit_bzero(buf, sizeof(buf));
	if (rc != 0)
		snprintf(err, len, "%s: the PIN must be one line of 4 to %d "
		    "characters", path, PIN_MAX);
	return rc;
}

/* pin-file: the first line, from a file nobody else can read. */
int
pin_read_file(const char *path, char *pin, size_t *pin_len, char *err,
    size_t len)
{
	char msg[300];

	if (pin_check_perms(path, "holds the PIN", msg, sizeof(msg)) != 0) {
		snprintf(err, len, "%s: %s", path, msg);
		return -1;
	}
	return pin_read_path(path, pin, pin_len, err, len);
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
	return pin_read_path(path, pin, pin_len, err, len);
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
