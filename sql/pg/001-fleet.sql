-- cardlicd fleet store, migration 1 (PostgreSQL 15): every station's
-- signed audit rows in one place, checked on arrival.
--
-- Run by `cardlicctl fleet migrate` as the owner role (cardlic_owner,
-- which no station or auditor uses), in one transaction.  The roles
-- themselves are made by `cardlicctl fleet init` (sql/pg/roles.sql).
--
-- A station's row keeps the station's exact values, column for column:
-- TEXT as text (the store's encoding is UTF-8, which fleet init checks,
-- so that a text's bytes are the station's), BLOB as bytea, INTEGER as
-- bigint, and NULL as NULL.  The row hash is then recomputed here, from
-- those values, exactly as daemon/dbhash.c computes it: SHA-256 over the
-- previous row's hash and, for each hashed column in the table's order,
-- its SQLite type (1 byte: 1 integer, 3 text, 4 blob, 5 null), its
-- length (4 bytes, big endian) and its bytes, an integer written in
-- decimal.  tests/check_fleet.c holds the two to each other.

CREATE SCHEMA fleet AUTHORIZATION cardlic_owner;
SET search_path = fleet;

CREATE TABLE migration (
	version		integer PRIMARY KEY,
	applied_at	timestamptz NOT NULL DEFAULT now()
);

-- The stations the store takes rows from, and the login role of each:
-- a station's shipper logs in as that role, and may offer only that
-- station's rows.
CREATE TABLE station (
	station		text PRIMARY KEY CHECK (station <> ''),
	login		name NOT NULL UNIQUE,
	added_at	timestamptz NOT NULL DEFAULT now(),
	note		text NOT NULL DEFAULT ''
);

-- The registry of keys: each station's anchor (the key that its first
-- key row must publish, given by the admin at installation, as
-- `verify --key STATION=FILE` takes it), and any later key that the
-- admin accepts without an endorsement by the key before it.  Endorsed
-- rotations need no entry: their key rows carry the endorsement.
CREATE TABLE station_key (
	station		text NOT NULL REFERENCES station,
	pub		bytea NOT NULL CHECK (octet_length(pub) = 32),
	added_at	timestamptz NOT NULL DEFAULT now(),
	note		text NOT NULL DEFAULT '',
	PRIMARY KEY (station, pub)
);
-- One key anchors one station (cardlicctl verify: a key given once).
CREATE UNIQUE INDEX station_key_once ON station_key (pub);

-- The rows.  Partitioned by station, by hash: every question of the
-- store is a station's (its chain, its head, its rows by seq), and the
-- primary key (station, seq) needs the partition key in it, which a
-- partition by month would break (seq would then be unique per month
-- only).  Audit rows are never dropped, so a partition by time would
-- buy no cheap deletion either.  16 partitions keep each one's indexes
-- small at hundreds of millions of rows (about 6 million rows each at
-- 100 million), and a station's rows in one partition.
CREATE TABLE audit (
	station		text NOT NULL,
	seq		bigint NOT NULL CHECK (seq > 0),
	utc		text NOT NULL,
	job		bigint NOT NULL,
	reader		text NOT NULL,
	state		text NOT NULL,
	reason		text NOT NULL,
	model		bytea,
	serial		bytea,
	start_date	text,
	end_date	text,
	license_seq	bigint,
	license		bytea,
	batch_reader	text,
	batch_atr	text,
	batch_count	bigint,
	sw		text,
	ckr		text,
	status		bytea,
	timings		text,
	hash		bytea NOT NULL CHECK (octet_length(hash) = 32),
	sig		bytea,
	received_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (station, seq)
) PARTITION BY HASH (station);

DO $$
BEGIN
	FOR i IN 0..15 LOOP
		EXECUTE format('CREATE TABLE fleet.audit_p%s PARTITION OF '
		    'fleet.audit FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
		    lpad(i::text, 2, '0'), i);
	END LOOP;
END $$;

-- The auditors' ways in, as on a station's SQLite file: a card's rows,
-- a license's rows, rows by time, a batch card's licenses.
CREATE INDEX audit_serial ON audit (serial, model);
CREATE INDEX audit_license ON audit (station, license_seq, state);
CREATE INDEX audit_job ON audit (station, job);
CREATE INDEX audit_utc ON audit (utc);
CREATE INDEX audit_batch ON audit (batch_reader, batch_atr)
	WHERE state = 'generated';
CREATE INDEX audit_state ON audit (state) WHERE state IN ('skipped',
	'failed', 'in-doubt', 'resolved', 'rejected', 'counted', 'key',
	'batch-in', 'requested');

-- Each station's head: the last row taken, and its hash.  Kept by
-- arrival alone, under a row lock, so that a station's rows are taken one
-- batch at a time, in order, and (station, seq) stays one row.
CREATE TABLE head (
	station		text PRIMARY KEY REFERENCES station,
	seq		bigint NOT NULL,
	hash		bytea NOT NULL CHECK (octet_length(hash) = 32),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	last_login	name
);

-- A station that offered a different row for a (station, seq) already
-- stored, or a next row that does not follow the stored chain: its
-- database was rolled back, cut or edited after shipping.  Recorded, not
-- merely refused: ON CONFLICT DO NOTHING would hide it.
CREATE TABLE divergence (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	station		text NOT NULL REFERENCES station,
	seq		bigint NOT NULL,
	kind		text NOT NULL CHECK (kind IN ('different',
			    'unchained')),
	stored_hash	bytea,		-- the stored row's (different)
	expected_hash	bytea,		-- what the stored chain gives
	offered_hash	bytea NOT NULL,
	offered		jsonb NOT NULL,	-- the offered row, every column
	login		name NOT NULL DEFAULT session_user,
	detected_at	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (station, seq, offered_hash)
);

-- Checkpoints, as the daemon wrote them ([audit] checkpoint-file, the
-- journal): the line itself, and what it names.  Their signatures are
-- the verifier's to check, as the rows' are.
CREATE TABLE checkpoint (
	station		text NOT NULL REFERENCES station,
	n		bigint NOT NULL,
	seq		bigint NOT NULL,
	head_hash	bytea NOT NULL CHECK (octet_length(head_hash) = 32),
	line		text NOT NULL,
	received_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (station, n, line)
);

-- The central verifier's record: which rows of a station it proved,
-- with which key, and its verdict.
CREATE TABLE verification (
	id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	station		text NOT NULL REFERENCES station,
	from_seq	bigint NOT NULL,
	to_seq		bigint NOT NULL,
	to_hash		bytea,
	verdict		text NOT NULL,
	detail		text NOT NULL DEFAULT '',
	login		name NOT NULL DEFAULT session_user,
	checked_at	timestamptz NOT NULL DEFAULT now()
);

-- The door: a station's shipper (or an import) inserts here, and arrival
-- (below) moves each row into audit, or records a divergence.  Nothing
-- stays in it.  Row security lets a station's login insert its own
-- station's rows only.
CREATE UNLOGGED TABLE inbox (
	station		text NOT NULL,
	seq		bigint NOT NULL,
	utc		text NOT NULL,
	job		bigint NOT NULL,
	reader		text NOT NULL,
	state		text NOT NULL,
	reason		text NOT NULL,
	model		bytea,
	serial		bytea,
	start_date	text,
	end_date	text,
	license_seq	bigint,
	license		bytea,
	batch_reader	text,
	batch_atr	text,
	batch_count	bigint,
	sw		text,
	ckr		text,
	status		bytea,
	timings		text,
	hash		bytea NOT NULL,
	sig		bytea
);

CREATE UNLOGGED TABLE checkpoint_inbox (
	station		text NOT NULL,
	n		bigint NOT NULL,
	seq		bigint NOT NULL,
	head_hash	bytea NOT NULL,
	line		text NOT NULL
);

-- The station that the session's login ships for, or NULL.
CREATE FUNCTION my_station() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = fleet AS $$
	SELECT station FROM fleet.station WHERE login = session_user
$$;

-- One column as dbhash_row writes it: type, length, bytes (NULL: type 5,
-- length 0).  STABLE, as convert_to is, so that the planner inlines them
-- into row_hash, and row_hash into arrival's query: called as functions,
-- the twenty columns cost about 27 us a row; inlined, about 6.
CREATE FUNCTION hcol(v bigint) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT coalesce('\x01'::bytea || int4send(octet_length(v::text))
	    || convert_to(v::text, 'UTF8'), '\x0500000000'::bytea)
$$;
CREATE FUNCTION hcol(v text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT coalesce('\x03'::bytea || int4send(octet_length(v))
	    || convert_to(v, 'UTF8'), '\x0500000000'::bytea)
$$;
CREATE FUNCTION hcol(v bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT coalesce('\x04'::bytea || int4send(octet_length(v)) || v,
	    '\x0500000000'::bytea)
$$;

-- A row's hash from the hash before it: daemon/dbhash.c's dbhash_row.
CREATE FUNCTION row_hash(prev bytea, r inbox) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT sha256(prev || fleet.hcol(r.seq) || fleet.hcol(r.utc) || fleet.hcol(r.station)
	    || fleet.hcol(r.job) || fleet.hcol(r.reader) || fleet.hcol(r.state)
	    || fleet.hcol(r.reason) || fleet.hcol(r.model) || fleet.hcol(r.serial)
	    || fleet.hcol(r.start_date) || fleet.hcol(r.end_date) || fleet.hcol(r.license_seq)
	    || fleet.hcol(r.license) || fleet.hcol(r.batch_reader) || fleet.hcol(r.batch_atr)
	    || fleet.hcol(r.batch_count) || fleet.hcol(r.sw) || fleet.hcol(r.ckr)
	    || fleet.hcol(r.status) || fleet.hcol(r.timings))
$$;

-- The same row as stored: every column of inbox, in its order.
CREATE FUNCTION as_offered(a audit) RETURNS inbox
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT ROW(a.station, a.seq, a.utc, a.job, a.reader, a.state,
	    a.reason, a.model, a.serial, a.start_date, a.end_date,
	    a.license_seq, a.license, a.batch_reader, a.batch_atr,
	    a.batch_count, a.sw, a.ckr, a.status, a.timings, a.hash,
	    a.sig)::fleet.inbox
$$;

-- An offered row as JSON for the divergence record: blobs in hex.
CREATE FUNCTION offered_json(r inbox) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
	SELECT jsonb_build_object('seq', r.seq, 'utc', r.utc,
	    'station', r.station, 'job', r.job, 'reader', r.reader,
	    'state', r.state, 'reason', r.reason,
	    'model', encode(r.model, 'hex'), 'serial', encode(r.serial, 'hex'),
	    'start_date', r.start_date, 'end_date', r.end_date,
	    'license_seq', r.license_seq, 'license', encode(r.license, 'hex'),
	    'batch_reader', r.batch_reader, 'batch_atr', r.batch_atr,
	    'batch_count', r.batch_count, 'sw', r.sw, 'ckr', r.ckr,
	    'status', encode(r.status, 'hex'), 'timings', r.timings,
	    'hash', encode(r.hash, 'hex'), 'sig', encode(r.sig, 'hex'))
$$;

-- Arrival, once per INSERT statement into inbox, over the rows it
-- brought (a transition table), station by station:
--   - rows at or below the station's head must be the stored rows, byte
--     for byte; the same row again is taken as delivered (a lost
--     acknowledgement), and a different one is a divergence;
--   - the rows above the head must be the next ones, with no gap (a gap
--     refuses the whole statement), and each one's hash must follow from
--     the one before it, the first from the stored head: the first that
--     does not is a divergence, and nothing from it on is taken;
--   - the rows taken go into audit, and the head moves to the last one.
-- A divergence is recorded and the statement goes on (an error would
-- take the record back with it); the shipper reads fleet.divergence
-- after each batch, and stops its station.
CREATE FUNCTION arrive() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fleet AS $$
DECLARE
	s	record;
	h	record;
	bad	bigint;
	top	bigint;
	n_new	bigint;
	lo	bigint;
	mine	text := fleet.my_station();
BEGIN
	FOR s IN SELECT station, count(*) AS n, count(DISTINCT seq) AS nd
	    FROM fresh GROUP BY station ORDER BY station LOOP
		IF mine IS NOT NULL AND s.station <> mine THEN
			RAISE EXCEPTION 'login % ships for station %, not %',
			    session_user, mine, s.station
			    USING ERRCODE = 'insufficient_privilege';
		END IF;
		IF NOT EXISTS (SELECT 1 FROM station WHERE station =
		    s.station) THEN
			RAISE EXCEPTION 'station % is not registered in the '
			    'store (cardlicctl fleet add-station)', s.station
			    USING ERRCODE = 'foreign_key_violation';
		END IF;
		IF s.nd <> s.n THEN
			RAISE EXCEPTION 'station %: one batch offers the same '
			    'row twice', s.station
			    USING ERRCODE = 'unique_violation';
		END IF;
		INSERT INTO head (station, seq, hash)
		    VALUES (s.station, 0, decode(repeat('00', 32), 'hex'))
		    ON CONFLICT DO NOTHING;
		SELECT * INTO h FROM head WHERE station = s.station FOR UPDATE;

		-- At or below the head: the stored row, or a divergence.
		INSERT INTO divergence (station, seq, kind, stored_hash,
		    expected_hash, offered_hash, offered)
		SELECT f.station, f.seq, 'different', a.hash, a.hash, f.hash,
		    offered_json(f)
		FROM fresh f JOIN audit a ON a.station = f.station
		    AND a.seq = f.seq
		WHERE f.station = s.station AND f.seq <= h.seq
		    AND as_offered(a) IS DISTINCT FROM f
		ON CONFLICT DO NOTHING;
		-- A row at or below the head that is not stored: a hole.
		SELECT min(f.seq) INTO bad FROM fresh f
		WHERE f.station = s.station AND f.seq <= h.seq
		    AND NOT EXISTS (SELECT 1 FROM audit a WHERE a.station =
		    f.station AND a.seq = f.seq);
		IF bad IS NOT NULL THEN
			RAISE EXCEPTION 'station %: row % is at or below the '
			    'head (row %) but not stored', s.station, bad, h.seq;
		END IF;

		-- Above the head: the next rows, with no gap.
		SELECT count(*), min(f.seq), max(f.seq) INTO n_new, lo, top
		FROM fresh f WHERE f.station = s.station AND f.seq > h.seq;
		CONTINUE WHEN n_new = 0;
		IF lo <> h.seq + 1 OR top - lo + 1 <> n_new THEN
			RAISE EXCEPTION 'station %: a gap: row % offered after '
			    'row %, the last one stored', s.station, lo, h.seq
			    USING ERRCODE = 'check_violation';
		END IF;
		-- Each hash from the one before it, the first from the head.
		SELECT min(x.seq) INTO bad FROM (SELECT f.seq, f.hash,
		    row_hash(coalesce(lag(f.hash) OVER (ORDER BY f.seq),
		    h.hash), f) AS want FROM fresh f
		    WHERE f.station = s.station AND f.seq > h.seq) x
		WHERE x.want <> x.hash;
		IF bad IS NOT NULL THEN
			INSERT INTO divergence (station, seq, kind,
			    expected_hash, offered_hash, offered)
			SELECT x.station, x.seq, 'unchained', x.want, x.hash,
			    offered_json(x.r)
			FROM (SELECT f.station, f.seq, f.hash, f AS r,
			    row_hash(coalesce(lag(f.hash) OVER (ORDER BY
			    f.seq), h.hash), f) AS want FROM fresh f
			    WHERE f.station = s.station AND f.seq > h.seq) x
			WHERE x.seq = bad
			ON CONFLICT DO NOTHING;
			top := bad - 1;
		END IF;
		CONTINUE WHEN top <= h.seq;
		INSERT INTO audit (station, seq, utc, job, reader, state,
		    reason, model, serial, start_date, end_date, license_seq,
		    license, batch_reader, batch_atr, batch_count, sw, ckr,
		    status, timings, hash, sig)
		SELECT f.station, f.seq, f.utc, f.job, f.reader, f.state,
		    f.reason, f.model, f.serial, f.start_date, f.end_date,
		    f.license_seq, f.license, f.batch_reader, f.batch_atr,
		    f.batch_count, f.sw, f.ckr, f.status, f.timings, f.hash,
		    f.sig
		FROM fresh f WHERE f.station = s.station AND f.seq > h.seq
		    AND f.seq <= top
		ORDER BY f.seq;
		UPDATE head SET seq = top, hash = (SELECT f.hash FROM fresh f
		    WHERE f.station = s.station AND f.seq = top),
		    updated_at = now(), last_login = session_user
		WHERE station = s.station;
	END LOOP;
	DELETE FROM inbox;
	RETURN NULL;
END
$$;

CREATE TRIGGER inbox_arrive AFTER INSERT ON inbox
	REFERENCING NEW TABLE AS fresh
	FOR EACH STATEMENT EXECUTE FUNCTION arrive();

-- A checkpoint: kept as the daemon wrote it.  One that names a row
-- already stored must name that row's hash: a different one is a
-- divergence (the station's rows were changed after it wrote the
-- checkpoint, or the checkpoint was).
CREATE FUNCTION arrive_checkpoint() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fleet AS $$
DECLARE
	c	record;
	mine	text := fleet.my_station();
BEGIN
	FOR c IN SELECT * FROM fresh ORDER BY station, n LOOP
		IF mine IS NOT NULL AND c.station <> mine THEN
			RAISE EXCEPTION 'login % ships for station %, not %',
			    session_user, mine, c.station
			    USING ERRCODE = 'insufficient_privilege';
		END IF;
		IF EXISTS (SELECT 1 FROM audit a WHERE a.station = c.station
		    AND a.seq = c.seq AND a.hash <> c.head_hash) THEN
			INSERT INTO divergence (station, seq, kind,
			    stored_hash, expected_hash, offered_hash, offered)
			SELECT c.station, c.seq, 'different', a.hash, a.hash,
			    c.head_hash, jsonb_build_object('checkpoint',
			    c.line)
			FROM audit a WHERE a.station = c.station
			    AND a.seq = c.seq
			ON CONFLICT DO NOTHING;
			CONTINUE;
		END IF;
		INSERT INTO checkpoint (station, n, seq, head_hash, line)
		VALUES (c.station, c.n, c.seq, c.head_hash, c.line)
		ON CONFLICT DO NOTHING;
	END LOOP;
	DELETE FROM checkpoint_inbox;
	RETURN NULL;
END
$$;

CREATE TRIGGER checkpoint_inbox_arrive AFTER INSERT ON checkpoint_inbox
	REFERENCING NEW TABLE AS fresh
	FOR EACH STATEMENT EXECUTE FUNCTION arrive_checkpoint();

-- Append-only, for every role but the owner's (which no one logs in as):
-- the privileges are not granted, and these refuse it anyway.
CREATE FUNCTION refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'the fleet store is append-only: % on % refused',
	    TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
	FOR EACH ROW EXECUTE FUNCTION refuse();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
	FOR EACH STATEMENT EXECUTE FUNCTION refuse();
CREATE TRIGGER divergence_no_update BEFORE UPDATE OR DELETE ON divergence
	FOR EACH ROW EXECUTE FUNCTION refuse();
CREATE TRIGGER divergence_no_truncate BEFORE TRUNCATE ON divergence
	FOR EACH STATEMENT EXECUTE FUNCTION refuse();
CREATE TRIGGER checkpoint_no_update BEFORE UPDATE OR DELETE ON checkpoint
	FOR EACH ROW EXECUTE FUNCTION refuse();
CREATE TRIGGER checkpoint_no_truncate BEFORE TRUNCATE ON checkpoint
	FOR EACH STATEMENT EXECUTE FUNCTION refuse();
CREATE TRIGGER verification_no_update BEFORE UPDATE OR DELETE
	ON verification FOR EACH ROW EXECUTE FUNCTION refuse();
CREATE TRIGGER verification_no_truncate BEFORE TRUNCATE ON verification
	FOR EACH STATEMENT EXECUTE FUNCTION refuse();

-- Who may do what.  Stations: insert their own rows and checkpoints
-- (row security), and read their own head and divergences, to resume
-- and to learn of one.  Auditors: read.  The verifier: read, and record
-- what it proved.
REVOKE ALL ON ALL TABLES IN SCHEMA fleet FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fleet FROM PUBLIC;
GRANT USAGE ON SCHEMA fleet TO cardlic_station, cardlic_auditor,
	cardlic_verifier, cardlic_importer;
GRANT EXECUTE ON FUNCTION my_station() TO cardlic_station,
	cardlic_importer;

ALTER TABLE inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoint_inbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE head ENABLE ROW LEVEL SECURITY;
ALTER TABLE divergence ENABLE ROW LEVEL SECURITY;
GRANT INSERT ON inbox, checkpoint_inbox TO cardlic_station,
	cardlic_importer;
CREATE POLICY own_rows ON inbox FOR INSERT TO cardlic_station
	WITH CHECK (station = my_station());
CREATE POLICY own_checkpoints ON checkpoint_inbox FOR INSERT
	TO cardlic_station WITH CHECK (station = my_station());
-- An import (an offline station's export) may bring any registered
-- station's rows: arrival checks them as it checks a shipper's.
CREATE POLICY any_rows ON inbox FOR INSERT TO cardlic_importer
	WITH CHECK (true);
CREATE POLICY any_checkpoints ON checkpoint_inbox FOR INSERT
	TO cardlic_importer WITH CHECK (true);
GRANT SELECT ON head, divergence TO cardlic_station, cardlic_importer;
CREATE POLICY own_head ON head FOR SELECT TO cardlic_station
	USING (station = my_station());
CREATE POLICY own_divergence ON divergence FOR SELECT TO cardlic_station
	USING (station = my_station());
CREATE POLICY all_head ON head FOR SELECT
	TO cardlic_auditor, cardlic_verifier, cardlic_importer USING (true);
CREATE POLICY all_divergence ON divergence FOR SELECT
	TO cardlic_auditor, cardlic_verifier, cardlic_importer USING (true);

GRANT SELECT ON station, station_key, audit, head, divergence,
	checkpoint, verification, migration TO cardlic_auditor,
	cardlic_verifier;
GRANT SELECT ON station TO cardlic_importer;
GRANT INSERT ON verification TO cardlic_verifier;

INSERT INTO migration (version) VALUES (1);
