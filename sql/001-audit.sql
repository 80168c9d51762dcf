-- cardlicd audit store, migration 1: the append-only audit rows.
--
-- One row per state change of one license on one card: a credit asked for
-- (requested), a license made by a batch card (generated), its load and
-- its read-back (verified or rejected), a card that needed nothing
-- (skipped), and anything that went wrong (failed).  Rows are never edited:
-- triggers refuse UPDATE and DELETE, and INSERT must append with the next
-- sequence number.  Each row's hash covers its fields and the previous
-- row's hash (see daemon/db.c, db_row_hash), so an edit made with the
-- triggers dropped still shows.

CREATE TABLE audit (
	seq		INTEGER PRIMARY KEY,	-- 1, 2, 3 ... without gaps
	utc		TEXT NOT NULL,		-- YYYY-MM-DDTHH:MM:SS.mmmZ
	station		TEXT NOT NULL,		-- [station] id
	job		INTEGER NOT NULL,	-- one card insertion, per station
	reader		TEXT NOT NULL,		-- the target card's reader
	state		TEXT NOT NULL CHECK (state IN ('requested',
			    'generated', 'loaded', 'verified', 'rejected',
			    'skipped', 'failed')),
	reason		TEXT NOT NULL,		-- why, in words
	model		BLOB,			-- exact 16 bytes of CK_TOKEN_INFO
	serial		BLOB,			-- exact 16 bytes of CK_TOKEN_INFO
	start_date	TEXT,			-- YYYYMMDD sent to the batch card
	end_date	TEXT,			-- YYYYMMDD computed by it
	license_seq	INTEGER,		-- the 'generated' row of the license
	license		BLOB,			-- the 128 bytes, on 'generated'
	batch_reader	TEXT,
	batch_atr	TEXT,			-- hex
	batch_count	INTEGER,		-- licenses generated on that card
	sw		TEXT,			-- last status word, hex
	ckr		TEXT,			-- last PKCS#11 return value
	status		BLOB,			-- the 19 bytes read back
	timings		TEXT,			-- JSON: milliseconds per step
	hash		BLOB NOT NULL		-- SHA-256, chained
) STRICT;

CREATE INDEX audit_card ON audit (serial, model);
CREATE INDEX audit_license ON audit (license_seq);
CREATE INDEX audit_batch ON audit (batch_reader, batch_atr)
	WHERE state = 'generated';

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
	SELECT RAISE(ABORT, 'audit rows are append-only: UPDATE refused');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
	SELECT RAISE(ABORT, 'audit rows are append-only: DELETE refused');
END;

-- INSERT OR REPLACE deletes without firing the DELETE trigger (unless
-- recursive_triggers is on), so an insert must also be a true append.
CREATE TRIGGER audit_append_only BEFORE INSERT ON audit
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit)
BEGIN
	SELECT RAISE(ABORT, 'audit rows are append-only: seq must be the next');
END;
