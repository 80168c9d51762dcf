/*
 * cardlicctl on databases made by cardlicd on the simulated line, with
 * known content: two batch cards, cards verified, pending, rejected and
 * skipped, and a serial with a quote, a comma and non-ASCII bytes.
 */
#include <sys/wait.h>

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

#define CTL	TOPDIR "/ctl/cardlicctl"
/* Q"1,é: 7 bytes of UTF-8, padded to 16 by the card. */
#define ODD	"Q\"1,\xc3\xa9"

static char	known[300];	/* the database with known content */

/* cardlicctl on the known database: its output, then "exit N". */
static char *
ctl(const char *args, const char *arg)
{
	return tl_read(CTL " -d %s %s%s 2>&1; echo \"exit $?\"", known, args,
	    arg != NULL ? arg : "");
}

static void
expect(const char *out, const char *what)
{
	ck_assert_msg(strstr(out, what) != NULL, "no \"%s\" in:\n%s", what,
	    out);
}

/*
 * The known database: batch A (2 credits) in reader 0, then batch B in
 * reader 3.  V1, V2 use A's credits; V3 exhausts A and moves to B; P1 leaves as
 * its license arrives (pending); R1 rejects its license; S1 needs none;
 * the odd serial is verified.
 */
static void
build_known(void)
{
	d_suite_up(4);
	d_config("known", "1234", NULL);
	snprintf(known, sizeof(known), "%s", d_db);
	tl_insert(0, "k-batch-a", "--type batch --credits 2");
	d_start();
	tl_insert(1, "V1", "--type target --serial V1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	tl_insert(1, "V2", "--type target --serial V2");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 2, 5000);
	/* B comes second, so that A is the one that runs dry. */
	tl_insert(3, "k-batch-b", "--type batch --credits 10");
	d_wait_log("Sim Line B 00 01: batch card inserted", 3000);
	tl_insert(1, "V3", "--type target --serial V3");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 3, 5000);
	tl_insert(1, "P1", "--type target --serial P1 --vanish-on D0");
	wait_n("SELECT count(*) FROM audit WHERE state = 'failed'", 1, 5000);
	tl_insert(1, "R1", "--type target --serial R1 --reject-license");
	wait_n("SELECT count(*) FROM audit WHERE state = 'rejected'", 1, 5000);
	tl_insert(1, "S1", "--type target --serial S1 --preload "
	    "20260101:20301231");
	wait_n("SELECT count(*) FROM audit WHERE state = 'skipped'", 1, 5000);
	tl_insert(1, "ODD", "--type target --serial '" ODD "'");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 4, 5000);
	tl_remove(1);
	d_stop();
}

START_TEST(list_answers)
{
	char *out;

	out = ctl("list", NULL);
	expect(out, "V1                SIM-MODEL-1       verified");
	expect(out, "P1                SIM-MODEL-1       generated");
	expect(out, "R1                SIM-MODEL-1       rejected");
	expect(out, "S1                SIM-MODEL-1       skipped    20260101"
	    "  20301231");
	expect(out, "exit 0");
	free(out);
	out = tl_read(CTL " -d %s list | tail -n +2 | awk '{ print $6 }' | "
	    "sort | uniq -c", known);
	ck_assert_str_eq(out, "      1 generated\n      1 rejected\n"
	    "      1 skipped\n      4 verified\n");
	free(out);
	out = tl_read(CTL " -d %s list --batch 'Sim Line A 00 00' | tail -n +2"
	    " | awk '{ print $4 }'", known);
	ck_assert_str_eq(out, "V1\nV2\n");
	free(out);
	out = ctl("list --serial R1 --outcome rejected", NULL);
	expect(out, "R1");
	expect(out, "exit 0");
	free(out);
	out = ctl("list --serial R1 --outcome verified", NULL);
	ck_assert_str_eq(out, "exit 1\n");
	free(out);
	out = ctl("list --since 2099-01-01", NULL);
	ck_assert_str_eq(out, "exit 1\n");
	free(out);
	out = ctl("list --station test --model SIM-MODEL-1 --until 20991231 "
	    "| grep -c SIM-MODEL-1", NULL);
	expect(out, "7\n");
	free(out);
	out = ctl("list --outcome maybe", NULL);
	expect(out, "--outcome is one of");
	expect(out, "exit 2");
	free(out);
}
END_TEST

START_TEST(show_history)
{
	char *out;

	out = ctl("show P1", NULL);
	expect(out, "card P1, model SIM-MODEL-1");
	expect(out, "requested");
	expect(out, "generated  20261124");
	expect(out, "failed     CKR_DEVICE_REMOVED");
	expect(out, "it stays pending");
	expect(out, "exit 0");
	free(out);
	out = ctl("show R1", NULL);
	expect(out, "rejected");
	expect(out, "serialValid=0 dateValid=0");
	free(out);
	out = ctl("show NOSUCH", NULL);
	expect(out, "no card with serial \"NOSUCH\"");
	expect(out, "exit 1");
	free(out);
}
END_TEST

START_TEST(stats_and_reconcile)
{
	char *out;

	out = ctl("stats", NULL);
	expect(out, "credits spent: 6, licenses verified: 4");
	expect(out, "  rejected                      1");
	expect(out, "  skipped                       1");
	free(out);
	out = ctl("reconcile", NULL);
	expect(out, "test        Sim Line A 00 00      3B88800149444F424154434817"
	    "          2         2        0         0");
	expect(out, "test        Sim Line B 00 01      3B88800149444F424154434817"
	    "          4         2        1         1");
	expect(out, "license for P1 from Sim Line B 00 01");
	expect(out, "still pending: the card has not come back");
	expect(out, "exit 1");
	free(out);
}
END_TEST

START_TEST(export_round_trips)
{
	char *out;

	/* CSV through Python's csv module, against sqlite3's own values. */
	out = tl_read("/usr/bin/python3 -c '\n"
	    "import csv, sqlite3, subprocess, sys\n"
	    "raw = subprocess.run([\"" CTL "\", \"-d\", \"%s\", \"export\", "
	    "\"--format\", \"csv\"], capture_output=True, check=True).stdout\n"
	    "rows = list(csv.DictReader(raw.decode().splitlines(True)))\n"
	    "db = sqlite3.connect(\"%s\")\n"
	    "ref = db.execute(\"SELECT seq, serial, reason FROM audit ORDER BY "
	    "seq\").fetchall()\n"
	    "assert len(rows) == len(ref), (len(rows), len(ref))\n"
	    "for r, (seq, ser, why) in zip(rows, ref):\n"
	    "    assert int(r[\"seq\"]) == seq\n"
	    "    assert r[\"reason\"] == why\n"
	    "    if ser is not None:\n"
	    "        assert bytes.fromhex(r[\"serial_hex\"]) == ser\n"
	    "        assert r[\"serial\"] == ser.decode().rstrip(\" \")\n"
	    "print(len(rows), sum(r[\"serial\"] == \"Q\\\"1,\\u00e9\" for r in "
	    "rows))' 2>&1", known, known);
	ck_assert_str_eq(out, "24 4\n");
	free(out);
	/* JSON and JSON lines parse, and keep the odd serial whole. */
	out = tl_read("/usr/bin/python3 -c '\n"
	    "import json, subprocess\n"
	    "def run(f):\n"
	    "    return subprocess.run([\"" CTL "\", \"-d\", \"%s\", \"export\","
	    " \"--format\", f], capture_output=True, check=True).stdout\n"
	    "a = json.loads(run(\"json\"))\n"
	    "b = [json.loads(l) for l in run(\"jsonl\").splitlines()]\n"
	    "assert a == b\n"
	    "odd = [r for r in a if r[\"serial\"] == \"Q\\\"1,\\u00e9\"]\n"
	    "print(len(a), len(odd), odd[0][\"serial_hex\"], "
	    "type(odd[0][\"timings\"]).__name__)' 2>&1", known);
	ck_assert_str_eq(out, "24 4 5122312CC3A920202020202020202020 dict\n");
	free(out);
}
END_TEST

/* A copy of the known database, tampered with by sql (triggers off). */
static char *
tampered(const char *name, const char *sql)
{
	static char path[400];

	snprintf(path, sizeof(path), "%s/%s.db", tl_dir, name);
	tl_sh("sqlite3 %s \"VACUUM INTO '%s'\" && sqlite3 %s \"DROP TRIGGER "
	    "audit_no_update; DROP TRIGGER audit_no_delete; DROP TRIGGER "
	    "audit_append_only; %s\"", known, path,
	    path, sql);
	return tl_read(CTL " -d %s verify 2>&1; echo \"exit $?\"", path);
}

START_TEST(verify_finds_each_tampering)
{
	char *out, *head;

	out = ctl("verify", NULL);
	expect(out, "station test: 24 rows, chain intact");
	expect(out, "24 rows checked");
	expect(out, "exit 0");
	free(out);
	out = tampered("edit", "UPDATE audit SET reason = 'nothing to see' "
	    "WHERE seq = 5");
	expect(out, "BROKEN at row 5 was altered");
	expect(out, "4 rows checked");
	expect(out, "exit 1");
	free(out);
	out = tampered("del", "DELETE FROM audit WHERE seq = 7");
	expect(out, "BROKEN at row 7 is missing: the rows go from 6 to 8");
	expect(out, "exit 1");
	free(out);
	/* Rows 3 and 4 trade places: everything but seq is swapped. */
	out = tampered("swap", "CREATE TEMP TABLE t AS SELECT * FROM audit "
	    "WHERE seq IN (3, 4); DELETE FROM audit WHERE seq IN (3, 4); "
	    "INSERT INTO audit SELECT 7 - seq, utc, station, job, reader, "
	    "state, reason, model, serial, start_date, end_date, license_seq,"
	    " license, batch_reader, batch_atr, batch_count, sw, ckr, status,"
	    " timings, hash FROM t ORDER BY seq DESC");
	expect(out, "BROKEN at row 3 was altered");
	expect(out, "exit 1");
	free(out);
	/* The newest rows cut off: only the published head can tell. */
	head = tl_read("sqlite3 %s 'SELECT lower(hex(hash)) FROM audit ORDER "
	    "BY seq DESC LIMIT 1' | tr -d '\\n'", known);
	out = tampered("cut", "DELETE FROM audit WHERE seq > 22");
	expect(out, "22 rows checked");
	expect(out, "exit 0");
	free(out);
	out = tl_read(CTL " -d %s/cut.db verify --head %s 2>&1; echo \"exit "
	    "$?\"", tl_dir, head);
	expect(out, "is NOT in the database: rows were cut off; station test "
	    "now ends at row 22");
	expect(out, "exit 1");
	free(out);
	out = ctl("verify --head ", head);
	expect(out, "is row 24 of station test (0 rows after it)");
	expect(out, "exit 0");
	free(out);
	free(head);
}
END_TEST

START_TEST(merge_two_stations)
{
	char *out;

	/* A second station: another id, another database, one card. */
	d_config("second", "1234", "[station]\nid = line-2");
	d_start();
	tl_insert(1, "M1", "--type target --serial M1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	tl_remove(1);
	d_stop();
	out = tl_read(CTL " merge %s/merged.db %s %s 2>&1; echo \"exit $?\"",
	    tl_dir, known, d_db);
	expect(out, "station test: 24 rows added, 24 in all");
	expect(out, "station line-2: 4 rows added, 4 in all");
	expect(out, "exit 0");
	free(out);
	/* Again: nothing new. */
	out = tl_read(CTL " merge %s/merged.db %s %s 2>&1; echo \"exit $?\"",
	    tl_dir, known, d_db);
	expect(out, "station test: 0 rows added, 24 in all");
	expect(out, "station line-2: 0 rows added, 4 in all");
	free(out);
	out = tl_read(CTL " -d %s/merged.db verify 2>&1; echo \"exit $?\"",
	    tl_dir);
	expect(out, "station line-2: 4 rows, chain intact");
	expect(out, "station test: 24 rows, chain intact");
	expect(out, "28 rows checked");
	expect(out, "exit 0");
	free(out);
	out = tl_read(CTL " -d %s/merged.db list --station line-2 2>&1 | "
	    "tail -n +2 | awk '{ print $4, $6 }'", tl_dir);
	ck_assert_str_eq(out, "M1 verified\n");
	free(out);
	/* A broken input is refused whole. */
	out = tampered("bad", "UPDATE audit SET reason = 'x' WHERE seq = 2");
	free(out);
	out = tl_read(CTL " merge %s/merged2.db %s/bad.db 2>&1; echo \"exit "
	    "$?\"", tl_dir, tl_dir);
	expect(out, "its chain is broken; nothing merged from it");
	expect(out, "exit 2");
	free(out);
}
END_TEST

START_TEST(watch_prints_within_a_second)
{
	char *out, cmd[600];
	long t_row = 0, t_line = 0, end;
	pid_t w;

	d_config("live", "1234", NULL);
	d_start();
	snprintf(cmd, sizeof(cmd), "%s/watch.out", tl_dir);
	w = fork();
	if (w == 0) {
		if (freopen(cmd, "w", stdout) == NULL)
			_exit(127);
		execl(CTL, "cardlicctl", "-d", d_db, "watch", (char *)NULL);
		_exit(127);
	}
	usleep(300000);
	tl_insert(1, "W1", "--type target --serial W1");
	end = tl_now_ms() + 5000;
	while ((t_row == 0 || t_line == 0) && tl_now_ms() < end) {
		if (t_row == 0 && qn("SELECT count(*) FROM audit WHERE state = "
		    "'verified'") == 1)
			t_row = tl_now_ms();
		out = tl_read("grep -c 'W1 .*verified' %s/watch.out", tl_dir);
		if (t_line == 0 && strcmp(out, "1\n") == 0)
			t_line = tl_now_ms();
		free(out);
		usleep(10000);
	}
	kill(w, SIGTERM);
	waitpid(w, NULL, 0);
	tl_remove(1);
	d_stop();
	ck_assert_msg(t_row > 0 && t_line > 0, "row %ld line %ld", t_row,
	    t_line);
	ck_assert_int_lt(t_line - t_row, 1000);
	out = tl_read("cat %s/watch.out", tl_dir);
	expect(out, "Sim Line A 00 01  W1                verified  20271123");
	ck_assert(strstr(out, "V1") == NULL);	/* history is not news */
	free(out);
}
END_TEST

START_TEST(status_from_the_daemon)
{
	char *out, sock[300];

	d_config("stat", "1234", NULL);
	snprintf(sock, sizeof(sock), "%s/stat.ctl", tl_dir);
	d_start();
	tl_insert(1, "ST1", "--type target --serial ST1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	out = tl_read(CTL " status -s %s 2>&1; echo \"exit $?\"", sock);
	expect(out, "station: test\nstate: running\nissued: 1\nskipped: 0\n"
	    "failed: 0\ncredits-used: 1\n");
	expect(out, "batch: Sim Line B 00 01 | 3B88800149444F424154434817 | "
	    "in use");
	expect(out, "exit 0");
	free(out);
	tl_remove(1);
	d_stop();
	out = tl_read(CTL " status -s %s 2>&1; echo \"exit $?\"", sock);
	expect(out, "cannot reach cardlicd at");
	expect(out, "exit 2");
	free(out);
}
END_TEST

static Suite *
ctl_suite(void)
{
	Suite *s = suite_create("cardlicctl");
	TCase *t = tcase_create("on a known database");

	tcase_add_unchecked_fixture(t, build_known, d_suite_down);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, list_answers);
	tcase_add_test(t, show_history);
	tcase_add_test(t, stats_and_reconcile);
	tcase_add_test(t, export_round_trips);
	tcase_add_test(t, verify_finds_each_tampering);
	tcase_add_test(t, merge_two_stations);
	tcase_add_test(t, watch_prints_within_a_second);
	tcase_add_test(t, status_from_the_daemon);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ctl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
