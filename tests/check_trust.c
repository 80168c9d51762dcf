/*
 * Check, don't trust (issue 18): what can change under the daemon, each
 * reproduced on the simulated line through the real pcscd, with the
 * cards' own state and events as the witness.  Each test failed on the
 * daemon before the fix; each says what the old daemon did.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testline.h"
#include "testdaemon.h"

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

static Suite *
trust_suite(void)
{
	Suite *s = suite_create("trust");
	TCase *tc = tcase_create("cards");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, swapped_card_gets_its_own_license);
	tcase_add_test(tc, swapped_card_on_its_last_try_is_not_touched);
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
