-- cardlicd audit store, migration 3: credits in doubt.
--
-- A credit may have been spent with no license to show for it: the batch
-- card's answer was lost, it answered a status word that the vendor text
-- does not list as a refusal, or the daemon died between its `requested`
-- row and the outcome.  Such a job ends in an `in-doubt` row; reconcile
-- counts them apart, and the card gets no new credit until an admin
-- decides with `cardlicctl resolve`, which the daemon records as a
-- `resolved` row whose license_seq is the in-doubt row's seq and whose
-- reason starts with "spent:" or "not spent:".
--
-- SQLite cannot ALTER a CHECK constraint.  Its documented way to loosen
-- one (lang_altertable.html, "other kinds of table schema changes") is
-- to edit the table's text in sqlite_schema: every row already meets the
-- wider list, so no row changes, and the hashes stay as they are.  The
-- same edit applies to a database made by `cardlicctl merge`, whose
-- table comes from migration 1.  The temporary CHECK makes the migration
-- fail, rather than go on silently, if the text was not found.

PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql,
	'''skipped'', ''failed''))',
	'''skipped'', ''failed'', ''in-doubt'', ''resolved''))')
WHERE type = 'table' AND name = 'audit';
PRAGMA writable_schema = RESET;
CREATE TEMP TABLE migration_3_check (ok INTEGER NOT NULL CHECK (ok));
INSERT INTO migration_3_check
	SELECT instr(sql, '''in-doubt'', ''resolved''') > 0
	FROM sqlite_schema WHERE type = 'table' AND name = 'audit';
DROP TABLE migration_3_check;

-- The views depend on the states: made again.
DROP VIEW issuance;
DROP VIEW batch_usage;
DROP VIEW pending;
DROP VIEW rejections;

CREATE INDEX audit_job ON audit (station, job);

-- Credits in doubt, with the admin's decision once there is one:
-- spent is 1 (the credit is counted as spent and lost), 0 (it was not
-- spent), or NULL while nobody has decided.
CREATE VIEW in_doubt AS
SELECT d.station, d.seq, d.utc, d.job, d.reader,
	rtrim(CAST(d.model AS TEXT), ' ') AS model_text,
	rtrim(CAST(d.serial AS TEXT), ' ') AS serial_text,
	d.model, d.serial, d.start_date, d.batch_reader, d.batch_atr, d.sw,
	d.reason,
	r.seq AS resolved_seq, r.utc AS resolved_utc,
	r.reason AS resolution,
	CASE WHEN r.seq IS NULL THEN NULL
	     WHEN r.reason LIKE 'spent:%' THEN 1 ELSE 0 END AS spent
FROM audit d
LEFT JOIN audit r ON r.station = d.station AND r.state = 'resolved'
	AND r.license_seq = d.seq
WHERE d.state = 'in-doubt';

CREATE VIEW issuance AS
SELECT g.station, g.seq AS license_seq,
	rtrim(CAST(g.model AS TEXT), ' ') AS model_text,
	rtrim(CAST(g.serial AS TEXT), ' ') AS serial_text,
	g.model, g.serial, g.reader, g.start_date, g.end_date,
	g.batch_reader, g.batch_atr, g.batch_count,
	g.utc AS generated_utc,
	coalesce(l.state, 'generated') AS state,
	coalesce(l.utc, g.utc) AS last_utc,
	coalesce(l.reason, g.reason) AS last_reason,
	l.status AS status
FROM audit g
LEFT JOIN audit l ON l.station = g.station AND l.seq = (
	SELECT max(x.seq) FROM audit x
	WHERE x.station = g.station AND x.license_seq = g.seq)
WHERE g.state = 'generated'
UNION ALL
SELECT s.station, NULL, rtrim(CAST(s.model AS TEXT), ' '),
	rtrim(CAST(s.serial AS TEXT), ' '), s.model, s.serial, s.reader,
	substr(CAST(s.status AS TEXT), 4, 8), substr(CAST(s.status AS TEXT), 12, 8),
	NULL, NULL, NULL, NULL, 'skipped', s.utc, s.reason, s.status
FROM audit s
WHERE s.state = 'skipped'
UNION ALL
SELECT d.station, NULL, d.model_text, d.serial_text, d.model, d.serial,
	d.reader, d.start_date, NULL, d.batch_reader, d.batch_atr, NULL, d.utc,
	CASE WHEN d.resolved_seq IS NULL THEN 'in-doubt' ELSE 'resolved' END,
	coalesce(d.resolved_utc, d.utc), coalesce(d.resolution, d.reason),
	NULL
FROM in_doubt d
UNION ALL
SELECT f.station, NULL, rtrim(CAST(f.model AS TEXT), ' '),
	rtrim(CAST(f.serial AS TEXT), ' '), f.model, f.serial, f.reader,
	f.start_date, NULL, f.batch_reader, f.batch_atr, NULL, NULL, 'failed',
	f.utc, f.reason, NULL
FROM audit f
WHERE f.state = 'failed' AND f.license_seq IS NULL
AND f.seq = (SELECT max(x.seq) FROM audit x
	WHERE x.station = f.station AND x.job = f.job)
AND NOT EXISTS (SELECT 1 FROM audit g
	WHERE g.station = f.station AND g.job = f.job
	AND g.state IN ('generated', 'skipped', 'in-doubt'));

CREATE VIEW batch_usage AS
SELECT station, batch_reader, batch_atr, substr(utc, 1, 10) AS day,
	count(*) AS credits, max(batch_count) AS licenses_on_card
FROM audit
WHERE state = 'generated'
GROUP BY station, batch_reader, batch_atr, day;

CREATE VIEW pending AS
SELECT g.station, g.seq AS license_seq,
	rtrim(CAST(g.model AS TEXT), ' ') AS model_text,
	rtrim(CAST(g.serial AS TEXT), ' ') AS serial_text,
	g.model, g.serial, g.start_date, g.end_date, g.batch_reader,
	g.batch_atr, g.utc AS generated_utc
FROM audit g
WHERE g.state = 'generated' AND NOT EXISTS (
	SELECT 1 FROM audit v
	WHERE v.station = g.station AND v.license_seq = g.seq
	AND v.state IN ('verified', 'rejected'));

CREATE VIEW rejections AS
SELECT r.station, r.seq, r.utc, r.reader, r.license_seq,
	rtrim(CAST(r.model AS TEXT), ' ') AS model_text,
	rtrim(CAST(r.serial AS TEXT), ' ') AS serial_text,
	r.model, r.serial, r.start_date, r.end_date, hex(r.status) AS status_hex,
	r.reason
FROM audit r
WHERE r.state = 'rejected';
