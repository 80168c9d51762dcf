/*
 * cardlicd end to end, on the simulated line through the real pcscd: the
 * acceptance list of the daemon issue.  Each test runs its own daemon on
 * its own database; cards carry a per-test prefix, so that card state
 * files never leak from one test into another.
 */
#include <sys/wait.h>

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

START_TEST(fifty_cards_one_after_another)
{
	char *s;

	tl_insert(0, "fifty-batch", "--type batch --credits 60");
	d_config("fifty", "1234", NULL);
	d_start();
	feed("FT", "1", 50, NULL);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 50,
	    5000);
	d_stop();
	/* Every card verified once, with the exact bytes of its token. */
	ck_assert_int_eq(qn("SELECT count(DISTINCT serial) FROM audit WHERE "
	    "state = 'verified'"), 50);
	ck_assert_int_eq(qn("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
	    "SELECT i + 1 FROM n WHERE i < 50) SELECT count(*) FROM n WHERE "
	    "EXISTS (SELECT 1 FROM audit WHERE state = 'verified' AND "
	    "model = CAST('SIM-MODEL-1     ' AS BLOB) AND "
	    "serial = CAST(printf('FT%06d        ', i) AS BLOB))"), 50);
	/* Credits spent = licenses generated = cards. */
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 50);
	s = card_state("fifty-batch", "credits");
	ck_assert_str_eq(s, "10");
	free(s);
	s = card_state("fifty-batch", "issued");
	ck_assert_str_eq(s, "50");
	free(s);
	/* Each card's own status, as the card itself computes it. */
	s = tl_read("cut -f6 %s/FT.tsv | cut -c1-3 | sort | uniq -c", tl_dir);
	ck_assert_str_eq(s, "     50 111\n");
	free(s);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state IN "
	    "('failed', 'rejected')"), 0);
}
END_TEST

START_TEST(pulled_after_generate_keeps_its_license)
{
	char *s, *lic1;

	tl_insert(0, "pull-batch", "--type batch --credits 10");
	d_config("pull", "1234", NULL);
	d_start();
	/* The card leaves as the license (INS D0) is on its way to it. */
	tl_insert(1, "PULL01", "--type target --serial PULL01 "
	    "--vanish-on D0");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 1, 10000);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 1);
	s = q("SELECT reason FROM audit WHERE state = 'failed'");
	ck_assert_msg(strstr(s, "stays pending") != NULL, "%s", s);
	free(s);
	tl_remove(1);
	/* Back in: the same license, no new credit. */
	tl_insert(1, "PULL01", "%s", "");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    10000);
	d_stop();
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 1);
	lic1 = q("SELECT seq FROM audit WHERE state = 'generated'");
	s = q("SELECT license_seq FROM audit WHERE state = 'verified'");
	ck_assert_str_eq(s, lic1);
	free(s);
	free(lic1);
	s = card_state("pull-batch", "credits");
	ck_assert_str_eq(s, "9");
	free(s);
	s = tl_read("grep -c ' load$' %s/cards/PULL01.events", tl_dir);
	ck_assert_str_eq(s, "1\n");
	free(s);
	tl_remove(1);
}
END_TEST

START_TEST(acceptable_cards_spend_nothing)
{
	char *s;

	tl_insert(0, "acc-batch", "--type batch --credits 10");
	d_config("acc", "1234", NULL);
	d_start();
	feed("AC", "1,2", 2, "--card-opts 0 '--preload 20260101:20301231' "
	    "--card-opts 1 --global");
	wait_n("SELECT count(*) FROM audit WHERE state = 'skipped'", 2, 5000);
	d_stop();
	/* The batch card's insertion, then skipped rows only. */
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'batch-in'"), 1);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state NOT IN "
	    "('skipped', 'batch-in')"), 0);
	s = q("SELECT group_concat(reason, '|') FROM (SELECT reason FROM "
	    "audit WHERE state <> 'batch-in' ORDER BY serial)");
	ck_assert_str_eq(s, "already licensed until 20301231|covered by a "
	    "global license: no license needed");
	free(s);
	s = card_state("acc-batch", "credits");
	ck_assert_str_eq(s, "10");
	free(s);
	/* The PIN was not even tried. */
	s = tl_read("cat %s/cards/AC000001.events %s/cards/AC000002.events | "
	    "grep -c login || true", tl_dir, tl_dir);
	ck_assert_str_eq(s, "0\n");
	free(s);
}
END_TEST

START_TEST(wrong_pin_pauses_until_fixed)
{
	char *s;

	tl_insert(0, "pin-batch", "--type batch --credits 10");
	d_config("pin", "9999", NULL);
	d_start();
	tl_insert(1, "PINA", "--type target --serial PINA");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 1, 5000);
	d_wait_log("PIN was refused", 2000);
	/* Tried once on the first card, never on the next one. */
	s = card_state("PINA", "tries");
	ck_assert_str_eq(s, "2");
	free(s);
	tl_insert(2, "PINB", "--type target --serial PINB");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 2, 5000);
	s = card_state("PINB", "tries");
	ck_assert_str_eq(s, "3");
	free(s);
	s = tl_read("grep -c login %s/cards/PINB.events || true", tl_dir);
	ck_assert_str_eq(s, "0\n");
	free(s);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 0);
	/* A reload with the same wrong PIN stays paused. */
	kill(d_pid, SIGHUP);
	d_wait_log("stays paused", 3000);
	/*
	 * Fixed and reloaded: both cards, still waiting in their readers, go
	 * on; the first one's try counter is whole again.
	 */
	tl_sh("printf '1234\\n' > %s/pin.pin", tl_dir);
	kill(d_pid, SIGHUP);
	d_wait_log("issuance resumes", 3000);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 2, 5000);
	s = q("SELECT group_concat(trim(CAST(serial AS TEXT)), ',') FROM "
	    "(SELECT serial FROM audit WHERE state = 'verified' ORDER BY "
	    "serial)");
	ck_assert_str_eq(s, "PINA,PINB");
	free(s);
	s = card_state("PINA", "tries");
	ck_assert_str_eq(s, "3");
	free(s);
	d_stop();
	s = card_state("pin-batch", "credits");
	ck_assert_str_eq(s, "8");
	free(s);
	tl_remove(1);
	tl_remove(2);
}
END_TEST

/* Three cards at once, a wrong PIN: only one of them loses a try. */
START_TEST(wrong_pin_tried_on_one_card_only)
{
	char *s;

	tl_insert(0, "pin3-batch", "--type batch --credits 10");
	tl_insert(1, "PIN3A", "--type target --serial PIN3A");
	tl_insert(2, "PIN3B", "--type target --serial PIN3B");
	tl_insert(3, "PIN3C", "--type target --serial PIN3C");
	d_config("pin3", "9999", NULL);
	/* Already in their readers: their three jobs start together. */
	d_start();
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 3, 5000);
	d_stop();
	s = tl_read("sed -n 's/^tries=//p' %s/cards/PIN3A.state "
	    "%s/cards/PIN3B.state %s/cards/PIN3C.state | sort | tr '\\n' ' '",
	    tl_dir, tl_dir, tl_dir);
	ck_assert_str_eq(s, "2 3 3 ");
	free(s);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE reason LIKE "
	    "'issuance is paused: the configured PIN was refused%'"), 2);
	tl_remove(1);
	tl_remove(2);
	tl_remove(3);
}
END_TEST

START_TEST(locked_and_last_try_untouched)
{
	char *s;

	tl_insert(0, "lock-batch", "--type batch --credits 10");
	/* One try left of three, and none left. */
	tl_sh("printf 'type=target\\natr=3B888001434C53494D54474716\\n"
	    "model=SIM-MODEL-1\\nserial=LOCK1\\npin=1234\\ntries=1\\n"
	    "max_tries=3\\nglobal=0\\nloads=0\\n' > %s/cards/LOCK1.state",
	    tl_dir);
	tl_sh("sed 's/LOCK1/LOCK0/; s/tries=1/tries=0/' %s/cards/LOCK1.state "
	    "> %s/cards/LOCK0.state", tl_dir, tl_dir);
	d_config("lock", "1234", NULL);
	d_start();
	tl_insert(1, "LOCK1", "%s", "");
	tl_insert(2, "LOCK0", "%s", "");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 2, 5000);
	d_stop();
	/* Besides the batch card's insertion, the two cards' rows. */
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'batch-in'"), 1);
	s = q("SELECT group_concat(reason, '|') FROM (SELECT reason FROM "
	    "audit WHERE state <> 'batch-in' ORDER BY serial)");
	ck_assert_str_eq(s, "the card's PIN is locked; card not touched|"
	    "only one PIN try left on the card; card not touched");
	free(s);
	s = tl_read("cat %s/cards/LOCK1.events %s/cards/LOCK0.events | "
	    "grep -c -e login -e load || true", tl_dir, tl_dir);
	ck_assert_str_eq(s, "0\n");
	free(s);
	s = card_state("lock-batch", "credits");
	ck_assert_str_eq(s, "10");
	free(s);
	tl_remove(1);
	tl_remove(2);
}
END_TEST

START_TEST(exhausted_batch_then_second_then_pause)
{
	char *s;

	tl_insert(0, "ex-batch1", "--type batch --credits 2");
	tl_insert(4, "ex-batch2", "--type batch --credits 2");
	d_config("ex", "1234", NULL);
	d_start();
	feed("EX", "1", 4, NULL);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 4, 5000);
	ck_assert_int_eq(qn("SELECT count(DISTINCT batch_reader) FROM audit "
	    "WHERE state = 'generated'"), 2);
	/* Both empty: the fifth card pauses issuance, and waits. */
	tl_insert(1, "EX000005", "--type target --serial EX000005");
	d_wait_log("no batch card with credit", 5000);
	s = card_state("EX000005", "loads");
	ck_assert_str_eq(s, "0");
	free(s);
	/* A batch card with credit: issuance resumes with the waiting card. */
	tl_insert(5, "ex-batch3", "--type batch --credits 1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 5, 5000);
	d_stop();
	s = card_state("ex-batch3", "credits");
	ck_assert_str_eq(s, "0");
	free(s);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 5);
	ck_assert_int_eq(qn("SELECT max(batch_count) FROM audit WHERE state = "
	    "'generated' AND batch_reader = 'Sim Line A 00 00'"), 2);
	tl_remove(1);
	tl_remove(4);
	tl_remove(5);
}
END_TEST

START_TEST(rejected_license_is_not_regenerated)
{
	char *s;

	tl_insert(0, "rej-batch", "--type batch --credits 10");
	d_config("rej", "1234", NULL);
	d_start();
	tl_insert(1, "REJ1", "--type target --serial REJ1 --reject-license");
	wait_n("SELECT count(*) FROM audit WHERE state = 'rejected'", 1, 5000);
	s = q("SELECT reason FROM audit WHERE state = 'rejected'");
	ck_assert_msg(strstr(s, "serialValid=0 dateValid=0") != NULL, "%s", s);
	free(s);
	tl_remove(1);
	tl_insert(1, "REJ1", "%s", "");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 1, 5000);
	tl_remove(1);
	tl_insert(1, "REJ1", "%s", "");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 2, 5000);
	d_stop();
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'generated'"), 1);
	s = card_state("rej-batch", "credits");
	ck_assert_str_eq(s, "9");
	free(s);
	tl_remove(1);
}
END_TEST

START_TEST(pcscd_restart_mid_run)
{
	tl_insert(0, "rs-batch", "--type batch --credits 10");
	d_config("rs", "1234", NULL);
	d_start();
	feed("RSA", "1", 2, NULL);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 2, 5000);
	tl_sh(TOPDIR "/sim/line restart-pcscd --dir %s >/dev/null", tl_dir);
	d_wait_log("pcscd went away", 5000);
	/* The batch card left with pcscd; it comes back, then new cards. */
	tl_insert(0, "rs-batch", "%s", "");
	feed("RSB", "1,2", 2, NULL);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 4,
	    10000);
	ck_assert_int_eq(kill(d_pid, 0), 0);
	d_stop();
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'verified' AND CAST(serial AS TEXT) LIKE 'RSB%'"), 2);
}
END_TEST

START_TEST(four_readers_at_once)
{
	tl_insert(0, "four-batch", "--type batch --credits 20");
	d_config("four", "1234", NULL);
	d_start();
	/* Slow target cards keep the four jobs in flight together. */
	feed("FR", "1,2,3,4", 8, "--card-opts 0 '--slow 40' --card-opts 1 "
	    "'--slow 40' --card-opts 2 '--slow 40' --card-opts 3 '--slow 40'");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 8, 5000);
	d_stop();
	ck_assert_int_eq(qn("SELECT count(DISTINCT reader) FROM audit WHERE "
	    "state = 'verified'"), 4);
	/* Jobs overlapped: some job's rows are interleaved with another's. */
	ck_assert_int_gt(qn("SELECT count(*) FROM audit a JOIN audit b ON "
	    "b.seq = a.seq + 1 WHERE a.job <> b.job AND a.state <> 'verified'"
	    " AND a.state <> 'skipped'"), 0);
}
END_TEST

START_TEST(audit_rows_cannot_change)
{
	char *s;

	tl_insert(0, "ro-batch", "--type batch --credits 10");
	d_config("ro", "1234", NULL);
	d_start();
	feed("RO", "1", 1, NULL);
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	d_stop();
	s = q("UPDATE audit SET reason = 'x' WHERE seq = 1");
	ck_assert_msg(strstr(s, "append-only: UPDATE refused") != NULL, "%s",
	    s);
	free(s);
	s = q("DELETE FROM audit WHERE seq = 4");
	ck_assert_msg(strstr(s, "append-only: DELETE refused") != NULL, "%s",
	    s);
	free(s);
	s = q("INSERT OR REPLACE INTO audit (seq, utc, station, job, reader, "
	    "state, reason, hash) VALUES (2, 'x', 'x', 1, 'x', 'failed', 'x',"
	    " x'00')");
	ck_assert_msg(strstr(s, "append-only") != NULL, "%s", s);
	free(s);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit"), 5);
	s = q("SELECT group_concat(state, ',') FROM audit");
	ck_assert_str_eq(s, "batch-in,requested,generated,loaded,verified");
	free(s);
	ck_assert_int_eq(qn("PRAGMA user_version"), 7);
	s = q("PRAGMA journal_mode");
	ck_assert_str_eq(s, "wal");
	free(s);
}
END_TEST

START_TEST(classify_rules_and_unknown_cards)
{
	char *s;

	/* Reader A 00 00 holds batch cards; target ATRs are ignored. */
	d_config("cls", "1234", "[classify]\nbatch-reader = Sim Line A 00 00\n"
	    "ignore-atr = 3B888001434C53494D54475400/FFFFFFFFFFFFFFFFFFFFFFFF00");
	tl_insert(0, "cls-batch", "--type batch --credits 5");
	d_start();
	d_wait_log("Sim Line A 00 00: batch card inserted", 3000);
	/* The rule decided: no SELECT was needed to know it. */
	s = tl_read("grep -c -e ' select' -e generate %s/cards/cls-batch.events "
	    "|| true", tl_dir);
	ck_assert_str_eq(s, "0\n");
	free(s);
	tl_insert(1, "CLS1", "--type target --serial CLS1");
	/* Every inserted card gets an operator line, even one ignored. */
	d_wait_log("Sim Line A 00 01: card -: ignored: card with ATR "
	    "3B888001434C53494D54475416 ignored by a [classify] rule", 3000);
	tl_insert(2, "UNK1", "--type unknown");
	d_wait_log("Sim Line B 00 00: card -: UNKNOWN: unknown card (ATR "
	    "3B888001554E4B4E4F574E3170): not a batch card, no token of the "
	    "middleware; left alone", 3000);
	usleep(300000);
	d_stop();
	/* The batch card's insertion, and no row of the other two. */
	ck_assert_int_eq(qn("SELECT count(*) FROM audit"), 1);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'batch-in' AND reader = 'Sim Line A 00 00'"), 1);
	s = tl_read("grep -c -e login -e info %s/cards/CLS1.events || true",
	    tl_dir);
	ck_assert_str_eq(s, "0\n");
	free(s);
	tl_remove(1);
	tl_remove(2);
}
END_TEST

START_TEST(renewal_window)
{
	char *s;

	/* Today is 20261124 (CARDLIC_TODAY): 7 and 60 days left. */
	tl_insert(0, "ren-batch", "--type batch --credits 5");
	d_config("ren", "1234", "[license]\nrenew-within-days = 30");
	d_start();
	feed("RN", "1,2", 2, "--card-opts 0 '--preload 20260101:20261201' "
	    "--card-opts 1 '--preload 20260101:20270123'");
	wait_n("SELECT count(*) FROM audit WHERE state IN ('verified', "
	    "'skipped')", 2, 5000);
	d_stop();
	s = q("SELECT group_concat(trim(CAST(serial AS TEXT)) || ' ' || state"
	    " || ' ' || coalesce(end_date, '-'), ', ') FROM (SELECT * FROM "
	    "audit WHERE state IN ('verified', 'skipped') ORDER BY serial)");
	ck_assert_str_eq(s, "RN000001 verified 20271123, RN000002 skipped -");
	free(s);
	s = card_state("ren-batch", "credits");
	ck_assert_str_eq(s, "4");
	free(s);
}
END_TEST

/*
 * Invariant 1 with a full disk: the database on a small tmpfs, filled up.
 * The card costs no credit and is told why; with room again, it is done.
 */
START_TEST(full_disk_spends_no_credit)
{
	char *s;

	tl_insert(0, "full-batch", "--type batch --credits 5");
	tl_sh("mkdir -p %s/full && mount -t tmpfs -o size=1m cardlictest "
	    "%s/full", tl_dir, tl_dir);
	d_config("fullcfg", "1234", NULL);
	tl_sh("sed -i 's|^database = .*|database = %s/full/audit.db|' %s",
	    tl_dir, d_conf);
	snprintf(d_db, 300, "%s/full/audit.db", tl_dir);
	d_start();
	tl_sh("dd if=/dev/zero of=%s/full/filler bs=4k 2>/dev/null; true",
	    tl_dir);
	tl_insert(1, "FULL1", "--type target --serial FULL1");
	/* The room for the license's record is reserved before GENERATE. */
	d_wait_log("FULL1: FAILED: cannot reserve room to record a license", 5000);
	ck_assert(d_log_has("No space left on device); no credit spent"));
	s = card_state("full-batch", "credits");
	ck_assert_str_eq(s, "5");
	free(s);
	s = tl_read("grep -c -e generate %s/cards/full-batch.events || true",
	    tl_dir);
	ck_assert_str_eq(s, "0\n");
	free(s);
	/* Room again: the same card, inserted again, is licensed. */
	tl_sh("rm %s/full/filler", tl_dir);
	tl_remove(1);
	tl_insert(1, "FULL1", "%s", "");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	d_stop();
	s = card_state("full-batch", "credits");
	ck_assert_str_eq(s, "4");
	free(s);
	tl_remove(1);
	tl_sh("umount %s/full", tl_dir);
}
END_TEST

/*
 * The batch card leaves after GENERATE spent the credit, before GET
 * RESPONSE: the license is lost with it.  Nothing can save that credit,
 * but it is recorded as a credit in doubt against the batch card, the
 * card gets no second one, and reconcile flags it until an admin decides.
 */
START_TEST(credit_lost_in_flight_is_flagged)
{
	char *s;

	tl_insert(0, "lost-batch", "--type batch --credits 5 --vanish-on C0");
	d_config("lost", "1234", NULL);
	d_start();
	tl_insert(1, "LOST1", "--type target --serial LOST1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'in-doubt'", 1, 5000);
	d_stop();
	s = card_state("lost-batch", "credits");
	ck_assert_str_eq(s, "4");
	free(s);
	s = q("SELECT batch_reader || ' | ' || reason FROM audit WHERE state "
	    "= 'in-doubt'");
	ck_assert_msg(strncmp(s, "Sim Line A 00 00 | batch card in Sim Line "
	    "A 00 00 stopped answering during GET RESPONSE", 78) == 0 &&
	    strstr(s, "a credit was spent, no license came") != NULL, "%s", s);
	free(s);
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'failed'"), 0);
	s = tl_reconcile(d_db);
	ck_assert_msg(strstr(s, "credit in doubt for card LOST1, batch card in "
	    "Sim Line A 00 00: batch card in Sim Line A 00 00 stopped "
	    "answering during GET RESPONSE") && strstr(s, "exit 1"), "%s", s);
	free(s);
	tl_remove(1);
}
END_TEST

/*
 * A batch card and a target card arrive together.  The batch card is slow
 * (its probe ends after 0.5 s), so the target's job finds the pool empty;
 * the target card is slow only after its login (8 APDUs: probe, select,
 * info, status, verify and their selects).  That is no reason to pause:
 * the target's job waits until the other card is classified, then finds
 * the batch card in the pool (slowly: 14 APDUs at 0.7 s, 3 at 0.5 s).
 */
START_TEST(batch_card_arriving_meanwhile)
{
	d_config("race", "1234", NULL);
	d_start();
	tl_insert(0, "race-batch", "--type batch --credits 5 --slow 500");
	tl_insert(1, "RACE1", "--type target --serial RACE1 --slow 700 "
	    "--slow-from 8");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1,
	    30000);
	ck_assert(!d_log_has("PAUSED"));
	ck_assert(!d_log_has("ALERT: issuance paused"));
	ck_assert_int_eq(qn("SELECT count(*) FROM audit WHERE state = "
	    "'failed'"), 0);
	d_stop();
	tl_remove(0);
	tl_remove(1);
}
END_TEST

/* Bad configurations: file:line, exit status 2, nothing started. */
static void
bad_conf(const char *body, const char *want)
{
	char *out;

	tl_sh("printf '%s' > %s/bad.conf && chmod 600 %s/bad.conf", body,
	    tl_dir, tl_dir);
	out = tl_read(CARDLICD " -n -f %s/bad.conf 2>&1; echo \"exit $?\"",
	    tl_dir);
	ck_assert_msg(strstr(out, want) != NULL && strstr(out, "exit 2"),
	    "want \"%s\", got: %s", want, out);
	free(out);
}

START_TEST(bad_config_names_file_and_line)
{
	char want[400];

	snprintf(want, sizeof(want), "%s/bad.conf:3: unknown key \"colour\" "
	    "in [station]", tl_dir);
	bad_conf("[station]\\nid = a\\ncolour = red\\n", want);
	snprintf(want, sizeof(want), "%s/bad.conf:2: renew-within-days: "
	    "\"-1\" is not a whole number in 0..3650", tl_dir);
	bad_conf("[license]\\nrenew-within-days = -1\\n", want);
	snprintf(want, sizeof(want), "%s/bad.conf:5: start-date: \"20261301\""
	    " is not a date", tl_dir);
	bad_conf("[pkcs11]\\nmodule = /x\\npin = 1234\\n"
	    "[license]\\nstart-date = 20261301\\n", want);
	snprintf(want, sizeof(want), "%s/bad.conf:5: start-policy fixed "
	    "needs start-date", tl_dir);
	bad_conf("[pkcs11]\\nmodule = /x\\npin = 1234\\n[license]\\n"
	    "start-policy = fixed\\n", want);
	snprintf(want, sizeof(want), "%s/bad.conf:3: pin-file: a PIN source is "
	    "already given (pin, line 2)", tl_dir);
	bad_conf("[pkcs11]\\npin = 1234\\npin-file = /x\\n", want);
	snprintf(want, sizeof(want), "%s/bad.conf:1: unknown section [pcks11]",
	    tl_dir);
	bad_conf("[pcks11]\\nmodule = /x\\n", want);
	snprintf(want, sizeof(want), "%s/nothere.conf: cannot open: No such "
	    "file", tl_dir);
	{
		char *out = tl_read(CARDLICD " -n -f %s/nothere.conf 2>&1; "
		    "echo \"exit $?\"", tl_dir);

		ck_assert_msg(strstr(out, want) && strstr(out, "exit 2"), "%s",
		    out);
		free(out);
	}
	/* A PIN in a file that others may read is refused. */
	tl_sh("printf '[pkcs11]\\nmodule = /x\\npin = 1234\\n' > "
	    "%s/open.conf && chmod 644 %s/open.conf", tl_dir, tl_dir);
	{
		char *out = tl_read(CARDLICD " -n -f %s/open.conf 2>&1; "
		    "echo \"exit $?\"", tl_dir);

		ck_assert_msg(strstr(out, "open.conf:3: this file holds the "
		    "PIN but others may read it (mode 0644)") &&
		    strstr(out, "exit 2") && !strstr(out, "1234"), "%s", out);
		free(out);
	}
}
END_TEST

START_TEST(config_check_prints_normalized_masked)
{
	char *out;

	tl_sh("printf '[station]\\nid = s1\\ndatabase = /tmp/x.db\\n"
	    "[pkcs11]\\nmodule = /m.so\\npin = 4321\\n[license]\\n"
	    "start-policy = later-of\\nstart-date = 20991231\\n"
	    "[classify]\\nbatch-atr = 3B88/FFF0\\n' > %s/ok.conf && "
	    "chmod 600 %s/ok.conf", tl_dir, tl_dir);
	out = tl_read("CARDLIC_TODAY=20261124 " CARDLICD " -n -f %s/ok.conf",
	    tl_dir);
	ck_assert_msg(strstr(out, "pin = ******** (4 characters, masked)") &&
	    strstr(out, "start-policy = later-of\nstart-date = 20991231\n") &&
	    strstr(out, "batch-atr = 3B80/FFF0") &&
	    strstr(out, "a card issued today (20261124) gets a license "
	    "starting 20991231") && !strstr(out, "4321"), "%s", out);
	free(out);
}
END_TEST

static void
line_up(void)
{
	d_suite_up(6);
}

/* The full-disk test's tmpfs goes, even when the test failed. */
static void
line_down(void)
{
	tl_sh_rc("umount %s/full 2>/dev/null", tl_dir);
	d_suite_down();
}

static Suite *
daemon_suite(void)
{
	Suite *s = suite_create("cardlicd");
	TCase *t = tcase_create("on the line");
	TCase *c = tcase_create("configuration");

	tcase_add_unchecked_fixture(t, line_up, line_down);
	tcase_set_timeout(t, 120);
	tcase_add_test(t, fifty_cards_one_after_another);
	tcase_add_test(t, pulled_after_generate_keeps_its_license);
	tcase_add_test(t, acceptable_cards_spend_nothing);
	tcase_add_test(t, wrong_pin_pauses_until_fixed);
	tcase_add_test(t, wrong_pin_tried_on_one_card_only);
	tcase_add_test(t, locked_and_last_try_untouched);
	tcase_add_test(t, exhausted_batch_then_second_then_pause);
	tcase_add_test(t, rejected_license_is_not_regenerated);
	tcase_add_test(t, pcscd_restart_mid_run);
	tcase_add_test(t, four_readers_at_once);
	tcase_add_test(t, audit_rows_cannot_change);
	tcase_add_test(t, classify_rules_and_unknown_cards);
	tcase_add_test(t, renewal_window);
	tcase_add_test(t, full_disk_spends_no_credit);
	tcase_add_test(t, credit_lost_in_flight_is_flagged);
	tcase_add_test(t, batch_card_arriving_meanwhile);
	suite_add_tcase(s, t);

	tcase_add_unchecked_fixture(c, line_up, line_down);
	tcase_add_test(c, bad_config_names_file_and_line);
	tcase_add_test(c, config_check_prints_normalized_masked);
	suite_add_tcase(s, c);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
