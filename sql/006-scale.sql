-- cardlicd audit store, migration 6: the auditors' questions at a million
-- rows (issue 12).  No row and no hash changes: indexes, and the issuance
-- view made again with the same columns and meaning.
--
-- audit_serial_text: the card's serial as text, its trailing spaces
-- trimmed.  The views' serial_text also drops trailing NULs, which no
-- index expression can do (rtrim reads its list of characters as a C
-- string, and a subquery may not be indexed); a serial whose text is S
-- has this key in [S, S || '!'), since NUL and space sort below '!', so
-- cardlicctl show and list --serial look that range up, then keep the
-- rows whose serial_text is S.  The expression here is the queries'
-- expression, character for character: SQLite uses an index on an
-- expression only for that same expression.
CREATE INDEX audit_serial_text ON audit (rtrim(CAST(serial AS TEXT), ' '));

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
