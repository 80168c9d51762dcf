/*
 * cardlicctl verify on a corrupt database: the input is written as the
 * database file and cardlicctl runs in process on it ("-c /dev/null -d
 * FILE verify"), its main renamed.  Seeds are audit databases written by
 * the daemon's own db.c (tests/fuzz/mkdb.c).  Checked: no crash, no
 * undefined behaviour, no leak, an exit status of 0, 1 or 2, and when
 * verify passes, it has checked every row of the audit table (counted
 * here apart): a row that no station's chain walks is not verified.
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

static char	fv_path[64], fv_out[80];
static int	fv_outfd = -1;

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

static void
fv_cleanup(void)
{
	fv_unlink();
	unlink(fv_out);
}

/* Rows in the audit table, or -1 when SQLite cannot tell. */
static long
fv_count(void)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char uri[128];
	long n = -1;

	snprintf(uri, sizeof(uri), "file:%s?mode=ro", fv_path);
	if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
	    NULL) == SQLITE_OK && sqlite3_prepare_v2(db, "SELECT count(*) "
	    "FROM audit", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = (long)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return n;
}

/* What verify printed last: "N rows checked". */
static long
fv_checked(void)
{
	char buf[8192], *p;
	ssize_t n;
	long rows = -1;

	fflush(stdout);
	n = pread(fv_outfd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	for (p = buf; (p = strstr(p, " rows checked")) != NULL; p++) {
		while (p > buf && p[-1] >= '0' && p[-1] <= '9')
			p--;
		rows = strtol(p, NULL, 10);
		p = strstr(p, " rows checked");
	}
	return rows;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[] = { "cardlicctl", "-c", "/dev/null", "-d", fv_path,
	    "verify", NULL };
	long rows, checked;
	int fd, rc;

	if (fv_path[0] == '\0') {
		snprintf(fv_path, sizeof(fv_path), "/dev/shm/cardlicd-fuzz-"
		    "verify-%ld.db", (long)getpid());
		snprintf(fv_out, sizeof(fv_out), "/dev/shm/cardlicd-fuzz-"
		    "verify-%ld.out", (long)getpid());
		fv_outfd = open(fv_out, O_RDWR | O_CREAT | O_TRUNC, 0600);
		FUZZ_CHECK(fv_outfd >= 0, "%s: cannot create", fv_out);
		fflush(stdout);
		dup2(fv_outfd, 1);
		atexit(fv_cleanup);
	}
	fflush(stdout);
	FUZZ_CHECK(ftruncate(fv_outfd, 0) == 0, "ftruncate");
	lseek(1, 0, SEEK_SET);
	fv_unlink();
	fd = open(fv_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	FUZZ_CHECK(fd >= 0, "%s: cannot create", fv_path);
	FUZZ_CHECK(write(fd, data, size) == (ssize_t)size, "short write");
	close(fd);
	optind = 0;
	rc = ctl_main(6, argv);
	FUZZ_CHECK(rc == CTL_OK || rc == CTL_NOTHING || rc == CTL_USAGE,
	    "exit %d", rc);
	if (rc == CTL_OK) {
		rows = fv_count();
		checked = fv_checked();
		FUZZ_CHECK(rows < 0 || checked == rows, "verify passed with "
		    "%ld rows checked of %ld", checked, rows);
	}
	fv_unlink();
	return 0;
}
