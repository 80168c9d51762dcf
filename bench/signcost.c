/*
 * make bench-sign: what signing costs (issue 11).  Prints, measured here:
 *  - Ed25519 signing of one row's hash (daemon/sign.c, as db_append
 *    does it), in microseconds per row;
 *  - checking one row's signature (as cardlicctl verify does), per row;
 *  - the hash of one row (daemon/dbhash.c), for scale;
 *  - cardlicctl verify --key over a database of SIGNCOST_ROWS rows
 *    (default 1,000,000), built here with the same hash and signature
 *    functions, one key row then signed rows, as today's cardlicd
 *    writes them (v2: daemon/sign.h), in wall-clock seconds; and the
 *    same with --every-signature, which checks each row's own.
 * bench/signcost DIR: the database and the key go to DIR.
 */
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../daemon/dbhash.h"
#include "../daemon/sign.h"

extern const char *const	sql_migrations[];
extern const int		sql_migrations_count;

static double
sc_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sc_die(const char *what)
{
	fprintf(stderr, "signcost: %s\n", what);
	exit(1);
}

static void
sc_text(struct dbhash_val *v, const char *s)
{
	v->type = SQLITE_TEXT;
	v->p = (const uint8_t *)s;
	v->len = strlen(s);
}

int
main(int argc, char **argv)
{
	static const uint8_t model[16] = "IDOPTE MODEL 1  ";
	struct dbhash_val v[AUDITROW_HASHED];
	struct sign_key *k;
	sqlite3 *db;
	sqlite3_stmt *st;
	uint8_t prev[32], h[32], sig[64], pub[32], serial[16];
	char pem[1024], pubpem[512], err[256], path[512], cmd[1200];
	char reason[100], hex[65], num[24];
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	long rows = getenv("SIGNCOST_ROWS") != NULL ?
	    atol(getenv("SIGNCOST_ROWS")) : 1000000;
	long i, n = 20000;
	double t, sign_us, check_us, hash_us;
	int j, ok = 0;
	FILE *f;

	if (sign_key_generate(pem, sizeof(pem), err, sizeof(err)) != 0 ||
	    (k = sign_key_from_pem(pem, strlen(pem), err, sizeof(err))) ==
	    NULL)
		sc_die(err);
	sign_key_public(k, pub);
	memset(h, 0x5A, sizeof(h));
	t = sc_now();
	for (i = 0; i < n; i++) {
		h[0] = (uint8_t)i;
		sign_bytes(k, SIGN_DOMAIN_ROW_V2, h, 32, sig);
	}
	sign_us = (sc_now() - t) * 1e6 / (double)n;
	t = sc_now();
	for (i = 0; i < n; i++)
		ok += sign_check(pub, SIGN_DOMAIN_ROW_V2, h, 32, sig);
	check_us = (sc_now() - t) * 1e6 / (double)n;
	if (ok != n)
		sc_die("a good signature did not check");

	/* The rows, as db_append makes them, in one transaction. */
	snprintf(path, sizeof(path), "%s/signcost.db", dir);
	unlink(path);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		sc_die("cannot create the database");
	for (j = 0; j < sql_migrations_count; j++)
		if (sqlite3_exec(db, sql_migrations[j], NULL, NULL, NULL) !=
		    SQLITE_OK)
			sc_die(sqlite3_errmsg(db));
	/* As db_migrate leaves it: cardlicctl checks the version. */
	snprintf(path, sizeof(path), "PRAGMA user_version = %d",
	    sql_migrations_count);
	sqlite3_exec(db, path, NULL, NULL, NULL);
	snprintf(path, sizeof(path), "%s/signcost.db", dir);
	sqlite3_exec(db, "PRAGMA synchronous = OFF; BEGIN", NULL, NULL, NULL);
	if (sqlite3_prepare_v2(db, AUDITROW_INSERT, -1, &st, NULL) !=
	    SQLITE_OK)
		sc_die(sqlite3_errmsg(db));
	memset(prev, 0, sizeof(prev));
	memcpy(serial, "SN0000000000    ", 16);
	dbhash_hex(pub, 32, 0, hex);
	hash_us = 0;
	for (i = 1; i <= rows; i++) {
		memset(v, 0, sizeof(v));
		for (j = 0; j < AUDITROW_HASHED; j++)
			v[j].type = SQLITE_NULL;
		v[AUDITROW_seq].type = SQLITE_INTEGER;
		v[AUDITROW_seq].i = i;
		v[AUDITROW_job].type = SQLITE_INTEGER;
		v[AUDITROW_job].i = i;
		sc_text(&v[AUDITROW_utc], "2026-11-25T00:00:00.000Z");
		sc_text(&v[AUDITROW_station], "bench");
		sc_text(&v[AUDITROW_reader], "Sim Line A 00 01");
		if (i == 1) {
			snprintf(reason, sizeof(reason), "ed25519 %s"
			    SIGN_V2_MARK, hex);
			sc_text(&v[AUDITROW_state], "key");
			sc_text(&v[AUDITROW_reader], "");
		} else {
			snprintf(reason, sizeof(reason), "license loaded and "
			    "read back, row %ld", i);
			sc_text(&v[AUDITROW_state], "verified");
			snprintf(num, sizeof(num), "%010ld", i % 10000000000L);
			memcpy(serial + 2, num, 10);
			v[AUDITROW_model].type = SQLITE_BLOB;
			v[AUDITROW_model].p = model;
			v[AUDITROW_model].len = 16;
			v[AUDITROW_serial].type = SQLITE_BLOB;
			v[AUDITROW_serial].p = serial;
			v[AUDITROW_serial].len = 16;
			sc_text(&v[AUDITROW_timings], "{\"total\":812}");
		}
		sc_text(&v[AUDITROW_reason], reason);
		t = sc_now();
		dbhash_row(prev, v, h);
		hash_us += sc_now() - t;
		sign_bytes(k, SIGN_DOMAIN_ROW_V2, h, 32, sig);
		memcpy(prev, h, 32);
		sqlite3_reset(st);
		for (j = 0; j < AUDITROW_HASHED; j++) {
			if (v[j].type == SQLITE_INTEGER)
				sqlite3_bind_int64(st, j + 1, v[j].i);
			else if (v[j].type == SQLITE_TEXT)
				sqlite3_bind_text(st, j + 1,
				    (const char *)v[j].p, (int)v[j].len,
				    SQLITE_STATIC);
			else if (v[j].type == SQLITE_BLOB)
				sqlite3_bind_blob(st, j + 1, v[j].p,
				    (int)v[j].len, SQLITE_STATIC);
			else
				sqlite3_bind_null(st, j + 1);
		}
		sqlite3_bind_blob(st, AUDITROW_hash + 1, h, 32, SQLITE_STATIC);
		sqlite3_bind_blob(st, AUDITROW_sig + 1, sig, 64, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			sc_die(sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	hash_us = hash_us * 1e6 / (double)rows;

	snprintf(path, sizeof(path), "%s/signcost.pub", dir);
	if (sign_pub_pem(pub, pubpem, sizeof(pubpem)) != 0 ||
	    (f = fopen(path, "w")) == NULL)
		sc_die("cannot write the public key");
	fputs(pubpem, f);
	fclose(f);
	printf("Ed25519 sign, one row:        %8.1f us\n", sign_us);
	printf("Ed25519 check, one row:       %8.1f us\n", check_us);
	printf("SHA-256 row hash, one row:    %8.1f us\n", hash_us);
	fflush(stdout);
	for (j = 0; j < 2; j++) {
		snprintf(cmd, sizeof(cmd), "%s -d %s/signcost.db verify --key "
		    "%s%s >/dev/null", TOPDIR "/ctl/cardlicctl", dir, path,
		    j ? " --every-signature" : "");
		t = sc_now();
		if (system(cmd) != 0)
			sc_die("cardlicctl verify --key failed on the bench "
			    "database");
		t = sc_now() - t;
		printf("cardlicctl verify --key%s, %ld rows: %.1f s (%.1f us "
		    "per row)\n", j ? " --every-signature" : "", rows, t,
		    t * 1e6 / (double)rows);
	}
	sign_key_free(k);
	return 0;
}
