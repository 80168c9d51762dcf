-- cardlicd audit store, migration 2: stable views for auditors.
--
-- They read the append-only audit rows and never change them.  Each joins
-- on (station, seq), so they work the same on one station's database and
-- on a database merged from several (cardlicctl merge).  model_text and
-- serial_text are the 16-byte fields with their padding trimmed; model and
-- serial are the exact bytes the card reported.

-- One row per license (a credit spent) with its latest state, one row per
-- card that needed no license (skipped), and one row per insertion that
-- failed before any credit was spent (wrong PIN, locked card, ...).
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
	AND g.state IN ('generated', 'skipped'));

-- Credits spent per batch card per day (UTC).
CREATE VIEW batch_usage AS
SELECT station, batch_reader, batch_atr, substr(utc, 1, 10) AS day,
	count(*) AS credits, max(batch_count) AS licenses_on_card
FROM audit
WHERE state = 'generated'
GROUP BY station, batch_reader, batch_atr, day;

-- Licenses generated (a credit spent) and not yet verified or rejected:
-- the card left before the end, and gets this license when it is back.
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

-- Licenses that cards refused after loading, with what they said.
CREATE VIEW rejections AS
SELECT r.station, r.seq, r.utc, r.reader, r.license_seq,
	rtrim(CAST(r.model AS TEXT), ' ') AS model_text,
	rtrim(CAST(r.serial AS TEXT), ' ') AS serial_text,
	r.model, r.serial, r.start_date, r.end_date, hex(r.status) AS status_hex,
	r.reason
FROM audit r
WHERE r.state = 'rejected';
