/*
 * The fault matrix (issue 8, item 8): every step of a job, times every
 * fault, end to end on the simulated line.  tests/README.md explains the
 * table and how each cell is reached.
 *
 * Each cell is its own test case with its own line (pcscd, readers),
 * daemon, database and cards, so that a failing cell cannot cascade.  A
 * cell:
 *   1. inserts a batch card (reader 0) and a target card (reader 1);
 *   2. reaches its step: with vcard options where a card can (a vanish,
 *      garbage or slow answer at APDU N), by waiting on a slow card whose
 *      events show the step's APDU was taken, or else with the daemon's
 *      CARDLICD_FAULT stop point (the test build daemon/cardlicd-faults);
 *   3. injects its fault, lets the daemon go on, and waits until it is
 *      idle;
 *   4. checks the batch card's own count of credits spent against the
 *      rows: generated <= spent <= generated + unresolved in-doubt (and
 *      exactly where the daemon can know), and that no card got two
 *      credits;
 *   5. resolves any in-doubt row with cardlicctl resolve, as an admin
 *      who reads the batch card's counter would; puts the target card
 *      back (it must end verified) and a fresh card (verified too);
 *      then reconcile and verify must both exit 0.
 *
 * A cell that needs a stop point the daemon does not have yet (no
 * CARDLICD_FAULT in the binary) is "not reached yet": reported in the
 * table, never faked.  The table goes to stdout and build/faults-table.md.
 * FAULT_ROWS=step,step runs only those rows (make check-faults-ci).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

#define CARDLICD_FAULTS	TOPDIR "/daemon/cardlicd-faults"
#define CTL		TOPDIR "/ctl/cardlicctl"
#define CELLS_DIR	TOPDIR "/build/faults-cells"
#define TABLE		TOPDIR "/build/faults-table.md"

/* A slow card's pause per answer, long enough to inject a fault in. */
#define SLOW_WAIT_MS	1000
/* The "slow card" fault itself: slow, but a job must still end well. */
#define SLOW_FAULT_MS	600
/* Past cardlicd's busy timeout (5 s) times its old retries (3). */
#define LOCK_HOLD_MS	16000
#define DISK_HOLD_MS	4000

enum how { NA, VCARD, WAIT, HOOK };

struct step {
	const char	*name;
	const char	*label;
	int		 tapdu;	/* the target card's APDU (0-based), or -1 */
	int		 bapdu;	/* the batch card's APDU, or -1 */
	const char	*hook;	/* CARDLICD_FAULT step[@N], or NULL */
	/*
	 * Can the daemon know exactly whether a credit was spent, whatever
	 * the fault?  Yes before any GENERATE is in flight.
	 */
	int		 exact;
};

/*
 * The APDUs, as the daemon sends them today (seen in pcscd's APDU log).
 * Target card: 0 batch probe (SELECT of the batch AID), 1 SELECT (the
 * middleware connects), 2 SELECT + 3 INFO (token), 4 + 5 STATUS, 6 + 7
 * VERIFY (login), 8 + 9 store (load), 10 + 11 STATUS (read-back), 12 + 13
 * logout.  Batch card (--chunk 64): 0 probe at insertion, then for the
 * job 1 SELECT, 2 GENERATE, 3 4 5 GET RESPONSE (64 + 64 + 8 bytes).
 */
static const struct step steps[] = {
	{ "probe", "probe", 0, -1, "probe@2", 1 },
	{ "token", "token info", 3, -1, "token", 1 },
	{ "status", "status", 5, -1, "status", 1 },
	{ "login", "login", 7, -1, "login", 1 },
	{ "requested", "`requested` commit", -1, -1, "requested", 0 },
	{ "select", "batch SELECT", -1, 1, "select", 0 },
	{ "generate", "GENERATE, before the card answers", -1, 2,
	    "generate", 0 },
	{ "spent", "GENERATE, credit spent, answer pending", -1, 2, NULL, 0 },
	{ "getresp1", "GET RESPONSE piece 1", -1, 3, "getresp@1", 0 },
	{ "getresp2", "GET RESPONSE piece 2", -1, 4, "getresp@2", 0 },
	{ "getresp3", "GET RESPONSE piece 3", -1, 5, "getresp@3", 0 },
	{ "generated", "answer complete, license in memory", -1, -1,
	    "generated", 0 },
	{ "commit-generated", "`generated` commit", -1, -1,
	    "commit-generated", 0 },
	{ "load", "load", 9, -1, "load", 0 },
	{ "readback", "read-back", 11, -1, "readback", 0 },
	{ "commit-final", "`verified` commit", -1, -1, "commit-final", 0 },
};
#define NSTEPS	(sizeof(steps) / sizeof(steps[0]))

static const char *const faults[] = {
	"tpull", "bpull", "move", "garbage", "short", "long", "slow",
	"pcscd", "kill", "disk", "lock",
};
#define NFAULTS	(sizeof(faults) / sizeof(faults[0]))

static const char *const fault_labels[] = {
	"target card pulled", "batch card pulled", "card moved to another "
	"reader", "garbage (6F42)", "short answer (1 byte)", "oversized "
	"answer (40 bytes)", "slow card", "pcscd killed", "cardlicd "
	"SIGKILLed, restarted", "disk full", "database locked",
};

struct plan {
	enum how	 how;
	const char	*why;		/* n/a: the reason */
	char		 topts[128];	/* the target card's fault options */
	char		 bopts[128];	/* the batch card's */
	char		 wait_card;	/* WAIT: 'T' or 'B' */
	int		 wait_apdu;
};

static int
step_is(const struct step *s, const char *name)
{
	return strcmp(s->name, name) == 0;
}

static int
fault_is(size_t f, const char *name)
{
	return strcmp(faults[f], name) == 0;
}

/* How the cell (step s, fault f) is reached, or why it does not exist. */
static void
cell_plan(const struct step *s, size_t f, struct plan *p)
{
	int hookless = s->hook == NULL;

	memset(p, 0, sizeof(*p));
	p->how = HOOK;
	if (fault_is(f, "tpull") || fault_is(f, "move")) {
		if (s->tapdu >= 0) {
			p->how = VCARD;
			snprintf(p->topts, sizeof(p->topts),
			    "--vanish-after %d", s->tapdu);
		} else if (hookless) {
			p->how = WAIT;
		}
	} else if (fault_is(f, "bpull")) {
		if (s->tapdu >= 0 && s->tapdu < 9) {
			p->how = NA;
			p->why = "the batch card has no part in the job yet: "
			    "pulled then, it is simply absent (the "
			    "no-batch-card case)";
		} else if (s->tapdu >= 9 || step_is(s, "commit-final")) {
			p->how = NA;
			p->why = "the batch card's part is over";
		} else if (s->bapdu >= 0 && !hookless) {
			p->how = VCARD;
			snprintf(p->bopts, sizeof(p->bopts),
			    "--vanish-after %d", s->bapdu);
		} else if (hookless) {
			p->how = WAIT;
		}
	} else if (fault_is(f, "garbage") || fault_is(f, "short") ||
	    fault_is(f, "long") || fault_is(f, "slow")) {
		char opts[64];

		if (fault_is(f, "slow"))
			snprintf(opts, sizeof(opts), "--slow %d --slow-from",
			    SLOW_FAULT_MS);
		else
			snprintf(opts, sizeof(opts), "--garbage %s "
			    "--garbage-from", fault_is(f, "garbage") ? "sw" :
			    faults[f]);
		if (step_is(s, "generate")) {
			p->how = NA;
			p->why = "the card answers GENERATE only after it "
			    "spent the credit: see the next row";
		} else if (s->tapdu >= 0) {
			p->how = VCARD;
			snprintf(p->topts, sizeof(p->topts), "%s %d", opts,
			    s->tapdu);
		} else if (s->bapdu >= 0) {
			p->how = VCARD;
			snprintf(p->bopts, sizeof(p->bopts), "%s %d", opts,
			    s->bapdu);
		} else {
			p->how = NA;
			p->why = "no card answers at this step";
		}
	} else if ((s->tapdu > 0 || hookless)) {
		/* pcscd, kill, disk, lock: while the step's answer waits. */
		p->how = WAIT;
	}
	if (p->how == WAIT) {
		p->wait_card = s->tapdu >= 0 ? 'T' : 'B';
		p->wait_apdu = s->tapdu >= 0 ? s->tapdu : s->bapdu;
		snprintf(p->wait_card == 'T' ? p->topts : p->bopts,
		    sizeof(p->topts), "--slow %d --slow-from %d",
		    SLOW_WAIT_MS, p->wait_apdu);
	}
}

/* The cells of the matrix, in order; one test case each. */
struct cell {
	size_t		step;
	size_t		fault;
	struct plan	plan;
	char		name[48];
};

static struct cell	cells[NSTEPS * NFAULTS];
static size_t		ncells;

/* This cell's names and state, in the forked test. */
static const struct cell *cur;
static char	c_name[16], c_batch[32], c_target[32], c_fresh[32];
static int	c_starts;
static int	c_resolved_spent;

static void
cell_mark(const struct cell *c, const char *result)
{
	char path[400];
	FILE *f;

	mkdir(TOPDIR "/build", 0755);
	mkdir(CELLS_DIR, 0755);
	snprintf(path, sizeof(path), "%s/%s", CELLS_DIR, c->name);
	if ((f = fopen(path, "w")) != NULL) {
		fprintf(f, "%s\n", result);
		fclose(f);
	}
}

/* Does the test build know the CARDLICD_FAULT stop points yet? */
static int
hooks_landed(void)
{
	return tl_sh_rc("grep -q CARDLICD_FAULT %s", CARDLICD_FAULTS) == 0;
}

/* Start (or restart) the daemon, each time with its own log. */
static void
cell_start(const char *fault)
{
	char env[200];
	char *envv[] = { env, NULL };

	snprintf(d_log, 300, "%s/%s-%d.log", tl_dir, c_name,
	    ++c_starts);
	/* "step@N" is the Nth time at step: CARDLICD_FAULT=step:stop@N. */
	if (fault != NULL)
		snprintf(env, sizeof(env), "CARDLICD_FAULT=%.*s:stop%s",
		    (int)strcspn(fault, "@"), fault, fault + strcspn(fault,
		    "@"));
	{
		char *argv[] = { CARDLICD_FAULTS, "--allow-root", "-f",
		    d_conf, NULL };

		d_spawn(argv, fault != NULL ? envv : NULL, 1);
	}
}

/* Every log this cell's daemons wrote, for a failure's message. */
static char *
cell_logs(void)
{
	return tl_read("tail -n 40 %s/%s-*.log; sqlite3 %s 'SELECT seq, "
	    "state, trim(CAST(serial AS TEXT)), license_seq, reason FROM "
	    "audit' 2>&1", tl_dir, c_name, d_db);
}

static void
cell_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
cell_fail(const char *fmt, ...)
{
	va_list ap;
	char *msg, *s = cell_logs();

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	ck_abort_msg("%s\n%s", msg, s);
}

/* Lines of a card's events file that match a pattern. */
static long
events_count(const char *card, const char *pattern)
{
	char *s = tl_read("grep -c -e '%s' %s/cards/%s.events 2>/dev/null",
	    pattern, tl_dir, card);
	long n = strtol(s, NULL, 10);

	free(s);
	return n;
}

/* The APDUs a target card took in this insertion: its events after insert. */
static long
target_apdus(void)
{
	char *s = tl_read("sed -n '/insert/,$p' %s/cards/%s.events | "
	    "tail -n +2 | grep -vc -e remove -e final -e vanish", tl_dir,
	    c_target);
	long n = strtol(s, NULL, 10);

	free(s);
	return n;
}

static void
wait_until(int (*cond)(void), const char *what, int ms)
{
	long end = tl_now_ms() + ms;

	while (!cond()) {
		if (tl_now_ms() > end)
			cell_fail("timed out waiting for %s", what);
		usleep(20000);
	}
}

static int	w_apdu;

static int
cond_target_apdu(void)
{
	return target_apdus() >= w_apdu;
}

static int
cond_batch_generate(void)
{
	char pat[64];

	snprintf(pat, sizeof(pat), "generate .*%s ", c_target);
	return events_count(c_batch, pat) >= 1;
}

static int
cond_target_vanished(void)
{
	return events_count(c_target, "vanish") >= 1;
}

static char	w_point[100];

/* "cardlicd: fault point STEP reached", STEP maybe with its @N. */
static int
cond_fault_point(void)
{
	char line[120];

	snprintf(line, sizeof(line), "%s reached", w_point);
	if (d_log_has(line))
		return 1;
	snprintf(line, sizeof(line), "%s@", w_point);
	return d_log_has(line);
}

/*
 * The daemon is idle: no job runs, three times in a row.  A job that
 * never ends is a failure of the cell.
 */
static int
jobs_running(void)
{
	char *s = tl_read(CTL " -c %s status 2>&1", d_conf);
	char *p = strstr(s, "jobs-running: ");
	int n = p != NULL ? atoi(p + 14) : -1;

	free(s);
	return n;
}

static void
wait_idle(int ms)
{
	long end = tl_now_ms() + ms;
	int quiet = 0;

	usleep(300000);
	while (quiet < 3) {
		if (kill(d_pid, 0) != 0)
			cell_fail("the daemon died");
		quiet = jobs_running() == 0 ? quiet + 1 : 0;
		if (tl_now_ms() > end)
			cell_fail("the daemon is not idle: a job never ended");
		usleep(250000);
	}
}

/* Pull a card the hard way: it dies without an answer in flight. */
static void
hard_pull(int k)
{
	tl_sh("kill -9 $(cat %s/slots/%d.pid) 2>/dev/null; true", tl_dir, k);
	tl_remove(k);
}

static long
spent_by_batch(void)
{
	char *s = card_state(c_batch, "issued");
	long n = strtol(s, NULL, 10);

	free(s);
	return n;
}

static long
rows(const char *where)
{
	char sql[600];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit WHERE %s",
	    where);
	return qn(sql);
}

#define UNRESOLVED "state = 'in-doubt' AND seq NOT IN (SELECT license_seq " \
	"FROM audit WHERE state = 'resolved' AND license_seq IS NOT NULL)"

/*
 * The batch card's own count against the rows.  The card knows what it
 * spent; the database must account for it: each credit spent has a
 * generated row or an in-doubt one.  And the card itself says which
 * serial each credit went to: none twice, unless an admin resolved an
 * in-doubt credit as spent (its license lost, the card needed another).
 */
static void
check_credits(int exact)
{
	long spent = spent_by_batch(), gen = rows("state = 'generated'");
	/* Resolved as spent: an admin's word on a credit spent, no license. */
	long doubt = rows(UNRESOLVED) + c_resolved_spent;
	char *dup;

	if (!(gen <= spent && spent <= gen + doubt) ||
	    (exact && spent != gen + doubt))
		cell_fail("credits not accounted for: the batch card spent "
		    "%ld; rows: generated %ld, in-doubt (unresolved or spent) "
		    "%ld%s",
		    spent, gen, doubt, exact ? " (exact cell)" : "");
	dup = tl_read("sed -n 's/.* generate [^ ]* *\\([^ ]*\\) .*/\\1/p' "
	    "%s/cards/%s.events | sort | uniq -c | awk '$1 > 1 + %d'",
	    tl_dir, c_batch, c_resolved_spent);
	if (dup[0] != '\0')
		cell_fail("a card got two credits (the batch card's "
		    "events): %s", dup);
	free(dup);
	if (rows("state = 'generated' GROUP BY serial HAVING count(*) > 1 "
	    "LIMIT 1") > 1 + c_resolved_spent)
		cell_fail("a serial has two generated rows");
}

/*
 * As an admin would: each unresolved in-doubt row is decided from the
 * batch card's counter (the credits it spent that no generated row
 * shows), through the daemon's control socket, and audited.
 */
static void
resolve_doubts(void)
{
	long lost = spent_by_batch() - rows("state = 'generated'") -
	    c_resolved_spent;
	char *list = q("SELECT group_concat(seq, ' ') FROM audit WHERE "
	    UNRESOLVED);
	char *p, *save = NULL;
	int rc;

	for (p = strtok_r(list, " ", &save); p != NULL;
	    p = strtok_r(NULL, " ", &save)) {
		rc = tl_sh_rc(CTL " -c %s resolve %s %s 'fault matrix: the "
		    "batch card counter says so' >/dev/null 2>&1", d_conf, p,
		    lost > 0 ? "spent" : "unspent");
		if (rc != 0)
			cell_fail("cardlicctl resolve %s failed", p);
		if (lost > 0) {
			lost--;
			c_resolved_spent++;
		}
	}
	free(list);
	if (rows(UNRESOLVED) != 0)
		cell_fail("in-doubt rows left after resolve");
}

static char	w_serial[32];

static int
cond_verified(void)
{
	char where[200];

	snprintf(where, sizeof(where), "state = 'verified' AND "
	    "trim(CAST(serial AS TEXT)) = '%s'", w_serial);
	return rows(where) >= 1;
}

/*
 * The card in reader k ends verified: a verified row, and the card's
 * own last read-back shows the license valid with that row's dates.
 */
static void
check_verified(const char *serial)
{
	char sql[300], *dates, *last;

	snprintf(w_serial, sizeof(w_serial), "%s", serial);
	wait_until(cond_verified, "a verified row", 30000);
	snprintf(sql, sizeof(sql), "SELECT start_date || ' ' || end_date FROM"
	    " audit WHERE state = 'verified' AND trim(CAST(serial AS TEXT)) "
	    "= '%s' ORDER BY seq DESC LIMIT 1", serial);
	dates = q(sql);
	last = tl_read("grep ' status ' %s/cards/%s.events | tail -n 1 | "
	    "cut -d' ' -f3-", tl_dir, serial);
	last[strcspn(last, "\n")] = '\0';
	if (strncmp(last, "111 ", 4) != 0 || strcmp(last + 4, dates) != 0)
		cell_fail("%s: the card says \"%s\", the verified row "
		    "\"%s\"", serial, last, dates);
	free(dates);
	free(last);
}

/* reconcile and verify agree with the rows: both exit 0. */
static void
check_ctl(void)
{
	char *s;

	s = tl_reconcile(d_db);
	if (strstr(s, "\nexit 0") == NULL && strncmp(s, "exit 0", 6) != 0)
		cell_fail("cardlicctl reconcile:\n%s", s);
	free(s);
	s = tl_read(CTL " -d %s verify 2>&1; echo \"exit $?\"", d_db);
	if (strstr(s, "exit 0") == NULL)
		cell_fail("cardlicctl verify:\n%s", s);
	free(s);
}

/* The database on a small tmpfs of its own, for the disk-full column. */
static void
cell_small_disk(void)
{
	tl_sh("mkdir -p %s/full && mount -t tmpfs -o size=2m cardlicfault "
	    "%s/full", tl_dir, tl_dir);
	tl_sh("sed -i 's|^database = .*|database = %s/full/audit.db|' %s",
	    tl_dir, d_conf);
	snprintf(d_db, 300, "%s/full/audit.db", tl_dir);
}

static int
cond_locked(void)
{
	struct stat st;
	char path[300];

	snprintf(path, sizeof(path), "%s/locked", tl_dir);
	return stat(path, &st) == 0;
}

/* Another writer holds the database: BEGIN EXCLUSIVE, then it lets go. */
static void
lock_db(void)
{
	tl_sh("(printf '.timeout 20000\\nBEGIN EXCLUSIVE;\\n.shell touch "
	    "%s/locked\\n'; sleep %d.%03d; printf 'COMMIT;\\n') | sqlite3 %s "
	    ">/dev/null 2>&1 & echo $! > %s/locker.pid", tl_dir,
	    LOCK_HOLD_MS / 1000, LOCK_HOLD_MS % 1000, d_db, tl_dir);
	wait_until(cond_locked, "the database lock", 25000);
}

static int
cond_unlocked(void)
{
	return tl_sh_rc("kill -0 $(cat %s/locker.pid) 2>/dev/null", tl_dir)
	    != 0;
}

static void
cell_run(const struct cell *c)
{
	const struct step *s = &steps[c->step];
	const struct plan *p = &c->plan;
	int stopped = 0;

	cur = c;
	cell_mark(c, "FAIL");
	if (p->how == HOOK && !hooks_landed()) {
		cell_mark(c, "not reached yet");
		return;
	}
	snprintf(c_name, sizeof(c_name), "f%03zu", (size_t)(c - cells));
	snprintf(c_batch, sizeof(c_batch), "%s-batch", c_name);
	snprintf(c_target, sizeof(c_target), "F%03zuT", (size_t)(c - cells));
	snprintf(c_fresh, sizeof(c_fresh), "F%03zuN", (size_t)(c - cells));
	d_config(c_name, "1234", NULL);
	if (fault_is(c->fault, "disk"))
		cell_small_disk();
	tl_insert(0, c_batch, "--type batch --credits 10 --chunk 64 %s",
	    p->bopts);
	cell_start(p->how == HOOK ? s->hook : NULL);
	d_wait_log("Sim Line A 00 00: batch card inserted", 5000);
	tl_insert(1, c_target, "--type target --serial %s %s", c_target,
	    p->topts);

	/* Reach the step. */
	if (p->how == WAIT && p->wait_card == 'T') {
		w_apdu = p->wait_apdu;
		wait_until(cond_target_apdu, "the target card's APDU", 20000);
	} else if (p->how == WAIT) {
		wait_until(cond_batch_generate, "GENERATE on the batch card",
		    20000);
	} else if (p->how == HOOK) {
		snprintf(w_point, sizeof(w_point), "cardlicd: fault point "
		    "%.*s", (int)strcspn(s->hook, "@"), s->hook);
		wait_until(cond_fault_point, w_point, 20000);
		stopped = 1;
	} else if (fault_is(c->fault, "tpull") || fault_is(c->fault, "move")) {
		wait_until(cond_target_vanished, "the target card vanishing",
		    20000);
	}

	/* The fault. */
	if (fault_is(c->fault, "tpull") || fault_is(c->fault, "move")) {
		if (p->how != VCARD)
			hard_pull(1);
		if (fault_is(c->fault, "move"))
			tl_insert(2, c_target, "%s", "");
	} else if (fault_is(c->fault, "bpull") && p->how != VCARD) {
		hard_pull(0);
	} else if (fault_is(c->fault, "pcscd")) {
		tl_sh(TOPDIR "/sim/line restart-pcscd --dir %s >/dev/null",
		    tl_dir);
	} else if (fault_is(c->fault, "kill")) {
		int st;

		kill(d_pid, SIGKILL);
		waitpid(d_pid, &st, 0);
		stopped = 0;
		cell_start(NULL);
	} else if (fault_is(c->fault, "disk")) {
		tl_sh("dd if=/dev/zero of=%s/full/filler bs=4k 2>/dev/null; "
		    "true", tl_dir);
	} else if (fault_is(c->fault, "lock")) {
		lock_db();
	}
	if (stopped)
		kill(d_pid, SIGCONT);
	if (fault_is(c->fault, "disk")) {
		usleep(DISK_HOLD_MS * 1000);
		tl_sh("rm -f %s/full/filler", tl_dir);
	} else if (fault_is(c->fault, "lock")) {
		wait_until(cond_unlocked, "the locker's end", LOCK_HOLD_MS +
		    10000);
	}
	if (fault_is(c->fault, "pcscd"))
		tl_insert(0, c_batch, "%s", "");
	wait_idle(60000);

	/* What the batch card spent, against the rows. */
	check_credits(s->exact);

	/* Recovery: the line whole again, doubts resolved by an admin. */
	tl_insert(0, c_batch, "%s", "");
	tl_remove(1);
	tl_remove(2);
	wait_idle(30000);
	resolve_doubts();
	tl_insert(1, c_target, "%s", "");
	check_verified(c_target);
	tl_insert(3, c_fresh, "--type target --serial %s", c_fresh);
	check_verified(c_fresh);
	wait_idle(30000);
	check_credits(1);
	if (spent_by_batch() != rows("state = 'generated'") +
	    c_resolved_spent)
		cell_fail("credits spent and rows disagree");
	check_ctl();
	d_stop();
	tl_remove(0);
	tl_remove(1);
	tl_remove(3);
	cell_mark(c, "PASS");
}

START_TEST(cell)
{
	cell_run(&cells[_i]);
}
END_TEST

/* Each cell's line; what a failed cell left behind goes with it. */
static void
cell_up(void)
{
	d_suite_up(3);
}

static void
cell_down(void)
{
	tl_sh_rc("kill $(cat %s/locker.pid 2>/dev/null) 2>/dev/null; "
	    "umount %s/full 2>/dev/null", tl_dir, tl_dir);
	d_suite_down();
}

static int
row_selected(const char *name)
{
	const char *rows_env = getenv("FAULT_ROWS");
	char *dup, *p, *save = NULL;
	int found = 0;

	if (rows_env == NULL || rows_env[0] == '\0')
		return 1;
	dup = strdup(rows_env);
	/* Make joins a continued line with a space: " step" is "step". */
	for (p = strtok_r(dup, ", \t", &save); p != NULL && !found;
	    p = strtok_r(NULL, ", \t", &save))
		found = strcmp(p, name) == 0;
	free(dup);
	return found;
}

static Suite *
faults_suite(void)
{
	Suite *su = suite_create("faults");
	size_t i, k;

	for (i = 0; i < NSTEPS; i++) {
		if (!row_selected(steps[i].name))
			continue;
		for (k = 0; k < NFAULTS; k++) {
			struct cell *c = &cells[ncells];
			TCase *t;

			c->step = i;
			c->fault = k;
			cell_plan(&steps[i], k, &c->plan);
			snprintf(c->name, sizeof(c->name), "%s.%s",
			    steps[i].name, faults[k]);
			ncells++;
			if (c->plan.how == NA)
				continue;
			t = tcase_create(c->name);
			tcase_add_unchecked_fixture(t, cell_up, cell_down);
			tcase_set_timeout(t, 180);
			tcase_add_loop_test(t, cell, (int)(c - cells),
			    (int)(c - cells) + 1);
			suite_add_tcase(su, t);
		}
	}
	return su;
}

static const char *
how_name(enum how h)
{
	return h == VCARD ? "c" : h == WAIT ? "s" : "h";
}

/* The step x fault table, from what each cell recorded. */
static void
print_table(FILE *out, long secs)
{
	const char *run = getenv("CK_RUN_CASE");
	char path[400], res[64];
	size_t i, k, n;
	FILE *f;

	fprintf(out, "| step |");
	for (k = 0; k < NFAULTS; k++)
		fprintf(out, " %s |", faults[k]);
	fprintf(out, "\n|---|");
	for (k = 0; k < NFAULTS; k++)
		fprintf(out, "---|");
	fprintf(out, "\n");
	/* The cells are in row order, NFAULTS to a selected step. */
	for (n = 0; n < ncells; n += NFAULTS) {
		fprintf(out, "| %s |", steps[cells[n].step].name);
		for (k = 0; k < NFAULTS; k++) {
			const struct cell *c = &cells[n + k];

			if (c->plan.how == NA) {
				fprintf(out, " n/a |");
				continue;
			}
			snprintf(path, sizeof(path), "%s/%s", CELLS_DIR,
			    c->name);
			snprintf(res, sizeof(res), "not run");
			if ((run == NULL || strcmp(run, c->name) == 0) &&
			    (f = fopen(path, "r")) != NULL) {
				if (fgets(res, sizeof(res), f) != NULL)
					res[strcspn(res, "\n")] = '\0';
				fclose(f);
			}
			fprintf(out, " %s %s |", res, how_name(c->plan.how));
		}
		fprintf(out, "\n");
	}
	fprintf(out, "\nReached by: c = the card itself (a vcard option at "
	    "the step's APDU), s = a slow card, the fault injected once its "
	    "events show the step's APDU, h = the daemon's CARDLICD_FAULT "
	    "stop point.\n\nSteps:");
	for (i = 0; i < NSTEPS; i++)
		fprintf(out, "%s %s (%s)", i == 0 ? "" : ",", steps[i].name,
		    steps[i].label);
	fprintf(out, ".\n\nFaults:");
	for (k = 0; k < NFAULTS; k++)
		fprintf(out, "%s %s (%s)", k == 0 ? "" : ",", faults[k],
		    fault_labels[k]);
	fprintf(out, ".\n\nn/a cells:\n\n");
	for (n = 0; n < ncells; n++)
		if (cells[n].plan.how == NA)
			fprintf(out, "- %s x %s: %s\n",
			    steps[cells[n].step].name, faults[cells[n].fault],
			    cells[n].plan.why);
	fprintf(out, "\nThis run: %ld s.\n", secs);
}

int
main(void)
{
	SRunner *sr;
	FILE *f;
	long t0 = tl_now_ms();
	int failed;

	tl_sh_rc("rm -rf %s", CELLS_DIR);
	sr = srunner_create(faults_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	print_table(stdout, (tl_now_ms() - t0) / 1000);
	if ((f = fopen(TABLE, "w")) != NULL) {
		print_table(f, (tl_now_ms() - t0) / 1000);
		fclose(f);
	}
	return failed == 0 ? 0 : 1;
}
