-- Roles: steps run as the role that submitted the run, pipelines are private to their owner
-- unless granted, the tables are written only through the functions, and a role sees only the
-- runs it may see (its own, those of its pipelines, all for pipeline_worker_admin).
-- Runs are executed in this session (workers = 0) by the superuser running the tests.

CREATE ROLE regress_alice;
CREATE ROLE regress_bob;
CREATE ROLE regress_carol;
CREATE ROLE regress_pw_admin IN ROLE pipeline_worker_admin;

CREATE FUNCTION public.sec_whoami(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('current_user', current_user, 'input', ctx->'input')
$$;
-- a table only alice may read, and a step reading it
CREATE TABLE public.alice_secret (v text);
INSERT INTO public.alice_secret VALUES ('s3cret');
ALTER TABLE public.alice_secret OWNER TO regress_alice;
CREATE FUNCTION public.sec_read(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT to_jsonb((SELECT v FROM public.alice_secret))
$$;
-- runs a query returning one value; errors come back as text with digits masked (ids in messages)
CREATE FUNCTION public.sec_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE res text;
BEGIN
    EXECUTE q INTO res;
    RETURN res;
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR: ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;
-- claims and executes a run; masks digits of errors
CREATE FUNCTION public.sec_exec(run bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF pipeline_worker.claim_run() IS DISTINCT FROM run THEN
        RETURN 'claimed another run';
    END IF;
    RETURN pipeline_worker.execute_run(run);
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR: ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;

SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');

-- ---------------------------------------------------------------- steps run as the submitter
SET ROLE regress_alice;
SELECT pipeline_worker.create_pipeline('alice_p', '[{"name": "who", "function": "public.sec_whoami"}]');
SELECT pipeline_worker.create_pipeline('alice_read', '[{"name": "read", "function": "public.sec_read"}]');
SELECT pipeline_worker.create_run('alice_p', '{"n": 1}') AS alice_run \gset
SELECT pipeline_worker.create_run('alice_read') AS alice_read_run \gset
SELECT name, owner FROM pipeline_worker.pipelines ORDER BY name;
RESET ROLE;
SELECT public.sec_exec(:alice_run);
SELECT status, result, submitted_by FROM pipeline_worker.runs WHERE id = :alice_run;
SELECT public.sec_exec(:alice_read_run);
SELECT status, result FROM pipeline_worker.runs WHERE id = :alice_read_run;
-- executing a step does not leave the session as another role
SELECT current_user, session_user;

-- ---------------------------------------------------------------- pipelines are private unless granted
SET ROLE regress_bob;
SELECT name FROM pipeline_worker.pipelines ORDER BY name;
SELECT pipeline_worker.create_run('alice_p', '{"n": 2}');
SELECT pipeline_worker.drop_pipeline('alice_p');
SELECT pipeline_worker.grant_pipeline('alice_p', 'regress_bob');
-- the owner of a pipeline bob may not see is not told to him (0.1's pipeline_owner() told anyone)
SELECT pipeline_worker.pipeline_owner('alice_p') AS owner_told_to_bob;
-- nor whether it exists: a name nobody uses gets the same answers (until 2026-12-08 create_run, create_runs,
-- drop_pipeline, grant_pipeline and revoke_pipeline said 42704 "does not exist" there; acceptance walk-through)
SELECT pipeline_worker.create_run('no_such_p', '{"n": 2}');
SELECT pipeline_worker.create_runs('alice_p', '[{"n": 2}]');
SELECT pipeline_worker.create_runs('no_such_p', '[{"n": 2}]');
SELECT pipeline_worker.create_run('alice_p', '{"n": 2}', idempotency_key => 'k1');
SELECT pipeline_worker.create_run('no_such_p', '{"n": 2}', idempotency_key => 'k1');
SELECT pipeline_worker.drop_pipeline('no_such_p');
SELECT pipeline_worker.grant_pipeline('no_such_p', 'regress_bob');
SELECT pipeline_worker.revoke_pipeline('alice_p', 'regress_bob');
SELECT pipeline_worker.revoke_pipeline('no_such_p', 'regress_bob');
RESET ROLE;
SELECT name FROM pipeline_worker.pipelines WHERE name = 'alice_p';
SELECT count(*) AS bob_runs FROM pipeline_worker.runs WHERE submitted_by = 'regress_bob'::regrole;

SET ROLE regress_alice;
SELECT pipeline_worker.grant_pipeline('alice_p', 'regress_bob');
SELECT pipeline_worker.grant_pipeline('alice_read', 'regress_bob');
-- no grant to a role that does not exist ('-' is OID 0; a number casts to regrole unchecked)
SELECT pipeline_worker.grant_pipeline('alice_p', '-');
SELECT pipeline_worker.grant_pipeline('alice_p', 4294967295::oid::regrole);
SET ROLE regress_bob;
SELECT name FROM pipeline_worker.pipelines ORDER BY name;
-- granted: he may see the pipeline, and its owner
SELECT pipeline_worker.pipeline_owner('alice_p') AS owner_told_to_grantee;
SELECT pipeline_worker.create_run('alice_p', '{"n": 3}') AS bob_run \gset
SELECT pipeline_worker.create_run('alice_read') AS bob_read_run \gset
RESET ROLE;
SELECT public.sec_exec(:bob_run);
SELECT status, result, submitted_by FROM pipeline_worker.runs WHERE id = :bob_run;
-- bob may use alice's pipeline, but its step runs with bob's privileges: no access to alice's table
SELECT public.sec_exec(:bob_read_run);
SELECT status, result, error FROM pipeline_worker.runs WHERE id = :bob_read_run;

-- revoked: bob cannot submit any more
SET ROLE regress_alice;
SELECT pipeline_worker.revoke_pipeline('alice_p', 'regress_bob');
SET ROLE regress_bob;
SELECT pipeline_worker.create_run('alice_p', '{"n": 4}');
SELECT name FROM pipeline_worker.pipelines ORDER BY name;
RESET ROLE;

-- ---------------------------------------------------------------- each role sees its own runs
SET ROLE regress_carol;
SELECT pipeline_worker.create_pipeline('carol_p', '[{"name": "who", "function": "public.sec_whoami"}]');
SELECT pipeline_worker.create_run('carol_p', '{"n": 5}') AS carol_run \gset
SELECT pipeline_worker.create_run('carol_p', '{"n": 6}') AS carol_run2 \gset
-- carol: her two runs only
SELECT pipeline, submitted_by, status, input FROM pipeline_worker.runs ORDER BY id;
SELECT count(*) AS carol_step_rows FROM pipeline_worker.run_steps;
SELECT name FROM pipeline_worker.pipelines ORDER BY name;
-- bob: his two runs on alice's pipelines, and their step rows
SET ROLE regress_bob;
SELECT pipeline, submitted_by, status, input FROM pipeline_worker.runs ORDER BY id;
SELECT s.name, s.status FROM pipeline_worker.run_steps s ORDER BY s.run_id;
-- bob can neither cancel nor see carol's run
SELECT public.sec_try('SELECT pipeline_worker.cancel_run(' || :carol_run || ')') AS bob_cancels_carols_run;
SELECT public.sec_try('SELECT pipeline_worker.wait_run(' || :carol_run || ', ''10 milliseconds'')') AS bob_waits_for_carols_run;
-- alice: her runs and bob's runs on her pipelines
SET ROLE regress_alice;
SELECT pipeline, submitted_by, status FROM pipeline_worker.runs ORDER BY id;
SELECT count(*) AS alice_visible_step_rows FROM pipeline_worker.run_steps;
-- a member of pipeline_worker_admin sees every run
SET ROLE regress_pw_admin;
SELECT pipeline, submitted_by, status FROM pipeline_worker.runs
 WHERE pipeline IN ('alice_p', 'alice_read', 'carol_p') ORDER BY id;
RESET ROLE;
SELECT status FROM pipeline_worker.runs WHERE id = :carol_run;
-- carol cancels her own run
SET ROLE regress_carol;
SELECT pipeline_worker.cancel_run(:carol_run) AS carol_cancels;
SELECT status FROM pipeline_worker.runs WHERE id = :carol_run;
RESET ROLE;

-- ---------------------------------------------------------------- no direct writes
SET ROLE regress_bob;
INSERT INTO pipeline_worker.runs (pipeline, submitted_by) VALUES ('alice_p', 'regress_bob');
UPDATE pipeline_worker.runs SET status = 'succeeded' WHERE id = :bob_run;
DELETE FROM pipeline_worker.runs WHERE id = :bob_run;
TRUNCATE pipeline_worker.runs;
INSERT INTO pipeline_worker.run_steps (run_id, position, name, status, started_at)
    VALUES (:bob_run, 9, 'fake', 'succeeded', now());
UPDATE pipeline_worker.run_steps SET output = '"forged"' WHERE run_id = :bob_run;
DELETE FROM pipeline_worker.run_steps WHERE run_id = :bob_run;
INSERT INTO pipeline_worker.pipelines (name, steps, owner) VALUES ('forged', '[]', 'regress_bob');
UPDATE pipeline_worker.pipelines SET owner = 'regress_bob' WHERE name = 'alice_p';
DELETE FROM pipeline_worker.pipelines WHERE name = 'alice_p';
INSERT INTO pipeline_worker.pipeline_grants VALUES ('alice_p', 'regress_bob');
DELETE FROM pipeline_worker.pipeline_grants;
-- the worker-side functions are for pipeline_worker_admin only
SELECT pipeline_worker.claim_run();
SELECT pipeline_worker.execute_run(:carol_run2);
SELECT pipeline_worker.recover_runs();
RESET ROLE;
-- nothing changed
SELECT status, result->'current_user' AS ran_as FROM pipeline_worker.runs WHERE id = :bob_run;
SELECT count(*) AS bob_run_steps FROM pipeline_worker.run_steps WHERE run_id = :bob_run;
SELECT name, owner FROM pipeline_worker.pipelines ORDER BY name;
SELECT pipeline, grantee FROM pipeline_worker.pipeline_grants ORDER BY 1, 2;
SELECT status FROM pipeline_worker.runs WHERE id = :carol_run2;

-- a pipeline_worker_admin member who is not a superuser claims only its own runs: another role's steps would run in
-- the admin's session, whose temporary tables (and their triggers) and search_path it controls -- until 2026-12-05 an
-- admin became superuser that way with a superuser's run. (It still sees and manages every run.)
SET ROLE regress_pw_admin;
SELECT pipeline_worker.claim_run() IS NULL AS admin_claims_none_of_carols;
RESET ROLE;
-- a superuser may; the step still runs as the submitter
SELECT public.sec_exec(:carol_run2);
SELECT status, result FROM pipeline_worker.runs WHERE id = :carol_run2;
-- nor may a role without the submitter's privileges execute a run claimed in its session (handed over by SET ROLE)
SELECT pipeline_worker.create_run('carol_p', '{"n": 7}') AS carol_run3 \gset
SELECT pipeline_worker.claim_run() = :carol_run3 AS superuser_claimed;
SET ROLE regress_pw_admin;
SELECT pipeline_worker.execute_run(:carol_run3);
RESET ROLE;
SELECT pipeline_worker.execute_run(:carol_run3);

-- ---------------------------------------------------------------- a step cannot change its role
CREATE FUNCTION public.sec_reset_role(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'RESET ROLE';
    RETURN to_jsonb(current_user::text);
END $$;
CREATE FUNCTION public.sec_set_role(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', 'postgres', false);
    RETURN to_jsonb(current_user::text);
END $$;
CREATE FUNCTION public.sec_set_session_auth(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'SET SESSION AUTHORIZATION postgres';
    RETURN to_jsonb(current_user::text);
END $$;
SET ROLE regress_carol;
SELECT pipeline_worker.create_pipeline('carol_escalate',
    '[{"name": "reset", "function": "public.sec_reset_role"}]');
SELECT pipeline_worker.create_pipeline('carol_escalate2',
    '[{"name": "setrole", "function": "public.sec_set_role"}]');
SELECT pipeline_worker.create_pipeline('carol_escalate3',
    '[{"name": "sessauth", "function": "public.sec_set_session_auth"}]');
SELECT pipeline_worker.create_run('carol_escalate') AS esc1 \gset
SELECT pipeline_worker.create_run('carol_escalate2') AS esc2 \gset
SELECT pipeline_worker.create_run('carol_escalate3') AS esc3 \gset
RESET ROLE;
SELECT public.sec_exec(:esc1) AS reset_role, public.sec_exec(:esc2) AS set_role,
       public.sec_exec(:esc3) AS set_session_authorization;
SELECT pipeline, status, result, error FROM pipeline_worker.runs WHERE id IN (:esc1, :esc2, :esc3) ORDER BY id;
SELECT current_user, session_user;

-- ---------------------------------------------------------------- no temporary step functions
-- pg_temp_N belongs to another session once this one ends: a function of the same name defined there ran as the
-- submitter (acceptance walk-through, 2026-12-07)
CREATE FUNCTION pg_temp.sec_temp_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT pipeline_worker.create_pipeline('temp_step', '[{"name": "a", "function": "pg_temp.sec_temp_step"}]');
SELECT count(*) AS temp_step_pipelines FROM pipeline_worker.pipelines WHERE name = 'temp_step';

-- ---------------------------------------------------------------- http steps need pipeline_worker_http
SET ROLE regress_carol;
SELECT pipeline_worker.create_pipeline('carol_http', '[{"name": "hook", "http": {"url": "http://localhost:1/hook"}}]');
RESET ROLE;
GRANT pipeline_worker_http TO regress_carol;
SET ROLE regress_carol;
SELECT pipeline_worker.create_pipeline('carol_http', '[{"name": "hook", "http": {"url": "http://localhost:1/hook"}}]');
RESET ROLE;
REVOKE pipeline_worker_http FROM regress_carol;

-- ---------------------------------------------------------------- the CHECK constraints' and trigger's functions (0.2)
-- Pure: any role may call them, they read no table and write nothing; an input of any size is answered (false).
-- They do not open the tables to a role: writing a run by hand is still refused (no INSERT privilege).
SET ROLE regress_carol;
SELECT pipeline_worker.check_run_status('pending') AS status_ok,
       pipeline_worker.check_run_status(repeat('pending', 100000)) AS long_status_ok,
       pipeline_worker.check_step_status(E'running\\0') AS step_ok,
       pipeline_worker.check_idempotency_key(repeat('k', 10000000)) AS huge_key_ok,
       pipeline_worker.check_priority(-2147483648) AS min_int_ok,
       pipeline_worker.check_parked((-32768)::smallint) AS min_smallint_ok,
       pipeline_worker.finished_within_rollups('infinity') AS infinity_within,
       pipeline_worker.finished_within_rollups('-infinity') AS minus_infinity_within;
INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, submitted_by)
VALUES ('carol_p', 1, 'regress_carol', 'regress_carol');
RESET ROLE;

-- ---------------------------------------------------------------- owners drop their pipelines
SET ROLE regress_carol;
SELECT pipeline_worker.drop_pipeline('alice_p');
SELECT pipeline_worker.drop_pipeline('carol_p');
SELECT count(pipeline_worker.drop_pipeline(name)) AS carol_dropped FROM pipeline_worker.pipelines;
RESET ROLE;
SELECT name FROM pipeline_worker.pipelines ORDER BY name;
SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');
