/*
 * Test helpers around sim/line: one private line per suite, in its own
 * directory, torn down by PID at the end.
 */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testline.h"

char	tl_dir[256];
static int	tl_readers;
static char	tl_opts[64];

static char *
tl_vfmt(const char *fmt, va_list ap)
{
	char *s;

	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	return s;
}

static int
tl_vsh(const char *fmt, va_list ap, char **cmd)
{
	int rc;

	*cmd = tl_vfmt(fmt, ap);
	rc = system(*cmd);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

int
tl_sh_rc(const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int rc;

	va_start(ap, fmt);
	rc = tl_vsh(fmt, ap, &cmd);
	va_end(ap);
	free(cmd);
	return rc;
}

/* A shell command that must succeed. */
void
tl_sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int rc;

	va_start(ap, fmt);
	rc = tl_vsh(fmt, ap, &cmd);
	va_end(ap);
	ck_assert_msg(rc == 0, "command failed (%d): %s", rc, cmd);
	free(cmd);
}

/* As tl_up, with more options for sim/line up (e.g. "--long-names"). */
void
tl_up_opts(int readers, const char *opts)
{
	char tmpl[] = "/tmp/cardlic-test-XXXXXX";
	char sock[300];

	if (mkdtemp(tmpl) == NULL)
		abort();
	snprintf(tl_dir, sizeof(tl_dir), "%s", tmpl);
	tl_readers = readers;
	snprintf(tl_opts, sizeof(tl_opts), "%s", opts);
	if (tl_sh_rc(TOPDIR "/sim/line up --dir %s --readers %d %s >/dev/null",
	    tl_dir, readers, opts) != 0) {
		fprintf(stderr, "cannot bring the simulated line up\n");
		exit(1);
	}
	/*
	 * One fixed day for every card and daemon of the suite, so that
	 * dates in the expectations hold whatever day the tests run.
	 */
	setenv("CARDLIC_TODAY", "20261124", 1);
	/*
	 * And one zone: the machine's own may be any, and cardlicd -n warns
	 * where [station] timezone (UTC in the suites) differs from it.
	 */
	setenv("TZ", "UTC", 1);
	/* Every PC/SC client of the suite, forks included, uses this line. */
	snprintf(sock, sizeof(sock), "%s/run/pcscd.comm", tl_dir);
	setenv("PCSCLITE_CSOCK_NAME", sock, 1);
}

void
tl_up(int readers)
{
	tl_up_opts(readers, "");
}

/*
 * The suite's line is up, or is brought up again in the same directory
 * (same socket path, same card states).  A test that broke the line (a
 * pcscd restart that failed, a line taken down) fails alone: the tests
 * after it, which all start by inserting a card, get a line again instead
 * of failing in turn.
 */
void
tl_line_ensure(void)
{
	char *pid;
	long n;

	if (tl_dir[0] == '\0')
		return;
	pid = tl_read("cat %s/pcscd.pid 2>/dev/null", tl_dir);
	n = strtol(pid, NULL, 10);
	free(pid);
	if (n > 0 && kill((pid_t)n, 0) == 0 &&
	    tl_sh_rc("test -f %s/env", tl_dir) == 0)
		return;
	fprintf(stderr, "testline: the line in %s was down; bringing it up "
	    "again\n", tl_dir);
	tl_sh_rc(TOPDIR "/sim/line down --dir %s >/dev/null 2>&1", tl_dir);
	tl_sh(TOPDIR "/sim/line up --dir %s --readers %d %s >/dev/null",
	    tl_dir, tl_readers, tl_opts);
}

void
tl_down(void)
{
	if (tl_dir[0] == '\0')
		return;
	tl_sh_rc(TOPDIR "/sim/line down --dir %s >/dev/null", tl_dir);
	if (getenv("CARDLIC_KEEP") == NULL)
		tl_sh_rc("rm -rf %s", tl_dir);
}

/* Insert a card into reader k; a card still there is pulled first. */
void
tl_insert(int k, const char *card, const char *fmt, ...)
{
	va_list ap;
	char *opts;

	va_start(ap, fmt);
	opts = tl_vfmt(fmt, ap);
	va_end(ap);
	tl_line_ensure();
	tl_remove(k);
	tl_sh(TOPDIR "/sim/line insert --dir %s --reader %d --card %s -- %s",
	    tl_dir, k, card, opts);
	free(opts);
}

void
tl_remove(int k)
{
	tl_sh(TOPDIR "/sim/line remove --dir %s --reader %d", tl_dir, k);
}

/* The whole output of a command (or a file's content with "cat"). */
char *
tl_read(const char *fmt, ...)
{
	va_list ap;
	char *cmd, *buf = NULL;
	size_t len = 0;
	FILE *f, *out;
	int c;

	va_start(ap, fmt);
	cmd = tl_vfmt(fmt, ap);
	va_end(ap);
	if ((f = popen(cmd, "r")) == NULL)
		abort();
	out = open_memstream(&buf, &len);
	while ((c = fgetc(f)) != EOF)
		fputc(c, out);
	fclose(out);
	pclose(f);
	free(cmd);
	return buf;
}

size_t
tl_hex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;
	unsigned v;

	while (*s != '\0' && n < max) {
		if (*s == ' ' || *s == '\n') {
			s++;
			continue;
		}
		if (sscanf(s, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

/* The PC/SC name of reader k of the line. */
char *
tl_reader(int k)
{
	char *all = tl_read("sed -n '%dp' %s/readers", k + 1, tl_dir);

	all[strcspn(all, "\n")] = '\0';
	return all;
}

/*
 * CARDLIC_TEST_SLOW=N (make check-valgrind) makes this clock run N times
 * slower, so that every deadline built on it waits N times longer for a
 * daemon run under valgrind.
 */
long
tl_now_ms(void)
{
	const char *slow = getenv("CARDLIC_TEST_SLOW");
	long n = slow != NULL ? strtol(slow, NULL, 10) : 1;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) / (n > 1 ? n : 1);
}

/*
 * cardlicctl reconcile on db, its output and "exit N" after it; and the
 * same question asked of the views in SQL by tests/reconcile-oracle.py,
 * which must answer the same bytes: reconcile reads the table in one
 * pass of its own (ctl/reconcile.c), the views say what that means.
 */
char *
tl_reconcile(const char *db)
{
	char *out, *want;
	size_t at = 0, i, line = 0;

	out = tl_read(TOPDIR "/ctl/cardlicctl -d %s reconcile 2>&1; "
	    "echo \"exit $?\"", db);
	want = tl_read("/usr/bin/python3 " TOPDIR "/tests/reconcile-oracle.py "
	    "%s 2>&1; echo \"exit $?\"", db);
	/* Check carries a message of some 4 KiB: from the first line apart. */
	while (out[at] == want[at] && out[at] != '\0')
		at++;
	while (at > 0 && out[at - 1] != '\n')
		at--;
	for (i = 0; i < at; i++)
		line += out[i] == '\n';
	ck_assert_msg(strcmp(out, want) == 0, "reconcile on %s, line %zu "
	    "answers\n%.1000s\nbut the views say\n%.1000s", db, line + 1,
	    out + at, want + at);
	free(want);
	return out;
}
