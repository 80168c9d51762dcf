/*
 * Seed databases for fuzz_verify, written by the daemon's own db.c (its
 * migrations, its rows, its hashes): mkdb OUT.db STATION KIND.  KIND is
 * "empty" (the schema only), "job" (one card's life: requested,
 * generated, loaded, verified), "mixed" (skipped, failed, in-doubt and a
 * resolution, a rejected license, a serial with odd bytes).
 */
#include <stdio.h>
#include <string.h>

#include "../../daemon/cardlicd.h"
#include "stubs.h"

static void
mk_row(const char *state, const char *reason, const uint8_t *serial,
    const uint8_t *status, int license)
{
	static const uint8_t model[FIELD_LEN] = "IDOPTE MODEL 1  ";
	static uint8_t lic[LICENSE_LEN];
	struct db_row r;
	char err[512];

	memset(lic, 0xA7, sizeof(lic));
	memset(&r, 0, sizeof(r));
	r.reader = "Sim Line A 00 01";
	r.job = 1;
	r.state = state;
	r.reason = reason;
	r.model = model;
	r.serial = serial;
	r.batch_count = -1;
	r.start_date = "20260101";
	if (license) {
		r.end_date = "20301231";
		r.license = lic;
		r.license_seq = license > 1 ? license : 0;
		r.batch_reader = "Sim Line A 00 00";
		r.batch_atr = "3B8880010000000000000000";
		r.batch_count = 1;
		r.sw = "9000";
	}
	r.status = status;
	r.ckr = "CKR_OK";
	r.timings = "{\"total\":12}";
	if (db_append(&r, err, sizeof(err)) < 0)
		fatalx("db_append: %s", err);
}

int
main(int argc, char **argv)
{
	static const uint8_t s1[FIELD_LEN] = "V1              ";
	static const uint8_t odd[FIELD_LEN] = "Q\"1,\xc3\xa9\x1b[31m\n\xff   ";
	static const uint8_t ok[STATUS_LEN] = "\x01\x01\x01" "20260101"
	    "20301231";
	static const uint8_t bad[STATUS_LEN] = "\x01\x00\x01" "2026\x1b[31"
	    "m\n301231";
	char err[512];

	if (argc != 4)
		fatalx("usage: mkdb OUT.db STATION empty|job|mixed");
	if (db_open(argv[1], argv[2], err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (strcmp(argv[3], "job") == 0 || strcmp(argv[3], "mixed") == 0) {
		mk_row("requested", "asking for a license starting 20260101",
		    s1, NULL, 0);
		mk_row("generated", "generated", s1, NULL, 1);
		mk_row("loaded", "C_SetAttributeValue accepted the license",
		    s1, NULL, 2);
		mk_row("verified", "the card reports the license valid", s1,
		    ok, 2);
	}
	if (strcmp(argv[3], "mixed") == 0) {
		mk_row("skipped", "already licensed until 20301231", odd, ok,
		    0);
		mk_row("failed", "cannot open a session (CKR_DEVICE_ERROR)",
		    odd, NULL, 0);
		mk_row("in-doubt", "batch card answered GENERATE with 6F42",
		    odd, NULL, 0);
		mk_row("rejected", "the card reports licensePresent=1", odd,
		    bad, 2);
	}
	db_close();
	return 0;
}
