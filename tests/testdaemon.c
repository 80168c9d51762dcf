/*
 * Helpers to run cardlicd on the simulated line: its configuration, its
 * start and stop, and questions to its audit database through sqlite3.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

pid_t	d_pid;
/*
 * The daemons a suite started, for its teardown to stop.  One file per
 * suite process: make check runs suites side by side in one checkout, and
 * a suite's teardown must never stop another suite's daemons.
 */
static char	d_pids[300];

static const char *
d_pids_path(void)
{
	/* Set by d_suite_up in the suite's process; tests are its forks. */
	if (d_pids[0] == '\0')
		snprintf(d_pids, sizeof(d_pids), "%s/tests/.daemon.pids.%ld",
		    TOPDIR, (long)getpid());
	return d_pids;
}
char	d_db[300], d_conf[300], d_log[300];

/* A configuration with the given PIN line ("pin-file = ..." and so on). */
void
d_config_pin(const char *name, const char *pinline, const char *extra)
{
	const char *st = "", *rest = extra != NULL ? extra : "";
	FILE *f;

	snprintf(d_db, sizeof(d_db), "%s/%s.db", tl_dir, name);
	snprintf(d_conf, sizeof(d_conf), "%s/%s.conf", tl_dir, name);
	snprintf(d_log, sizeof(d_log), "%s/%s.log", tl_dir, name);
	/*
	 * A section or key given twice is an error: [station] keys in extra
	 * join the one [station].  The PIN line stays line 7.
	 */
	if (strncmp(rest, "[station]\n", 10) == 0) {
		st = rest + 10;
		rest = "";
	}
	f = fopen(d_conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[station]\n%sdatabase = %s\ntimezone = UTC\n"
	    "control = %s/%s.ctl\n%s%s[pkcs11]\n%s\nmodule = %s\n%s\n",
	    strstr(st, "id =") != NULL ? "" : "id = test\n", d_db, tl_dir,
	    name, st, *st != '\0' ? "\n" : "", pinline, MODULE, rest);
	fclose(f);
	chmod(d_conf, 0600);
}

/* The usual configuration: the PIN in a 0600 pin-file. */
void
d_config(const char *name, const char *pin, const char *extra)
{
	char line[400];

	tl_sh("printf '%s\\n' > %s/%s.pin && chmod 600 %s/%s.pin", pin,
	    tl_dir, name, tl_dir, name);
	snprintf(line, sizeof(line), "pin-file = %s/%s.pin", tl_dir, name);
	d_config_pin(name, line, extra);
}

int
d_log_has(const char *what)
{
	char *s = tl_read("cat %s 2>/dev/null", d_log);
	int found = strstr(s, what) != NULL;

	free(s);
	return found;
}

void
d_wait_log(const char *what, int ms)
{
	long end = tl_now_ms() + ms;

	while (!d_log_has(what)) {
		if (tl_now_ms() > end) {
			char *s = tl_read("tail -c 3000 %s", d_log);

			ck_abort_msg("no \"%s\" in the daemon's log:\n%s",
			    what, s);
		}
		usleep(20000);
	}
}

/*
 * CARDLIC_TEST_WRAPPER="valgrind --error-exitcode=99 ..." (make
 * check-valgrind) runs the daemon behind that command: the shell splits the
 * wrapper's words, "$@" keeps argv's.  Returns only if there is none.
 */
static void
d_exec_wrapped(char *const argv[])
{
	const char *wrap = getenv("CARDLIC_TEST_WRAPPER");
	char cmd[1024], *w[64] = { "/bin/sh", "-c", cmd, "sh" };
	int i;

	if (wrap == NULL || *wrap == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "exec %s \"$@\"", wrap);
	for (i = 0; argv[i] != NULL && i + 5 < 64; i++)
		w[i + 4] = argv[i];
	w[i + 4] = NULL;
	execv(w[0], w);
}

/*
 * Run argv (a cardlicd command line, maybe behind a wrapper) with extra
 * environment (NAME=value, NULL-terminated) and stderr to d_log; record
 * its PID so a suite's teardown can stop it; wait until it reaches pcscd
 * unless told not to.
 */
void
d_spawn(char *const argv[], char *const env[], int wait)
{
	FILE *pf;
	int i;

	/*
	 * Emptied here, not only by the child: a wait for a line of the
	 * log must never find the last daemon's (a restart under load).
	 */
	if (truncate(d_log, 0) != 0 && errno != ENOENT)
		ck_abort_msg("%s: %s", d_log, strerror(errno));
	d_pid = fork();
	ck_assert_int_ge(d_pid, 0);
	if (d_pid == 0) {
		if (freopen(d_log, "w", stderr) == NULL)
			_exit(127);
		for (i = 0; env != NULL && env[i] != NULL; i++)
			putenv(env[i]);
		d_exec_wrapped(argv);
		execvp(argv[0], argv);
		_exit(127);
	}
	pf = fopen(d_pids_path(), "a");
	if (pf != NULL) {
		fprintf(pf, "%d\n", (int)d_pid);
		fclose(pf);
	}
	if (wait)
		d_wait_log("connected to pcscd", 5000);
}

/* cardlicd -f d_conf (as root in the tests: --allow-root). */
void
d_start_env(char *const env[], int wait)
{
	char *argv[] = { CARDLICD, "--allow-root", "-f", d_conf, NULL };

	d_spawn(argv, env, wait);
}

void
d_start(void)
{
	d_start_env(NULL, 1);
}

/* A suite's line, with no daemon PIDs left from an earlier run. */
void
d_suite_up(int readers)
{
	tl_up(readers);
	unlink(d_pids_path());
}

/* The end of a suite: its daemons, then its line. */
void
d_suite_down(void)
{
	d_kill_leftovers();
	tl_down();
}

/* Any daemon a failed test left behind is stopped, by its PID. */
void
d_kill_leftovers(void)
{
	FILE *f = fopen(d_pids_path(), "r");
	int pid;

	while (f != NULL && fscanf(f, "%d", &pid) == 1)
		if (kill(pid, 0) == 0)
			kill(pid, SIGKILL);
	if (f != NULL)
		fclose(f);
	unlink(d_pids_path());
}

void
d_stop(void)
{
	int st;

	kill(d_pid, SIGTERM);
	ck_assert_int_eq(waitpid(d_pid, &st, 0), d_pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "cardlicd ended badly: %d", st);
}

char *
q(const char *sql)
{
	char *s = tl_read("sqlite3 %s \"%s\" 2>&1", d_db, sql);

	size_t n = strlen(s);

	if (n > 0 && s[n - 1] == '\n')
		s[n - 1] = '\0';
	return s;
}

long
qn(const char *sql)
{
	char *s = q(sql);
	long n = strtol(s, NULL, 10);

	free(s);
	return n;
}

/* Wait until the query answers n (rows are written by the daemon). */
void
wait_n(const char *sql, long n, int ms)
{
	long end = tl_now_ms() + ms, v;

	while ((v = qn(sql)) != n) {
		if (tl_now_ms() > end) {
			/* Check carries at most a few KiB of message. */
			char *s = tl_read("tail -c 1500 %s; sqlite3 %s 'SELECT "
			    "seq, state, reason FROM audit' | tail -c 1500",
			    d_log, d_db);

			ck_abort_msg("%s gave %ld, not %ld\n%s", sql, v, n, s);
		}
		usleep(20000);
	}
}

char *
card_state(const char *card, const char *key)
{
	char *s = tl_read("sed -n 's/^%s=//p' %s/cards/%s.state", key,
	    tl_dir, card);

	s[strcspn(s, "\n")] = '\0';
	return s;
}

void
feed(const char *prefix, const char *readers, int count, const char *more)
{
	/* A slow daemon (CARDLIC_TEST_SLOW) gets its cards for longer. */
	const char *slow = getenv("CARDLIC_TEST_SLOW");
	long n = slow != NULL && atol(slow) > 1 ? atol(slow) : 1;

	tl_sh(TOPDIR "/sim/line feed --dir %s --readers %s --count %d "
	    "--prefix %s --idle %ld --timeout %ld --results %s/%s.tsv %s "
	    ">/dev/null", tl_dir, readers, count, prefix, 600 * n, 10 * n,
	    tl_dir, prefix, more != NULL ? more : "");
}

/* Wait until a card's event log has a line with what in it. */
void
wait_event(const char *card, const char *what, int ms)
{
	long end = tl_now_ms() + ms;

	while (tl_sh_rc("grep -q -e '%s' %s/cards/%s.events 2>/dev/null",
	    what, tl_dir, card) != 0) {
		if (tl_now_ms() > end)
			ck_abort_msg("no \"%s\" in %s's events", what, card);
		usleep(20000);
	}
}

/* A number from a simulated card's state file (credits, issued, tries). */
long
card_num(const char *card, const char *key)
{
	char *s = card_state(card, key);
	long n = strtol(s, NULL, 10);

	free(s);
	return n;
}

void
d_kill9(void)
{
	int st;

	kill(d_pid, SIGKILL);
	ck_assert_int_eq(waitpid(d_pid, &st, 0), d_pid);
}

/* reconcile's exit status, and its output in *out. */
int
reconcile(char **out)
{
	char *s = tl_reconcile(d_db);
	int rc = strstr(s, "exit 0") != NULL ? 0 : 1;

	*out = s;
	return rc;
}

/* The daemon for the fault points, with CARDLICD_FAULT set. */
void
d_start_fault(const char *spec)
{
	char env[200];
	char *envv[] = { env, NULL };
	char *argv[] = { FAULTD, "--allow-root", "-f", d_conf, NULL };

	snprintf(env, sizeof(env), "CARDLICD_FAULT=%s", spec);
	d_spawn(argv, envv, 1);
}

/* The daemon stopped itself at a fault point: wait until it has. */
void
d_wait_stopped(const char *step)
{
	char what[100];
	long end = tl_now_ms() + 10000;

	snprintf(what, sizeof(what), "fault point %s reached", step);
	d_wait_log(what, 10000);
	while (tl_sh_rc("grep -q '^State:.*T' /proc/%d/status", (int)d_pid) !=
	    0) {
		ck_assert_msg(tl_now_ms() < end, "cardlicd did not stop");
		usleep(10000);
	}
}
