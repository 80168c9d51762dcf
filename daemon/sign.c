/*
 * Ed25519 through OpenSSL's EVP interface (see sign.h).  Ed25519 signs the
 * whole message in one pass (EVP_DigestSign with no digest), so the
 * domain and the message are joined into one buffer first; every message
 * here is short (a 32-byte hash, a key, a checkpoint line).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "sign.h"

struct sign_key {
	EVP_PKEY	*pkey;
	uint8_t		 pub[32];
};

/* OpenSSL's last error in words, or what, if it left none. */
static void
sign_err(char *err, size_t len, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	if (err == NULL || len == 0)
		return;
	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(err, len, "%s (%s)", what, buf);
	} else
		snprintf(err, len, "%s", what);
	ERR_clear_error();
}

/* The 32 raw bytes of an Ed25519 key, or -1 if it is another kind. */
static int
sign_raw_public(EVP_PKEY *pkey, uint8_t pub[32])
{
	size_t n = 32;

	if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519 ||
	    EVP_PKEY_get_raw_public_key(pkey, pub, &n) != 1 || n != 32)
		return -1;
	return 0;
}

/* No passphrase: an encrypted key is refused, never prompted for. */
static int
sign_no_pass(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

struct sign_key *
sign_key_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
	struct sign_key *k;
	EVP_PKEY *pkey;
	BIO *bio;

	if (len > 65536 || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		sign_err(err, errlen, "not a PEM private key");
		return NULL;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, sign_no_pass, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		sign_err(err, errlen, "not a PEM private key");
		return NULL;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		EVP_PKEY_free(pkey);
		sign_err(err, errlen, "out of memory");
		return NULL;
	}
	k->pkey = pkey;
	if (sign_raw_public(pkey, k->pub) != 0) {
		sign_key_free(k);
		sign_err(err, errlen, "not an Ed25519 key");
		return NULL;
	}
	return k;
}

void
sign_key_free(struct sign_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

void
sign_key_public(const struct sign_key *k, uint8_t pub[32])
{
	memcpy(pub, k->pub, 32);
}

/* domain || NUL || msg in a new buffer, *n its length; NULL on failure. */
static uint8_t *
sign_message(const char *domain, const uint8_t *msg, size_t len, size_t *n)
{
	size_t d = strlen(domain) + 1;
	uint8_t *m;

	if (len > SIZE_MAX - d || (m = malloc(d + len)) == NULL)
		return NULL;
	memcpy(m, domain, d);
	if (len > 0)
		memcpy(m + d, msg, len);
	*n = d + len;
	return m;
}

int
sign_bytes(const struct sign_key *k, const char *domain, const uint8_t *msg,
    size_t len, uint8_t sig[64])
{
	EVP_MD_CTX *md;
	uint8_t *m;
	size_t n, slen = 64;
	int ok = 0;

	if ((m = sign_message(domain, msg, len, &n)) == NULL)
		return -1;
	if ((md = EVP_MD_CTX_new()) != NULL &&
	    EVP_DigestSignInit(md, NULL, NULL, NULL, k->pkey) == 1 &&
	    EVP_DigestSign(md, sig, &slen, m, n) == 1 && slen == 64)
		ok = 1;
	EVP_MD_CTX_free(md);
	free(m);
	ERR_clear_error();
	return ok ? 0 : -1;
}

/*
 * verify checks a million rows under one key: the key's EVP_PKEY is kept
 * for the next call (per thread), rather than made again for each row.
 */
static _Thread_local EVP_PKEY	*sign_last_pkey;
static _Thread_local uint8_t	 sign_last_pub[32];

int
sign_check(const uint8_t pub[32], const char *domain, const uint8_t *msg,
    size_t len, const uint8_t sig[64])
{
	EVP_MD_CTX *md = NULL;
	uint8_t *m;
	size_t n;
	int ok = 0;

	if ((m = sign_message(domain, msg, len, &n)) == NULL)
		return 0;
	if (sign_last_pkey == NULL || memcmp(pub, sign_last_pub, 32) != 0) {
		EVP_PKEY_free(sign_last_pkey);
		sign_last_pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519,
		    NULL, pub, 32);
		memcpy(sign_last_pub, pub, 32);
	}
	if (sign_last_pkey != NULL && (md = EVP_MD_CTX_new()) != NULL &&
	    EVP_DigestVerifyInit(md, NULL, NULL, NULL, sign_last_pkey) == 1 &&
	    EVP_DigestVerify(md, sig, 64, m, n) == 1)
		ok = 1;
	EVP_MD_CTX_free(md);
	free(m);
	ERR_clear_error();
	return ok;
}

/*
 * What an endorsement signs: the station's id, a NUL, the new public key.
 * -1 when the id is too long to be one.
 */
static int
sign_endorsement_msg(const char *station, const uint8_t pub[32],
    uint8_t out[SIGN_STATION_MAX + 33], size_t *n)
{
	size_t sl = strlen(station);

	if (sl > SIGN_STATION_MAX)
		return -1;
	memcpy(out, station, sl);
	out[sl] = '\0';
	memcpy(out + sl + 1, pub, 32);
	*n = sl + 33;
	return 0;
}

int
sign_endorse(const struct sign_key *prev, const char *station,
    const uint8_t pub[32], uint8_t sig[64])
{
	uint8_t m[SIGN_STATION_MAX + 33];
	size_t n;

	if (sign_endorsement_msg(station, pub, m, &n) != 0)
		return -1;
	return sign_bytes(prev, SIGN_DOMAIN_KEY, m, n, sig);
}

int
sign_endorsed(const uint8_t prev[32], const char *station,
    const uint8_t pub[32], const uint8_t sig[64])
{
	uint8_t m[SIGN_STATION_MAX + 33];
	size_t n;

	return sign_endorsement_msg(station, pub, m, &n) == 0 &&
	    sign_check(prev, SIGN_DOMAIN_KEY, m, n, sig);
}

int
sign_pub_read(const char *path, uint8_t pub[32], char *err, size_t errlen)
{
	EVP_PKEY *pkey;
	BIO *bio;
	int rc;

	if ((bio = BIO_new_file(path, "r")) == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "%s: cannot open", path);
		return -1;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, sign_no_pass, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		ERR_clear_error();
		snprintf(err, errlen, "%s: not a PEM public key", path);
		return -1;
	}
	rc = sign_raw_public(pkey, pub);
	EVP_PKEY_free(pkey);
	if (rc != 0)
		snprintf(err, errlen, "%s: not an Ed25519 public key", path);
	return rc;
}

int
sign_pub_pem(const uint8_t pub[32], char *out, size_t len)
{
	EVP_PKEY *pkey;
	BIO *bio = NULL;
	char *p;
	long n;
	int rc = -1;

	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	if (pkey != NULL && (bio = BIO_new(BIO_s_mem())) != NULL &&
	    PEM_write_bio_PUBKEY(bio, pkey) == 1 &&
	    (n = BIO_get_mem_data(bio, &p)) > 0 && (size_t)n < len) {
		memcpy(out, p, (size_t)n);
		out[n] = '\0';
		rc = 0;
	}
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return rc;
}

int
sign_key_generate(char *out, size_t len, char *err, size_t errlen)
{
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *p;
	long n;
	int rc = -1;

	if ((ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL)) != NULL &&
	    EVP_PKEY_keygen_init(ctx) == 1 &&
	    EVP_PKEY_keygen(ctx, &pkey) == 1 &&
	    (bio = BIO_new(BIO_s_mem())) != NULL &&
	    PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
	    NULL) == 1 &&
	    (n = BIO_get_mem_data(bio, &p)) > 0 && (size_t)n < len) {
		memcpy(out, p, (size_t)n);
		out[n] = '\0';
		rc = 0;
	} else
		sign_err(err, errlen, "cannot make an Ed25519 key");
	/* OpenSSL clears a memory BIO's buffer as it frees it. */
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}
