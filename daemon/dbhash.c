/*
 * hash = SHA-256(previous hash || column 1 || ... || column 20), the
 * columns of AUDITROW_HASHED_COLUMNS (auditrow.h) in their order, where a
 * column is its SQLite type (1 byte), its length (4 bytes, big endian) and
 * its bytes; an integer is written in decimal.  Typing every column keeps
 * NULL, '' and a zero-length blob apart, so no edit can hide in a
 * change of type.  The first row's previous hash is 32 zero bytes.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>
#include <sqlite3.h>

#include "dbhash.h"

const struct auditrow_col auditrow_cols[AUDITROW_NCOLS] = {
#define AUDITROW_COL(name, type, exp, at, hex_at) \
	{ #name, #type, SQLITE_##type, exp, at, hex_at },
	AUDITROW_COLUMNS(AUDITROW_COL)
#undef AUDITROW_COL
};

/*
 * Bytes as hex, NUL-terminated (out holds 2n + 1): lower case for hashes,
 * upper case for ATRs and license data, as they are shown and stored.
 */
void
dbhash_hex(const uint8_t *p, size_t n, int upper, char *out)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0x0F];
	}
	out[2 * n] = '\0';
}

static int
dbhash_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * n bytes from the 2n hex digits (either case) at s, which holds slen:
 * 0, or -1 if they are not.  It stops at the first byte that is no digit,
 * so s may end (NUL) before 2n bytes.
 */
int
dbhash_unhex(const char *s, size_t slen, uint8_t *out, size_t n)
{
	size_t i;
	int d;

	if (slen != 2 * n)
		return -1;
	for (i = 0; i < 2 * n; i++) {
		if ((d = dbhash_nibble(s[i])) < 0)
			return -1;
		out[i / 2] = i % 2 != 0 ? (uint8_t)(out[i / 2] | d) :
		    (uint8_t)(d << 4);
	}
	return 0;
}

static pthread_once_t	dbhash_once = PTHREAD_ONCE_INIT;

static void
dbhash_start(void)
{
	/*
	 * libsodium asks for sodium_init before any use.  Its SHA-256 has
	 * one implementation and needs nothing that sodium_init sets up,
	 * so that a failure here changes no hash, and is not reported.
	 */
	if (sodium_init() < 0)
		return;
}

/* SHA-256 of n bytes (checkpoint lines, spill records). */
void
dbhash_sha256(const void *p, size_t n, uint8_t out[32])
{
	pthread_once(&dbhash_once, dbhash_start);
	crypto_hash_sha256(out, p, n);
}

void
dbhash_row(const uint8_t prev[32], const struct dbhash_val *v, uint8_t out[32])
{
	crypto_hash_sha256_state md;
	uint8_t hdr[5];
	char num[24];
	const uint8_t *p;
	size_t len;
	int i;

	pthread_once(&dbhash_once, dbhash_start);
	crypto_hash_sha256_init(&md);
	crypto_hash_sha256_update(&md, prev, 32);
	for (i = 0; i < AUDITROW_HASHED; i++) {
		p = v[i].p;
		len = v[i].len;
		if (v[i].type == SQLITE_INTEGER) {
			len = (size_t)snprintf(num, sizeof(num), "%lld",
			    v[i].i);
			p = (const uint8_t *)num;
		} else if (v[i].type == SQLITE_NULL)
			len = 0;
		hdr[0] = (uint8_t)v[i].type;
		hdr[1] = (uint8_t)(len >> 24);
		hdr[2] = (uint8_t)(len >> 16);
		hdr[3] = (uint8_t)(len >> 8);
		hdr[4] = (uint8_t)len;
		crypto_hash_sha256_update(&md, hdr, sizeof(hdr));
		if (len > 0)
			crypto_hash_sha256_update(&md, p, len);
	}
	crypto_hash_sha256_final(&md, out);
}

/*
 * The length of a card's padded field (CK_TOKEN_INFO's model, serial and
 * labels, the license's dates) without its padding: every trailing space
 * and NUL dropped, nothing else.  The one rule in C; the view audit_text
 * (sql/006-scale.sql, sql/004-card-text.sql before it) is the same rule
 * in SQL, and tests/check_unit.c holds them to each other.
 */
size_t
dbhash_trimmed(const uint8_t *p, size_t n)
{
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\0'))
		n--;
	return n;
}

/*
 * Bytes from a card as text for a log line, a journal field or a table:
 * the trailing spaces and NULs of a padded field dropped, and anything
 * but printable ASCII written as \xNN (a backslash as \\), so that a card
 * can neither forge a line nor send a terminal escape.  out holds at
 * least 4 * n + 1 bytes to never cut.
 */
void
dbhash_text(const uint8_t *p, size_t n, char *out, size_t outlen)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t k = 0;

	for (n = dbhash_trimmed(p, n); n > 0 && k + 5 <= outlen; p++, n--) {
		if (*p >= 0x20 && *p < 0x7F && *p != '\\')
			out[k++] = (char)*p;
		else if (*p == '\\') {
			out[k++] = '\\';
			out[k++] = '\\';
		} else {
			out[k++] = '\\';
			out[k++] = 'x';
			out[k++] = digits[*p >> 4];
			out[k++] = digits[*p & 15];
		}
	}
	if (outlen > 0)
		out[k] = '\0';
}
