/*
 * License blobs of the simulated line.  Layout of the 128 bytes:
 *   0  magic "SIMLIC01"         8
 *   8  model (space padded)    16
 *  24  serial (space padded)   16
 *  40  start date YYYYMMDD      8
 *  48  end date YYYYMMDD        8
 *  56  batch sequence number    4 (big endian)
 *  60  zero padding            36
 *  96  HMAC-SHA256 of 0..95    32, under SIMLIC_TEST_KEY
 * The target card recomputes the HMAC, so a license made for another card,
 * or altered by one bit, is seen as not valid for its serial.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "simproto.h"
#include "simdate.h"

#define SIMLIC_MAC_OFF	96

static void
simlic_mac(const uint8_t *blob, uint8_t out[32])
{
	unsigned int len = 32;

	HMAC(EVP_sha256(), SIMLIC_TEST_KEY, (int)strlen(SIMLIC_TEST_KEY),
	    blob, SIMLIC_MAC_OFF, out, &len);
}

int
simlic_make(const uint8_t *model, const uint8_t *serial, const char *start,
    const char *end, uint32_t seq, uint8_t blob[LIC_BLOB_LEN])
{
	memset(blob, 0, LIC_BLOB_LEN);
	memcpy(blob, SIMLIC_MAGIC, 8);
	memcpy(blob + 8, model, LIC_FIELD_LEN);
	memcpy(blob + 24, serial, LIC_FIELD_LEN);
	memcpy(blob + 40, start, LIC_DATE_LEN);
	memcpy(blob + 48, end, LIC_DATE_LEN);
	blob[56] = (uint8_t)(seq >> 24);
	blob[57] = (uint8_t)(seq >> 16);
	blob[58] = (uint8_t)(seq >> 8);
	blob[59] = (uint8_t)seq;
	simlic_mac(blob, blob + SIMLIC_MAC_OFF);
	return 0;
}

static int
simlic_in_range(const uint8_t *start, const uint8_t *end, long today)
{
	long s, e;

	if (memcmp(start, "00000000", 8) != 0) {
		if (simdate_parse((const char *)start, &s) != 0 || today < s)
			return 0;
	}
	if (memcmp(end, "00000000", 8) != 0) {
		if (simdate_parse((const char *)end, &e) != 0 || today > e)
			return 0;
	}
	return 1;
}

/* A date field of a license: YYYYMMDD, or 00000000 for "no limit". */
static int
simlic_date_ok(const uint8_t *d)
{
	long days;

	return memcmp(d, "00000000", 8) == 0 ||
	    simdate_parse((const char *)d, &days) == 0;
}

/*
 * The 19-byte status of the vendor text for a card with the given model
 * and serial, holding blob (or none), on the given day.
 *
 * The dates are those of the stored license only when it is one of ours
 * (magic and MAC hold) and both dates are YYYYMMDD or 00000000.  Any other
 * license (foreign, damaged, or with dates that are no dates) reads back
 * as present, serialValid 0, dateValid 0, and both dates 00000000: a real
 * card cannot know where the dates of a blob it cannot parse would be,
 * and must not hand out arbitrary bytes as dates.
 */
void
simlic_status(const uint8_t *blob, int present, const uint8_t *model,
    const uint8_t *serial, int global, long today,
    uint8_t st[LIC_STATUS_LEN])
{
	uint8_t mac[32];
	int parses;

	memset(st, 0, LIC_STATUS_LEN);
	memset(st + 3, '0', 16);
	if (present) {
		simlic_mac(blob, mac);
		parses = memcmp(blob, SIMLIC_MAGIC, 8) == 0 &&
		    CRYPTO_memcmp(mac, blob + SIMLIC_MAC_OFF, 32) == 0 &&
		    simlic_date_ok(blob + 40) && simlic_date_ok(blob + 48);
		st[0] = 1;
		if (parses) {
			memcpy(st + 3, blob + 40, 8);
			memcpy(st + 11, blob + 48, 8);
			st[1] = memcmp(blob + 8, model, LIC_FIELD_LEN) == 0 &&
			    memcmp(blob + 24, serial, LIC_FIELD_LEN) == 0;
			st[2] = simlic_in_range(blob + 40, blob + 48, today);
		}
	}
	if (global) {
		/* A global agreement makes the card acceptable as it is. */
		st[1] = st[2] = 1;
	}
}
