-- cardlicd audit store, migration 6: the auditors' questions at a million
-- rows (issue 12).  No row and no hash changes: indexes, and audit_text
-- and the issuance view made again with the same columns and meaning.
--
-- audit_text, its model_text and serial_text written as expressions
-- that an index can hold.  Migration 4's walk a field with a NUL in it
-- back from its end in a subquery, which an index may not contain, so
-- `WHERE serial_text = S` read every row, and the subquery was copied
-- into every statement over the views.  The rule is the same: the bytes
-- with every trailing space and NUL dropped, and nothing else
-- (daemon/dbhash.c, dbhash_trimmed; tests/check_unit.c holds the two to
-- each other).  A field without a NUL, the usual case, is rtrim's.
-- rtrim() cannot drop a NUL (it reads its list of characters as a C
-- string) and replace() cannot replace one, but replace() can make every
-- space a NUL: then the padding is the field's trailing bytes 00, the
-- "00" pairs at the end of its hex, and no other byte has two zero
-- digits.  rtrim(hex, '0') may also take the low digit of the last byte
-- kept (0x30 is "30"), so that byte count is half the length left,
-- rounded up; substr() then takes that many bytes of the field (it
-- counts bytes in a BLOB), as they are.  Exact for a field of any
-- length, and NULL for NULL; an empty BLOB, for which substr() would
-- give NULL, has no NUL and is rtrim's.
DROP VIEW audit_text;
CREATE VIEW audit_text AS
SELECT a.*,
	CASE WHEN instr(a.model, x'00') = 0
	THEN rtrim(CAST(a.model AS TEXT), ' ')
	ELSE CAST(substr(a.model, 1,
	    (length(rtrim(hex(replace(a.model, ' ', x'00')), '0')) + 1) / 2)
	    AS TEXT) END AS model_text,
	CASE WHEN instr(a.serial, x'00') = 0
	THEN rtrim(CAST(a.serial AS TEXT), ' ')
	ELSE CAST(substr(a.serial, 1,
	    (length(rtrim(hex(replace(a.serial, ' ', x'00')), '0')) + 1) / 2)
	    AS TEXT) END AS serial_text
FROM audit a;

-- audit_serial_text: serial_text, indexed, so that `serial_text = S`
-- through audit_text and every view over it (issuance, issuance_rows,
-- pending, rejections, in_doubt) finds the card's rows at once.  The
-- expression is audit_text's, term for term: SQLite uses an index on an
-- expression only where a query has that same expression (the plans of
-- tests/check_ctl.c, serial_lookups_use_the_index, fail if they drift).
CREATE INDEX audit_serial_text ON audit (
	CASE WHEN instr(serial, x'00') = 0
	THEN rtrim(CAST(serial AS TEXT), ' ')
	ELSE CAST(substr(serial, 1,
	    (length(rtrim(hex(replace(serial, ' ', x'00')), '0')) + 1) / 2)
	    AS TEXT) END);

-- The rows of the rarer states, which the skipped, in-doubt and failed
-- branches of issuance, and reconcile's counted rows, scanned the whole
-- table for.  Partial, so it costs little to write and to check: the
-- common states have their own ways in (audit_batch for `generated`,
-- audit_license for the rows of a license).  Written as ORs: SQLite uses a
-- partial index when the query's term implies its WHERE, and it sees that
-- state = 'skipped' implies an OR of which it is a branch.
CREATE INDEX audit_state ON audit (state) WHERE state = 'skipped'
	OR state = 'failed' OR state = 'in-doubt' OR state = 'resolved'
	OR state = 'rejected' OR state = 'counted' OR state = 'key';

-- The rows of a license: the state of its last row answers stats and
-- reconcile from the index alone (station, for a merged database).  It
-- replaces migration 1's (license_seq), of which it is an extension.
DROP INDEX audit_license;
CREATE INDEX audit_license ON audit (license_seq, station, state);

-- Rows by time: stats per day read this index alone, in order (a day's
-- rows are together, as substr(utc, 1, 10) grows with utc), and list
-- --since finds the rows of its days here (utc >= D exactly when
-- substr(utc, 1, 10) >= D, for a day D of 10 characters).  The column
-- itself, not an expression: this SQLite reads an expression's value
-- from the table, not from its index.
CREATE INDEX audit_utc ON audit (utc, state, license_seq);

-- issuance, with one more column: row_seq, the seq of the row a line
-- stands for (the `generated` row of a license, the `skipped`, `in-doubt`
-- or `failed` row).  cardlicctl list bounds it, and SQLite pushes that
-- bound into each branch as a range of rowids; issuance is this view
-- without it, as before.  issuance_other is its lines that are not
-- licenses (skipped, in doubt or resolved, failed), which stats counts
-- on their own: they are few, and found through audit_state.
DROP VIEW issuance;

CREATE VIEW issuance_other AS
SELECT s.station, NULL AS license_seq, s.model_text, s.serial_text, s.model,
	s.serial, s.reader,
	substr(CAST(s.status AS TEXT), 4, 8) AS start_date,
	substr(CAST(s.status AS TEXT), 12, 8) AS end_date,
	NULL AS batch_reader, NULL AS batch_atr, NULL AS batch_count,
	NULL AS generated_utc, 'skipped' AS state, s.utc AS last_utc,
	s.reason AS last_reason, s.status, s.seq AS row_seq
FROM audit_text s
WHERE s.state = 'skipped'
UNION ALL
SELECT d.station, NULL, d.model_text, d.serial_text, d.model, d.serial,
	d.reader, d.start_date, NULL, d.batch_reader, d.batch_atr, NULL, d.utc,
	CASE WHEN d.resolved_seq IS NULL THEN 'in-doubt' ELSE 'resolved' END,
	coalesce(d.resolved_utc, d.utc), coalesce(d.resolution, d.reason),
	NULL, d.seq
FROM in_doubt d
UNION ALL
SELECT f.station, NULL, f.model_text, f.serial_text, f.model, f.serial,
	f.reader,
	f.start_date, NULL, f.batch_reader, f.batch_atr, NULL, NULL, 'failed',
	f.utc, f.reason, NULL, f.seq
FROM audit_text f
WHERE f.state = 'failed' AND f.license_seq IS NULL
AND f.seq = (SELECT max(x.seq) FROM audit x
	WHERE x.station = f.station AND x.job = f.job)
AND NOT EXISTS (SELECT 1 FROM audit g
	WHERE g.station = f.station AND g.job = f.job
	AND g.state IN ('generated', 'skipped', 'in-doubt'));

CREATE VIEW issuance_rows AS
SELECT g.station, g.seq AS license_seq, g.model_text, g.serial_text,
	g.model, g.serial, g.reader, g.start_date, g.end_date,
	g.batch_reader, g.batch_atr, g.batch_count,
	g.utc AS generated_utc,
	coalesce(l.state, 'generated') AS state,
	coalesce(l.utc, g.utc) AS last_utc,
	coalesce(l.reason, g.reason) AS last_reason,
	l.status AS status, g.seq AS row_seq
FROM audit_text g
LEFT JOIN audit l ON l.station = g.station AND l.seq = (
	SELECT max(x.seq) FROM audit x
	WHERE x.station = g.station AND x.license_seq = g.seq)
WHERE g.state = 'generated'
UNION ALL
SELECT * FROM issuance_other;

CREATE VIEW issuance AS
SELECT station, license_seq, model_text, serial_text, model, serial, reader,
	start_date, end_date, batch_reader, batch_atr, batch_count,
	generated_utc, state, last_utc, last_reason, status
FROM issuance_rows;
