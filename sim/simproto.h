/*
 * The simulated line's card protocols.  The batch card follows the vendor
 * text byte for byte; the target card's APDUs are our own (the vendor's
 * real cards are reached only through its middleware) and are described
 * in sim/README.md.
 */
#ifndef CARDLIC_SIMPROTO_H
#define CARDLIC_SIMPROTO_H

#include <stddef.h>
#include <stdint.h>

/* Vendor contract: the batch card's license generation application. */
#define BATCH_AID		"\xA0\x00\x00\x03\x63\x4D\x57\x4C\x01"
#define BATCH_AID_LEN		9
#define LIC_FIELD_LEN		16	/* model, serial: space padded */
#define LIC_DATE_LEN		8	/* YYYYMMDD */
#define LIC_INPUT_LEN		0x28	/* model + serial + start date */
#define LIC_BLOB_LEN		0x80	/* the license data */
#define LIC_RESPONSE_LEN	0x88	/* expiry + license data */
#define LIC_STATUS_LEN		19	/* present, serial ok, date ok, 2 dates */
#define LIC_ATTRIBUTE		0x8000006AUL
#define BATCH_CLA		0x00
#define BATCH_INS_SELECT	0xA4
#define BATCH_SELECT_P1		0x04	/* select application */
#define BATCH_SELECT_P2		0x0C	/* no FCI */
#define BATCH_INS_GENERATE	0xF8
#define BATCH_INS_GET_RESPONSE	0xC0	/* ISO 7816-4 */
/* The status words of the vendor text, each with its meaning there. */
#define BATCH_SW_OK		0x9000
#define BATCH_SW_WRONG_AID	0x6999
#define BATCH_SW_WRONG_CLA	0x6E00
#define BATCH_SW_WRONG_P1P2	0x6A86
#define BATCH_SW_WRONG_LENGTH	0x6700
#define BATCH_SW_NO_CREDIT	0x6985
#define BATCH_SW_BAD_DATE	0x6A80

/* Our target card application. */
#define TGT_AID			"\xF0\x43\x4C\x53\x49\x4D\x54\x47"
#define TGT_AID_LEN		8
#define TGT_CLA			0x80
#define TGT_INS_INFO		0x10	/* model, serial, tries, max, flags */
#define TGT_INS_PUT_LICENSE	0xD0	/* 128 bytes, needs the user PIN */
#define TGT_INS_GET_STATUS	0xCA	/* the 19-byte status */
#define TGT_INFO_LEN		(2 * LIC_FIELD_LEN + 3)
#define TGT_FLAG_GLOBAL		0x01	/* covered by a global license */
#define TGT_FLAG_LOGGED_IN	0x02

/*
 * The simulated license (128 bytes).  TEST KEY ONLY: the batch and target
 * cards of the simulation share the key below; it protects nothing and
 * must never be used outside the simulated line.
 */
#define SIMLIC_TEST_KEY		"cardlicd-sim TEST KEY, not a secret"
#define SIMLIC_MAGIC		"SIMLIC01"

int	simlic_make(const uint8_t *, const uint8_t *, const char *,
	    const char *, uint32_t, uint8_t [LIC_BLOB_LEN]);
void	simlic_status(const uint8_t *, int, const uint8_t *, const uint8_t *,
	    int, long, uint8_t [LIC_STATUS_LEN]);

#endif
