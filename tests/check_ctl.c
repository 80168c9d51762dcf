/*
 * cardlicctl on databases made by cardlicd on the simulated line, with
 * known content: two batch cards, cards verified, pending, rejected and
 * skipped, and a serial with a quote, a comma and non-ASCII bytes.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <check.h>
#include <fcntl.h>
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
 * reader 3, each insertion a `batch-in` row (26 rows in all).  V1, V2
 * use A's credits; V3 exhausts A and moves to B; P1 leaves as its
 * license arrives (pending); R1 rejects its license; S1 needs none; the
 * odd serial is verified.
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
	out = tl_reconcile(known);
	/* SPENT VERIFIED PENDING REJECTED IN-DOUBT LOST */
	expect(out, "test        Sim Line A 00 00      3B88800149444F424154434817"
	    "        2         2        0         0         0     0");
	expect(out, "test        Sim Line B 00 01      3B88800149444F424154434817"
	    "        4         2        1         1         0     0");
	expect(out, "license for P1 from Sim Line B 00 01");
	expect(out, "still pending: the card has not come back");
	expect(out, "exit 1");
	free(out);
}
END_TEST

/*
 * reconcile against the views on files drawn at random
 * (tests/reconcile-gen.py): beside the daemon's habits, rows after a
 * verdict, two resolutions of one credit in doubt, rows naming a seq that
 * is no license, batch cards with no reader, counts that disagree; batch
 * cards by label (issue 18, case 8), moved, swapped, some never counted,
 * a label typed in for another card, in one station or two merged.
 * tl_reconcile holds the two answers to the same bytes.
 */
START_TEST(reconcile_as_the_views_say)
{
	char db[400], *out;
	int seed, differences = 0, doubts = 0, possible = 0, conflicts = 0;
	int merged = 0;

	snprintf(db, sizeof(db), "%s/drawn.db", tl_dir);
	for (seed = 1; seed <= 40; seed++) {
		tl_sh("/usr/bin/python3 " TOPDIR "/tests/reconcile-gen.py %s %d",
		    db, seed);
		out = tl_reconcile(db);
		differences += strstr(out, "DIFFERENCE") != NULL;
		doubts += strstr(out, "credit in doubt for card") != NULL;
		possible += strstr(out, "on batch cards with no label (") !=
		    NULL;
		conflicts += strstr(out, "a card has one label") != NULL;
		merged += strstr(out, " of line-") != NULL;
		free(out);
	}
	/* The draws reach the answers that matter. */
	ck_assert_int_gt(differences, 5);
	ck_assert_int_gt(doubts, 5);
	ck_assert_int_gt(possible, 3);
	ck_assert_int_gt(conflicts, 0);
	ck_assert_int_gt(merged, 2);
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
	ck_assert_str_eq(out, "26 4\n");
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
	ck_assert_str_eq(out, "26 4 5122312CC3A920202020202020202020 dict\n");
	free(out);
}
END_TEST

/*
 * A copy of the known database, tampered with by sql (triggers off, then
 * put back word for word: cardlicctl refuses a schema not cardlicd's).
 */
static char *
tampered(const char *name, const char *sql)
{
	static char path[400];

	snprintf(path, sizeof(path), "%s/%s.db", tl_dir, name);
	/* Every trigger out of the way, whatever migrations made it. */
	tl_sh("sqlite3 %s \"VACUUM INTO '%s'\" && sqlite3 %s \"SELECT sql || "
	    "';' FROM sqlite_schema WHERE type = 'trigger'\" > %s.trg && "
	    "sqlite3 %s \"SELECT 'DROP TRIGGER ' || name || ';' FROM "
	    "sqlite_schema WHERE type = 'trigger'\" | sqlite3 %s && "
	    "sqlite3 %s \"%s\" && sqlite3 %s < %s.trg", known, path, path,
	    path, path, path, path, sql, path, path);
	return tl_read(CTL " -d %s verify 2>&1; echo \"exit $?\"", path);
}

START_TEST(verify_finds_each_tampering)
{
	char *out, *head;

	out = ctl("verify", NULL);
	expect(out, "station test: 26 rows, chain intact");
	expect(out, "26 rows checked");
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
	    " timings, hash, sig FROM t ORDER BY seq DESC");
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
	expect(out, "is row 26 of station test (0 rows after it)");
	expect(out, "exit 0");
	free(out);
	free(head);
}
END_TEST

START_TEST(merge_two_stations)
{
	char *out, merged[400];

	/*
	 * A second station: another id, another database, one card (and the
	 * insertions of the two batch cards).
	 */
	d_config("second", "1234", "[station]\nid = line-2");
	d_start();
	tl_insert(1, "M1", "--type target --serial M1");
	wait_n("SELECT count(*) FROM audit WHERE state = 'verified'", 1, 5000);
	tl_remove(1);
	d_stop();
	out = tl_read(CTL " merge %s/merged.db %s %s 2>&1; echo \"exit $?\"",
	    tl_dir, known, d_db);
	expect(out, "station test: 26 rows added, 26 in all");
	expect(out, "station line-2: 6 rows added, 6 in all");
	expect(out, "exit 0");
	free(out);
	/* Again: nothing new. */
	out = tl_read(CTL " merge %s/merged.db %s %s 2>&1; echo \"exit $?\"",
	    tl_dir, known, d_db);
	expect(out, "station test: 0 rows added, 26 in all");
	expect(out, "station line-2: 0 rows added, 6 in all");
	free(out);
	out = tl_read(CTL " -d %s/merged.db verify 2>&1; echo \"exit $?\"",
	    tl_dir);
	expect(out, "station line-2: 6 rows, chain intact");
	expect(out, "station test: 26 rows, chain intact");
	expect(out, "32 rows checked");
	expect(out, "exit 0");
	free(out);
	/* reconcile's pass over two stations' rows, taking turns by rowid. */
	snprintf(merged, sizeof(merged), "%s/merged.db", tl_dir);
	out = tl_reconcile(merged);
	expect(out, "line-2      Sim Line B 00 01      "
	    "3B88800149444F424154434817        1         1        0");
	expect(out, "test        Sim Line B 00 01");
	expect(out, "  test #");
	free(out);
	out = tl_read(CTL " -d %s/merged.db list --station line-2 2>&1 | "
	    "tail -n +2 | awk '{ print $4, $6 }'", tl_dir);
	ck_assert_str_eq(out, "M1 verified\n");
	free(out);
	/* Its migrations are cardlicd's: show goes through the index. */
	out = tl_read("CARDLICCTL_EXPLAIN=1 " CTL " -d %s/merged.db show M1 "
	    "2>&1; echo \"exit $?\"", tl_dir);
	expect(out, "plan: SEARCH a USING INDEX audit_serial_text (<expr>=?)");
	expect(out, "card M1, model ");
	expect(out, "exit 0");
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
	out = tl_read(CTL " status -s %s --json | /usr/bin/python3 -c '"
	    "import json, sys\n"
	    "s = json.load(sys.stdin.buffer)\n"
	    "b = [x for x in s[\"batches\"] if x[\"reader\"] == "
	    "\"Sim Line B 00 01\"][0]\n"
	    "print(s[\"station\"], s[\"state\"], s[\"issued\"], "
	    "s[\"credits_used\"], s[\"jobs_running\"], b[\"atr\"], "
	    "b[\"state\"], \"pause_reason\" in s)' 2>&1", sock);
	ck_assert_str_eq(out, "test running 1 1 0 3B88800149444F424154434817 "
	    "in use False\n");
	free(out);
	tl_remove(1);
	d_stop();
	out = tl_read(CTL " status -s %s 2>&1; echo \"exit $?\"", sock);
	expect(out, "cannot reach cardlicd at");
	expect(out, "exit 2");
	free(out);
}
END_TEST

/*
 * Hostile card bytes (issue 8): a row whose reader, reason, model and
 * serial carry ESC sequences, BEL, CR LF, 0xFF, a lone 0xC3, NUL, a C1
 * control and a right-to-left override.  The reason's newline would
 * forge an operator line.  Inserted as the next row of a copy of the
 * known database (its hash is wrong: list, show and export do not care).
 */
#define EVIL_READER	"4576696C1B5D303B70776E65640720520D0A"
#define EVIL_REASON	"6261640A53696D204C696E6520412030302030313A205820" \
			"7665726966696564"
#define EVIL_MODEL	"4DC3A9E280AEC29B2020202020202020"
#define EVIL_SERIAL	"451B5B324A070AFFC3005A2020202020"
/* The same, as a terminal must show them: é passes, the rest is \xNN. */
#define ESC_READER	"Evil\\x1b]0;pwned\\x07 R\\x0d\\x0a"
#define ESC_REASON	"bad\\x0aSim Line A 00 01: X verified"
#define ESC_MODEL	"M\xc3\xa9\\xe2\\x80\\xae\\xc2\\x9b"
#define ESC_SERIAL	"E\\x1b[2J\\x07\\x0a\\xff\\xc3\\x00Z"

static const char *
evil_insert(const char *state, const char *utc)
{
	static char sql[1024];

	snprintf(sql, sizeof(sql), "INSERT INTO audit (seq, utc, station, "
	    "job, reader, state, reason, model, serial, timings, hash) SELECT "
	    "max(seq) + 1, '%s', 'evil', 900, CAST(X'" EVIL_READER "' AS "
	    "TEXT), '%s', CAST(X'" EVIL_REASON "' AS TEXT), X'" EVIL_MODEL
	    "', X'" EVIL_SERIAL "', json_object('probe', 3), X'00' FROM audit",
	    utc, state);
	return sql;
}

/* tl_dir/NAME.db: the known database and one hostile skipped row. */
static const char *
evil_db(const char *name)
{
	static char path[400];

	snprintf(path, sizeof(path), "%s/%s.db", tl_dir, name);
	if (access(path, F_OK) != 0)
		tl_sh("sqlite3 %s \"VACUUM INTO '%s'\" && sqlite3 %s "
		    "\"PRAGMA journal_mode = WAL; %s\" >/dev/null", known, path,
		    path, evil_insert("skipped", "2026-11-24T10:00:00.000Z"));
	return path;
}

START_TEST(list_show_escape_card_bytes)
{
	const char *db = evil_db("evil");
	char *out;

	out = tl_read(CTL " -d %s list --station evil 2>&1; echo \"exit $?\"",
	    db);
	ck_assert_str_eq(out, "TIME                  STATION     SERIAL       "
	    "     MODEL             OUTCOME    START     END       BATCH\n"
	    "2026-11-24 10:00:00Z  evil        " ESC_SERIAL "  " ESC_MODEL
	    "  skipped    -         -         -\nexit 0\n");
	free(out);
	/* What list prints, show takes back. */
	out = tl_read(CTL " -d %s show '" ESC_SERIAL "' 2>&1; echo \"exit "
	    "$?\"", db);
	ck_assert_str_eq(out, "card " ESC_SERIAL ", model " ESC_MODEL "\n"
	    "2026-11-24 10:00:00Z  evil #27 job 900  " ESC_READER
	    "  skipped  \n    " ESC_REASON "\n    ms {\"probe\":3}\nexit 0\n");
	free(out);
	out = tl_read(CTL " -d %s list --serial '" ESC_SERIAL "' --model '"
	    ESC_MODEL "' | tail -n +2 | cut -c 23-26", db);
	ck_assert_str_eq(out, "evil\n");
	free(out);
	/* A backslash is doubled, so that \x41 typed is not A. */
	out = tl_read(CTL " -d %s show 'E\\\\x1b' 2>&1; echo \"exit $?\"",
	    db);
	ck_assert_str_eq(out, "cardlicctl: no card with serial "
	    "\"E\\\\x1b\"\nexit 1\n");
	free(out);
}
END_TEST

START_TEST(export_json_valid_whatever_the_bytes)
{
	const char *db = evil_db("evil");
	char *out;

	/* Strict UTF-8 first: json.loads would take a str with errors. */
	out = tl_read(CTL " -d %s export --format jsonl | /usr/bin/python3 -c "
	    "'import json, sys\n"
	    "rows = [json.loads(l) for l in sys.stdin.buffer.read()"
	    ".decode(\"utf-8\").splitlines()]\n"
	    "e = [r for r in rows if r[\"station\"] == \"evil\"][0]\n"
	    "print(len(rows), ascii(e[\"serial\"]), e[\"serial_hex\"], "
	    "ascii(e[\"model\"]), e[\"model_hex\"], ascii(e[\"reader\"]), "
	    "ascii(e[\"reason\"]), e[\"timings\"])' 2>&1", db);
	ck_assert_str_eq(out, "27 'E\\x1b[2J\\x07\\n\\ufffd\\ufffd\\x00Z' "
	    EVIL_SERIAL " 'M\\xe9\\u202e\\x9b' " EVIL_MODEL " 'Evil\\x1b]0;"
	    "pwned\\x07 R\\r\\n' 'bad\\nSim Line A 00 01: X verified' "
	    "{'probe': 3}\n");
	free(out);
	out = tl_read(CTL " -d %s export --format json | /usr/bin/python3 -c "
	    "'import json, sys\n"
	    "a = json.loads(sys.stdin.buffer.read().decode(\"utf-8\"))\n"
	    "e = [r for r in a if r[\"station\"] == \"evil\"][0]\n"
	    "print(len(a), bytes.fromhex(e[\"serial_hex\"]))' 2>&1", db);
	ck_assert_str_eq(out, "27 b'E\\x1b[2J\\x07\\n\\xff\\xc3\\x00Z     '\n");
	free(out);
	/* Nothing a terminal acts on, even in the raw file. */
	out = tl_read(CTL " -d %s export --format jsonl | LC_ALL=C grep -c "
	    "'[[:cntrl:]]'", db);
	ck_assert_str_eq(out, "0\n");
	free(out);
}
END_TEST

/*
 * The edges of UTF-8: an overlong '/', a surrogate, a code point past
 * U+10FFFF and a sequence cut short are not UTF-8; an emoji is.
 */
START_TEST(utf8_edges)
{
	char *out, path[400];

	snprintf(path, sizeof(path), "%s/utf8.db", tl_dir);
	tl_sh("sqlite3 %s \"VACUUM INTO '%s'\" && sqlite3 %s \"INSERT INTO "
	    "audit (seq, utc, station, job, reader, state, reason, serial, "
	    "hash) SELECT max(seq) + 1, '2026-11-24T11:00:00.000Z', 'u8', 901,"
	    " 'r', 'failed', CAST(X'753AC0AFEDA080F09F9880F4908080E282' AS "
	    "TEXT), X'5538', X'00' FROM audit\"", known, path, path);
	out = tl_read(CTL " -d %s show U8 | sed -n 3p", path);
	ck_assert_str_eq(out, "    u:\\xc0\\xaf\\xed\\xa0\\x80\xf0\x9f\x98"
	    "\x80\\xf4\\x90\\x80\\x80\\xe2\\x82\n");
	free(out);
	out = tl_read(CTL " -d %s export --format jsonl | grep '\"u8\"' | "
	    "/usr/bin/python3 -c 'import json, sys\n"
	    "print(ascii(json.loads(sys.stdin.buffer.read().decode(\"utf-8\"))"
	    "[\"reason\"]))'", path);
	ck_assert_str_eq(out, "'u:\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"
	    "\\U0001f600\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd'\n");
	free(out);
}
END_TEST

START_TEST(export_csv_one_record_per_line)
{
	const char *db = evil_db("evil");
	char *out;

	out = tl_read(CTL " -d %s export --format csv | /usr/bin/python3 -c "
	    "'import csv, sys\n"
	    "raw = sys.stdin.buffer.read()\n"
	    "assert raw.endswith(b\"\\r\\n\")\n"
	    "lines = raw[:-2].split(b\"\\r\\n\")\n"
	    "assert not any(b\"\\n\" in l or b\"\\r\" in l for l in lines)\n"
	    "rows = [next(csv.reader([l.decode(\"utf-8\")])) for l in lines]\n"
	    "assert all(len(r) == len(rows[0]) for r in rows)\n"
	    "e = [dict(zip(rows[0], r)) for r in rows if r[0] == \"evil\"][0]\n"
	    "print(len(rows) - 1, e[\"serial\"], e[\"serial_hex\"], "
	    "e[\"model\"], e[\"reader\"], e[\"reason\"])' 2>&1", db);
	ck_assert_str_eq(out, "27 " ESC_SERIAL " " EVIL_SERIAL " " ESC_MODEL
	    " " ESC_READER " " ESC_REASON "\n");
	free(out);
}
END_TEST

START_TEST(watch_escapes_card_bytes)
{
	const char *db = evil_db("evil-watch");
	char *out, path[400];
	long end;
	pid_t w;

	snprintf(path, sizeof(path), "%s/evil-watch.out", tl_dir);
	w = fork();
	if (w == 0) {
		if (freopen(path, "w", stdout) == NULL)
			_exit(127);
		execl(CTL, "cardlicctl", "-d", db, "watch", (char *)NULL);
		_exit(127);
	}
	/* Its inotify descriptor comes after it took the newest row. */
	end = tl_now_ms() + 5000;
	while (tl_sh_rc("ls -l /proc/%d/fd | grep -q inotify", (int)w) != 0 &&
	    tl_now_ms() < end)
		usleep(10000);
	tl_sh("sqlite3 -cmd '.timeout 5000' %s \"%s\"", db,
	    evil_insert("failed", "2026-11-24T10:00:01.000Z"));
	end = tl_now_ms() + 5000;
	do {
		usleep(20000);
		out = tl_read("cat %s", path);
		if (strchr(out, '\n') != NULL || tl_now_ms() > end)
			break;
		free(out);
	} while (1);
	kill(w, SIGTERM);
	waitpid(w, NULL, 0);
	ck_assert_str_eq(out, "2026-11-24 10:00:01Z  " ESC_READER "  "
	    ESC_SERIAL "  failed    -         " ESC_REASON "\n");
	free(out);
}
END_TEST

START_TEST(status_json_from_a_fake_daemon)
{
	static const char answer[] = "station: line\x1b[31m-1\n"
	    "state: paused: no batch card with credit\nissued: 12\n"
	    "skipped: 0\nfailed: 3\ncredits-used: 12\nreaders: 4\n"
	    "jobs-running: 0\n"
	    "batch: Reader | with | bars 00 00 | 3B88 | exhausted\n"
	    "batch: Sim\xffLine 00 01 | 3B89 | in use\n";
	struct sockaddr_un sa;
	char *out;
	pid_t srv;
	int fd, c, i;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake.ctl", tl_dir);
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	ck_assert(listen(fd, 4) == 0);
	/* The daemon's protocol: one answer per connection, then close. */
	if ((srv = fork()) == 0) {
		for (i = 0; i < 2 && (c = accept(fd, NULL, NULL)) >= 0; i++) {
			if (write(c, answer, sizeof(answer) - 1) < 0)
				_exit(1);
			close(c);
		}
		_exit(0);
	}
	close(fd);
	out = tl_read(CTL " status -s %s --json | /usr/bin/python3 -c '"
	    "import json, sys\n"
	    "s = json.loads(sys.stdin.buffer.read().decode(\"utf-8\"))\n"
	    "print(s == {\"station\": \"line\\x1b[31m-1\", \"state\": "
	    "\"paused\", \"pause_reason\": \"no batch card with credit\", "
	    "\"issued\": 12, \"skipped\": 0, \"failed\": 3, \"credits_used\": "
	    "12, \"readers\": 4, \"jobs_running\": 0, \"batches\": "
	    "[{\"reader\": \"Reader | with | bars 00 00\", \"atr\": "
	    "\"3B88\", \"state\": \"exhausted\"}, {\"reader\": "
	    "\"Sim\\ufffdLine 00 01\", \"atr\": \"3B89\", \"state\": "
	    "\"in use\"}]} or s)' 2>&1", sa.sun_path);
	ck_assert_str_eq(out, "True\n");
	free(out);
	out = tl_read(CTL " status -s %s 2>&1; echo \"exit $?\"", sa.sun_path);
	ck_assert_str_eq(out, "station: line\\x1b[31m-1\n"
	    "state: paused: no batch card with credit\nissued: 12\n"
	    "skipped: 0\nfailed: 3\ncredits-used: 12\nreaders: 4\n"
	    "jobs-running: 0\n"
	    "batch: Reader | with | bars 00 00 | 3B88 | exhausted\n"
	    "batch: Sim\\xffLine 00 01 | 3B89 | in use\nexit 0\n");
	free(out);
	waitpid(srv, NULL, 0);
}
END_TEST

START_TEST(dates_must_be_real)
{
	char *out;

	out = ctl("list --since 2026-13-45", NULL);
	ck_assert_str_eq(out, "cardlicctl: list: --since 2026-13-45: not a "
	    "date (want a real day as YYYY-MM-DD or YYYYMMDD)\nexit 2\n");
	free(out);
	out = ctl("list --until 20260230", NULL);
	ck_assert_str_eq(out, "cardlicctl: list: --until 20260230: not a "
	    "date (want a real day as YYYY-MM-DD or YYYYMMDD)\nexit 2\n");
	free(out);
	out = ctl("list --since 2026-02-30", NULL);
	expect(out, "--since 2026-02-30: not a date");
	free(out);
	out = ctl("list --since 2100-02-29", NULL);
	expect(out, "--since 2100-02-29: not a date");
	free(out);
	out = ctl("list --since 2024-02-29 --until 2099-12-31 | grep -c "
	    "SIM-MODEL-1", NULL);
	ck_assert_str_eq(out, "7\nexit 0\n");
	free(out);
}
END_TEST

START_TEST(help_and_version)
{
	static const char *const cmds[] = { "list", "show", "export", "stats",
	    "verify", "reconcile", "watch", "status", "merge", "backup" };
	char *out, *dver;
	size_t i;

	out = tl_read(CTL " --version 2>&1; echo \"exit $?\"");
	ck_assert_str_eq(out, "cardlicctl 0.1\nexit 0\n");
	free(out);
	/* One version for both programs. */
	dver = tl_read(CARDLICD " --version");
	ck_assert_str_eq(dver, "cardlicd 0.1\n");
	free(dver);
	out = tl_read(CTL " --help 2>/dev/null | head -1; echo \"exit $?\"");
	ck_assert_str_eq(out, "usage: cardlicctl [-d DB] [-c CONF] [--utc | "
	    "--local] COMMAND [ARGS]\nexit 0\n");
	free(out);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		/* On stdout, nothing on stderr, rc 0; no database needed. */
		out = tl_read(CTL " -d /nonexistent %s --help 2>&1 >/dev/null |"
		    " wc -c; " CTL " -d /nonexistent %s --help | head -1 | "
		    "cut -d ' ' -f 1-3; " CTL " -d /nonexistent %s --help "
		    ">/dev/null 2>&1; echo \"exit $?\"", cmds[i], cmds[i],
		    cmds[i]);
		ck_assert_msg(strncmp(out, "0\nusage: cardlicctl ", 20) == 0 &&
		    strncmp(out + 20, cmds[i], strlen(cmds[i])) == 0 &&
		    strcmp(out + 20 + strlen(cmds[i]), "\nexit 0\n") == 0,
		    "%s --help: %s", cmds[i], out);
		free(out);
	}
	out = tl_read(CTL " 2>&1 >/dev/null | head -1; " CTL " >/dev/null "
	    "2>&1; echo \"exit $?\"");
	expect(out, "usage: cardlicctl");
	expect(out, "exit 2");
	free(out);
}
END_TEST

/*
 * An auditor may read the directory, not create files in it.  Once the
 * -wal and -shm files are gone (an admin's sqlite3 was the last to close
 * the database), a read-only open cannot make them: cardlicctl then reads
 * the file as it is, and says so.
 */
START_TEST(auditor_reads_without_wal_files)
{
	char *s;

	tl_sh("rm -rf %s/ro && mkdir -m 0755 %s/ro && cp %s %s/ro/a.db && "
	    "sqlite3 %s/ro/a.db 'PRAGMA journal_mode' >/dev/null && "
	    "chmod 0644 %s/ro/a.db && chmod 0755 %s && "
	    "install -m 0755 " CTL " %s/ro/", tl_dir, tl_dir, known, tl_dir,
	    tl_dir, tl_dir, tl_dir, tl_dir);
	ck_assert_int_eq(tl_sh_rc("test -e %s/ro/a.db-wal", tl_dir), 1);
	/* A copy: nobody may not reach the checkout (CI clones anywhere). */
	s = tl_read("runuser -u nobody -- %s/ro/cardlicctl -d %s/ro/a.db list "
	    "--serial V1 2>&1; echo \"exit $?\"", tl_dir, tl_dir);
	expect(s, "no -wal file, and no right to make one: read as it is on "
	    "disk");
	expect(s, "V1");
	expect(s, "exit 0");
	free(s);
	s = tl_read("runuser -u nobody -- %s/ro/cardlicctl -d %s/ro/a.db "
	    "verify 2>&1; echo \"exit $?\"", tl_dir, tl_dir);
	expect(s, "exit 0");
	free(s);
}
END_TEST

START_TEST(backup_copies_and_verifies)
{
	char *out, *head, *sum;

	head = tl_read("sqlite3 %s 'SELECT lower(hex(hash)) FROM audit ORDER "
	    "BY seq DESC LIMIT 1' | tr -d '\\n'", known);
	out = tl_read(CTL " -d %s backup %s/copy.db 2>&1; echo \"exit $?\"",
	    known, tl_dir);
	ck_assert_msg(strstr(out, "copy.db: station test: 26 rows, chain "
	    "intact, head ") != NULL && strstr(out, head) != NULL, "%s", out);
	expect(out, "copy.db: 26 rows copied, the copy verifies\nexit 0\n");
	free(out);
	/* One self-contained file, with every row and view. */
	out = tl_read("sqlite3 %s/copy.db 'PRAGMA journal_mode; SELECT "
	    "count(*) FROM audit; SELECT count(*) FROM issuance'; ls "
	    "%s/copy.db-* 2>/dev/null | wc -l", tl_dir, tl_dir);
	ck_assert_str_eq(out, "delete\n26\n7\n0\n");
	free(out);
	out = tl_read("[ \"$(stat -c %%a %s)\" = \"$(stat -c %%a "
	    "%s/copy.db)\" ] && echo same mode", known, tl_dir);
	ck_assert_str_eq(out, "same mode\n");
	free(out);
	/* Never over an existing file, and that file stays as it was. */
	sum = tl_read("sha256sum < %s/copy.db", tl_dir);
	out = tl_read(CTL " -d %s backup %s/copy.db 2>&1; echo \"exit $?\"; "
	    "sha256sum < %s/copy.db", d_db, tl_dir, tl_dir);
	expect(out, "copy.db: File exists (a backup never overwrites a file)\n"
	    "exit 2\n");
	expect(out, sum);
	free(out);
	free(sum);
	/* A copy that does not verify: rc 1, kept for inspection. */
	out = tampered("bk-edit", "UPDATE audit SET reason = 'x' WHERE seq = "
	    "5");
	free(out);
	out = tl_read(CTL " -d %s/bk-edit.db backup %s/bk-copy.db 2>&1; echo "
	    "\"exit $?\"; ls %s/bk-copy.db", tl_dir, tl_dir, tl_dir);
	expect(out, "bk-copy.db: station test: BROKEN at row 5 was altered");
	expect(out, "bk-copy.db: the copy does NOT verify (kept for "
	    "inspection); 4 rows checked\nexit 1\n");
	expect(out, "/bk-copy.db\n");
	free(out);
	/* A copy that cannot be made leaves nothing. */
	out = tl_read(CTL " -d %s backup %s/no/such/dir.db 2>&1; echo \"exit "
	    "$?\"", known, tl_dir);
	expect(out, "no/such/dir.db: No such file or directory\nexit 2\n");
	free(out);
	free(head);
}
END_TEST

/*
 * A backup while another connection holds the write lock, as cardlicd
 * does while it records a card: the copy is made all the same, and holds
 * what was committed, not the row being written.
 */
START_TEST(backup_beside_a_writer)
{
	char *out, fifo[400];
	long end;
	int w;

	snprintf(fifo, sizeof(fifo), "%s/hold.fifo", tl_dir);
	tl_sh("sqlite3 %s \"VACUUM INTO '%s/busy.db'\" && sqlite3 %s/busy.db "
	    "'PRAGMA journal_mode = WAL' >/dev/null && mkfifo %s", known,
	    tl_dir, tl_dir, fifo);
	/* The writer holds its transaction until the fifo closes. */
	tl_sh("/usr/bin/python3 -c 'import sqlite3, sys\n"
	    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
	    "db.execute(\"BEGIN IMMEDIATE\")\n"
	    "db.execute(\"INSERT INTO audit (seq, utc, station, job, reader, "
	    "state, reason, hash) SELECT max(seq) + 1, 1, 2, 3, 4, ?, 6, "
	    "zeroblob(1) FROM audit\", (\"failed\",))\n"
	    "open(sys.argv[2], \"w\").close()\n"
	    "sys.stdin.read()\n"
	    "db.execute(\"ROLLBACK\")' %s/busy.db %s/held < %s &", tl_dir,
	    tl_dir, fifo);
	w = open(fifo, O_WRONLY);
	ck_assert_int_ge(w, 0);
	end = tl_now_ms() + 10000;
	while (tl_sh_rc("test -e %s/held", tl_dir) != 0 && tl_now_ms() < end)
		usleep(10000);
	ck_assert_msg(tl_sh_rc("test -e %s/held", tl_dir) == 0, "no writer");
	out = tl_read(CTL " -d %s/busy.db backup %s/busy-copy.db 2>&1; echo "
	    "\"exit $?\"; sqlite3 %s/busy.db 'BEGIN IMMEDIATE' 2>&1", tl_dir,
	    tl_dir, tl_dir);
	close(w);
	expect(out, "busy-copy.db: 26 rows copied, the copy verifies\n"
	    "exit 0\n");
	/* The lock was held all along. */
	expect(out, "database is locked");
	free(out);
}
END_TEST


/*
 * Issue 12, audit at scale: a station's database made by bench/mkaudit
 * (25,000 rows: 6,283 cards, rejected, pulled, skipped, failed, in
 * doubt and resolved, daily counts), once in the newest schema and once
 * as cardlicd 5 left it, with the same rows.
 */
static char	scale_dir[64];
static char	scale6[128], scale5[128];

static void
scale_up(void)
{
	snprintf(scale_dir, sizeof(scale_dir), "/tmp/cardlic-scale-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(scale_dir));
	snprintf(scale6, sizeof(scale6), "%s/v6.db", scale_dir);
	snprintf(scale5, sizeof(scale5), "%s/v5.db", scale_dir);
	tl_sh(CTL " keygen %s/k %s/k.pub >/dev/null && "
	    TOPDIR "/bench/mkaudit %s 25000 %s/k >/dev/null && "
	    "MKAUDIT_VERSION=5 " TOPDIR "/bench/mkaudit %s 25000 %s/k "
	    ">/dev/null", scale_dir, scale_dir, scale6, scale_dir, scale5,
	    scale_dir);
}

static void
scale_down(void)
{
	if (scale_dir[0] != '\0')
		tl_sh("rm -rf %s", scale_dir);
}

/* cardlicctl ARGS on db, with each statement's plan: all of its output. */
static char *
scale_plan(const char *db, const char *args)
{
	return tl_read("CARDLICCTL_EXPLAIN=1 " CTL " -d %s %s 2>&1 "
	    ">/dev/null", db, args);
}

/*
 * The plan of the statement that contains what (a piece of its SQL):
 * its "plan:" lines up to the next statement.
 */
static char *
scale_plan_of(const char *plans, const char *what)
{
	const char *p = strstr(plans, what), *start, *end;
	char *out;

	ck_assert_msg(p != NULL, "no statement with \"%s\" in:\n%s", what,
	    plans);
	start = strstr(p, "\nplan: ");
	ck_assert_ptr_nonnull(start);
	end = strstr(start, "\nplan of: ");
	if (end == NULL)
		end = start + strlen(start);
	out = strndup(start, (size_t)(end - start));
	ck_assert_ptr_nonnull(out);
	return out;
}

/*
 * No step of plan reads the whole audit table (SCAN of it, or of one of
 * its indexes unless that is allowed: a partial or covering index read
 * whole on purpose).
 */
static void
scale_no_scan(const char *plan, const char *args, const char *allowed)
{
	static const char *const aliases[] = { "a", "audit", "g", "x", "l",
	    "r", "s", "f", "d", NULL };
	char line[64];
	const char *p;
	int i;

	for (i = 0; aliases[i] != NULL; i++) {
		snprintf(line, sizeof(line), "plan: SCAN %s\n", aliases[i]);
		ck_assert_msg(strstr(plan, line) == NULL, "%s reads the whole "
		    "table:\n%s", args, plan);
		snprintf(line, sizeof(line), "plan: SCAN %s USING", aliases[i]);
		for (p = plan; (p = strstr(p, line)) != NULL; p++)
			ck_assert_msg(allowed != NULL && strncmp(p + 6, allowed,
			    strlen(allowed)) == 0, "%s reads a whole index:"
			    "\n%s", args, plan);
	}
}

/*
 * show and list --serial: the serial's index, in every branch; and
 * serial_text = S through each view, as an auditor asks with sqlite3.
 */
START_TEST(serial_lookups_use_the_index)
{
	static const struct {
		const char	*view;
		int		 branches;	/* each through the index */
	} v[] = {
		{ "audit_text", 1 }, { "issuance", 4 }, { "issuance_rows", 4 },
		{ "issuance_other", 3 }, { "pending", 1 }, { "rejections", 1 },
		{ "in_doubt", 1 },
	};
	static const char by_index[] = "SEARCH a USING INDEX audit_serial_text "
	    "(<expr>=?)";
	char *plans, *plan;
	const char *p;
	size_t i;
	int n;

	plans = scale_plan(scale6, "show CL0000001234");
	plan = scale_plan_of(plans, "FROM audit_text WHERE");
	ck_assert_msg(strstr(plan, by_index) != NULL, "show:\n%s", plan);
	scale_no_scan(plan, "show", NULL);
	free(plan);
	free(plans);
	plans = scale_plan(scale6, "list --serial CL0000001234");
	plan = scale_plan_of(plans, "FROM issuance_rows WHERE");
	/* The four branches of issuance, each through the index. */
	for (n = 0, p = plan; (p = strstr(p, by_index)) != NULL; p++)
		n++;
	ck_assert_msg(n == 4, "list --serial:\n%s", plan);
	scale_no_scan(plan, "list --serial", NULL);
	free(plan);
	free(plans);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		plan = tl_read("sqlite3 %s \"EXPLAIN QUERY PLAN SELECT * FROM "
		    "%s WHERE serial_text = 'CL0000001234'\" | sed -n "
		    "'s/^[|` ]*--/plan: /p'", scale6, v[i].view);
		for (n = 0, p = plan; (p = strstr(p, by_index)) != NULL; p++)
			n++;
		ck_assert_msg(n == v[i].branches, "%s WHERE serial_text:\n%s",
		    v[i].view, plan);
		scale_no_scan(plan, v[i].view, NULL);
		free(plan);
	}
}
END_TEST

/* list --since: the day's rows through audit_utc, then rowid ranges. */
START_TEST(since_uses_the_day)
{
	char *plans, *plan;

	plans = scale_plan(scale6, "list --since 2026-10-02");
	plan = scale_plan_of(plans, "max(license_seq) FROM audit WHERE");
	ck_assert_msg(strstr(plan, "SEARCH audit USING COVERING INDEX "
	    "audit_utc (utc>?)") != NULL, "bounds:\n%s", plan);
	free(plan);
	plan = scale_plan_of(plans, "FROM issuance_rows WHERE");
	ck_assert_msg(strstr(plan, "rowid>? AND rowid<?") != NULL,
	    "list --since:\n%s", plan);
	ck_assert_msg(strstr(plan, "SEARCH a USING INDEX audit_license "
	    "(license_seq=?)") == NULL, "list --since reads the rows without "
	    "a license through audit_license:\n%s", plan);
	scale_no_scan(plan, "list --since", NULL);
	free(plan);
	free(plans);
	plans = scale_plan(scale6, "list --since 2026-10-01 --until "
	    "2026-10-01");
	plan = scale_plan_of(plans, "max(license_seq) FROM audit WHERE");
	ck_assert_msg(strstr(plan, "SEARCH audit USING COVERING INDEX "
	    "audit_utc (utc>? AND utc<?)") != NULL, "bounds:\n%s", plan);
	free(plan);
	free(plans);
}
END_TEST

/* stats: per day from audit_utc in order, the rest through indexes. */
START_TEST(stats_uses_indexes)
{
	char *plans, *plan;

	plans = scale_plan(scale6, "stats");
	plan = scale_plan_of(plans, "FROM audit ORDER BY utc");
	ck_assert_msg(strstr(plan, "plan: SCAN audit USING COVERING INDEX "
	    "audit_utc") != NULL && strstr(plan, "TEMP B-TREE") == NULL,
	    "per day:\n%s", plan);
	free(plan);
	/* The partial index of the `generated` rows, never the table. */
	plan = scale_plan_of(plans, "AS batch_card");
	ck_assert_msg(strstr(plan, "plan: SCAN audit USING INDEX audit_batch") !=
	    NULL && strstr(plan, "plan: SCAN audit\n") == NULL,
	    "per batch card:\n%s", plan);
	free(plan);
	/*
	 * The licenses from audit_license alone (read whole: it holds their
	 * state), each one's last row from it too; the other lines through
	 * audit_state.
	 */
	plan = scale_plan_of(plans, "AS outcome");
	ck_assert_msg(strstr(plan, "SEARCH x USING COVERING INDEX "
	    "audit_license (license_seq=? AND station=?)") != NULL &&
	    strstr(plan, "USING INDEX audit_state (state=?)") != NULL,
	    "per outcome:\n%s", plan);
	scale_no_scan(plan, "stats per outcome", "SCAN g USING COVERING INDEX "
	    "audit_license");
	free(plan);
	free(plans);
}
END_TEST

/*
 * The rewritten questions answer as the old ones did: cardlicctl on the
 * newest schema against cardlicctl on a database of cardlicd 5 with the
 * same rows (its views, its queries), byte for byte, exit status too.
 */
START_TEST(answers_unchanged)
{
	static const char *const args[] = { "stats", "list",
	    "list --since 2026-10-02", "list --since 2026-10-01 --until "
	    "2026-10-01", "list --until 2026-10-01", "list --since 2026-10-03",
	    "list --since 2026-10-01 --serial CL0000001311",
	    "list --serial CL0000004321", "list --serial CL0000001311",
	    "list --serial CL00000013", "list --outcome failed",
	    "list --outcome resolved", "list --outcome rejected --since "
	    "2026-10-02", "list --model 'CLSIM TARGET' --until 2026-10-01",
	    "list --batch 3b88800149444f424154434817 --since 2026-10-02",
	    "list --station line-1 --outcome skipped", "list --station other",
	    "show CL0000000719", "show CL0000002222", "show CL0000004321",
	    "reconcile", "export --format csv", NULL };
	static const char *const views[] = { "audit_text", "issuance",
	    "pending", "rejections", "in_doubt", NULL };
	char *a, *b;
	int i;

	for (i = 0; args[i] != NULL; i++) {
		a = tl_read(CTL " -d %s %s 2>&1; echo \"exit $?\"", scale6,
		    args[i]);
		b = tl_read(CTL " -d %s %s 2>&1; echo \"exit $?\"", scale5,
		    args[i]);
		ck_assert_msg(strcmp(a, b) == 0, "cardlicctl %s: the newest "
		    "schema answers\n%.2000s\ncardlicd 5's answers\n%.2000s",
		    args[i], a, b);
		/* The first ones have something to say. */
		ck_assert_msg(i > 4 || strstr(a, "exit 0\n") != NULL,
		    "cardlicctl %s: %s", args[i], a);
		free(a);
		free(b);
	}
	/* reconcile, as the views say, on both. */
	free(tl_reconcile(scale6));
	free(tl_reconcile(scale5));
	/*
	 * serial_text = S through each view, by the index, finds what
	 * migration 4's serial_text found by reading every row.
	 */
	for (i = 0; views[i] != NULL; i++) {
		a = tl_read("for s in CL0000004321 CL0000001234 CL0000001311 "
		    "CL000000431 ''; do sqlite3 %s \"SELECT * FROM %s WHERE "
		    "serial_text = '$s'\"; done", scale5, views[i]);
		b = tl_read("for s in CL0000004321 CL0000001234 CL0000001311 "
		    "CL000000431 ''; do sqlite3 %s \"SELECT * FROM %s WHERE "
		    "serial_text = '$s'\"; done", scale6, views[i]);
		ck_assert_msg(strcmp(a, b) == 0 && (i > 1 || strchr(a, '\n') !=
		    strrchr(a, '\n')), "%s, serial_text = S: cardlicd 5's "
		    "\n%.2000s\nthe newest schema's\n%.2000s", views[i], a, b);
		free(a);
		free(b);
	}
	/* Every row's text, the NUL-padded serials among them. */
	a = tl_read("sqlite3 %s \"SELECT seq, hex(model_text), "
	    "hex(serial_text), typeof(serial_text) FROM audit_text\" | "
	    "md5sum; sqlite3 %s \"SELECT count(*) FROM audit_text WHERE "
	    "instr(serial, x'00') > 0 AND serial_text = 'CL0000004321'\"",
	    scale5, scale5);
	b = tl_read("sqlite3 %s \"SELECT seq, hex(model_text), "
	    "hex(serial_text), typeof(serial_text) FROM audit_text\" | "
	    "md5sum; sqlite3 %s \"SELECT count(*) FROM audit_text WHERE "
	    "instr(serial, x'00') > 0 AND serial_text = 'CL0000004321'\"",
	    scale6, scale6);
	ck_assert_msg(strcmp(a, b) == 0 && strstr(a, "\n4\n") != NULL,
	    "cardlicd 5's texts:\n%s\nthe newest schema's:\n%s", a, b);
	free(a);
	free(b);
}
END_TEST

/* Both schemas open, and verify holds on both. */
START_TEST(both_versions_verify)
{
	char *a;

	a = tl_read(CTL " -d %s verify --key %s/k.pub 2>&1; echo \"exit $?\"; "
	    CTL " -d %s verify --key %s/k.pub 2>&1; echo \"exit $?\"",
	    scale6, scale_dir, scale5, scale_dir);
	ck_assert_msg(strstr(a, "25000 rows, chain intact") != NULL &&
	    strstr(strstr(a, "25000 rows, chain intact") + 1, "25000 rows, "
	    "chain intact") != NULL && strstr(a, "exit 0\n") != NULL &&
	    strstr(a, "exit 1") == NULL && strstr(a, "exit 2") == NULL, "%s",
	    a);
	free(a);
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
	tcase_add_test(t, auditor_reads_without_wal_files);
	tcase_add_test(t, show_history);
	tcase_add_test(t, stats_and_reconcile);
	tcase_add_test(t, reconcile_as_the_views_say);
	tcase_add_test(t, export_round_trips);
	tcase_add_test(t, verify_finds_each_tampering);
	tcase_add_test(t, merge_two_stations);
	tcase_add_test(t, watch_prints_within_a_second);
	tcase_add_test(t, status_from_the_daemon);
	tcase_add_test(t, list_show_escape_card_bytes);
	tcase_add_test(t, export_json_valid_whatever_the_bytes);
	tcase_add_test(t, export_csv_one_record_per_line);
	tcase_add_test(t, utf8_edges);
	tcase_add_test(t, watch_escapes_card_bytes);
	tcase_add_test(t, status_json_from_a_fake_daemon);
	tcase_add_test(t, dates_must_be_real);
	tcase_add_test(t, help_and_version);
	tcase_add_test(t, backup_copies_and_verifies);
	tcase_add_test(t, backup_beside_a_writer);
	suite_add_tcase(s, t);
	t = tcase_create("at scale");
	tcase_add_unchecked_fixture(t, scale_up, scale_down);
	tcase_set_timeout(t, 120);
	tcase_add_test(t, serial_lookups_use_the_index);
	tcase_add_test(t, since_uses_the_day);
	tcase_add_test(t, stats_uses_indexes);
	tcase_add_test(t, answers_unchanged);
	tcase_add_test(t, both_versions_verify);
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
