/*
 * The PIN: kept in one locked page that is left out of core dumps, read
 * only from files that nobody else can read, and wiped when dropped.  It
 * never reaches a log, an error message or the database.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* The first line of the file, without its newline: 4 to PIN_MAX bytes. */
int
pin_read_file(const char *path, char *pin, size_t *pin_len, char *err,
    size_t len)
{
	char buf[PIN_MAX + 3], msg[300];
	ssize_t n;
	size_t k;
	int fd;

	if (pin_check_perms(path, "holds the PIN", msg, sizeof(msg)) != 0) {
		snprintf(err, len, "%s: %s", path, msg);
		return -1;
	}
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
	k = (size_t)n;
	if (k > 0 && buf[k - 1] == '\n')
		k--;
	if (k > 0 && buf[k - 1] == '\r')
		k--;
	if (k < 4 || k > PIN_MAX || memchr(buf, '\n', k) != NULL) {
		explicit_bzero(buf, sizeof(buf));
		snprintf(err, len, "%s: the PIN must be one line of 4 to %d "
		    "characters", path, PIN_MAX);
		return -1;
	}
	memcpy(pin, buf, k);
	*pin_len = k;
	explicit_bzero(buf, sizeof(buf));
	return 0;
}
