-- cardlicd audit store, migration 7: what issue 18 ("Check, don't
-- trust") needs of the schema.  No row and no hash changes.
--
-- A text value with a NUL byte in it.  SQLite keeps such text whole and
-- compares it whole, but a C string, SQLite's own length() and whatever
-- reads a value as a C string stop at the NUL: a row whose station was
-- `demo-line` followed by a NUL hid from cardlicctl verify as a second
-- walk of `demo-line` (case 4).  cardlicd never writes one (card bytes
-- go to BLOB columns, or are escaped); this trigger refuses one on
-- insert, and verify names any row that holds one.
CREATE TRIGGER audit_no_nul BEFORE INSERT ON audit
WHEN instr(CAST(NEW.utc AS BLOB), x'00') OR instr(CAST(NEW.station AS BLOB), x'00')
	OR instr(CAST(NEW.reader AS BLOB), x'00') OR instr(CAST(NEW.state AS BLOB), x'00')
	OR instr(CAST(NEW.reason AS BLOB), x'00')
	OR instr(CAST(NEW.start_date AS BLOB), x'00')
	OR instr(CAST(NEW.end_date AS BLOB), x'00')
	OR instr(CAST(NEW.batch_reader AS BLOB), x'00')
	OR instr(CAST(NEW.batch_atr AS BLOB), x'00') OR instr(CAST(NEW.sw AS BLOB), x'00')
	OR instr(CAST(NEW.ckr AS BLOB), x'00') OR instr(CAST(NEW.timings AS BLOB), x'00')
BEGIN
	SELECT RAISE(ABORT, 'audit rows hold no NUL byte in a text column');
END;

-- One more state, `batch-in`: a batch card inserted (its reader in reader
-- and batch_reader, its ATR in batch_atr, job 0), written before the card
-- is used.  A batch card has no identity that the station can read (no
-- APDU of the vendor's names it, and an ATR names a kind of card), so the
-- rows name insertions: every credit row that names a reader follows the
-- insertion of that reader's card before it, and an admin's count
-- (`counted`, with the label written on the card in serial) ties a
-- label to the insertion it was read in (case 8).  The CHECK is widened
-- as migrations 3 and 5 widened it: the exact text replaced, nothing
-- else; the temporary CHECK makes the migration fail, rather than go on
-- silently, if the text was not found.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql,
	'''key'', ''counted''))',
	'''key'', ''counted'', ''batch-in''))')
WHERE type = 'table' AND name = 'audit';
PRAGMA writable_schema = RESET;
CREATE TEMP TABLE migration_7_check (ok INTEGER NOT NULL CHECK (ok));
INSERT INTO migration_7_check
	SELECT instr(sql, '''counted'', ''batch-in''') > 0
	FROM sqlite_schema WHERE type = 'table' AND name = 'audit';
DROP TABLE migration_7_check;
