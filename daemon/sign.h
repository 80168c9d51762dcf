/*
 * The station's Ed25519 signatures (issue 11), shared by cardlicd (which
 * signs rows, key rows and checkpoints) and cardlicctl (which makes keys
 * and verifies): one definition, so they cannot drift.
 *
 * Every signature is over a domain string, its NUL included, then the
 * message: a signature made for one purpose (a row) can never pass as
 * one for another (a key endorsement, a checkpoint).
 */
#ifndef CARDLIC_SIGN_H
#define CARDLIC_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define SIGN_DOMAIN_ROW		"cardlicd-row-v1"
/*
 * A row signed so (since issue 18) also vouches that the row before it is
 * one that the signer wrote itself, or checked at start-up: the daemon
 * never signs on top of a row of someone else's.  Then a key's last
 * signature proves every row before it, back to where the station began
 * signing so; the rows signed with v1 each need their own.  A key row
 * whose reason ends in " v2" starts that (SIGN_V2_MARK).
 */
#define SIGN_DOMAIN_ROW_V2	"cardlicd-row-v2"
#define SIGN_V2_MARK		" v2"
#define SIGN_DOMAIN_KEY		"cardlicd-key-v1"
#define SIGN_DOMAIN_CHECKPOINT	"cardlicd-checkpoint-v1"
#define SIGN_DOMAIN_NOTE	"cardlicd-note-v1"
#define SIGN_DOMAIN_SPILL	"cardlicd-spill-v1"

struct sign_key;	/* a private Ed25519 key */

/*
 * A PEM private key (PKCS#8), exactly as openssl genpkey makes it, and
 * nothing else: NULL, and in err what is wrong, for anything else.
 */
struct sign_key	*sign_key_from_pem(const char *pem, size_t len, char *err,
		    size_t errlen);
void		 sign_key_free(struct sign_key *);
void		 sign_key_public(const struct sign_key *, uint8_t pub[32]);
/* Ed25519 over (domain, including its NUL) || msg.  0 on success. */
int		 sign_bytes(const struct sign_key *, const char *domain,
		    const uint8_t *msg, size_t len, uint8_t sig[64]);
/* 1: good signature, 0: bad. */
int		 sign_check(const uint8_t pub[32], const char *domain,
		    const uint8_t *msg, size_t len, const uint8_t sig[64]);
/*
 * A key rotation: the previous key's signature over the station's id and
 * the new public key (SIGN_DOMAIN_KEY), made by cardlicctl keygen
 * --rotate and checked by cardlicd and cardlicctl verify.  sign_endorse:
 * 0 on success; sign_endorsed: 1 when it holds.  A station's id is at
 * most SIGN_STATION_MAX bytes (cardlicd's [station] id is shorter).
 */
#define SIGN_STATION_MAX	63
int		 sign_endorse(const struct sign_key *prev, const char *station,
		    const uint8_t pub[32], uint8_t sig[64]);
int		 sign_endorsed(const uint8_t prev[32], const char *station,
		    const uint8_t pub[32], const uint8_t sig[64]);
/*
 * A PEM public key file (SubjectPublicKeyInfo, the key alone, as openssl
 * pkey -pubout writes it).  0 on success; -1, and in err the path and
 * what is wrong.
 */
int		 sign_pub_read(const char *path, uint8_t pub[32], char *err,
		    size_t errlen);
/* The same as PEM text, NUL-terminated; 0 on success, -1 if len is short. */
int		 sign_pub_pem(const uint8_t pub[32], char *out, size_t len);

/* A new key, as PEM (PKCS#8) in out; 0 on success. */
int		 sign_key_generate(char *out, size_t len, char *err,
		    size_t errlen);

#endif
