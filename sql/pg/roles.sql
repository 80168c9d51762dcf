-- The fleet store's group roles, made once per cluster by `cardlicctl
-- fleet init` (as a role that may create roles), before the migrations.
-- None of them logs in: a station's login is a member of cardlic_station
-- (`cardlicctl fleet add-station`), an auditor's of cardlic_auditor.
--   cardlic_owner     owns the schema; the migrations run as it, and
--                     nobody else uses it
--   cardlic_station   offers its own station's rows and checkpoints
--   cardlic_importer  imports offline stations' exports
--   cardlic_verifier  reads, and records what it proved
--   cardlic_auditor   reads
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['cardlic_owner', 'cardlic_station',
	    'cardlic_importer', 'cardlic_verifier', 'cardlic_auditor'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END $$;
