-- cardlicd audit store, migration 5: signed rows, key rows, counted rows.
--
-- sig is the station's Ed25519 signature over ("cardlicd-row-v1\0" ||
-- the row's hash) (daemon/sign.c).  The hash does not cover it: it signs
-- the hash, which covers the previous row's hash, so the signatures bind
-- the chain.  Rows written before signing keep a NULL sig; cardlicctl
-- verify reports them as unsigned, never as forged.
--
-- Two new states: `key`, the row with which the daemon publishes its
-- public key (reason "ed25519 PUBHEX", and for a rotation "endorsed-by
-- PREVPUBHEX ENDORSEMENTHEX"), and `counted`, a batch card's counter of
-- emitted licenses as an admin read it (cardlicctl batch-count).  The
-- CHECK is widened as migration 3 widened it (see sql/003-in-doubt.sql):
-- the exact text replaced, nothing else; every row already meets the
-- wider list, so no row and no hash changes.  The temporary CHECK makes
-- the migration fail, rather than go on silently, if the text was not
-- found.

ALTER TABLE audit ADD COLUMN sig BLOB;

PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql,
	'''in-doubt'', ''resolved''))',
	'''in-doubt'', ''resolved'', ''key'', ''counted''))')
WHERE type = 'table' AND name = 'audit';
PRAGMA writable_schema = RESET;
CREATE TEMP TABLE migration_5_check (ok INTEGER NOT NULL CHECK (ok));
INSERT INTO migration_5_check
	SELECT instr(sql, '''resolved'', ''key'', ''counted''') > 0
	FROM sqlite_schema WHERE type = 'table' AND name = 'audit';
DROP TABLE migration_5_check;
