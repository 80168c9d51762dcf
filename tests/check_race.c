/*
 * Two requests at once (issue 18, case 9): the daemon's own db.c, linked
 * here, with many threads released together on one credit in doubt.  The
 * old db_resolve read whether the row was resolved under db's lock, let
 * it go, and took it again to append: two threads could both read "not
 * yet" (4 concurrent resolves gave two `resolved` rows in 3 runs of 7).
 * The check and the append are one step now.  Built against the old
 * db.c, this suite fails (see the commit that added it); with no line
 * and no daemon, it runs in about a second.
 */
#include <sys/wait.h>

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../daemon/cardlicd.h"
#include "fuzz/stubs.h"

#define RACE_THREADS	16
#define RACE_ROUNDS	60

static pthread_barrier_t	race_go;
static long			race_seq;
static int			race_ok[RACE_THREADS];

static void *
race_resolve(void *arg)
{
	int k = (int)(long)arg;
	char err[512];

	pthread_barrier_wait(&race_go);
	race_ok[k] = db_resolve(race_seq, 1, "race", err, sizeof(err)) > 0;
	return NULL;
}

/* A credit in doubt, as the daemon records one. */
static long
race_doubt(int i)
{
	static const uint8_t model[FIELD_LEN] = "SIM-MODEL-1     ";
	uint8_t serial[FIELD_LEN];
	struct db_row r;
	char err[512];

	memset(serial, ' ', sizeof(serial));
	snprintf((char *)serial, sizeof(serial), "RACE%04d", i);
	serial[8] = ' ';
	memset(&r, 0, sizeof(r));
	r.reader = "Sim Line A 00 01";
	r.job = db_next_job();
	r.state = "in-doubt";
	r.reason = "a credit may have been spent";
	r.model = model;
	r.serial = serial;
	r.batch_count = -1;
	r.batch_reader = "Sim Line A 00 00";
	r.batch_atr = "3B00";
	return db_append(&r, err, sizeof(err));
}

/* In a child (db.c holds one database for the process): bad rounds. */
static int
race_rounds(const char *path)
{
	pthread_t t[RACE_THREADS];
	char err[512];
	int i, k, n, bad = 0;

	if (db_open(path, "race", err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 100;
	}
	for (i = 0; i < RACE_ROUNDS; i++) {
		if ((race_seq = race_doubt(i)) <= 0)
			return 101;
		pthread_barrier_init(&race_go, NULL, RACE_THREADS);
		for (k = 0; k < RACE_THREADS; k++)
			pthread_create(&t[k], NULL, race_resolve, (void *)(long)k);
		for (k = n = 0; k < RACE_THREADS; k++) {
			pthread_join(t[k], NULL);
			n += race_ok[k];
		}
		pthread_barrier_destroy(&race_go);
		bad += n != 1;
	}
	db_close();
	return bad;
}

START_TEST(one_decision_per_credit_in_doubt)
{
	char dir[] = "/tmp/check-race-XXXXXX", path[100];
	int st;
	pid_t pid;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/audit.db", dir);
	ck_assert_int_ge(pid = fork(), 0);
	if (pid == 0)
		_exit(race_rounds(path));
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%d of %d rounds "
	    "of %d resolves at once did not make exactly one row (status %d)",
	    WIFEXITED(st) ? WEXITSTATUS(st) : -1, RACE_ROUNDS, RACE_THREADS,
	    st);
	unlink(path);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("race");
	TCase *tc = tcase_create("resolve");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, one_decision_per_credit_in_doubt);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
