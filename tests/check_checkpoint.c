/*
 * Signed checkpoints (issue 11), with cardlicd on the simulated line: the
 * lines it writes at the interval and at shutdown, their chain across
 * restarts, and cardlicctl verify --checkpoints against the attacks that
 * plain verify misses: rows cut off the end, a checkpoint dropped from
 * the middle or the tail of a file, a forged checkpoint.
 */
#include <sys/stat.h>

#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

#define CTL	TOPDIR "/ctl/cardlicctl"

static char	cp_dir[300];	/* outside the database's directory */
static char	cp_file[400];	/* the daemon's checkpoint-file */
static char	key[400], pub[400];
static char	db[300];	/* the station's database, after the runs */
static char	kopt[500];	/* verify's option that gives the public key */

/* CP_SHOW=1: every output checked, to read the messages. */
static void
expect(const char *out, const char *what)
{
	if (getenv("CP_SHOW") != NULL)
		printf("--- want \"%s\" in:\n%s", what, out);
	ck_assert_msg(strstr(out, what) != NULL, "no \"%s\" in:\n%s", what,
	    out);
}

/* The configuration: the key, the file, and the interval given. */
static void
config(const char *interval)
{
	char extra[1400];

	snprintf(extra, sizeof(extra), "[audit]\nkey-file = %s\n"
	    "checkpoint-interval = %s\ncheckpoint-file = %s\n", key, interval,
	    cp_file);
	d_config("cp", "1234", extra);
}

/* Line k (1-based) of a file, without its newline; "" past the end. */
static char *
line_of(const char *file, int k)
{
	char *s = tl_read("sed -n '%dp' %s", k, file);

	s[strcspn(s, "\n")] = '\0';
	return s;
}

static long
lines_in(const char *file)
{
	char *s = tl_read("grep -c . %s", file);
	long n = atol(s);

	free(s);
	return n;
}

/* A field's value in a checkpoint line ("seq", "head", ...). */
static char *
field(const char *line, const char *name)
{
	char pat[32], *s;
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", name);
	p = strstr(line, pat);
	ck_assert_msg(p != NULL, "no %s= in %s", name, line);
	p += strlen(pat);
	s = strndup(p, strcspn(p, " "));
	return s;
}

/*
 * Three runs of the daemon: the first with the 10 s timer, the others
 * with checkpoints at shutdown only.  V1, then V2, then V3 are verified,
 * one per run, from batch card 0.
 */
static void
build(void)
{
	long end, seq;
	char sql[120], *s;

	d_suite_up(2);
	snprintf(cp_dir, sizeof(cp_dir), "%s.cp", tl_dir);
	snprintf(cp_file, sizeof(cp_file), "%s/checkpoints", cp_dir);
	snprintf(key, sizeof(key), "%s/station.key", tl_dir);
	snprintf(pub, sizeof(pub), "%s/station.pub", tl_dir);
	tl_sh("mkdir -p %s && rm -f %s", cp_dir, cp_file);
	tl_sh("openssl genpkey -algorithm ed25519 -out %s 2>/dev/null && "
	    "chmod 600 %s && openssl pkey -in %s -pubout -out %s", key, key,
	    key, pub);
	snprintf(kopt, sizeof(kopt), " --key %s", pub);
	config("10");
	snprintf(db, sizeof(db), "%s", d_db);
	tl_insert(0, "cp-batch", "--type batch --credits 10");
	d_start();
	d_wait_log("checkpoints: no earlier checkpoint of station test found "
	    "in", 3000);
	d_wait_log("a new series starts at 1", 100);
	tl_insert(1, "V1", "--type target --serial V1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	/* The timer's checkpoint names the newest row. */
	seq = qn("SELECT max(seq) FROM audit");
	snprintf(sql, sizeof(sql), " seq=%ld ", seq);
	end = tl_now_ms() + 30000;
	for (;;) {
		s = tl_read("cat %s 2>/dev/null", cp_file);
		if (strstr(s, sql) != NULL)
			break;
		ck_assert_msg(tl_now_ms() < end, "no checkpoint of row %ld in "
		    "30 s:\n%s", seq, s);
		free(s);
		usleep(200000);
	}
	free(s);
	tl_remove(1);
	d_stop();
	config("0");
	d_start();
	tl_insert(1, "V2", "--type target --serial V2");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 2, 5000);
	tl_remove(1);
	d_stop();
	d_start();
	tl_insert(1, "V3", "--type target --serial V3");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 3, 5000);
	tl_remove(1);
	/* A reload does not seem to take a new interval: it says so. */
	config("60");
	kill(d_pid, SIGHUP);
	d_wait_log("[audit] checkpoint-interval and checkpoint-file take "
	    "effect at the next restart; until then, checkpoints go on at "
	    "shutdown only to ", 5000);
	d_stop();
}

static void
teardown_all(void)
{
	/* A sandbox that a failed test left running. */
	tl_sh_rc("[ ! -f %s/sandbox/pid1 ] || %s stop %s/sandbox >/dev/null "
	    "2>&1", tl_dir, TOPDIR "/../shared/tools/systemd-sandbox", tl_dir);
	tl_sh_rc("[ ! -f %s/sandbox-series/pid1 ] || %s stop "
	    "%s/sandbox-series >/dev/null 2>&1", tl_dir,
	    TOPDIR "/../shared/tools/systemd-sandbox", tl_dir);
	d_suite_down();
	if (cp_dir[0] != '\0')
		tl_sh("rm -rf %s", cp_dir);
}

/* cardlicctl verify on database d: its output, then "exit N". */
static char *
ctl(const char *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *
ctl(const char *d, const char *fmt, ...)
{
	char args[2000];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	return tl_read(CTL " -d %s verify %s 2>&1; echo \"exit $?\"", d, args);
}

START_TEST(written_and_chained)
{
	char *l, *prev, *s, *want, sql[160], *hash;
	long n = lines_in(cp_file), i, seq;

	/* Timer (at least one), shutdown, shutdown, shutdown. */
	ck_assert_int_ge(n, 4);
	for (i = 1; i <= n; i++) {
		l = line_of(cp_file, (int)i);
		ck_assert_msg(strncmp(l, "cardlicd-checkpoint v1 n=", 25) == 0,
		    "line %ld: %s", i, l);
		/* n goes on across the restarts: read back from the file. */
		s = field(l, "n");
		ck_assert_int_eq(atol(s), i);
		free(s);
		expect(l, " station=test ");
		/* The head is the hash of the row it names. */
		s = field(l, "seq");
		seq = atol(s);
		free(s);
		snprintf(sql, sizeof(sql), "SELECT lower(hex(hash)) FROM audit "
		    "WHERE seq = %ld", seq);
		hash = q(sql);
		s = field(l, "head");
		ck_assert_str_eq(s, hash);
		free(s);
		free(hash);
		/* prev: the SHA-256 of the line before, zeros for the first. */
		s = field(l, "prev");
		if (i == 1)
			ck_assert_str_eq(s, "0000000000000000000000000000000"
			    "000000000000000000000000000000000");
		else {
			prev = tl_read("sed -n '%ldp' %s | tr -d '\\n' | "
			    "sha256sum | cut -c1-64", i - 1, cp_file);
			prev[strcspn(prev, "\n")] = '\0';
			ck_assert_str_eq(s, prev);
			free(prev);
		}
		free(s);
		free(l);
	}
	/* The last (at the last shutdown) names the last row. */
	l = line_of(cp_file, (int)n);
	s = field(l, "seq");
	ck_assert_int_eq(atol(s), qn("SELECT max(seq) FROM audit"));
	free(s);
	/* Batch card 0 generated three licenses by then. */
	s = field(l, "batch");
	want = tl_read("sqlite3 %s \"SELECT batch_atr FROM audit WHERE state ="
	    " 'generated' LIMIT 1\"", db);
	want[strcspn(want, "\n")] = '\0';
	expect(s, "|3");
	expect(s, want);
	expect(s, "Sim%20Line%20A%2000%2000|");
	free(want);
	free(s);
	free(l);
	/* The journal entry (stderr in the foreground) is the same line. */
	l = line_of(cp_file, 1);
	s = tl_read("cat %s", d_log);
	ck_assert_msg(strstr(s, "cardlicd: checkpoint: ") != NULL, "%s", s);
	free(s);
	free(l);
	s = tl_read("grep -c 'checkpoints: continuing the series after "
	    "checkpoint' %s", d_log);
	ck_assert_str_eq(s, "1\n");
	free(s);
	/* The line it went on from was checked under its key: good. */
	ck_assert(!d_log_has("is not signed by this key"));
	/* All of it verifies, under the key given. */
	s = ctl(db, "%s --checkpoints %s", kopt, cp_file);
	expect(s, "every one holds");
	expect(s, "0 rows were written after it");
	expect(s, "exit 0");
	free(s);
	/* --station keeps one station's: here, none. */
	s = ctl(db, "%s --checkpoints %s --station other", kopt, cp_file);
	expect(s, "checkpoints: BROKEN: no checkpoint of that station to "
	    "check the database against");
	expect(s, "exit 1");
	free(s);
}
END_TEST

/*
 * A copy of the database with rows cut off (the triggers dropped for it,
 * then put back from t.trg).
 */
static char *
truncated(long keep)
{
	static char t[400];

	snprintf(t, sizeof(t), "%s/cut-%ld.db", tl_dir, keep);
	/* The triggers are put back: a schema not cardlicd's is refused. */
	tl_sh("rm -f %s && sqlite3 %s \".backup %s\" && sqlite3 %s \"SELECT "
	    "sql || ';' FROM sqlite_master WHERE type = 'trigger'\" > %s.trg "
	    "&& sqlite3 %s \"SELECT 'DROP TRIGGER ' || name || ';' FROM "
	    "sqlite_master WHERE type = 'trigger'\" | sqlite3 %s && sqlite3 %s "
	    "'DELETE FROM audit WHERE seq > %ld' && sqlite3 %s < %s.trg", t, db,
	    t, t, t, t, t, t, keep, t, t);
	return t;
}

START_TEST(truncation_detected)
{
	long last = qn("SELECT max(seq) FROM audit");
	long n = lines_in(cp_file);
	char *t = truncated(last - 3), *s, want[2000];

	/* Plain verify passes: the attack the checkpoints are for. */
	s = ctl(t, "%s", kopt);
	expect(s, "chain intact");
	expect(s, "exit 0");
	free(s);
	s = ctl(t, "--checkpoints %s", cp_file);
	snprintf(want, sizeof(want), "%s:%ld: checkpoint n=%ld names row %ld "
	    "of station test", cp_file, n, n, last);
	expect(s, want);
	snprintf(want, sizeof(want), "but the station's rows end at row %ld: "
	    "rows %ld..%ld were cut off (truncated)", last - 3, last - 2,
	    last);
	expect(s, want);
	snprintf(want, sizeof(want), "row %ld; the database ends before it, "
	    "at row %ld", last, last - 3);
	expect(s, want);
	expect(s, "BROKEN");
	expect(s, "exit 1");
	free(s);
}
END_TEST

/* The row a checkpoint names, re-written with another hash. */
START_TEST(altered_head_detected)
{
	long last = qn("SELECT max(seq) FROM audit");
	long n = lines_in(cp_file);
	char *t = truncated(last), *s, want[2000];

	tl_sh("sqlite3 %s \"SELECT 'DROP TRIGGER ' || name || ';' FROM "
	    "sqlite_master WHERE type = 'trigger'\" | sqlite3 %s && sqlite3 %s "
	    "\"UPDATE audit SET hash = zeroblob(32) WHERE seq = %ld\" && "
	    "sqlite3 %s < %s.trg", t, t, t, last, t, t);
	s = ctl(t, "%s --checkpoints %s", kopt, cp_file);
	snprintf(want, sizeof(want), "checkpoints: BROKEN: %s:%ld: checkpoint "
	    "n=%ld: row %ld of station test does not have the head it names",
	    cp_file, n, n, last);
	expect(s, want);
	expect(s, "exit 1");
	free(s);
}
END_TEST

START_TEST(dropped_middle_detected)
{
	char f[400], *s, want[2000];
	long n = lines_in(cp_file);

	ck_assert_int_ge(n, 3);
	snprintf(f, sizeof(f), "%s/cp-middle", tl_dir);
	/* Line 2 (checkpoint n=2) removed. */
	tl_sh("sed '2d' %s > %s", cp_file, f);
	s = ctl(db, "%s --checkpoints %s", kopt, f);
	snprintf(want, sizeof(want), "%s:2: checkpoint n=3 follows n=1 "
	    "(%s:1): the checkpoints between them were dropped", f, f);
	expect(s, want);
	expect(s, "exit 1");
	free(s);
	/* The rows are intact: only the checkpoints' chain is broken. */
	s = ctl(db, "%s --checkpoints %s", kopt, cp_file);
	expect(s, "exit 0");
	free(s);
}
END_TEST

/*
 * From the adversary: the first line copied to the end read as "a new
 * series starts", exit 0.  The daemon never writes a line twice.
 */
START_TEST(copied_first_line_detected)
{
	char f[400], *s, want[2000];
	long n = lines_in(cp_file);

	snprintf(f, sizeof(f), "%s/cp-copied", tl_dir);
	tl_sh("cat %s > %s && head -n 1 %s >> %s", cp_file, f, cp_file, f);
	s = ctl(db, "%s --checkpoints %s", kopt, f);
	snprintf(want, sizeof(want), "%s:%ld: checkpoint n=1 repeats %s:1 "
	    "word for word", f, n + 1, f);
	expect(s, want);
	expect(s, "exit 1");
	free(s);
}
END_TEST

#define SANDBOX	TOPDIR "/../shared/tools/systemd-sandbox"

/*
 * The journal as a source.  The line's daemon logs to a file, not to
 * journald, and this machine's PID 1 is not systemd: in a sandbox with a
 * real systemd and journald (sandbox dir sb), the lines of file are sent
 * as the daemon sends them (MESSAGE_ID and CARDLICD_CHECKPOINT), and
 * verify then reads them back with sd_journal.  0 when the journal holds
 * them; -1, and it says that this part is skipped, where the sandbox
 * cannot run.  The checkout is bound in too: the sandbox's /tmp is its
 * own, and a clone under /tmp (as CI may make) must still find its
 * cardlicctl there.
 */
static int
journal_up(const char *sb, const char *file)
{
	long end, n = lines_in(file);
	char *s;

	if (geteuid() != 0 || access(SANDBOX, X_OK) != 0 ||
	    tl_sh_rc("mkdir -p %s && " SANDBOX " start %s %s %s %s >%s.log "
	    "2>&1", sb, sb, tl_dir, cp_dir, TOPDIR, sb) != 0) {
		printf("check_checkpoint: the journal part is SKIPPED: no "
		    "systemd sandbox here (root and %s needed); the same "
		    "comparison ran with files\n", SANDBOX);
		return -1;
	}
	tl_sh(SANDBOX " run %s sh -c 'while IFS= read -r l; do printf "
	    "\"MESSAGE=checkpoint: %%s\\nMESSAGE_ID=c08c406bc46841f4824041f32"
	    "851faaa\\nCARDLICD_CHECKPOINT=%%s\\n\" \"$l\" \"$l\" | "
	    "logger --journald; done < %s'", sb, file);
	/* journald writes asynchronously: wait until it has them all. */
	end = tl_now_ms() + 10000;
	for (;;) {
		s = tl_read(SANDBOX " run %s journalctl -q -o cat MESSAGE_ID="
		    "c08c406bc46841f4824041f32851faaa | grep -c .", sb);
		if (atol(s) == n || tl_now_ms() > end)
			break;
		free(s);
		usleep(100000);
	}
	ck_assert_msg(atol(s) == n, "journald has %s of %ld", s, n);
	free(s);
	return 0;
}

/* cardlicctl verify in the sandbox: its output, then "exit N". */
static char *
journal_verify(const char *sb, const char *args)
{
	return tl_read(SANDBOX " run %s " CTL " -d %s verify%s %s 2>&1; echo "
	    "\"exit $?\"", sb, db, kopt, args);
}

/* The journal alone, and against the file whose tail was dropped. */
static void
journal_part(const char *cut, long n)
{
	char sb[400], want[4000], *s;

	snprintf(sb, sizeof(sb), "%s/sandbox", tl_dir);
	if (journal_up(sb, cp_file) != 0)
		return;
	s = journal_verify(sb, "--checkpoints journal");
	if (getenv("CP_SHOW") != NULL)
		printf("%s", s);
	snprintf(want, sizeof(want), "the last checkpoint is n=%ld (journal "
	    "entry %ld), row", n, n);
	expect(s, want);
	expect(s, "every one holds");
	expect(s, "exit 0");
	free(s);
	snprintf(want, sizeof(want), "--checkpoints journal --checkpoints %s",
	    cut);
	s = journal_verify(sb, want);
	snprintf(want, sizeof(want), "%s and journal disagree: %s ends at "
	    "checkpoint n=%ld (%s:%ld), journal goes on to n=%ld: checkpoints "
	    "were dropped from %s", cut, cut, n - 1, cut, n - 1, n, cut);
	expect(s, want);
	expect(s, "exit 1");
	free(s);
	tl_sh(SANDBOX " stop %s >/dev/null 2>&1", sb);
}

START_TEST(dropped_tail_two_sources)
{
	char f[400], *s, want[4000];
	long n = lines_in(cp_file);

	/* The file's last checkpoint dropped; another copy still has it. */
	snprintf(f, sizeof(f), "%s/cp-tail", tl_dir);
	tl_sh("head -n %ld %s > %s", n - 1, cp_file, f);
	/* Alone, a file whose tail was cut holds together. */
	s = ctl(db, "%s --checkpoints %s", kopt, f);
	expect(s, "exit 0");
	free(s);
	s = ctl(db, "%s --checkpoints %s --checkpoints %s", kopt,
	    f, cp_file);
	snprintf(want, sizeof(want), "%s and %s disagree: %s ends at "
	    "checkpoint n=%ld (%s:%ld), %s goes on to n=%ld: checkpoints were "
	    "dropped from %s", f, cp_file, f, n - 1, f, n - 1, cp_file, n, f);
	expect(s, want);
	expect(s, "exit 1");
	free(s);
	journal_part(f, n);
}
END_TEST

START_TEST(forged_detected)
{
	char f[400], other[400], *s, want[2000], *l, *body;
	long n = lines_in(cp_file);

	/* A row number changed in the last line: its signature fails. */
	snprintf(f, sizeof(f), "%s/cp-edit", tl_dir);
	tl_sh("sed '%lds/ seq=\\([0-9]*\\) / seq=1 /' %s > %s", n, cp_file, f);
	s = ctl(db, "%s --checkpoints %s", kopt, f);
	snprintf(want, sizeof(want), "%s:%ld: checkpoint n=%ld: bad "
	    "signature: the station's key did not sign this line (forged or "
	    "altered)", f, n, n);
	expect(s, want);
	expect(s, "exit 1");
	free(s);
	/* A whole line signed with another key, chained correctly. */
	snprintf(other, sizeof(other), "%s/other.key", tl_dir);
	tl_sh("openssl genpkey -algorithm ed25519 -out %s 2>/dev/null",
	    other);
	l = line_of(cp_file, (int)n);
	body = strndup(l, (size_t)(strstr(l, " sig=") - l));
	snprintf(f, sizeof(f), "%s/cp-forged", tl_dir);
	tl_sh("cp %s %s && prev=$(tail -n 1 %s | tr -d '\\n' | sha256sum | "
	    "cut -c1-64) && body=$(printf '%%s' '%s' | sed \"s/ n=%ld / n=%ld "
	    "/; s/ prev=[0-9a-f]* / prev=$prev /\") && { printf "
	    "'cardlicd-checkpoint-v1\\0'; printf '%%s' \"$body\"; } > "
	    "%s/msg && openssl pkeyutl -sign -rawin -inkey %s -in %s/msg | "
	    "od -An -tx1 -v | tr -d ' \\n' > %s/sig && printf '%%s sig=%%s\\n' "
	    "\"$body\" \"$(cat %s/sig)\" >> %s", cp_file, f, cp_file, body, n,
	    n + 1, tl_dir, other, tl_dir, tl_dir, tl_dir, f);
	s = ctl(db, "%s --checkpoints %s", kopt, f);
	snprintf(want, sizeof(want), "%s:%ld: checkpoint n=%ld: bad "
	    "signature", f, n + 1, n + 1);
	expect(s, want);
	/* A forged checkpoint is no anchor: the last good one is. */
	snprintf(want, sizeof(want), "the last checkpoint is n=%ld (%s:%ld)",
	    n, f, n);
	expect(s, want);
	expect(s, "exit 1");
	free(s);
	free(body);
	free(l);
}
END_TEST

/*
 * From the independent test round: under the unit as installed, the
 * service user could not read the journal, so each start began a new
 * series at n=1, and each stop wrote n=1 again; verify reported "a new
 * series starts" for each, and exited 0.  A series that starts again
 * hides whatever was dropped before it.  Here the file goes on with a new
 * series, n=1 with a prev of zeros, signed with the station's key (the
 * head and the rows are right): only the station's first checkpoint may
 * start one.  Then the same lines from the journal.
 */
START_TEST(new_series_detected)
{
	char f[400], sb[400], *s, want[2000], *l, *body;
	long n = lines_in(cp_file);

	l = line_of(cp_file, (int)n);
	body = strndup(l, (size_t)(strstr(l, " sig=") - l));
	snprintf(f, sizeof(f), "%s/cp-series", tl_dir);
	tl_sh("cp %s %s && body=$(printf '%%s' '%s' | sed \"s/ n=%ld / n=1 /; "
	    "s/ prev=[0-9a-f]* / prev=%064d /; s/ utc=[^ ]*/ "
	    "utc=2099-01-01T00:00:00Z/\") && { printf "
	    "'cardlicd-checkpoint-v1\\0'; printf '%%s' \"$body\"; } > %s/msg "
	    "&& openssl pkeyutl -sign -rawin -inkey %s -in %s/msg | od -An "
	    "-tx1 -v | tr -d ' \\n' > %s/sig && printf '%%s sig=%%s\\n' "
	    "\"$body\" \"$(cat %s/sig)\" >> %s", cp_file, f, body, n, 0,
	    tl_dir, key, tl_dir, tl_dir, tl_dir, f);
	s = ctl(db, "%s --checkpoints %s", kopt, f);
	snprintf(want, sizeof(want), "checkpoints: BROKEN: %s:%ld: checkpoint "
	    "n=1 starts a new series after n=%ld (%s:%ld): only the "
	    "station's first checkpoint may", f, n + 1, n, f, n);
	expect(s, want);
	/* Its signature is good: it is the series, not the line. */
	ck_assert_msg(strstr(s, "bad signature") == NULL, "%s", s);
	expect(s, "exit 1");
	free(s);
	/* The first line of a file is the first of its series: fine. */
	tl_sh("tail -n 1 %s > %s.alone", f, f);
	s = ctl(db, "%s --checkpoints %s.alone", kopt, f);
	expect(s, "every one holds");
	expect(s, "exit 0");
	free(s);
	snprintf(sb, sizeof(sb), "%s/sandbox-series", tl_dir);
	if (journal_up(sb, f) == 0) {
		s = journal_verify(sb, "--checkpoints journal");
		snprintf(want, sizeof(want), "checkpoints: BROKEN: journal "
		    "entry %ld: checkpoint n=1 starts a new series after "
		    "n=%ld (journal entry %ld)", n + 1, n, n);
		expect(s, want);
		expect(s, "exit 1");
		free(s);
		tl_sh(SANDBOX " stop %s >/dev/null 2>&1", sb);
	}
	free(body);
	free(l);
}
END_TEST

/* A checkpoint-file in the database's directory is refused, with its line. */
START_TEST(file_beside_database_refused)
{
	char conf[400], *s;

	snprintf(conf, sizeof(conf), "%s/beside.conf", tl_dir);
	tl_sh("sed 's|^checkpoint-file = .*|checkpoint-file = %s/cp.txt|' %s "
	    "> %s", tl_dir, d_conf, conf);
	s = tl_read(CARDLICD " -n -f %s 2>&1; echo \"exit $?\"", conf);
	expect(s, "checkpoint-file");
	expect(s, "is in the database's directory");
	expect(s, conf);
	expect(s, "exit 2");
	free(s);
	tl_sh("sed 's|^checkpoint-interval = .*|checkpoint-interval = 5|' %s "
	    "> %s", d_conf, conf);
	s = tl_read(CARDLICD " -n -f %s 2>&1; echo \"exit $?\"", conf);
	expect(s, "checkpoint-interval: \"5\" is not 0 (at shutdown only) nor "
	    "in 10..86400");
	expect(s, "exit 2");
	free(s);
}
END_TEST

static Suite *
checkpoint_suite(void)
{
	Suite *s = suite_create("checkpoint");
	TCase *tc = tcase_create("checkpoint");

	tcase_add_unchecked_fixture(tc, build, teardown_all);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, written_and_chained);
	tcase_add_test(tc, truncation_detected);
	tcase_add_test(tc, altered_head_detected);
	tcase_add_test(tc, dropped_middle_detected);
	tcase_add_test(tc, copied_first_line_detected);
	tcase_add_test(tc, dropped_tail_two_sources);
	tcase_add_test(tc, forged_detected);
	tcase_add_test(tc, new_series_detected);
	tcase_add_test(tc, file_beside_database_refused);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(checkpoint_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
