/*
 * The audit row, defined once for cardlicd (which writes it) and
 * cardlicctl (which verifies and exports it).  AUDITROW_COLUMNS lists the
 * columns of the audit table in the table's order; from it come the
 * INSERT of db_append, the columns that dbhash_row covers, the SELECT of
 * cardlicctl verify and the columns of cardlicctl export.  Adding a
 * column means a line here and a migration in sql/: tests/check_unit.c
 * fails when the two disagree in name, order or type.
 *
 * X(name, TYPE, export, at, hex_at):
 *   name    the column;
 *   TYPE    its type in the STRICT table: INTEGER, TEXT or BLOB.  A value
 *           is hashed as that SQLite type, or as NULL (see dbhash.c);
 *   export  what cardlicctl export gives for it, SQL over the audit_text
 *           view (NULL: the column as it is);
 *   at      its place among export's columns (station first: the export
 *           is sorted by station, then seq);
 *   hex_at  where export also gives its exact bytes in hex as NAME_hex,
 *           or -1.
 * hash follows the columns it covers: it is the hash of the columns
 * before it.  sig comes last: the station's signature over the hash
 * (daemon/sign.c), not covered by it; export gives it with --signed only.
 */
#ifndef CARDLIC_AUDITROW_H
#define CARDLIC_AUDITROW_H

#define AUDITROW_COLUMNS(X)	AUDITROW_HASHED_COLUMNS(X)		\
	X(hash,		BLOB,	"hex(hash) AS hash",	22,	-1)	\
	X(sig,		BLOB,	"hex(sig) AS sig",	23,	-1)

/* The columns that the hash covers: all but hash and sig. */
#define AUDITROW_HASHED_COLUMNS(X)					\
	X(seq,		INTEGER, NULL,			1,	-1)	\
	X(utc,		TEXT,	NULL,			2,	-1)	\
	X(station,	TEXT,	NULL,			0,	-1)	\
	X(job,		INTEGER, NULL,			3,	-1)	\
	X(reader,	TEXT,	NULL,			4,	-1)	\
	X(state,	TEXT,	NULL,			5,	-1)	\
	X(reason,	TEXT,	NULL,			6,	-1)	\
	X(model,	BLOB,	"model_text AS model",	7,	9)	\
	X(serial,	BLOB,	"serial_text AS serial", 8,	10)	\
	X(start_date,	TEXT,	NULL,			11,	-1)	\
	X(end_date,	TEXT,	NULL,			12,	-1)	\
	X(license_seq,	INTEGER, NULL,			13,	-1)	\
	X(license,	BLOB,	"nullif(hex(license), '') AS license_hex", \
	    14, -1)							\
	X(batch_reader,	TEXT,	NULL,			15,	-1)	\
	X(batch_atr,	TEXT,	NULL,			16,	-1)	\
	X(batch_count,	INTEGER, NULL,			17,	-1)	\
	X(sw,		TEXT,	NULL,			18,	-1)	\
	X(ckr,		TEXT,	NULL,			19,	-1)	\
	X(status,	BLOB,	"nullif(hex(status), '') AS status_hex", \
	    20, -1)							\
	X(timings,	TEXT,	NULL,			21,	-1)

/* AUDITROW_seq ... AUDITROW_hash: a column's index in the row. */
enum auditrow_index {
#define AUDITROW_ENUM(name, type, exp, at, hex_at)	AUDITROW_##name,
	AUDITROW_COLUMNS(AUDITROW_ENUM)
#undef AUDITROW_ENUM
	AUDITROW_NCOLS
};

/* How many columns the hash covers. */
#define AUDITROW_HASHED	AUDITROW_hash
_Static_assert(AUDITROW_hash == AUDITROW_NCOLS - 2 &&
    AUDITROW_sig == AUDITROW_NCOLS - 1,
    "hash and sig must be the audit row's last columns, in that order");

/* "seq, utc, ..., hash, sig": every column, in the table's order. */
#define AUDITROW_NAME(name, type, exp, at, hex_at)	#name ", "
#define AUDITROW_PARAM(name, type, exp, at, hex_at)	"?, "
#define AUDITROW_NAMES	AUDITROW_HASHED_COLUMNS(AUDITROW_NAME) "hash, sig"
/* The whole row appended: parameter i + 1 is column i. */
#define AUDITROW_INSERT	"INSERT INTO audit (" AUDITROW_NAMES ") VALUES (" \
	AUDITROW_HASHED_COLUMNS(AUDITROW_PARAM) "?, ?)"

struct auditrow_col {
	const char	*name;
	const char	*type;		/* as in the SQL schema */
	int		 sqlite_type;	/* SQLITE_INTEGER, _TEXT, _BLOB */
	const char	*export;	/* NULL: name */
	int		 export_at;
	int		 hex_at;
};

extern const struct auditrow_col auditrow_cols[AUDITROW_NCOLS];

/* Columns of an export: one per column, and one per hex_at. */
#define AUDITROW_EXPORTS	(AUDITROW_NCOLS + 2)

#endif
