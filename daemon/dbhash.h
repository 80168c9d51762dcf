/*
 * The audit chain's hash, shared by cardlicd (which writes rows) and
 * cardlicctl (which verifies them): one definition, so they cannot drift.
 */
#ifndef CARDLIC_DBHASH_H
#define CARDLIC_DBHASH_H

#include <stddef.h>
#include <stdint.h>

#include "auditrow.h"

struct dbhash_val {
	int		 type;		/* SQLITE_NULL, _INTEGER, _TEXT, _BLOB */
	long long	 i;
	const uint8_t	*p;
	size_t		 len;
};

/* v holds the AUDITROW_HASHED columns, in the table's order. */
void	dbhash_row(const uint8_t [32], const struct dbhash_val *,
	    uint8_t [32]);
/* SHA-256, the one the rows use, for checkpoints and spill records. */
void	dbhash_sha256(const void *, size_t, uint8_t [32]);
void	dbhash_hex(const uint8_t *, size_t, int, char *);
int	dbhash_unhex(const char *, size_t, uint8_t *, size_t);
size_t	dbhash_trimmed(const uint8_t *, size_t);
void	dbhash_text(const uint8_t *, size_t, char *, size_t);

#endif
