/*
 * cardlicctl verify on a corrupt database: the input is written as the
 * database file and cardlicctl runs in process on it ("-c /dev/null -d
 * FILE verify"), its main renamed.  Seeds are audit databases written by
 * the daemon's own db.c (tests/fuzz/mkdb.c).  Checked: no crash, no
 * undefined behaviour, no leak, and an exit status of 0, 1 or 2.
 * Run with -close_fd_mask=2: a corrupt database makes cardlicctl say so
 * on stderr every time.
 */
#include <fcntl.h>
#include <unistd.h>

int	ctl_main(int, char **);
#define main ctl_main
#include "../../ctl/cardlicctl.c"
#undef main

#include "stubs.h"

static char	fv_path[64];

static void
fv_unlink(void)
{
	char p[80];

	unlink(fv_path);
	snprintf(p, sizeof(p), "%s-wal", fv_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", fv_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-journal", fv_path);
	unlink(p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[] = { "cardlicctl", "-c", "/dev/null", "-d", fv_path,
	    "verify", NULL };
	int fd, rc;

	if (fv_path[0] == '\0') {
		snprintf(fv_path, sizeof(fv_path), "/dev/shm/cardlicd-fuzz-"
		    "verify-%ld.db", (long)getpid());
		if ((fd = open("/dev/null", O_WRONLY)) >= 0) {
			fflush(stdout);
			dup2(fd, 1);
			close(fd);
		}
		atexit(fv_unlink);
	}
	fv_unlink();
	fd = open(fv_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	FUZZ_CHECK(fd >= 0, "%s: cannot create", fv_path);
	FUZZ_CHECK(write(fd, data, size) == (ssize_t)size, "short write");
	close(fd);
	optind = 0;
	rc = ctl_main(6, argv);
	FUZZ_CHECK(rc == CTL_OK || rc == CTL_NOTHING || rc == CTL_USAGE,
	    "exit %d", rc);
	fflush(stdout);
	fv_unlink();
	return 0;
}
