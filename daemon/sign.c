/*
 * Ed25519 through libsodium (see sign.h), and the key files' PEM and DER
 * read and written here, strictly: a private key is PKCS#8 exactly as
 * openssl genpkey -algorithm ed25519 writes it, a public key
 * SubjectPublicKeyInfo exactly as openssl pkey -pubout writes it, each
 * alone in its file.  Anything else is refused with what is wrong, so
 * that an admin never has a key read in a way that they did not mean.
 *
 * libsodium rather than OpenSSL's libcrypto (issue 12): the same
 * signatures, byte for byte (Ed25519 is deterministic), for a fraction of
 * the resident memory and of the start-up time of cardlicctl.
 *
 * Secrets (the seed, libsodium's 64-byte secret key, the base64 and DER
 * that hold the seed) live in sodium_malloc's memory: locked when the
 * limit allows it, left out of core dumps, between guard pages, and
 * wiped when freed.  A key is read-only once made.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "sign.h"

#define SIGN_PEM_MAX	65536	/* bytes of PEM text, at most */
#define SIGN_DER_MAX	3072	/* bytes of DER: an RSA key still says so */
#define SIGN_B64_MAX	(SIGN_DER_MAX / 3 * 4)
#define SIGN_MSG_STACK	256	/* a row's hash, an endorsement: no malloc */

/* What openssl writes before the 32 bytes of each key (RFC 8410). */
static const uint8_t sign_p8_prefix[16] = {
	0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
	0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20
};
static const uint8_t sign_spki_prefix[12] = {
	0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65,
	0x70, 0x03, 0x21, 0x00
};
static const uint8_t sign_oid_ed25519[3] = { 0x2b, 0x65, 0x70 };

struct sign_key {
	uint8_t	sk[64];		/* seed || public key, as libsodium signs */
};

/* What a key file's text and DER pass through: wiped as it is freed. */
struct sign_scratch {
	char	b64[SIGN_B64_MAX];
	uint8_t	der[SIGN_DER_MAX];
	uint8_t	pub[32];
	uint8_t	seed[32];
};

static pthread_once_t	sign_once = PTHREAD_ONCE_INIT;
static int		sign_ready;

static void
sign_start(void)
{
	sign_ready = sodium_init() >= 0;
}

/*
 * libsodium started once, by whichever thread comes first (the daemon
 * signs from its jobs' threads): 0, or -1 if it cannot start.
 */
static int
sign_init(void)
{
	pthread_once(&sign_once, sign_start);
	return sign_ready ? 0 : -1;
}

static void
sign_err(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sign_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/*
 * 1 if a PEM label from the file may be shown: capital letters, digits,
 * spaces (RFC 7468's labels in practice), so that no byte of a file
 * reaches a log line raw.
 */
static int
sign_label_shown(const char *s, size_t n)
{
	static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 #";
	size_t i;

	if (n == 0 || n > 40)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(ok, s[i]) == NULL)
			return 0;
	return 1;
}

/* A line's length without its end: "\n", "\r\n", trailing blanks. */
static size_t
sign_trim(const char *s, size_t n)
{
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
	    s[n - 1] == '\r'))
		n--;
	return n;
}

/* A PEM file being read, one line after another (sign_pem_body). */
struct sign_pem {
	const char	*want;		/* the label: "PRIVATE KEY" */
	const char	*kind;		/* "private" or "public" */
	char		*b64;		/* SIGN_B64_MAX */
	size_t		 k;		/* of b64 */
	int		 line;
	int		 state;		/* 0 before, 1 inside, 2 after */
	int		 begin_at;	/* the BEGIN line */
	int		 text_at;	/* the first text before it */
};

/* The first block is not the one wanted (lab, n): say what it is. */
static void
sign_pem_label(const struct sign_pem *p, const char *lab, size_t n,
    char *err, size_t errlen)
{
	int priv = strcmp(p->kind, "private") == 0;

	if (priv && n == 10 && strncmp(lab, "PUBLIC KEY", 10) == 0)
		sign_err(err, errlen, "a public key (-----BEGIN PUBLIC "
		    "KEY-----), not a private key");
	else if (!priv && n == 11 && strncmp(lab, "PRIVATE KEY", 11) == 0)
		sign_err(err, errlen, "a private key (-----BEGIN PRIVATE "
		    "KEY-----), not a public key: give the public half "
		    "(cardlicctl keygen's PUB, or openssl pkey -pubout)");
	else if (n == 21 && strncmp(lab, "ENCRYPTED PRIVATE KEY", 21) == 0)
		sign_err(err, errlen, "an encrypted private key (-----BEGIN "
		    "ENCRYPTED PRIVATE KEY-----): refused, no passphrase is "
		    "ever asked for (openssl pkey can write it decrypted)");
	else if (n == 19 && strncmp(lab, "OPENSSH PRIVATE KEY", 19) == 0)
		sign_err(err, errlen, "an OpenSSH key (-----BEGIN OPENSSH "
		    "PRIVATE KEY-----), not PKCS#8 (-----BEGIN PRIVATE "
		    "KEY-----)");
	else if (priv && n > 12 &&
	    strncmp(lab + n - 12, " PRIVATE KEY", 12) == 0 &&
	    sign_label_shown(lab, n))
		sign_err(err, errlen, "not an Ed25519 key: -----BEGIN "
		    "%.*s-----", (int)n, lab);
	else if (sign_label_shown(lab, n))
		sign_err(err, errlen, "not a PEM %s key: -----BEGIN %.*s----- "
		    "(line %d), not -----BEGIN %s-----", p->kind, (int)n, lab,
		    p->line, p->want);
	else
		sign_err(err, errlen, "not a PEM %s key: an unknown -----BEGIN "
		    "line (line %d), not -----BEGIN %s-----", p->kind, p->line,
		    p->want);
}

/* A line between BEGIN and END: base64, or the END line. */
static int
sign_pem_inside(struct sign_pem *p, const char *s, size_t n, char *err,
    size_t errlen)
{
	size_t i, wl = strlen(p->want);

	if (n >= 9 && strncmp(s, "-----END ", 9) == 0) {
		if (n != wl + 14 || strncmp(s + 9, p->want, wl) != 0 ||
		    strncmp(s + n - 5, "-----", 5) != 0) {
			sign_err(err, errlen, "not a PEM %s key: line %d does "
			    "not end the -----BEGIN %s----- of line %d",
			    p->kind, p->line, p->want, p->begin_at);
			return -1;
		}
		if (p->k == 0) {
			sign_err(err, errlen, "not a PEM %s key: nothing "
			    "between its BEGIN and END lines", p->kind);
			return -1;
		}
		p->state = 2;
		return 0;
	}
	if (n == 0) {
		sign_err(err, errlen, "not a PEM %s key: a blank line inside "
		    "it (line %d)", p->kind, p->line);
		return -1;
	}
	if (memchr(s, ':', n) != NULL) {
		/* RFC 1421's headers: only ever seen on encrypted keys. */
		if (n >= 10 && strncmp(s, "Proc-Type:", 10) == 0 &&
		    memmem(s, n, "ENCRYPTED", 9) != NULL)
			sign_err(err, errlen, "an encrypted %s key (Proc-Type, "
			    "line %d): refused, no passphrase is ever asked "
			    "for", p->kind, p->line);
		else
			sign_err(err, errlen, "not a PEM %s key alone: a "
			    "header on line %d (a key file has none)",
			    p->kind, p->line);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '+' || s[i] == '/' || s[i] == '=')
			continue;
		sign_err(err, errlen, "not a PEM %s key: bad base64 on line "
		    "%d, column %zu", p->kind, p->line, i + 1);
		return -1;
	}
	if (n > SIGN_B64_MAX - p->k) {
		sign_err(err, errlen, "too long to be an Ed25519 %s key (more "
		    "than %d bytes)", p->kind, SIGN_DER_MAX);
		return -1;
	}
	memcpy(p->b64 + p->k, s, n);
	p->k += n;
	return 0;
}

/* One line of the file, without its end (sign_trim). */
static int
sign_pem_line(struct sign_pem *p, const char *s, size_t n, char *err,
    size_t errlen)
{
	size_t wl = strlen(p->want);

	switch (p->state) {
	case 0:
		if (n >= 16 && strncmp(s, "-----BEGIN ", 11) == 0 &&
		    strncmp(s + n - 5, "-----", 5) == 0) {
			if (n != wl + 16 || strncmp(s + 11, p->want, wl) != 0) {
				sign_pem_label(p, s + 11, n - 16, err, errlen);
				return -1;
			}
			p->begin_at = p->line;
			p->state = 1;
		} else if (n > 0 && p->text_at == 0)
			p->text_at = p->line;
		return 0;
	case 1:
		return sign_pem_inside(p, s, n, err, errlen);
	default:
		if (n == 0)
			return 0;
		sign_err(err, errlen, "text after the -----END %s----- line "
		    "(line %d): a key file holds its key and nothing else",
		    p->want, p->line);
		return -1;
	}
}

/*
 * The base64 of the one PEM block labelled want ("PRIVATE KEY") in
 * pem, into b64 (SIGN_B64_MAX): -1 with err if the text is anything
 * else.  Blank lines may come before and after the block, and blanks or
 * a CR at a line's end (a file edited elsewhere); nothing else may: no
 * second block, no text around it, no header, no blank line inside.
 * kind is "private" or "public", for the messages.
 */
static int
sign_pem_body(const char *pem, size_t len, const char *want,
    const char *kind, char *b64, size_t *b64len, char *err, size_t errlen)
{
	struct sign_pem p = { want, kind, b64, 0, 0, 0, 0, 0 };
	const char *s, *nl, *end = pem + len;

	for (s = pem; s < end; s = nl + 1) {
		p.line++;
		if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
			nl = end;
		if (sign_pem_line(&p, s, sign_trim(s, (size_t)(nl - s)), err,
		    errlen) != 0)
			return -1;
	}
	if (p.state == 0 && p.text_at == 0)
		sign_err(err, errlen, "not a PEM %s key: the file is empty",
		    kind);
	else if (p.state == 0)
		sign_err(err, errlen, "not a PEM %s key: no -----BEGIN %s----- "
		    "line", kind, want);
	else if (p.state == 1)
		sign_err(err, errlen, "not a PEM %s key: no -----END %s----- "
		    "line", kind, want);
	else if (p.text_at != 0)
		sign_err(err, errlen, "text before the -----BEGIN %s----- line "
		    "(line %d): a key file holds its key and nothing else",
		    want, p.text_at);
	else {
		*b64len = p.k;
		return 0;
	}
	return -1;
}

/* The base64 of sign_pem_body as DER in der (max bytes): its length. */
static int
sign_unbase64(const char *b64, size_t n, uint8_t *der, size_t max,
    size_t *len, const char *kind, char *err, size_t errlen)
{
	if (sodium_base642bin(der, max, b64, n, NULL, len, NULL,
	    sodium_base64_VARIANT_ORIGINAL) != 0) {
		sign_err(err, errlen, "not a PEM %s key: bad base64 (its "
		    "length, its '=' padding or its last character)", kind);
		return -1;
	}
	return 0;
}

/*
 * One DER element at *p, tag first: its contents and their length, and
 * *p past it.  Lengths in their shortest form only (DER, not BER), and
 * under 64 KiB.  -1: another tag; -2: not DER, or past end.
 */
static int
sign_der_get(const uint8_t **p, const uint8_t *end, uint8_t tag,
    const uint8_t **body, size_t *len)
{
	const uint8_t *q = *p;
	size_t n;

	if (end - q < 2)
		return -2;
	if (q[0] != tag)
		return -1;
	n = q[1];
	q += 2;
	if (n == 0x81) {
		if (end - q < 1 || q[0] < 0x80)
			return -2;
		n = q[0];
		q++;
	} else if (n == 0x82) {
		if (end - q < 2 || q[0] == 0)
			return -2;
		n = (size_t)q[0] << 8 | q[1];
		q += 2;
	} else if (n >= 0x80)
		return -2;
	if ((size_t)(end - q) < n)
		return -2;
	*body = q;
	*len = n;
	*p = q + n;
	return 0;
}

/* An algorithm's name, for "not an Ed25519 key (an RSA key)". */
static void
sign_oid_name(const uint8_t *oid, size_t n, char *out, size_t len)
{
	static const struct {
		const char	*name;
		size_t		 n;
		uint8_t		 oid[9];
	} known[] = {
		{ "an RSA key", 9, { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
		    0x01, 0x01 } },
		{ "an RSA-PSS key", 9, { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
		    0x01, 0x01, 0x0a } },
		{ "an EC key", 7, { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
		    0x01 } },
		{ "a DSA key", 7, { 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04,
		    0x01 } },
		{ "an X25519 key", 3, { 0x2b, 0x65, 0x6e } },
		{ "an X448 key", 3, { 0x2b, 0x65, 0x6f } },
		{ "an Ed448 key", 3, { 0x2b, 0x65, 0x71 } },
	};
	unsigned long arc = 0;
	size_t i, k;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (known[i].n == n && memcmp(known[i].oid, oid, n) == 0) {
			snprintf(out, len, "%s", known[i].name);
			return;
		}
	/* Dotted, as openssl asn1parse shows it. */
	k = (size_t)snprintf(out, len, "algorithm");
	for (i = 0; i < n && k < len; i++) {
		if (arc > (~0UL >> 7)) {
			snprintf(out, len, "an unknown algorithm");
			return;
		}
		arc = arc << 7 | (oid[i] & 0x7f);
		if (oid[i] & 0x80)
			continue;
		if (k == 9)
			k += (size_t)snprintf(out + k, len - k, " %lu.%lu",
			    arc < 80 ? arc / 40 : 2, arc < 80 ? arc % 40 :
			    arc - 80);
		else
			k += (size_t)snprintf(out + k, len - k, ".%lu", arc);
		arc = 0;
	}
	if (n == 0 || (oid[n - 1] & 0x80) || k >= len)
		snprintf(out, len, "an unknown algorithm");
}

/*
 * The AlgorithmIdentifier at *p: 0 if it is Ed25519's, without
 * parameters (RFC 8410); else -1 with err.  kind: "private" or "public".
 */
static int
sign_der_alg(const uint8_t **p, const uint8_t *end, const char *kind,
    char *err, size_t errlen)
{
	const uint8_t *alg, *oid, *a;
	size_t algn, oidn;
	char name[80];

	if (sign_der_get(p, end, 0x30, &alg, &algn) != 0 ||
	    (a = alg, sign_der_get(&a, alg + algn, 0x06, &oid, &oidn)) != 0) {
		sign_err(err, errlen, "not an Ed25519 %s key (no algorithm "
		    "where the DER should name one)", kind);
		return -1;
	}
	if (oidn != sizeof(sign_oid_ed25519) ||
	    memcmp(oid, sign_oid_ed25519, oidn) != 0) {
		sign_oid_name(oid, oidn, name, sizeof(name));
		/* The texts that OpenSSL's reading gave, with the name. */
		sign_err(err, errlen, "not an Ed25519 %skey (%s)",
		    strcmp(kind, "public") == 0 ? "public " : "", name);
		return -1;
	}
	if (a != alg + algn) {
		sign_err(err, errlen, "an Ed25519 %s key with algorithm "
		    "parameters, which RFC 8410 forbids", kind);
		return -1;
	}
	return 0;
}

/*
 * The seed of a PKCS#8 Ed25519 private key, as openssl genpkey writes
 * it: version 0, the algorithm without parameters, the 32 bytes in an
 * OCTET STRING in the OCTET STRING, and nothing after them.
 */
static int
sign_der_private(const uint8_t *der, size_t n, uint8_t seed[32], char *err,
    size_t errlen)
{
	const uint8_t *p = der, *end = der + n, *seq, *ver, *os, *raw, *q;
	size_t seqn, vern, osn, rawn;

	if (sign_der_get(&p, end, 0x30, &seq, &seqn) != 0) {
		sign_err(err, errlen, "not a PKCS#8 private key (not one DER "
		    "SEQUENCE: cut short, another type, or BER)");
		return -1;
	}
	if (p != end) {
		sign_err(err, errlen, "trailing data after the key (%zu "
		    "bytes)", (size_t)(end - p));
		return -1;
	}
	p = seq;
	end = seq + seqn;
	if (sign_der_get(&p, end, 0x02, &ver, &vern) != 0) {
		sign_err(err, errlen, "not a PKCS#8 private key (no version)");
		return -1;
	}
	if (sign_der_alg(&p, end, "private", err, errlen) != 0)
		return -1;
	if (vern != 1 || ver[0] != 0) {
		/* 1 is RFC 5958's, which may carry the public key too. */
		if (vern == 1 && ver[0] < 0x80)
			sign_err(err, errlen, "a PKCS#8 version field of %d: "
			    "cardlicd reads 0, as openssl genpkey writes it",
			    ver[0]);
		else
			sign_err(err, errlen, "a PKCS#8 version field that is "
			    "not 0: cardlicd reads 0, as openssl genpkey "
			    "writes it");
		return -1;
	}
	if (sign_der_get(&p, end, 0x04, &os, &osn) != 0) {
		sign_err(err, errlen, "not a PKCS#8 private key (no "
		    "privateKey OCTET STRING)");
		return -1;
	}
	q = os;
	if (sign_der_get(&q, os + osn, 0x04, &raw, &rawn) != 0 ||
	    q != os + osn) {
		sign_err(err, errlen, "not an Ed25519 private key (its "
		    "privateKey is not one OCTET STRING)");
		return -1;
	}
	if (rawn != 32) {
		sign_err(err, errlen, "an Ed25519 private key of %zu bytes, "
		    "not 32", rawn);
		return -1;
	}
	if (p != end) {
		sign_err(err, errlen, "attributes or a public key after the "
		    "private key: cardlicd reads the key alone, as openssl "
		    "genpkey writes it");
		return -1;
	}
	memcpy(seed, raw, 32);
	return 0;
}

/* The 32 bytes of a SubjectPublicKeyInfo that holds an Ed25519 key. */
static int
sign_der_public(const uint8_t *der, size_t n, uint8_t pub[32], char *err,
    size_t errlen)
{
	const uint8_t *p = der, *end = der + n, *seq, *bits;
	size_t seqn, bitsn;

	if (sign_der_get(&p, end, 0x30, &seq, &seqn) != 0) {
		sign_err(err, errlen, "not a SubjectPublicKeyInfo (not one DER "
		    "SEQUENCE: cut short, another type, or BER)");
		return -1;
	}
	if (p != end) {
		sign_err(err, errlen, "trailing data after the key (%zu "
		    "bytes)", (size_t)(end - p));
		return -1;
	}
	p = seq;
	end = seq + seqn;
	if (sign_der_alg(&p, end, "public", err, errlen) != 0)
		return -1;
	if (sign_der_get(&p, end, 0x03, &bits, &bitsn) != 0 || p != end ||
	    bitsn < 1 || bits[0] != 0) {
		sign_err(err, errlen, "not an Ed25519 public key (not one BIT "
		    "STRING of whole bytes after the algorithm)");
		return -1;
	}
	if (bitsn != 33) {
		sign_err(err, errlen, "an Ed25519 public key of %zu bytes, not "
		    "32", bitsn - 1);
		return -1;
	}
	memcpy(pub, bits + 1, 32);
	return 0;
}

struct sign_key *
sign_key_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
	struct sign_scratch *s;
	struct sign_key *k = NULL;
	size_t n;

	if (sign_init() != 0) {
		sign_err(err, errlen, "libsodium cannot start");
		return NULL;
	}
	if (len > SIGN_PEM_MAX) {
		sign_err(err, errlen, "not a PEM private key (more than %d "
		    "bytes)", SIGN_PEM_MAX);
		return NULL;
	}
	if ((s = sodium_malloc(sizeof(*s))) == NULL) {
		sign_err(err, errlen, "out of memory");
		return NULL;
	}
	if (sign_pem_body(pem, len, "PRIVATE KEY", "private", s->b64, &n,
	    err, errlen) != 0 ||
	    sign_unbase64(s->b64, n, s->der, sizeof(s->der), &n, "private",
	    err, errlen) != 0 ||
	    sign_der_private(s->der, n, s->seed, err, errlen) != 0)
		goto out;
	if ((k = sodium_malloc(sizeof(*k))) == NULL) {
		sign_err(err, errlen, "out of memory");
		goto out;
	}
	if (crypto_sign_ed25519_seed_keypair(s->pub, k->sk, s->seed) != 0) {
		sign_err(err, errlen, "not an Ed25519 key (libsodium refused "
		    "its seed)");
		sodium_free(k);
		k = NULL;
		goto out;
	}
	/* Nobody writes to a key once it is made. */
	sodium_mprotect_readonly(k);
out:
	sodium_free(s);
	return k;
}

void
sign_key_free(struct sign_key *k)
{
	/* sodium_free wipes the key before it unmaps it. */
	sodium_free(k);
}

void
sign_key_public(const struct sign_key *k, uint8_t pub[32])
{
	memcpy(pub, k->sk + 32, 32);
}

/*
 * domain || NUL || msg: in buf when it fits (a row's hash, an
 * endorsement), else in a new buffer; *n its length; NULL on failure.
 * Ed25519 hashes the whole message twice, so it must be in one piece.
 */
static uint8_t *
sign_message(const char *domain, const uint8_t *msg, size_t len,
    uint8_t *buf, size_t buflen, size_t *n)
{
	size_t d = strlen(domain) + 1;
	uint8_t *m = buf;

	if (len > SIZE_MAX - d)
		return NULL;
	if (d + len > buflen && (m = malloc(d + len)) == NULL)
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
	uint8_t buf[SIGN_MSG_STACK], *m;
	size_t n;
	int rc;

	if (sign_init() != 0 ||
	    (m = sign_message(domain, msg, len, buf, sizeof(buf), &n)) == NULL)
		return -1;
	rc = crypto_sign_ed25519_detached(sig, NULL, m, n, k->sk);
	if (m != buf)
		free(m);
	return rc == 0 ? 0 : -1;
}

int
sign_check(const uint8_t pub[32], const char *domain, const uint8_t *msg,
    size_t len, const uint8_t sig[64])
{
	uint8_t buf[SIGN_MSG_STACK], *m;
	size_t n;
	int ok;

	if (sign_init() != 0 ||
	    (m = sign_message(domain, msg, len, buf, sizeof(buf), &n)) == NULL)
		return 0;
	ok = crypto_sign_ed25519_verify_detached(sig, m, n, pub) == 0;
	if (m != buf)
		free(m);
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
	char *text, b64[SIGN_B64_MAX], why[256];
	uint8_t der[SIGN_DER_MAX];
	size_t n;
	FILE *f;
	int bad, rc = -1;

	if ((f = fopen(path, "re")) == NULL) {
		sign_err(err, errlen, "%s: cannot open: %s", path,
		    strerror(errno));
		return -1;
	}
	if ((text = malloc(SIGN_PEM_MAX + 1)) == NULL) {
		fclose(f);
		sign_err(err, errlen, "%s: out of memory", path);
		return -1;
	}
	errno = 0;
	n = fread(text, 1, SIGN_PEM_MAX + 1, f);
	bad = ferror(f) ? errno : 0;
	fclose(f);
	if (bad)
		snprintf(why, sizeof(why), "cannot read: %s", strerror(bad));
	else if (n > SIGN_PEM_MAX)
		snprintf(why, sizeof(why), "not a PEM public key (more than "
		    "%d bytes)", SIGN_PEM_MAX);
	else if (sign_init() != 0)
		snprintf(why, sizeof(why), "libsodium cannot start");
	else if (sign_pem_body(text, n, "PUBLIC KEY", "public", b64, &n, why,
	    sizeof(why)) == 0 &&
	    sign_unbase64(b64, n, der, sizeof(der), &n, "public", why,
	    sizeof(why)) == 0 &&
	    sign_der_public(der, n, pub, why, sizeof(why)) == 0) {
		/*
		 * Every real key is a multiple of the base point: anything
		 * else would only make every signature fail, later and
		 * less clearly.
		 */
		if (crypto_core_ed25519_is_valid_point(pub))
			rc = 0;
		else
			snprintf(why, sizeof(why), "not a valid Ed25519 public "
			    "key (not a point of the curve's prime-order "
			    "group)");
	}
	free(text);
	if (rc != 0)
		sign_err(err, errlen, "%s: %s", path, why);
	return rc;
}

/*
 * PEM as openssl writes it: the label's lines around the base64 in lines
 * of 64 characters.  0, or -1 if len is short.  The base64 is made in
 * constant time (it may be a seed's) and wiped.
 */
static int
sign_pem_write(const char *label, const uint8_t *der, size_t n, char *out,
    size_t len)
{
	char b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
	size_t b, i, k = 0;
	int w, rc = -1;

	if (n > 64)
		return -1;
	sodium_bin2base64(b64, sizeof(b64), der, n,
	    sodium_base64_VARIANT_ORIGINAL);
	b = strlen(b64);
	w = snprintf(out, len, "-----BEGIN %s-----\n", label);
	if (w < 0 || (size_t)w >= len)
		goto out;
	k = (size_t)w;
	for (i = 0; i < b; i += 64) {
		if (len - k < (b - i < 64 ? b - i : 64) + 2)
			goto out;
		memcpy(out + k, b64 + i, b - i < 64 ? b - i : 64);
		k += b - i < 64 ? b - i : 64;
		out[k++] = '\n';
	}
	w = snprintf(out + k, len - k, "-----END %s-----\n", label);
	if (w < 0 || (size_t)w >= len - k)
		goto out;
	rc = 0;
out:
	if (rc != 0 && len > 0)
		sodium_memzero(out, k < len ? k : len);
	sodium_memzero(b64, sizeof(b64));
	return rc;
}

int
sign_pub_pem(const uint8_t pub[32], char *out, size_t len)
{
	uint8_t der[sizeof(sign_spki_prefix) + 32];

	memcpy(der, sign_spki_prefix, sizeof(sign_spki_prefix));
	memcpy(der + sizeof(sign_spki_prefix), pub, 32);
	return sign_pem_write("PUBLIC KEY", der, sizeof(der), out, len);
}

int
sign_key_generate(char *out, size_t len, char *err, size_t errlen)
{
	struct sign_scratch *s;
	int rc = -1;

	if (sign_init() != 0) {
		sign_err(err, errlen, "cannot make an Ed25519 key (libsodium "
		    "cannot start)");
		return -1;
	}
	if ((s = sodium_malloc(sizeof(*s))) == NULL) {
		sign_err(err, errlen, "cannot make an Ed25519 key (out of "
		    "memory)");
		return -1;
	}
	/* The seed is the private key: openssl genpkey keeps only it. */
	randombytes_buf(s->seed, sizeof(s->seed));
	memcpy(s->der, sign_p8_prefix, sizeof(sign_p8_prefix));
	memcpy(s->der + sizeof(sign_p8_prefix), s->seed, 32);
	if (sign_pem_write("PRIVATE KEY", s->der, sizeof(sign_p8_prefix) + 32,
	    out, len) == 0)
		rc = 0;
	else
		sign_err(err, errlen, "cannot make an Ed25519 key (%zu bytes "
		    "are too few for its PEM)", len);
	sodium_free(s);
	return rc;
}
