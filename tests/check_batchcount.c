/*
 * cardlicctl batch-count and reconcile against the batch card's own
 * counter, with cardlicd on the simulated line.  The simulated batch card
 * keeps its own count of the licenses it emitted (issued= in its state
 * file): that is what an admin reads with the vendor's tool, and what the
 * tests type in.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

#define SIMPCSC	TOPDIR "/sim/simpcsc"
#define BATCH	"Sim Line A 00 00"
/* The simulated batch card's default ATR, as the daemon writes it. */
#define ATR	"3B88800149444F424154434817"

/* cardlicctl with the daemon's configuration: its output, then "exit N". */
static char *
ctl(const char *args)
{
	return tl_read(CTL " -c %s %s 2>&1; echo \"exit $?\"", d_conf, args);
}

static void
expect(const char *out, const char *what)
{
	ck_assert_msg(strstr(out, what) != NULL, "no \"%s\" in:\n%s", what,
	    out);
}

/* The count typed in: the batch card's own number, with a reason. */
static char *
count_now(const char *card, const char *why)
{
	char args[300];

	snprintf(args, sizeof(args), "batch-count --card BC-1 '" BATCH "' %ld "
	    "'%s'", card_num(card, "issued"), why);
	return ctl(args);
}

static void
lines_up(void)
{
	char extra[400];

	d_suite_up(2);
	/* Signed rows, as a station with a key writes them. */
	tl_sh("openssl genpkey -algorithm ed25519 -out %s/bc.key 2>/dev/null "
	    "&& chmod 600 %s/bc.key", tl_dir, tl_dir);
	snprintf(extra, sizeof(extra), "[audit]\nkey-file = %s/bc.key\n",
	    tl_dir);
	d_config("bc", "1234", extra);
	tl_insert(0, "bc-batch", "--type batch --credits 20");
	d_start();
	d_wait_log(BATCH ": batch card inserted", 5000);
}

static void
issue(const char *serial, long verified)
{
	tl_insert(1, serial, "--type target --serial %s", serial);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", verified,
	    10000);
	tl_remove(1);
}

START_TEST(count_is_an_audited_row)
{
	char *out, want[300];
	long seq;

	/* No batch card there: the reader named, and the ones that hold one. */
	out = ctl("batch-count --card BC-1 'Sim Line A 00 01' 5 "
	    "'vendor tool'");
	expect(out, "error: no batch card in reader \"Sim Line A 00 01\"; "
	    "batch cards are in \"" BATCH "\"");
	expect(out, "exit 1");
	free(out);
	/* Counts outside 0..2^31-1, or no number, never reach the daemon. */
	out = ctl("batch-count --card BC-1 '" BATCH "' 2147483648 x");
	expect(out, "\"2147483648\" is not a count: want a number from 0 to "
	    "2147483647");
	expect(out, "exit 2");
	free(out);
	out = ctl("batch-count --card BC-1 '" BATCH "' -1 x");
	expect(out, "\"-1\" is not a count");
	free(out);
	out = ctl("batch-count --card BC-1 '" BATCH "' 12x x");
	expect(out, "\"12x\" is not a count");
	free(out);
	out = ctl("batch-count --card BC-1 '" BATCH "' 7");
	expect(out, "usage: cardlicctl batch-count --card LABEL READER N "
	    "REASON");
	expect(out, "exit 2");
	free(out);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'counted'"), 0);
	/* The baseline: the card has emitted nothing yet. */
	ck_assert_int_eq(card_num("bc-batch", "issued"), 0);
	seq = qn("SELECT coalesce(max(seq), 0) + 1 FROM audit");
	out = count_now("bc-batch", "vendor tool, first reading");
	snprintf(want, sizeof(want), "ok: row %ld records the count 0 of batch "
	    "card BC-1, in " BATCH " (ATR " ATR ")\nexit 0\n", seq);
	ck_assert_str_eq(out, want);
	free(out);
	out = q("SELECT seq, job, reader, state, batch_reader, batch_atr, "
	    "batch_count, typeof(batch_count), reason, quote(serial), "
	    "typeof(license_seq), length(sig) FROM audit WHERE state = "
	    "'counted'");
	/* The card's label in serial, padded to 16 as a token's serial. */
	snprintf(want, sizeof(want), "%ld|0|" BATCH "|counted|" BATCH "|" ATR
	    "|0|integer|vendor tool, first reading (by uid 0)|"
	    "X'42432D31202020202020202020202020'|null|64", seq);
	ck_assert_str_eq(out, want);
	free(out);
	/* The daemon says it in its log too. */
	snprintf(want, sizeof(want), BATCH ": batch card BC-1: its counter "
	    "says 0 licenses emitted, as uid 0 read it (row %ld)", seq);
	d_wait_log(want, 2000);
	/* The chain holds, signed by the station's key, with the new row. */
	out = tl_read("openssl pkey -in %s/bc.key -pubout -out %s/bc.pub && "
	    CTL " -d %s verify --key %s/bc.pub 2>&1; echo \"exit $?\"",
	    tl_dir, tl_dir, d_db, tl_dir);
	expect(out, " signed, key ");
	expect(out, "exit 0");
	ck_assert_msg(strstr(out, "unsigned") == NULL, "%s", out);
	free(out);
}
END_TEST

/*
 * One request straight to the daemon's control socket, as uid (or as we
 * are, for -1), past cardlicctl's own checks: the answer.
 */
static char *
raw_request(const char *req, int uid)
{
	char path[400], buf[512];
	struct sockaddr_un sa;
	int p[2], fd, st;
	ssize_t n, got = 0;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/bc.ctl", tl_dir);
	ck_assert_int_eq(pipe(p), 0);
	if ((pid = fork()) == 0) {
		close(p[0]);
		if (uid >= 0 && (setgid((gid_t)uid) != 0 ||
		    setuid((uid_t)uid) != 0))
			_exit(3);
		memset(&sa, 0, sizeof(sa));
		sa.sun_family = AF_UNIX;
		if (strlen(path) >= sizeof(sa.sun_path))
			_exit(7);
		memcpy(sa.sun_path, path, strlen(path) + 1);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa,
		    sizeof(sa)) != 0)
			_exit(4);
		if (write(fd, req, strlen(req)) < 0)
			_exit(5);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (write(p[1], buf, (size_t)n) < 0)
				_exit(6);
		_exit(0);
	}
	close(p[1]);
	while (got < (ssize_t)sizeof(buf) - 1 && (n = read(p[0], buf + got,
	    sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = '\0';
	close(p[0]);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %d", st);
	return strdup(buf);
}

/*
 * The daemon itself checks who asks (SO_PEERCRED), whatever the client:
 * a raw request from uid 65534 is refused, and nothing is written.  Its
 * own check of the count's range holds for raw requests too.
 */
START_TEST(count_refused_from_another_uid)
{
	long before = qn("SELECT count(*) FROM audit");
	char *out;

	out = raw_request("batch-count 2147483648 16 " BATCH " BC-1 x\n",
	    -1);
	ck_assert_str_eq(out, "error: the count must be a number from 0 to "
	    "2147483647\n");
	free(out);
	out = raw_request("batch-count 9 17 " BATCH " BC-1 x\n", -1);
	ck_assert_str_eq(out, "error: want: batch-count N LEN READER LABEL "
	    "REASON\n");
	free(out);
	/* A label that is not a card's name. */
	out = raw_request("batch-count 9 16 " BATCH " B@1 words\n", -1);
	ck_assert_str_eq(out, "error: want: batch-count N LEN READER LABEL "
	    "REASON, with a LABEL of 1 to 16 letters, digits, '.', '_', "
	    "'-'\n");
	free(out);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit"), before);
	if (getuid() != 0) {
		fprintf(stderr, "count_refused_from_another_uid: SKIPPED the "
		    "other uid: not root, cannot switch\n");
		return;
	}
	/* Only the right to pass: the socket itself is 0666. */
	ck_assert_int_eq(chmod(tl_dir, 0711), 0);
	out = raw_request("batch-count 99 16 " BATCH " BC-1 forged\n",
	    65534);
	chmod(tl_dir, 0700);
	ck_assert_str_eq(out, "error: only root or the daemon's user may "
	    "record a batch card's count\n");
	free(out);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit"), before);
}
END_TEST

START_TEST(reconcile_agrees_with_the_card)
{
	char *out, want[300];
	long first = qn("SELECT min(seq) FROM audit WHERE state = 'counted'");

	issue("BC0001", 1);
	issue("BC0002", 2);
	ck_assert_int_eq(card_num("bc-batch", "issued"), 2);
	/* Before a second count: what the counter should say now. */
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), "  batch card BC-1 (in test " BATCH ", ATR "
	    ATR "): count #%ld ", first);
	expect(out, want);
	snprintf(want, sizeof(want), ": 0, the first: the baseline\n"
	    "    since #%ld: 2 spent (2 generated); the counter should now "
	    "say 2\n", first);
	expect(out, want);
	free(out);
	out = count_now("bc-batch", "vendor tool after two cards");
	expect(out, "exit 0");
	free(out);
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), "count #%ld ", qn("SELECT max(seq) FROM "
	    "audit WHERE state = 'counted'"));
	expect(out, want);
	snprintf(want, sizeof(want), ": 2, up 2 since #%ld: agrees with the "
	    "rows (2 generated)\n", first);
	expect(out, want);
	expect(out, "every credit spent is accounted for");
	expect(out, "exit 0");
	ck_assert_msg(strstr(out, "DIFFERENCE") == NULL, "%s", out);
	free(out);
}
END_TEST

/*
 * A credit spent that no row shows: a GENERATE sent to the batch card by
 * another program on the station, past the daemon.  The rows cannot tell;
 * the card's own counter does, once it is typed in.
 */
START_TEST(credit_spent_without_a_row_is_a_difference)
{
	char *out, prev[32], cur[32];
	long before = card_num("bc-batch", "issued");

	snprintf(prev, sizeof(prev), "#%ld", qn("SELECT max(seq) FROM audit "
	    "WHERE state = 'counted'"));
	out = tl_read(SIMPCSC " apdu 0 00A4040C09A0000003634D574C01 "
	    "00F8000028%s%s%s88 2>&1", "53494D2D4D4F44454C2D312020202020",
	    "524F4755452020202020202020202020", "3230323631313234");
	expect(out, "9000\n6188\n");
	free(out);
	ck_assert_int_eq(card_num("bc-batch", "issued"), before + 1);
	out = count_now("bc-batch", "vendor tool: one more than I thought");
	expect(out, "exit 0");
	free(out);
	snprintf(cur, sizeof(cur), "#%ld", qn("SELECT max(seq) FROM audit "
	    "WHERE state = 'counted'"));
	out = tl_reconcile(d_db);
	expect(out, "  DIFFERENCE on batch card BC-1 (in test " BATCH ", ATR "
	    ATR "):\n    count ");
	expect(out, prev);
	expect(out, cur);
	expect(out, ": 2, vendor tool after two cards (by uid 0)\n");
	expect(out, ": 3, vendor tool: one more than I thought (by uid 0)\n");
	expect(out, "    the counter rose by 1; the rows between say 0 were "
	    "spent (0 generated)\n    1 credit(s) spent that no row shows\n");
	expect(out, "1 difference(s) between the batch cards' counters and "
	    "the rows");
	ck_assert_msg(strstr(out, "every credit spent is accounted for") ==
	    NULL, "%s", out);
	expect(out, "exit 1");
	free(out);
	/* A count typed in lower than the one before is a difference too. */
	out = ctl("batch-count --card BC-1 '" BATCH "' 1 'typed in wrong'");
	expect(out, "exit 0");
	free(out);
	out = tl_reconcile(d_db);
	expect(out, "    the counter went down, by 2: not the same batch "
	    "card, or a count typed in wrong\n");
	expect(out, "2 difference(s) between");
	expect(out, "exit 1");
	free(out);
}
END_TEST

/*
 * A count typed in while a license is being made may or may not include
 * it: refused, and taken once that card is done.
 */
START_TEST(count_refused_while_a_license_is_made)
{
	char *out;
	long req = qn("SELECT count(*) FROM audit WHERE state = 'requested'");
	long ver = qn("SELECT count(*) FROM audit WHERE state = 'verified'");

	tl_remove(0);
	/* GENERATE, the third APDU of this insertion, answers 4 s late. */
	tl_insert(0, "bc-batch", "--slow 4000 --slow-from 2");
	while (tl_sh_rc("test $(grep -c '" BATCH ": batch card inserted' "
	    "%s) -ge 2", d_log) != 0)
		usleep(20000);
	tl_insert(1, "BC0003", "--type target --serial BC0003");
	wait_n("SELECT count(*) FROM audit WHERE state = 'requested'", req + 1,
	    10000);
	out = ctl("batch-count --card BC-1 '" BATCH "' 4 'while it works'");
	expect(out, "error: a license is being made right now (job ");
	expect(out, "type the count again once that card is done");
	expect(out, "exit 1");
	free(out);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'counted'"), 4);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", ver + 1,
	    15000);
	tl_remove(1);
	out = count_now("bc-batch", "after the slow card");
	expect(out, "ok: row ");
	free(out);
	/* From the typo's 1 to 4: one license made, the rise is 3. */
	ck_assert_int_eq(card_num("bc-batch", "issued"), 4);
	out = tl_reconcile(d_db);
	expect(out, ": 4, after the slow card (by uid 0)\n");
	expect(out, "    the counter rose by 3; the rows between say 1 were "
	    "spent (1 generated)\n    2 credit(s) spent that no row shows\n");
	free(out);
}
END_TEST

/*
 * A credit in doubt between two counts may explain a rise: a possible
 * difference until an admin decides; resolved as spent, the rows agree.
 */
START_TEST(credit_in_doubt_is_possibly_the_difference)
{
	char *out, want[300];
	long doubt, prev;

	prev = qn("SELECT max(seq) FROM audit WHERE state = 'counted'");
	tl_remove(0);
	/*
	 * APDU 0 is the daemon's probe, 1 the middleware's look at a new
	 * card, 2 the SELECT, 3 GENERATE: it spends, then answers 6F42.
	 */
	tl_insert(0, "bc-batch", "--garbage sw --garbage-from 3");
	while (tl_sh_rc("test $(grep -c '" BATCH ": batch card inserted' "
	    "%s) -ge 3", d_log) != 0)
		usleep(20000);
	tl_insert(1, "BC0004", "--type target --serial BC0004");
	wait_n("SELECT count(*) FROM audit WHERE state = 'in-doubt'", 1,
	    10000);
	d_wait_log("BC0004: IN-DOUBT:", 5000);
	tl_remove(1);
	doubt = qn("SELECT seq FROM audit WHERE state = 'in-doubt'");
	ck_assert_int_eq(card_num("bc-batch", "issued"), 5);
	out = count_now("bc-batch", "vendor tool: 5");
	expect(out, "exit 0");
	free(out);
	out = tl_reconcile(d_db);
	expect(out, "  POSSIBLE DIFFERENCE on batch card BC-1 (in test " BATCH
	    ", ATR " ATR "):\n");
	expect(out, ": 5, vendor tool: 5 (by uid 0)\n"
	    "    the counter rose by 1; the rows between say 0 were spent "
	    "(0 generated)\n");
	snprintf(want, sizeof(want), "    and 1 credit(s) in doubt are not "
	    "decided (#%ld): possibly those; decide them with cardlicctl "
	    "resolve\n", doubt);
	expect(out, want);
	/* A possible one: the credit in doubt is listed too. */
	expect(out, "3 difference(s) between");
	expect(out, "\n1 possible difference(s) between the batch cards' "
	    "counters and the rows, until the credits named are decided or "
	    "counted\n");
	expect(out, "credit in doubt for card BC0004");
	expect(out, "exit 1");
	free(out);
	snprintf(want, sizeof(want), "resolve %ld spent 'the counter rose by "
	    "1'", doubt);
	out = ctl(want);
	expect(out, "ok: row ");
	expect(out, "exit 0");
	free(out);
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), ": 5, up 1 since #%ld: agrees with the "
	    "rows (0 generated, 1 in doubt resolved as spent)\n", prev);
	expect(out, want);
	ck_assert_msg(strstr(out, "POSSIBLE") == NULL, "%s", out);
	free(out);
}
END_TEST

/*
 * Batch cards by label (issue 18, case 8), each test on a database of
 * its own, on a line of four readers: batch cards in readers 0 (A) and 2
 * (B), target cards in reader 1.
 */
#define RA	"Sim Line A 00 00"
#define RB	"Sim Line B 00 00"

static void
label_line_up(void)
{
	d_suite_up(4);
}

/* A daemon on database name, batch card card in reader 0 (opts). */
static void
label_start(const char *name, const char *card, const char *opts)
{
	d_config(name, "1234", NULL);
	tl_insert(0, card, "--type batch --credits 20 %s", opts);
	d_start();
	wait_n("SELECT count(*) FROM audit WHERE state = 'batch-in'", 1, 8000);
}

/* Batch card card moved to reader k: its batch-in row is the n-th. */
static void
label_move(int from, int k, const char *card, long n)
{
	tl_remove(from);
	tl_insert(k, card, "--type batch");
	wait_n("SELECT count(*) FROM audit WHERE state = 'batch-in'", n, 8000);
}

/* batch-count --card label, in reader, with the card's own counter. */
static long
label_count(const char *label, const char *reader, const char *card)
{
	char args[400], want[200], *out;
	long seq = qn("SELECT coalesce(max(seq), 0) + 1 FROM audit");

	snprintf(args, sizeof(args), "batch-count --card %s '%s' %ld 'vendor "
	    "tool'", label, reader, card_num(card, "issued"));
	out = ctl(args);
	snprintf(want, sizeof(want), "ok: row %ld records the count %ld of "
	    "batch card %s, in %s", seq, card_num(card, "issued"), label,
	    reader);
	expect(out, want);
	free(out);
	return seq;
}

/* A target card in reader 1, issued until its row count of state is n. */
static void
label_issue(const char *serial, const char *state, long n)
{
	char sql[200];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit WHERE state = "
	    "'%s'", state);
	tl_insert(1, serial, "--type target --serial %s", serial);
	wait_n(sql, n, 10000);
	tl_remove(1);
}

/*
 * The same rows as an older cardlicd would have written them: its
 * counts with no label (serial NULL).  A copy made with cardlicctl
 * backup, the triggers set aside for the edit and put back word for
 * word, so that cardlicctl takes the schema as cardlicd's.
 */
static void
label_as_before(char *path, size_t len)
{
	tl_sh("rm -f %s/before.db && " CTL " -d %s backup %s/before.db "
	    ">/dev/null && cd %s && sqlite3 before.db \"SELECT sql || ';' FROM "
	    "sqlite_schema WHERE type = 'trigger'\" > trig.sql && sqlite3 "
	    "before.db \"SELECT 'DROP TRIGGER \\\"' || name || '\\\";' FROM "
	    "sqlite_schema WHERE type = 'trigger'\" > drop.sql && sqlite3 "
	    "before.db < drop.sql && sqlite3 before.db \"UPDATE audit SET "
	    "serial = NULL WHERE state = 'counted'\" && sqlite3 before.db < "
	    "trig.sql", tl_dir, d_db, tl_dir, tl_dir);
	snprintf(path, len, "%s/before.db", tl_dir);
}

/*
 * The issue's scenario.  Batch card BC-1 is counted in reader A; a
 * credit goes in doubt there (GENERATE answers 6F42 after spending) and
 * is resolved as unspent, wrongly; then one license is made; the card is
 * moved to reader B and counted there with its true counter.  A batch
 * card's identity was its station, reader and ATR: the two counts were
 * two baselines, and reconcile said that every credit was accounted for
 * (exit 0), as it still says of the same rows with no labels.  By its
 * label it is one card: the counter rose by 2, the rows say 1.
 */
START_TEST(moved_batch_card_is_one_card)
{
	char want[400], path[400], *out;
	long c1, c2, doubt;

	/* APDU 3 of this insertion is its first GENERATE. */
	label_start("moved", "bc-m", "--garbage sw --garbage-at 3");
	c1 = label_count("BC-1", RA, "bc-m");
	label_issue("MV0001", "in-doubt", 1);
	doubt = qn("SELECT seq FROM audit WHERE state = 'in-doubt'");
	snprintf(want, sizeof(want), "resolve %ld unspent 'read wrong: "
	    "nothing spent'", doubt);
	out = ctl(want);
	expect(out, "exit 0");
	free(out);
	label_issue("MV0002", "verified", 1);
	ck_assert_int_eq(card_num("bc-m", "issued"), 2);
	label_move(0, 2, "bc-m", 2);
	c2 = label_count("BC-1", RB, "bc-m");
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), "  batch card BC-1 (in test " RA ", ATR "
	    ATR "): count #%ld ", c1);
	expect(out, want);
	snprintf(want, sizeof(want), "  DIFFERENCE on batch card BC-1 (in "
	    "test " RB ", ATR " ATR "):\n    count #%ld ", c1);
	expect(out, want);
	snprintf(want, sizeof(want), ", in test " RA ": 0, vendor tool (by "
	    "uid 0)\n    count #%ld ", c2);
	expect(out, want);
	expect(out, ", in test " RB ": 2, vendor tool (by uid 0)\n"
	    "    the counter rose by 2; the rows between say 1 were spent "
	    "(1 generated)\n    1 credit(s) spent that no row shows\n");
	expect(out, "\n1 difference(s) between the batch cards' counters and "
	    "the rows\nexit 1\n");
	free(out);
	/* The same rows as before labels: two baselines, no difference. */
	label_as_before(path, sizeof(path));
	out = tl_reconcile(path);
	snprintf(want, sizeof(want), "  test " RA " (ATR " ATR "): count #%ld "
	    , c1);
	expect(out, want);
	snprintf(want, sizeof(want), "  test " RB " (ATR " ATR "): count #%ld "
	    , c2);
	expect(out, want);
	expect(out, "\nevery credit spent is accounted for\nexit 0\n");
	ck_assert_msg(strstr(out, "DIFFERENCE") == NULL, "%s", out);
	free(out);
	d_stop();
}
END_TEST

/*
 * Two batch cards of one ATR, one in each of two readers, each labelled:
 * each agrees with its own rows, before and after they trade readers.
 */
START_TEST(same_atr_in_two_readers_told_apart)
{
	char want[300], *out;
	long x1, y1;

	label_start("twins", "bc-x", "");
	tl_insert(2, "bc-y", "--type batch --credits 20");
	wait_n("SELECT count(*) FROM audit WHERE state = 'batch-in'", 2, 8000);
	x1 = label_count("BC-X", RA, "bc-x");
	y1 = label_count("BC-Y", RB, "bc-y");
	label_issue("TW0001", "verified", 1);
	label_issue("TW0002", "verified", 2);
	label_issue("TW0003", "verified", 3);
	/* They trade readers. */
	tl_remove(0);
	tl_remove(2);
	tl_insert(0, "bc-y", "--type batch");
	tl_insert(2, "bc-x", "--type batch");
	wait_n("SELECT count(*) FROM audit WHERE state = 'batch-in'", 4, 8000);
	label_issue("TW0004", "verified", 4);
	label_issue("TW0005", "verified", 5);
	ck_assert_int_eq(card_num("bc-x", "issued") + card_num("bc-y",
	    "issued"), 5);
	label_count("BC-X", RB, "bc-x");
	label_count("BC-Y", RA, "bc-y");
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), "  batch card BC-X (in test " RB ", ATR "
	    ATR "): count #%ld ", qn("SELECT max(seq) - 1 FROM audit"));
	expect(out, want);
	snprintf(want, sizeof(want), ": %ld, up %ld since #%ld: agrees with "
	    "the rows (%ld generated)\n", card_num("bc-x", "issued"),
	    card_num("bc-x", "issued"), x1, card_num("bc-x", "issued"));
	expect(out, want);
	snprintf(want, sizeof(want), "  batch card BC-Y (in test " RA ", ATR "
	    ATR "): count #%ld ", qn("SELECT max(seq) FROM audit"));
	expect(out, want);
	snprintf(want, sizeof(want), ": %ld, up %ld since #%ld: agrees with "
	    "the rows (%ld generated)\n", card_num("bc-y", "issued"),
	    card_num("bc-y", "issued"), y1, card_num("bc-y", "issued"));
	expect(out, want);
	expect(out, "\nevery credit spent is accounted for\nexit 0\n");
	free(out);
	d_stop();
}
END_TEST

/*
 * Another batch card of the same ATR swapped into the reader under its
 * own label: a new insertion, a series of its own.  A label typed in
 * for a card that a count already named otherwise is a difference.  And
 * a card counted, pulled and put back in the same reader keeps its
 * series: the count in its later insertion agrees with the rows.
 */
START_TEST(swapped_card_is_a_new_insertion)
{
	char want[300], *out;
	long p1, q1, q2, in;

	label_start("swap", "bc-p", "");
	p1 = label_count("BC-P", RA, "bc-p");
	label_issue("SW0001", "verified", 1);
	/* Pulled and put back: a later insertion, the same card. */
	label_move(0, 0, "bc-p", 2);
	label_issue("SW0002", "verified", 2);
	label_count("BC-P", RA, "bc-p");
	/* Another card in its place. */
	tl_remove(0);
	tl_insert(0, "bc-q", "--type batch --credits 20");
	wait_n("SELECT count(*) FROM audit WHERE state = 'batch-in'", 3, 8000);
	in = qn("SELECT max(seq) FROM audit WHERE state = 'batch-in'");
	q1 = label_count("BC-Q", RA, "bc-q");
	label_issue("SW0003", "verified", 3);
	q2 = label_count("BC-Q", RA, "bc-q");
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), ": 2, up 2 since #%ld: agrees with the "
	    "rows (2 generated)\n", p1);
	expect(out, want);
	snprintf(want, sizeof(want), "count #%ld ", q2);
	expect(out, want);
	snprintf(want, sizeof(want), ": 1, up 1 since #%ld: agrees with the "
	    "rows (1 generated)\n", q1);
	expect(out, want);
	expect(out, "\nevery credit spent is accounted for\nexit 0\n");
	free(out);
	/* The wrong label for the card in the reader now. */
	label_count("BC-P", RA, "bc-q");
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), "  DIFFERENCE on batch card BC-P (in "
	    "test " RA ", ATR " ATR "):\n    count #%ld ", qn("SELECT max(seq) "
	    "FROM audit"));
	expect(out, want);
	snprintf(want, sizeof(want), "    but count #%ld named the batch card "
	    "inserted at #%ld BC-Q: a card has one label; count it again "
	    "with its own\n", q1, in);
	expect(out, want);
	expect(out, "1 difference(s) between");
	expect(out, "exit 1");
	free(out);
	d_stop();
}
END_TEST

/*
 * Credits spent on a batch card that no count names, between two counts
 * of another: they may be that card's.  Here they are: BC-S, counted in
 * reader A, went to reader B uncounted, spent two credits there, and came
 * back.  A possible difference, until the cards are counted when they
 * are inserted.
 */
START_TEST(unlabelled_insertion_is_a_possible_difference)
{
	char want[300], *out;
	long s1, a, b;

	label_start("unlabelled", "bc-s", "");
	s1 = label_count("BC-S", RA, "bc-s");
	label_move(0, 2, "bc-s", 2);
	label_issue("UL0001", "verified", 1);
	label_issue("UL0002", "verified", 2);
	a = qn("SELECT min(seq) FROM audit WHERE state = 'generated'");
	b = qn("SELECT max(seq) FROM audit WHERE state = 'generated'");
	label_move(2, 0, "bc-s", 3);
	label_count("BC-S", RA, "bc-s");
	out = tl_reconcile(d_db);
	snprintf(want, sizeof(want), "  POSSIBLE DIFFERENCE on batch card BC-S "
	    "(in test " RA ", ATR " ATR "):\n    count #%ld ", s1);
	expect(out, want);
	expect(out, "    the counter rose by 2; the rows between say 0 were "
	    "spent (0 generated)\n");
	snprintf(want, sizeof(want), "    and 2 credit(s) were spent between "
	    "the two counts on batch cards with no label (#%ld, #%ld): "
	    "possibly this card's; count each batch card (batch-count --card) "
	    "when it is inserted\n", a, b);
	expect(out, want);
	expect(out, "test        " RB "      " ATR "        2         2       "
	    " 0         0         0     0  -\n");
	expect(out, "\n1 possible difference(s) between the batch cards' "
	    "counters and the rows, until the credits named are decided or "
	    "counted\nexit 1\n");
	free(out);
	d_stop();
}
END_TEST

static Suite *
batchcount_suite(void)
{
	Suite *s = suite_create("batch-count");
	TCase *t = tcase_create("the batch card's counter");

	tcase_add_unchecked_fixture(t, lines_up, d_suite_down);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, count_is_an_audited_row);
	tcase_add_test(t, count_refused_from_another_uid);
	tcase_add_test(t, reconcile_agrees_with_the_card);
	tcase_add_test(t, credit_spent_without_a_row_is_a_difference);
	tcase_add_test(t, count_refused_while_a_license_is_made);
	tcase_add_test(t, credit_in_doubt_is_possibly_the_difference);
	suite_add_tcase(s, t);
	t = tcase_create("batch cards by label");
	tcase_add_unchecked_fixture(t, label_line_up, d_suite_down);
	tcase_set_timeout(t, 90);
	tcase_add_test(t, moved_batch_card_is_one_card);
	tcase_add_test(t, same_atr_in_two_readers_told_apart);
	tcase_add_test(t, swapped_card_is_a_new_insertion);
	tcase_add_test(t, unlabelled_insertion_is_a_possible_difference);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(batchcount_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
