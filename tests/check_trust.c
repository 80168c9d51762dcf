/*
 * Check, don't trust (issue 18): what can change under the daemon, each
 * reproduced on the simulated line through the real pcscd, with the
 * cards' own state and events as the witness.  Each test failed on the
 * daemon before the fix; each says what the old daemon did.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testline.h"
#include "testdaemon.h"
#include "../daemon/cardlicd.h"
#include "../daemon/dbhash.h"


/* A station key made by cardlicctl keygen; its configuration. */
static void
keyed_config(const char *name, char *key, size_t len)
{
	char extra[800];

	snprintf(key, len, "%s/%s.key", tl_dir, name);
	tl_sh("rm -f %s %s.pub && " CTL " keygen %s %s.pub >/dev/null", key,
	    key, key, key);
	snprintf(extra, sizeof(extra), "[audit]\nkey-file = %s\n", key);
	d_config(name, "1234", extra);
}

/*
 * The daemon must refuse to start: exit status 2 (no restart by the
 * unit), and its log says why.
 */
static void
d_start_refused(const char *why)
{
	long end = tl_now_ms() + 15000;
	int st = 0;
	pid_t w;

	d_start_env(NULL, 0);
	while ((w = waitpid(d_pid, &st, WNOHANG)) == 0) {
		if (tl_now_ms() > end) {
			kill(d_pid, SIGKILL);
			waitpid(d_pid, &st, 0);
			ck_abort_msg("cardlicd started where it must refuse "
			    "(%s)", why);
		}
		usleep(20000);
	}
	ck_assert_int_eq(w, d_pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "cardlicd ended "
	    "with status %d, not exit 2", st);
	ck_assert_msg(d_log_has(why), "no \"%s\" in the daemon's log", why);
}

static void
t_exec(sqlite3 *db, const char *sql)
{
	char *e = NULL;

	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &e) == SQLITE_OK,
	    "%s: %s", sql, e);
}

/*
 * The forger, with write access and no key: a row appended after the last
 * one (set is the SQL that makes it from a copy of the last row: "state
 * = 'generated', end_date = '20371231'"), with its hash computed as the
 * daemon computes it and chained to the row before, and no signature.
 * The triggers let it in: it is an append.  Returns the forged row's seq.
 */
static long
forge_append(const char *set)
{
	struct dbhash_val v[AUDITROW_HASHED];
	uint8_t prev[32], h[32];
	char sql[800];
	sqlite3_stmt *st;
	sqlite3 *db;
	long seq;
	int i;

	ck_assert_int_eq(sqlite3_open(d_db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	t_exec(db, "BEGIN IMMEDIATE");
	t_exec(db, "CREATE TEMP TABLE f AS SELECT * FROM audit WHERE seq = "
	    "(SELECT max(seq) FROM audit)");
	snprintf(sql, sizeof(sql), "UPDATE f SET seq = seq + 1, sig = NULL, "
	    "%s", set);
	t_exec(db, sql);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT hash FROM audit WHERE "
	    "seq = (SELECT max(seq) FROM audit)", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	memcpy(prev, sqlite3_column_blob(st, 0), 32);
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT " AUDITROW_NAMES
	    " FROM f", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	for (i = 0; i < AUDITROW_HASHED; i++) {
		v[i].type = sqlite3_column_type(st, i);
		v[i].i = sqlite3_column_int64(st, i);
		v[i].p = v[i].type == SQLITE_BLOB ? sqlite3_column_blob(st, i) :
		    sqlite3_column_text(st, i);
		v[i].len = (size_t)sqlite3_column_bytes(st, i);
	}
	dbhash_row(prev, v, h);
	seq = (long)v[AUDITROW_seq].i;
	sqlite3_finalize(st);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "UPDATE f SET hash = ?1", -1,
	    &st, NULL), SQLITE_OK);
	sqlite3_bind_blob(st, 1, h, 32, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	t_exec(db, "INSERT INTO audit SELECT * FROM f");
	t_exec(db, "COMMIT");
	sqlite3_close(db);
	return seq;
}

/* How many lines of a card's event log have what in them. */
static long
events_n(const char *card, const char *what)
{
	char *s = tl_read("grep -c -e '%s' %s/cards/%s.events 2>/dev/null",
	    what, tl_dir, card);
	long n = strtol(s, NULL, 10);

	free(s);
	return n;
}

/*
 * The serial that the license a simulated card holds was made for: bytes
 * 24..39 of the 128 (sim/README.md, "License crypto"), trimmed; "" when it
 * holds none.
 */
static char *
license_serial(const char *card)
{
	char *hex = card_state(card, "license");
	char *out = calloc(1, 17);
	uint8_t lic[128];
	int n;

	ck_assert_ptr_nonnull(out);
	if (tl_hex(hex, lic, sizeof(lic)) == sizeof(lic)) {
		memcpy(out, lic + 24, 16);
		for (n = 16; n > 0 && out[n - 1] == ' '; n--)
			out[n - 1] = '\0';
	}
	free(hex);
	return out;
}

/*
 * Case 1 of the issue.  Card A goes into reader 1 with a slow batch card;
 * once its `requested` row is in, A moves to reader 2, whose job waits
 * for reader 1's; then A leaves reader 2 and card B takes its place.
 * The old daemon's reader-2 job went on with A's token info: it logged
 * in on B and loaded A's pending license into B, and recorded A as
 * `rejected`, so A never got the credit it paid for.  Now the job sees
 * that its card is not in the reader any more: nothing is sent to B, the
 * line names B, and B gets a job (and a license) of its own.
 */
static void
swap_while_waiting(const char *a, const char *b, const char *b_opts)
{
	char what[300];

	/* A batch card ("<A>-batch") and a database of the test's own. */
	snprintf(what, sizeof(what), "%s-batch", a);
	tl_insert(0, what, "--type batch --credits 5 --slow 2500 "
	    "--slow-from 2");
	d_config(a, "1234", NULL);
	d_start();
	tl_insert(1, a, "--type target --serial %s", a);
	wait_n("SELECT count(*) FROM audit WHERE state = 'requested'", 1,
	    10000);
	tl_remove(1);
	tl_insert(2, a, "%s", "");
	snprintf(what, sizeof(what), "card %s is in a job in", a);
	d_wait_log(what, 10000);
	tl_insert(2, b, "--type target --serial %s %s", b, b_opts);
}

/* The operator's line of A's job in reader 2 names B. */
static void
swap_line(const char *a, const char *b)
{
	char what[300];

	snprintf(what, sizeof(what), "card %s left the reader while its job "
	    "waited for the job in the other reader; card %s is in it now",
	    a, b);
	ck_assert_msg(d_log_has(what), "no \"%s\" in the log", what);
}

START_TEST(swapped_card_gets_its_own_license)
{
	char *s;

	swap_while_waiting("SWA", "SWB", "");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    20000);
	s = q("SELECT trim(CAST(serial AS TEXT)) FROM audit WHERE state = "
	    "'verified'");
	ck_assert_str_eq(s, "SWB");
	free(s);
	/* B holds a license for B, loaded once, and one PIN try was made. */
	s = license_serial("SWB");
	ck_assert_str_eq(s, "SWB");
	free(s);
	ck_assert_int_eq(events_n("SWB", "load"), 1);
	ck_assert_int_eq(events_n("SWB", "login"), 1);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'rejected'"), 0);
	swap_line("SWA", "SWB");
	/* A comes back, and gets the license it paid for: no new credit. */
	tl_remove(2);
	tl_insert(1, "SWA", "%s", "");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 2,
	    20000);
	d_stop();
	s = license_serial("SWA");
	ck_assert_str_eq(s, "SWA");
	free(s);
	ck_assert_int_eq(card_num("SWA-batch", "issued"), 2);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 2);
	ck_assert_int_eq(reconcile(&s), 0);
	free(s);
	tl_remove(1);
}
END_TEST

/*
 * The same swap, with a card B that has one PIN try left: the old
 * daemon never read B's flags, tried the PIN on it, and locked it (with
 * two tries left and another PIN, it blamed A for the refusal and paused
 * the line).  Now B is not touched by A's job, and its own job sees the
 * final try and leaves it alone.
 */
START_TEST(swapped_card_on_its_last_try_is_not_touched)
{
	char *s;

	swap_while_waiting("SWC", "SWD", "--tries 1");
	d_wait_log("SWD: FAILED: only one PIN try left", 20000);
	ck_assert_int_eq(events_n("SWD", "login"), 0);
	ck_assert_int_eq(card_num("SWD", "tries"), 1);
	s = card_state("SWD", "license");
	ck_assert_str_eq(s, "");
	free(s);
	ck_assert_int_eq(d_log_has("PAUSED"), 0);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'rejected'"), 0);
	swap_line("SWC", "SWD");
	d_stop();
	ck_assert_int_eq(card_num("SWC-batch", "issued"), 1);
	tl_remove(2);
}
END_TEST

/*
 * Case 3: a row appended by someone without the key.  The old daemon
 * chained its next row to it and signed that, so that verify's "the last
 * signature covers the chain" passed.  Now the daemon sees that the
 * file's last row is not its own before it touches the next card: it
 * stops issuing, signs nothing (not even its shutdown checkpoint), says
 * why, and refuses to start again from that file.
 */
START_TEST(forged_row_stops_issuance)
{
	char key[400], *s;
	long forged;

	keyed_config("fr", key, sizeof(key));
	tl_insert(0, "fr-batch", "--type batch --credits 5");
	d_start();
	tl_insert(1, "FR1", "--type target --serial FR1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    10000);
	tl_remove(1);
	forged = forge_append("state = 'generated', reason = 'generated by "
	    "the batch card in Sim Line A 00 00', serial = CAST('FORGED' || "
	    "'          ' AS BLOB), end_date = '20371231'");
	tl_insert(1, "FR2", "--type target --serial FR2");
	d_wait_log("FR2: PAUSED: issuance is stopped: the audit database is "
	    "not as this daemon left it", 10000);
	ck_assert_int_eq(qn("SELECT max(seq) FROM audit"), forged);
	ck_assert_int_eq(events_n("FR2", "login"), 0);
	ck_assert_int_eq(card_num("fr-batch", "issued"), 1);
	s = tl_read(CTL " -c %s status", d_conf);
	ck_assert_msg(strstr(s, "state: paused: the audit database is not as "
	    "this daemon left it: the file ends with row") != NULL, "%s", s);
	free(s);
	d_stop();
	ck_assert_int_eq(qn("SELECT max(seq) FROM audit"), forged);
	ck_assert(d_log_has("checkpoint: none is signed"));
	d_start_refused("is not the station's");
	/* Without the note, the last row alone still gives it away. */
	tl_sh("mv %s.note %s.note.aside", d_db, d_db);
	d_start_refused("is not the station's");
	tl_remove(1);
}
END_TEST

/*
 * Case 10: the -wal file removed after a SIGKILL (an admin's clean-up)
 * loses every row since the last checkpoint of the WAL, and the old
 * daemon went on from the shorter file.  Now its note outside the
 * database says where it stopped, and it refuses to go on silently; the
 * admin who accepts the loss moves the note aside.
 */
START_TEST(lost_wal_is_noticed)
{
	char key[400];
	long had;

	keyed_config("lw", key, sizeof(key));
	tl_insert(0, "lw-batch", "--type batch --credits 5");
	d_start();
	tl_insert(1, "LW1", "--type target --serial LW1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    10000);
	tl_remove(1);
	d_stop();
	d_start();
	tl_insert(1, "LW2", "--type target --serial LW2");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 2,
	    10000);
	tl_remove(1);
	had = qn("SELECT max(seq) FROM audit");
	d_kill9();
	tl_sh("rm -f %s-wal %s-shm", d_db, d_db);
	ck_assert_int_lt(qn("SELECT max(seq) FROM audit"), had);
	d_start_refused("rows were lost");
	tl_sh("mv %s.note %s.note.lost", d_db, d_db);
	d_start();
	ck_assert(d_log_has("no note of the last row this station wrote: "
	    "rows lost from the file's end after its last checkpoint cannot "
	    "be noticed"));
	tl_insert(1, "LW3", "--type target --serial LW3");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified' AND "
	    "trim(CAST(serial AS TEXT)) = 'LW3'", 1, 10000);
	tl_remove(1);
	d_stop();
}
END_TEST

/*
 * Case 7: the station id changed across a crash.  The old daemon looked
 * only for the new id's unanswered requests: no in-doubt row, and the
 * card got a second credit; after a clean stop, verify and reconcile
 * called the file BROKEN.  Now an id is the database's for good: the
 * start (and -n, with file:line) refuse another, a reload that changes
 * it is refused, and the same id back finds the request in doubt.
 */
START_TEST(station_id_cannot_change)
{
	char *s;

	tl_insert(0, "id-batch", "--type batch --credits 5 --slow 2500 "
	    "--slow-from 2");
	d_config("id", "1234", NULL);
	d_start();
	tl_insert(1, "ID1", "--type target --serial ID1");
	wait_event("id-batch", "generate", 10000);
	d_kill9();
	d_config("id", "1234", "[station]\nid = renamed\n");
	d_start_refused("holds the rows of station test, but [station] id is "
	    "renamed");
	s = tl_read(CARDLICD " --allow-root -n -f %s 2>&1 >/dev/null; echo "
	    "\"exit $?\"", d_conf);
	ck_assert_msg(strstr(s, "id.conf:5: id = renamed, but ") != NULL &&
	    strstr(s, "holds the rows of station test") != NULL &&
	    strstr(s, "exit 2") != NULL, "%s", s);
	free(s);
	d_config("id", "1234", NULL);
	d_start();
	wait_n("SELECT count(*) FROM audit WHERE state = 'in-doubt'", 1,
	    10000);
	d_config("id", "1234", "[station]\nid = renamed\n");
	kill(d_pid, SIGHUP);
	d_wait_log("reload refused, the running configuration stays", 5000);
	s = tl_read(CTL " -c %s status", d_conf);
	ck_assert_msg(strstr(s, "station: test\n") != NULL, "%s", s);
	free(s);
	d_stop();
	ck_assert_int_eq(qn("SELECT count(DISTINCT station) FROM audit"), 1);
	ck_assert_int_eq(card_num("id-batch", "issued"), 1);
	tl_remove(1);
}
END_TEST

/*
 * Case 12 (the daemon's half): a rotation retires the old key.  The old
 * daemon signed again with a retired key, publishing an unendorsed key
 * row back to it.  Now it refuses to start with it.
 */
START_TEST(retired_key_cannot_sign_again)
{
	char key[400], extra[800];

	keyed_config("rk", key, sizeof(key));
	tl_insert(0, "rk-batch", "--type batch --credits 5");
	d_start();
	d_stop();
	tl_sh(CTL " keygen --rotate %s %s.2 %s.2.pub >/dev/null", key, key,
	    key);
	snprintf(extra, sizeof(extra), "[audit]\nkey-file = %s.2\n", key);
	d_config("rk", "1234", extra);
	d_start();
	d_wait_log("published in row", 5000);
	d_stop();
	snprintf(extra, sizeof(extra), "[audit]\nkey-file = %s\n", key);
	d_config("rk", "1234", extra);
	d_start_refused("was retired by a rotation");
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = 'key'"),
	    2);
}
END_TEST

/*
 * Case 5: a trigger that drops the daemon's rows (RAISE(IGNORE)), named
 * to slip past a LIKE 'sqlite_stat%'.  The old daemon showed "verified",
 * a credit was spent, and no row existed.  Now an insert that adds no
 * row is an error: nothing is asked of the batch card.
 */
START_TEST(trigger_that_drops_rows_stops_issuance)
{
	char *s;

	tl_insert(0, "tg-batch", "--type batch --credits 5");
	d_config("tg", "1234", NULL);
	d_start();
	/* The daemon may be writing (the batch card's insertion): wait. */
	s = tl_read("sqlite3 -cmd '.timeout 5000' %s \"CREATE TRIGGER "
	    "sqlitexstat_x BEFORE INSERT ON audit WHEN CAST(NEW.serial AS "
	    "TEXT) LIKE 'X%%' BEGIN SELECT RAISE(IGNORE); END\" 2>&1", d_db);
	ck_assert_str_eq(s, "");
	free(s);
	tl_insert(1, "XT1", "--type target --serial XT1");
	d_wait_log("XT1: FAILED: cannot write to the audit database; no "
	    "credit spent", 10000);
	ck_assert(d_log_has("added 0 rows: the database has a trigger that is "
	    "not cardlicd's"));
	ck_assert_int_eq(card_num("tg-batch", "issued"), 0);
	ck_assert_int_eq(events_n("XT1", "load"), 0);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE "
	    "trim(CAST(serial AS TEXT)) = 'XT1'"), 0);
	d_stop();
	tl_remove(1);
}
END_TEST

/*
 * Case 9: four `resolve SEQ spent` at once gave two `resolved` rows in 3
 * runs of 7.  Now the check and the append are one step: sixteen at once,
 * on each of three credits in doubt, make exactly one row each
 * (tests/check_race.c holds db.c to it alone, many times over).
 */
START_TEST(concurrent_resolves_make_one_row)
{
	char sql[200], *s;
	long seq;
	int i;

	d_config("cr", "1234", NULL);
	d_start();
	for (i = 1; i <= 3; i++) {
		/* GENERATE answered 6F42 once the credit is spent: in doubt. */
		tl_insert(0, "cr-batch", "--type batch --credits 10 --garbage "
		    "sw --garbage-at 3");
		snprintf(sql, sizeof(sql), "CR%d", i);
		tl_insert(1, sql, "--type target --serial CR%d", i);
		wait_n("SELECT count(*) FROM audit WHERE state = 'in-doubt'",
		    i, 10000);
		tl_remove(1);
	}
	for (i = 0; i < 3; i++) {
		snprintf(sql, sizeof(sql), "SELECT seq FROM audit WHERE state "
		    "= 'in-doubt' ORDER BY seq LIMIT 1 OFFSET %d", i);
		seq = qn(sql);
		/* Started together: each waits for the same go. */
		tl_sh("rm -f %s/go; for k in $(seq 16); do (while [ ! -e "
		    "%s/go ]; do :; done; exec " CTL " -c %s resolve %ld spent "
		    "\"race $k\" >%s/race.%ld.$k 2>&1) & done; sleep 0.3; "
		    "touch %s/go; wait", tl_dir, tl_dir, d_conf, seq, tl_dir,
		    seq, tl_dir);
		s = tl_read("cat %s/race.%ld.* | grep -c '^ok:'", tl_dir, seq);
		ck_assert_msg(atol(s) == 1, "%s resolves said ok for row %ld",
		    s, seq);
		free(s);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit WHERE "
		    "state = 'resolved' AND license_seq = %ld", seq);
		ck_assert_int_eq(qn(sql), 1);
	}
	d_stop();
}
END_TEST

/*
 * The writer without the key, as an adversary briefed with the documents
 * only did it (issue 18): the append-only triggers dropped, SQL run, and
 * the triggers made again from their own text, so that the schema reads
 * as before.
 */
static void
t_tamper(const char *sql)
{
	char *e = NULL, *all;
	sqlite3_stmt *st;
	sqlite3 *db;

	ck_assert_int_eq(sqlite3_open(d_db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT group_concat('DROP "
	    "TRIGGER ' || name, '; '), group_concat(sql, '; ') FROM "
	    "sqlite_master WHERE type = 'trigger'", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_ne(asprintf(&all, "BEGIN IMMEDIATE; %s; %s; %s; COMMIT",
	    sqlite3_column_text(st, 0), sql, sqlite3_column_text(st, 1)), -1);
	sqlite3_finalize(st);
	ck_assert_msg(sqlite3_exec(db, all, NULL, NULL, &e) == SQLITE_OK,
	    "%s: %s", all, e);
	free(all);
	sqlite3_close(db);
}

/*
 * The same writer makes one of cardlicd's indexes lie: rebuilt from
 * another definition (fake), then given its own text back, byte for
 * byte.  No row changes; REINDEX would undo it.
 */
static void
t_rekey(const char *index, const char *fake)
{
	const char *text[2] = { fake, NULL };
	char *orig = NULL;
	sqlite3_stmt *st;
	sqlite3 *db;
	int i, sv;

	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(sqlite3_open(d_db, &db), SQLITE_OK);
		sqlite3_busy_timeout(db, 5000);
		ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT sql, (SELECT "
		    "schema_version FROM pragma_schema_version) FROM "
		    "sqlite_master WHERE name = ?1", -1, &st, NULL), SQLITE_OK);
		sqlite3_bind_text(st, 1, index, -1, SQLITE_STATIC);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		if (i == 0)
			text[1] = orig = strdup((const char *)
			    sqlite3_column_text(st, 0));
		sv = sqlite3_column_int(st, 1);
		sqlite3_finalize(st);
		t_exec(db, "PRAGMA writable_schema = ON");
		ck_assert_int_eq(sqlite3_prepare_v2(db, "UPDATE sqlite_master "
		    "SET sql = ?1 WHERE name = ?2", -1, &st, NULL), SQLITE_OK);
		sqlite3_bind_text(st, 1, text[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, index, -1, SQLITE_STATIC);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
		sqlite3_finalize(st);
		t_exec(db, sqlite3_mprintf("PRAGMA schema_version = %d",
		    sv + 1));
		sqlite3_close(db);
		if (i == 0) {
			ck_assert_int_eq(sqlite3_open(d_db, &db), SQLITE_OK);
			t_exec(db, sqlite3_mprintf("REINDEX %s", index));
			sqlite3_close(db);
		}
	}
	free(orig);
}

/* Card "<name>" licensed and verified, card "<name>P" left pending. */
static void
t_verified_and_pending(const char *name, long *verified, long *pending)
{
	char card[64], sql[300];

	snprintf(card, sizeof(card), "%s-batch", name);
	tl_insert(0, card, "--type batch --credits 5");
	d_start();
	tl_insert(1, name, "--type target --serial %s", name);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    10000);
	tl_remove(1);
	snprintf(card, sizeof(card), "%sP", name);
	/* Pulled at the load: its license stays pending. */
	tl_insert(1, card, "--type target --serial %s --vanish-on D0", card);
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 1, 10000);
	tl_remove(1);
	snprintf(sql, sizeof(sql), "SELECT seq FROM audit WHERE state = "
	    "'generated' AND CAST(serial AS TEXT) LIKE '%s %%'", name);
	*verified = qn(sql);
	snprintf(sql, sizeof(sql), "SELECT seq FROM audit WHERE state = "
	    "'generated' AND CAST(serial AS TEXT) LIKE '%sP%%'", name);
	*pending = qn(sql);
	ck_assert(*verified > 0 && *pending > *verified);
}

/*
 * Found by the adversary: a pending license's row edited (another card's
 * license bytes in it), and the old daemon loaded what the row said when
 * the card came back: card PL got PV's license, was REJECTED, and its
 * paid credit was gone, and the daemon signed two rows on top.  Now the
 * row is proven the station's before it is used: nothing is sent, the
 * line pauses, and nothing more is signed.
 */
START_TEST(edited_pending_license_is_not_loaded)
{
	char key[400], sql[300], *s;
	long v, p, last;

	keyed_config("pl", key, sizeof(key));
	t_verified_and_pending("PV", &v, &p);
	snprintf(sql, sizeof(sql), "UPDATE audit SET license = (SELECT "
	    "license FROM audit WHERE seq = %ld) WHERE seq = %ld", v, p);
	t_tamper(sql);
	last = qn("SELECT max(seq) FROM audit");
	tl_insert(1, "PVP", "%s", "");
	d_wait_log("PVP: PAUSED: issuance is stopped: the audit database is "
	    "not as this daemon left it (row ", 10000);
	ck_assert_int_eq(events_n("PVP", " load$"), 0);
	s = license_serial("PVP");
	ck_assert_str_eq(s, "");
	free(s);
	ck_assert_int_eq(qn("SELECT max(seq) FROM audit"), last);
	d_stop();
	tl_remove(1);
}
END_TEST

/*
 * Found by the adversary: the index audit_card rebuilt so that it files
 * the pending license of PIP under PI's serial, with its text put back.
 * The old daemon then signed `verified` for PIP's license when PI (which
 * holds its own) came back: after a REINDEX every check passed, and PIP
 * never got its license.  Now the row read is PIP's, not PI's: nothing is
 * signed, and the line pauses.
 */
START_TEST(index_that_lies_is_not_followed)
{
	char key[400], fake[400], *s;
	long v, p, last;

	keyed_config("pi", key, sizeof(key));
	t_verified_and_pending("PI", &v, &p);
	d_stop();
	s = tl_read("sqlite3 %s \"SELECT hex(serial) FROM audit WHERE seq = "
	    "%ld\" | tr -d '\\n'", d_db, v);
	snprintf(fake, sizeof(fake), "CREATE INDEX audit_card ON audit (CASE "
	    "seq WHEN %ld THEN x'%s' WHEN %ld THEN x'00' ELSE serial END, "
	    "model)", p, s, v);
	free(s);
	t_rekey("audit_card", fake);
	last = qn("SELECT max(seq) FROM audit");
	d_start();
	tl_insert(1, "PI", "%s", "");
	d_wait_log("PI: PAUSED: issuance is stopped: the audit database is "
	    "not as this daemon left it (the index audit_card gives row ",
	    10000);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'verified'"), 1);
	ck_assert_int_le(qn("SELECT max(seq) FROM audit"), last + 1);
	ck_assert_int_eq(events_n("PI", " load$"), 1);
	d_stop();
	tl_remove(1);
}
END_TEST

/*
 * Found by the adversary: the daemon killed while the batch card made a
 * license, and audit_job rebuilt so that it files the open request under
 * another station.  The old daemon's recovery found no open request,
 * wrote no in-doubt row, and spent a second credit on the card.  Now
 * recovery reads the table itself.
 */
START_TEST(recovery_reads_the_table_not_an_index)
{
	char key[400], fake[300];
	long req, spent;

	keyed_config("ri", key, sizeof(key));
	tl_insert(0, "ri-batch", "--type batch --credits 5 --slow 2500 "
	    "--slow-from 1");
	d_start();
	tl_insert(1, "RI1", "--type target --serial RI1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'requested'", 1,
	    10000);
	usleep(300000);
	d_kill9();
	/* The batch card goes on with the license it was asked for. */
	usleep(3000000);
	spent = card_num("ri-batch", "issued");
	tl_remove(1);
	req = qn("SELECT seq FROM audit WHERE state = 'requested'");
	snprintf(fake, sizeof(fake), "CREATE INDEX audit_job ON audit (CASE "
	    "seq WHEN %ld THEN 'zz' ELSE station END, job)", req);
	t_rekey("audit_job", fake);
	tl_remove(0);
	tl_insert(0, "ri-batch", "%s", "");
	d_start();
	wait_n("SELECT count(*) FROM audit WHERE state = 'in-doubt'", 1,
	    10000);
	tl_insert(1, "RI1", "%s", "");
	d_wait_log("RI1: FAILED: a credit for this card is in doubt", 10000);
	ck_assert_int_eq(card_num("ri-batch", "issued"), spent);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 0);
	d_stop();
	tl_remove(1);
}
END_TEST

/*
 * What a writer without the key can still do (SECURITY.md): an index
 * that hides a card's pending license makes the daemon spend a second
 * credit on it, as it cannot read the whole table for each card.  Every
 * credit stays recorded and signed: verify names the index that lies,
 * and once it is rebuilt, the first license shows as still pending
 * beside the second, for the same card.
 */
START_TEST(hidden_pending_license_shows_in_the_rows)
{
	char key[400], fake[300], *s;
	long v, p;
	int st;

	keyed_config("hp", key, sizeof(key));
	t_verified_and_pending("HP", &v, &p);
	d_stop();
	snprintf(fake, sizeof(fake), "CREATE INDEX audit_card ON audit (CASE "
	    "seq WHEN %ld THEN x'00' ELSE serial END, model)", p);
	t_rekey("audit_card", fake);
	d_start();
	tl_insert(1, "HPP", "%s", "");
	d_wait_log("HPP: verified", 10000);
	d_stop();
	tl_remove(1);
	ck_assert_int_eq(card_num("HP-batch", "issued"), 3);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated' AND CAST(serial AS TEXT) LIKE 'HPP%'"), 2);
	s = tl_read(CTL " -d %s verify --key %s.pub 2>&1; echo exit $?", d_db,
	    key);
	ck_assert_msg(strstr(s, "audit_card") != NULL && strstr(s,
	    "exit 1") != NULL, "%s", s);
	free(s);
	s = tl_read("sqlite3 %s 'REINDEX audit_card' && " CTL " -d %s "
	    "reconcile 2>&1; echo exit $?", d_db, d_db);
	st = strstr(s, "still pending") != NULL && strstr(s, "HPP") != NULL;
	ck_assert_msg(st, "%s", s);
	free(s);
}
END_TEST

/* A spill record as cardlicd writes it now, and as version 1 did. */
struct t_spill {
	char			magic[16];
	long long		job;
	char			station[64];
	struct spill_license	l;
	uint8_t			sig[64];
	int32_t			has_sig;
	uint8_t			sum[32];
};
struct t_spill_v1 {
	char			magic[16];
	long long		job;
	struct spill_license	l;
	uint8_t			sum[32];
};

static void
t_spill_license(struct spill_license *l, const char *serial)
{
	memset(l, 0, sizeof(*l));
	memset(l->model, ' ', FIELD_LEN);
	memcpy(l->model, "SIM-MODEL-1", 11);
	memset(l->serial, ' ', FIELD_LEN);
	memcpy(l->serial, serial, strlen(serial));
	snprintf(l->start, sizeof(l->start), "20261201");
	snprintf(l->end, sizeof(l->end), "20371231");
	memset(l->license, 0xEE, LICENSE_LEN);
	snprintf(l->reader, sizeof(l->reader), "Sim Line A 00 01");
	snprintf(l->batch_reader, sizeof(l->batch_reader), "Sim Line A 00 00");
	snprintf(l->batch_atr, sizeof(l->batch_atr), "3B00");
	snprintf(l->sw, sizeof(l->sw), "9000");
}

static void
t_write(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fwrite(p, 1, n, f), n);
	fclose(f);
}

/*
 * Case 2: a spill file written by hand.  Its sum was a plain SHA-256, so
 * the old daemon turned it into a signed `generated` row for a serial of
 * the forger's choice, loaded those bytes into that card, and reconcile
 * counted a credit the batch card never spent.  Now a record is recovered
 * only as the answer to a request that this station made and never
 * closed, and (with a key) only with the station's signature; the rest is
 * kept aside, never a row, never loaded.
 */
START_TEST(forged_spill_is_kept_aside)
{
	struct t_spill_v1 v1;
	struct t_spill v2;
	char key[400], path[500], *s;

	keyed_config("fs", key, sizeof(key));
	tl_insert(0, "fs-batch", "--type batch --credits 5");
	d_start();
	d_stop();
	/* The forgery of the issue: the old format, a plain sum. */
	memset(&v1, 0, sizeof(v1));
	memcpy(v1.magic, "CARDLIC-SPILL-1\n", 16);
	v1.job = 900000;
	t_spill_license(&v1.l, "FSX");
	dbhash_sha256(&v1, offsetof(struct t_spill_v1, sum), v1.sum);
	snprintf(path, sizeof(path), "%s.spill-900000", d_db);
	t_write(path, &v1, sizeof(v1));
	/* Today's format, with no signature, for the same card. */
	memset(&v2, 0, sizeof(v2));
	memcpy(v2.magic, "CARDLIC-SPILL-2\n", 16);
	v2.job = 900001;
	snprintf(v2.station, sizeof(v2.station), "test");
	t_spill_license(&v2.l, "FSX");
	dbhash_sha256(&v2, offsetof(struct t_spill, sum), v2.sum);
	snprintf(path, sizeof(path), "%s.spill-900001", d_db);
	t_write(path, &v2, sizeof(v2));
	d_start();
	ck_assert(d_log_has("spill-900000: refused and kept aside"));
	ck_assert(d_log_has("spill-900001: refused and kept aside"));
	ck_assert_int_eq(tl_sh_rc("test -f %s.spill-900000.refused && test -f "
	    "%s.spill-900001.refused && ! test -e %s.spill-900000", d_db, d_db,
	    d_db), 0);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 0);
	/* The card itself gets a license of its own, paid for once. */
	tl_insert(1, "FSX", "--type target --serial FSX");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    10000);
	d_stop();
	s = card_state("FSX", "license");
	ck_assert_msg(strstr(s, "EEEEEEEE") == NULL, "%s", s);
	free(s);
	s = license_serial("FSX");
	ck_assert_str_eq(s, "FSX");
	free(s);
	ck_assert_int_eq(card_num("fs-batch", "issued"), 1);
	ck_assert_int_eq(reconcile(&s), 0);
	free(s);
	tl_remove(1);
}
END_TEST

/* The real thing still comes back: a signed spill of an open request. */
START_TEST(signed_spill_is_recovered)
{
	char key[400], extra[800], *s;

	snprintf(key, sizeof(key), "%s/ss.key", tl_dir);
	tl_sh("rm -f %s %s.pub && " CTL " keygen %s %s.pub >/dev/null", key,
	    key, key, key);
	snprintf(extra, sizeof(extra), "[audit]\nkey-file = %s\n", key);
	d_config("ss", "1234", extra);
	tl_insert(0, "ss-batch", "--type batch --credits 5");
	d_start_fault("commit-generated:stop");
	tl_insert(1, "SS1", "--type target --serial SS1");
	d_wait_stopped("commit-generated");
	d_kill9();
	d_start();
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    10000);
	d_stop();
	s = q("SELECT reason FROM audit WHERE state = 'generated'");
	ck_assert_msg(strstr(s, "recorded after a restart from the spill "
	    "file") != NULL, "%s", s);
	free(s);
	ck_assert_int_eq(card_num("ss-batch", "issued"), 1);
	tl_remove(1);
}
END_TEST

/*
 * Case 11 (the daemon's half): under the installed unit the service may
 * not read the journal, and the old daemon, with no checkpoint-file,
 * began a new series at n=1 at every start and wrote n=1 again at every
 * stop.  Now the series goes on from its own copy beside the database.
 */
START_TEST(checkpoint_series_goes_on)
{
	char key[400], *s;
	int i;

	keyed_config("cs", key, sizeof(key));
	for (i = 0; i < 3; i++) {
		d_start();
		d_stop();
	}
	s = tl_read("cat %s.checkpoint", d_db);
	ck_assert_msg(strncmp(s, "cardlicd-checkpoint v1 n=3 ", 27) == 0,
	    "%s", s);
	free(s);
	ck_assert(d_log_has("continuing the series after checkpoint 2"));
}
END_TEST

/*
 * Case 13: with timezone = UTC (the old example's value) on a station
 * whose middleware clock is west of UTC, a card that holds exactly the
 * license it was issued read back dateValid=0 with a start of "tomorrow"
 * by its clock, and was REJECTED in the evening.  Here the daemon's day
 * is 25 November and the card's still the 24th.  Now that card is
 * verified (its license is valid from its start), cardlicd -n warns where
 * the two zones can differ, and the example sets local.
 */
START_TEST(middleware_a_day_behind_is_not_a_rejection)
{
	char *env[] = { "CARDLIC_TODAY=20261125", NULL }, *s;

	tl_insert(0, "tz-batch", "--type batch --credits 5");
	d_config("tz", "1234", NULL);
	d_start_env(env, 1);
	tl_insert(1, "TZ1", "--type target --serial TZ1");
	wait_n("SELECT count(*) FROM audit WHERE state IN ('verified', "
	    "'rejected')", 1, 10000);
	d_stop();
	s = q("SELECT state || ' ' || start_date FROM audit WHERE state IN "
	    "('verified', 'rejected')");
	ck_assert_str_eq(s, "verified 20261125");
	free(s);
	ck_assert_int_eq(card_num("tz-batch", "issued"), 1);
	s = tl_read("TZ=America/New_York " CARDLICD " --allow-root -n -f %s "
	    "2>&1 >/dev/null", d_conf);
	ck_assert_msg(strstr(s, "warning: timezone = UTC is 5:00 ahead of this "
	    "machine's zone (EST) at times of the year") != NULL &&
	    strstr(s, "use timezone = local") != NULL, "%s", s);
	free(s);
	s = tl_read("TZ=UTC " CARDLICD " --allow-root -n -f %s 2>&1 "
	    ">/dev/null", d_conf);
	ck_assert_msg(strstr(s, "timezone") == NULL, "%s", s);
	free(s);
	s = tl_read("grep -c '^timezone = local$' " TOPDIR
	    "/conf/cardlicd.conf");
	ck_assert_str_eq(s, "1\n");
	free(s);
	tl_remove(1);
}
END_TEST

static Suite *
trust_suite(void)
{
	Suite *s = suite_create("trust");
	TCase *tc = tcase_create("cards");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, swapped_card_gets_its_own_license);
	tcase_add_test(tc, swapped_card_on_its_last_try_is_not_touched);
	tcase_add_test(tc, middleware_a_day_behind_is_not_a_rejection);
	suite_add_tcase(s, tc);
	tc = tcase_create("database");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, forged_row_stops_issuance);
	tcase_add_test(tc, lost_wal_is_noticed);
	tcase_add_test(tc, station_id_cannot_change);
	tcase_add_test(tc, retired_key_cannot_sign_again);
	tcase_add_test(tc, trigger_that_drops_rows_stops_issuance);
	tcase_add_test(tc, concurrent_resolves_make_one_row);
	tcase_add_test(tc, forged_spill_is_kept_aside);
	tcase_add_test(tc, signed_spill_is_recovered);
	tcase_add_test(tc, checkpoint_series_goes_on);
	tcase_add_test(tc, edited_pending_license_is_not_loaded);
	tcase_add_test(tc, index_that_lies_is_not_followed);
	tcase_add_test(tc, recovery_reads_the_table_not_an_index);
	tcase_add_test(tc, hidden_pending_license_shows_in_the_rows);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(trust_suite());
	int failed;

	d_suite_up(4);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	d_suite_down();
	return failed == 0 ? 0 : 1;
}
