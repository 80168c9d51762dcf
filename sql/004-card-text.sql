-- cardlicd audit store, migration 4: one rule for a card's text.
--
-- model and serial are the card's exact 16 bytes, padded.  Their text
-- (model_text, serial_text) is those bytes with every trailing space and
-- NUL dropped, the same rule as cardlicd's journal (daemon/dbhash.c,
-- dbhash_text) and cardlicctl.  Migrations 2 and 3 trimmed spaces only, so
-- a NUL-padded serial read differently in the journal and in the views.
--
-- The rule is written here once, in the view audit_text: every column of
-- audit, and the two texts.  The other views, and cardlicctl, read it.
-- rtrim() cannot drop a NUL (it reads its list of characters as a C
-- string): a field with a NUL in it is walked back from its end instead,
-- and substr() counts bytes in a BLOB, so no character is cut.  A field
-- without one, the usual case, takes rtrim's quicker way.  (Migration 6
-- writes audit_text again, without the subquery, so that an index can
-- hold serial_text.)
CREATE VIEW audit_text AS
SELECT a.*,
	CASE WHEN ifnull(instr(a.model, x'00'), 0) = 0
	THEN rtrim(CAST(a.model AS TEXT), ' ')
	ELSE (WITH RECURSIVE t(n) AS (SELECT length(a.model) UNION ALL
		SELECT n - 1 FROM t WHERE n > 0
		AND substr(a.model, n, 1) IN (x'00', x'20'))
	SELECT CAST(substr(a.model, 1, min(n)) AS TEXT) FROM t)
	END AS model_text,
	CASE WHEN ifnull(instr(a.serial, x'00'), 0) = 0
	THEN rtrim(CAST(a.serial AS TEXT), ' ')
	ELSE (WITH RECURSIVE t(n) AS (SELECT length(a.serial) UNION ALL
		SELECT n - 1 FROM t WHERE n > 0
		AND substr(a.serial, n, 1) IN (x'00', x'20'))
	SELECT CAST(substr(a.serial, 1, min(n)) AS TEXT) FROM t)
	END AS serial_text
FROM audit a;

-- The views of migration 3, made again over audit_text.
DROP VIEW issuance;
DROP VIEW pending;
DROP VIEW rejections;
DROP VIEW in_doubt;

CREATE VIEW in_doubt AS
SELECT d.station, d.seq, d.utc, d.job, d.reader, d.model_text,
	d.serial_text, d.model, d.serial, d.start_date, d.batch_reader,
	d.batch_atr, d.sw, d.reason,
	r.seq AS resolved_seq, r.utc AS resolved_utc,
	r.reason AS resolution,
	CASE WHEN r.seq IS NULL THEN NULL
	     WHEN r.reason LIKE 'spent:%' THEN 1 ELSE 0 END AS spent
FROM audit_text d
LEFT JOIN audit r ON r.station = d.station AND r.state = 'resolved'
	AND r.license_seq = d.seq
WHERE d.state = 'in-doubt';

CREATE VIEW issuance AS
SELECT g.station, g.seq AS license_seq, g.model_text, g.serial_text,
	g.model, g.serial, g.reader, g.start_date, g.end_date,
	g.batch_reader, g.batch_atr, g.batch_count,
	g.utc AS generated_utc,
	coalesce(l.state, 'generated') AS state,
	coalesce(l.utc, g.utc) AS last_utc,
	coalesce(l.reason, g.reason) AS last_reason,
	l.status AS status
FROM audit_text g
LEFT JOIN audit l ON l.station = g.station AND l.seq = (
	SELECT max(x.seq) FROM audit x
	WHERE x.station = g.station AND x.license_seq = g.seq)
WHERE g.state = 'generated'
UNION ALL
SELECT s.station, NULL, s.model_text, s.serial_text, s.model, s.serial,
	s.reader,
	substr(CAST(s.status AS TEXT), 4, 8), substr(CAST(s.status AS TEXT), 12, 8),
	NULL, NULL, NULL, NULL, 'skipped', s.utc, s.reason, s.status
FROM audit_text s
WHERE s.state = 'skipped'
UNION ALL
SELECT d.station, NULL, d.model_text, d.serial_text, d.model, d.serial,
	d.reader, d.start_date, NULL, d.batch_reader, d.batch_atr, NULL, d.utc,
	CASE WHEN d.resolved_seq IS NULL THEN 'in-doubt' ELSE 'resolved' END,
	coalesce(d.resolved_utc, d.utc), coalesce(d.resolution, d.reason),
	NULL
FROM in_doubt d
UNION ALL
SELECT f.station, NULL, f.model_text, f.serial_text, f.model, f.serial,
	f.reader,
	f.start_date, NULL, f.batch_reader, f.batch_atr, NULL, NULL, 'failed',
	f.utc, f.reason, NULL
FROM audit_text f
WHERE f.state = 'failed' AND f.license_seq IS NULL
AND f.seq = (SELECT max(x.seq) FROM audit x
	WHERE x.station = f.station AND x.job = f.job)
AND NOT EXISTS (SELECT 1 FROM audit g
	WHERE g.station = f.station AND g.job = f.job
	AND g.state IN ('generated', 'skipped', 'in-doubt'));

CREATE VIEW pending AS
SELECT g.station, g.seq AS license_seq, g.model_text, g.serial_text,
	g.model, g.serial, g.start_date, g.end_date, g.batch_reader,
	g.batch_atr, g.utc AS generated_utc
FROM audit_text g
WHERE g.state = 'generated' AND NOT EXISTS (
	SELECT 1 FROM audit v
	WHERE v.station = g.station AND v.license_seq = g.seq
	AND v.state IN ('verified', 'rejected'));

CREATE VIEW rejections AS
SELECT r.station, r.seq, r.utc, r.reader, r.license_seq, r.model_text,
	r.serial_text, r.model, r.serial, r.start_date, r.end_date,
	hex(r.status) AS status_hex, r.reason
FROM audit_text r
WHERE r.state = 'rejected';
