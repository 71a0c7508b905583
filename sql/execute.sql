-- In-session execution: claim_run() + execute_run() with no background workers
-- (pipeline_worker.workers = 0), so nothing but this session executes runs.
-- Ids, pids and timestamps are never printed: \gset keeps ids in psql variables, and
-- try_exec() masks digits in execute_run()'s error messages.

SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');

CREATE TABLE public.exec_log (run_id bigint NOT NULL, step text NOT NULL, ctx jsonb NOT NULL);
CREATE TABLE public.exec_fx (run_id bigint NOT NULL, step text NOT NULL, attempt int NOT NULL,
                             PRIMARY KEY (run_id, step, attempt));

-- records the step context (exec_log) and the step's execution (exec_fx)
CREATE FUNCTION public.ex_record(ctx jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.exec_log VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    INSERT INTO public.exec_fx VALUES ((ctx->>'run_id')::bigint, ctx->>'step', (ctx->>'attempt')::int);
$$;
CREATE FUNCTION public.ex_a(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ex_record(ctx);
    RETURN jsonb_build_object('a', (ctx->'prev'->>'x')::int + 1);
END $$;
CREATE FUNCTION public.ex_b(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ex_record(ctx);
    RETURN jsonb_build_object('b', (ctx->'prev'->>'a')::int * 10, 'a_seen', ctx->'results'->'first'->'a');
END $$;
CREATE FUNCTION public.ex_c(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ex_record(ctx);
    RETURN jsonb_build_object('c', (ctx->'prev'->>'b')::int + (ctx->'results'->'first'->>'a')::int
                                   + (ctx->'input'->>'x')::int,
                              'tenant', ctx->'metadata'->'tenant');
END $$;
CREATE FUNCTION public.try_exec(run bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN pipeline_worker.execute_run(run);
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR: ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;

-- ---------------------------------------------------------------- 3-step data flow
SELECT pipeline_worker.create_pipeline('flow',
    '[{"name": "first", "function": "public.ex_a"},
      {"name": "second", "function": "ex_b"},
      {"name": "third", "function": "public.ex_c"}]');
SELECT pipeline_worker.create_run('flow', '{"x": 1}', '{"tenant": "acme", "trace": [1, 2]}') AS flow_id \gset
SELECT status, result, error, started_at IS NULL AS not_started, finished_at IS NULL AS not_finished,
       worker_pid IS NULL AS unclaimed, submitted_by
  FROM pipeline_worker.runs WHERE id = :flow_id;
SELECT pipeline_worker.claim_run() = :flow_id AS claimed_flow;
SELECT status, worker_pid = pg_backend_pid() AS claimed_by_me, started_at IS NOT NULL AS started
  FROM pipeline_worker.runs WHERE id = :flow_id;
SELECT pipeline_worker.execute_run(:flow_id);
SELECT status, result, error, input, metadata, worker_pid = pg_backend_pid() AS executed_by_me,
       started_at <= finished_at AS timed
  FROM pipeline_worker.runs WHERE id = :flow_id;
SELECT position, name, status, output, error, attempt, started_at <= finished_at AS timed
  FROM pipeline_worker.run_steps WHERE run_id = :flow_id ORDER BY position, attempt;
-- the context of every step: run_id, pipeline, step, position, attempt, input, metadata, prev, results
SELECT step, (ctx->>'run_id')::bigint = :flow_id AS run_id_ok, ctx - 'run_id' AS ctx
  FROM public.exec_log WHERE run_id = :flow_id ORDER BY (ctx->>'position')::int;
SELECT step, attempt FROM public.exec_fx WHERE run_id = :flow_id ORDER BY step;
-- a finished run cannot be executed again
SELECT public.try_exec(:flow_id);
SELECT status FROM pipeline_worker.runs WHERE id = :flow_id;

-- ---------------------------------------------------------------- step 2 of 3 fails
CREATE TABLE public.exec_fix (ok boolean);
CREATE FUNCTION public.ex_boom(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ex_record(ctx);     -- rolled back with the failing step
    IF NOT EXISTS (SELECT 1 FROM public.exec_fix) THEN
        RAISE EXCEPTION 'boom at x=%', ctx->'input'->>'x';
    END IF;
    RETURN jsonb_build_object('fixed', true, 'prev', ctx->'prev');
END $$;
SELECT pipeline_worker.create_pipeline('breaks',
    '[{"name": "ok", "function": "public.ex_a"},
      {"name": "boom", "function": "public.ex_boom"},
      {"name": "never", "function": "public.ex_c"}]');
SELECT pipeline_worker.create_run('breaks', '{"x": 5}', '{"tenant": "t5"}') AS breaks_id \gset
SELECT pipeline_worker.claim_run() = :breaks_id AS claimed_breaks;
SELECT pipeline_worker.execute_run(:breaks_id);
SELECT status, error, finished_at IS NOT NULL AS finished FROM pipeline_worker.runs WHERE id = :breaks_id;
-- step 1 succeeded, step 2 failed with the error, step 3 has no row
SELECT position, name, status, output, error, attempt, finished_at IS NOT NULL AS finished
  FROM pipeline_worker.run_steps WHERE run_id = :breaks_id ORDER BY position, attempt;
-- step 1's effects stay, step 2's were rolled back, step 3 never ran
SELECT step FROM public.exec_fx WHERE run_id = :breaks_id ORDER BY step;
SELECT step FROM public.exec_log WHERE run_id = :breaks_id ORDER BY step;

-- retry_run() after the cause is fixed: the run resumes and succeeds
SELECT pipeline_worker.retry_run(:flow_id) AS retry_succeeded_run;
INSERT INTO public.exec_fix VALUES (true);
SELECT pipeline_worker.retry_run(:breaks_id) AS retry_failed_run;
SELECT status, error FROM pipeline_worker.runs WHERE id = :breaks_id;
SELECT pipeline_worker.claim_run() = :breaks_id AS claimed_again;
SELECT pipeline_worker.execute_run(:breaks_id);
SELECT status, result, error FROM pipeline_worker.runs WHERE id = :breaks_id;
SELECT position, name, status, attempt FROM pipeline_worker.run_steps WHERE run_id = :breaks_id
 ORDER BY position, attempt;
SELECT step, attempt FROM public.exec_fx WHERE run_id = :breaks_id ORDER BY step, attempt;
DELETE FROM public.exec_fix;

-- ---------------------------------------------------------------- SQL NULL output
CREATE FUNCTION public.ex_null(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION public.ex_after_null(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('prev', ctx->'prev', 'prev_type', jsonb_typeof(ctx->'prev'),
                              'results', ctx->'results')
$$;
SELECT pipeline_worker.create_pipeline('nulls',
    '[{"name": "nothing", "function": "public.ex_null"},
      {"name": "after", "function": "public.ex_after_null"},
      {"name": "last", "function": "public.ex_null"}]');
SELECT pipeline_worker.create_run('nulls') AS nulls_id \gset
SELECT pipeline_worker.claim_run() = :nulls_id AS claimed_nulls;
SELECT pipeline_worker.execute_run(:nulls_id);
SELECT position, name, status, output, output IS NULL AS sql_null, jsonb_typeof(output) AS json_type
  FROM pipeline_worker.run_steps WHERE run_id = :nulls_id ORDER BY position;
SELECT status, result, result IS NULL AS sql_null, jsonb_typeof(result) AS json_type
  FROM pipeline_worker.runs WHERE id = :nulls_id;

-- ---------------------------------------------------------------- metadata
-- visible in every step's context (above: "tenant" in the flow run's contexts and result) and
-- unchanged on the runs
SELECT count(*) AS contexts, count(*) FILTER (WHERE l.ctx->'metadata' = r.metadata) AS with_run_metadata
  FROM public.exec_log l JOIN pipeline_worker.runs r ON r.id = l.run_id;
SELECT pipeline, metadata FROM pipeline_worker.runs WHERE id IN (:flow_id, :breaks_id, :nulls_id) ORDER BY id;

-- ---------------------------------------------------------------- execute_run refuses unclaimed runs
SELECT pipeline_worker.create_run('flow', '{"x": 2}') AS unclaimed_id \gset
SELECT public.try_exec(:unclaimed_id);
SELECT status, worker_pid IS NULL AS unclaimed FROM pipeline_worker.runs WHERE id = :unclaimed_id;
SELECT count(*) AS step_rows FROM pipeline_worker.run_steps WHERE run_id = :unclaimed_id;
SELECT public.try_exec(-1);
-- claimed, it runs
SELECT pipeline_worker.claim_run() = :unclaimed_id AS claimed;
SELECT pipeline_worker.execute_run(:unclaimed_id);
SELECT result FROM pipeline_worker.runs WHERE id = :unclaimed_id;
-- finished: executing it again is refused, with a hint at retry_run (not at claim_run)
CREATE FUNCTION public.exec_hint(run bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
    PERFORM pipeline_worker.execute_run(run);
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END $$;
SELECT public.exec_hint(:unclaimed_id);

-- ---------------------------------------------------------------- FIFO
SELECT count(pipeline_worker.create_run('flow', jsonb_build_object('x', 100 + i))) FROM generate_series(1, 3) i;
SELECT pipeline_worker.claim_run() AS c1 \gset
SELECT pipeline_worker.claim_run() AS c2 \gset
SELECT pipeline_worker.claim_run() AS c3 \gset
SELECT pipeline_worker.claim_run() AS nothing_left;
SELECT (SELECT input->>'x' FROM pipeline_worker.runs WHERE id = :c1) AS first_claim,
       (SELECT input->>'x' FROM pipeline_worker.runs WHERE id = :c2) AS second_claim,
       (SELECT input->>'x' FROM pipeline_worker.runs WHERE id = :c3) AS third_claim,
       :c1 < :c2 AND :c2 < :c3 AS ascending_ids;
-- one backend may hold several claims; execute them in reverse order
SELECT pipeline_worker.execute_run(:c3), pipeline_worker.execute_run(:c2), pipeline_worker.execute_run(:c1);
SELECT input->>'x' AS x, status, result->'c' AS c FROM pipeline_worker.runs WHERE id IN (:c1, :c2, :c3) ORDER BY id;

-- ---------------------------------------------------------------- retries (max_attempts)
-- fails on attempts 1 and 2, succeeds on 3; retry_delay_ms 0: claimable again at once
CREATE FUNCTION public.ex_flaky(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.ex_record(ctx);
    IF (ctx->>'attempt')::int < (ctx->'input'->>'succeed_at')::int THEN
        RAISE EXCEPTION 'flaky: attempt %', ctx->>'attempt';
    END IF;
    RETURN jsonb_build_object('attempt', ctx->'attempt', 'prev', ctx->'prev');
END $$;
SELECT pipeline_worker.create_pipeline('flaky',
    '[{"name": "one", "function": "public.ex_a"},
      {"name": "flaky", "function": "public.ex_flaky", "max_attempts": 3, "retry_delay_ms": 0}]');
SELECT pipeline_worker.create_run('flaky', '{"x": 1, "succeed_at": 3}') AS flaky_id \gset
SELECT pipeline_worker.claim_run() = :flaky_id AS claimed;
SELECT pipeline_worker.execute_run(:flaky_id);
SELECT status, worker_pid IS NULL AS unclaimed, error FROM pipeline_worker.runs WHERE id = :flaky_id;
SELECT pipeline_worker.claim_run() = :flaky_id AS claimed;
SELECT pipeline_worker.execute_run(:flaky_id);
SELECT pipeline_worker.claim_run() = :flaky_id AS claimed;
SELECT pipeline_worker.execute_run(:flaky_id);
SELECT status, result, error FROM pipeline_worker.runs WHERE id = :flaky_id;
SELECT position, name, status, attempt, output, error FROM pipeline_worker.run_steps
 WHERE run_id = :flaky_id ORDER BY position, attempt;
-- step 1 ran once; only the successful attempt of step 2 left effects
SELECT step, attempt FROM public.exec_fx WHERE run_id = :flaky_id ORDER BY step, attempt;
-- out of attempts: fails for good after 3
SELECT pipeline_worker.create_run('flaky', '{"x": 1, "succeed_at": 9}') AS flaky2_id \gset
SELECT pipeline_worker.claim_run() = :flaky2_id AS claimed;
SELECT pipeline_worker.execute_run(:flaky2_id);
SELECT pipeline_worker.claim_run() = :flaky2_id AS claimed;
SELECT pipeline_worker.execute_run(:flaky2_id);
SELECT pipeline_worker.claim_run() = :flaky2_id AS claimed;
SELECT pipeline_worker.execute_run(:flaky2_id);
SELECT pipeline_worker.claim_run() AS nothing_left;
SELECT status, error FROM pipeline_worker.runs WHERE id = :flaky2_id;
SELECT position, status, attempt, error FROM pipeline_worker.run_steps WHERE run_id = :flaky2_id
 ORDER BY position, attempt;

-- ---------------------------------------------------------------- step timeout
CREATE FUNCTION public.ex_sleep(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('slept', pg_sleep(2) IS NOT NULL)
$$;
SELECT pipeline_worker.create_pipeline('slow', '[{"name": "nap", "function": "public.ex_sleep", "timeout_ms": 200}]');
SELECT pipeline_worker.create_run('slow') AS slow_id \gset
SELECT pipeline_worker.claim_run() = :slow_id AS claimed;
SELECT pipeline_worker.execute_run(:slow_id);
SELECT status, error, finished_at - started_at < interval '1.5 seconds' AS stopped_early
  FROM pipeline_worker.runs WHERE id = :slow_id;
SELECT position, status, error FROM pipeline_worker.run_steps WHERE run_id = :slow_id;
-- the session is usable afterwards (no statement timeout left behind)
SELECT pg_sleep(0.3) IS NOT NULL AS still_usable;
-- a step that catches the cancel its timeout sends and returns still ran too long: the attempt fails as timed out, its
-- effects rolled back (until 2026-12-08 it succeeded)
CREATE TABLE public.ex_caught_fx (run_id bigint);
CREATE FUNCTION public.ex_catches(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ex_caught_fx VALUES ((ctx->>'run_id')::bigint);
    PERFORM pg_sleep(2);
    RETURN '{"finished": true}';
EXCEPTION WHEN query_canceled THEN
    RETURN '{"caught": true}';
END $$;
SELECT pipeline_worker.create_pipeline('catcher', '[{"name": "c", "function": "public.ex_catches", "timeout_ms": 200}]');
SELECT pipeline_worker.create_run('catcher') AS catch_id \gset
SELECT pipeline_worker.claim_run() = :catch_id AS claimed;
SELECT pipeline_worker.execute_run(:catch_id);
SELECT status, error FROM pipeline_worker.runs WHERE id = :catch_id;
SELECT count(*) AS effects_kept FROM public.ex_caught_fx;
SELECT pipeline_worker.drop_pipeline('catcher');
-- "timeout_ms": 0 on a step: no limit for it, whatever the pipeline's options say (as statement_timeout = 0); the
-- step beside it still has the pipeline's
CREATE FUNCTION public.ex_nap(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('napped', pg_sleep(0.3) IS NOT NULL)
$$;
SELECT pipeline_worker.create_pipeline('unlimited', '[{"name": "long", "function": "public.ex_nap", "timeout_ms": 0},
  {"name": "capped", "function": "public.ex_nap"}]', '{"timeout_ms": 100}');
SELECT pipeline_worker.create_run('unlimited') AS unl_id \gset
SELECT pipeline_worker.claim_run() = :unl_id AS claimed;
SELECT pipeline_worker.execute_run(:unl_id);
SELECT position, status, output, error FROM pipeline_worker.run_steps WHERE run_id = :unl_id ORDER BY position;
-- ... and "timeout_ms": 0 in the options is no limit too (as not given)
SELECT pipeline_worker.alter_pipeline('unlimited', '{"timeout_ms": 0}');
SELECT pipeline_worker.create_run('unlimited') AS unl2_id \gset
SELECT pipeline_worker.claim_run() = :unl2_id AS claimed;
SELECT pipeline_worker.execute_run(:unl2_id);
SELECT position, status, error FROM pipeline_worker.run_steps WHERE run_id = :unl2_id ORDER BY position;

-- ---------------------------------------------------------------- execution is part of the caller's transaction
SELECT pipeline_worker.create_run('flow', '{"x": 3}') AS xact_id \gset
BEGIN;
SELECT pipeline_worker.claim_run() = :xact_id AS claimed;
SELECT pipeline_worker.execute_run(:xact_id);
SELECT status FROM pipeline_worker.runs WHERE id = :xact_id;
ROLLBACK;
-- rolled back: claim, step rows, step effects and result are gone; the run is pending again
SELECT status, result, worker_pid IS NULL AS unclaimed FROM pipeline_worker.runs WHERE id = :xact_id;
SELECT count(*) AS step_rows FROM pipeline_worker.run_steps WHERE run_id = :xact_id;
SELECT count(*) AS effects FROM public.exec_fx WHERE run_id = :xact_id;
BEGIN;
SELECT pipeline_worker.claim_run() = :xact_id AS claimed;
SELECT pipeline_worker.execute_run(:xact_id);
COMMIT;
SELECT status, result FROM pipeline_worker.runs WHERE id = :xact_id;
SELECT step, attempt FROM public.exec_fx WHERE run_id = :xact_id ORDER BY step;

-- ---------------------------------------------------------------- wait_run
SELECT pipeline_worker.create_run('flow', '{"x": 9}') AS wait_id \gset
SELECT pipeline_worker.wait_run(:wait_id, '200 milliseconds') AS pending_run;
-- a timeout too long for microseconds waits (here until the statement timeout), not a deadline wrapped into the past
SET statement_timeout = '300ms';
SELECT pipeline_worker.wait_run(:wait_id, '1000000 years') AS huge_wait;
SELECT pipeline_worker.wait_run(:wait_id, '200000000 days') AS huge_wait;
RESET statement_timeout;
SELECT pipeline_worker.wait_run(:flow_id, '1 second') AS succeeded_run;
SELECT pipeline_worker.wait_run(:breaks_id, '1 second') AS retried_run;
SELECT pipeline_worker.wait_run(:flaky2_id) AS failed_run;
-- a run the calling transaction created: an error at once (no worker can see it before the commit) instead of
-- sleeping until the timeout
SELECT pipeline_worker.wait_run(pipeline_worker.create_run('flow'), '1 minute');
BEGIN;
SELECT pipeline_worker.create_run('flow', '{"x": 10}') AS tx_id \gset
SAVEPOINT s;
SELECT pipeline_worker.wait_run(:tx_id, '1 minute');
ROLLBACK TO s;
SELECT pipeline_worker.retry_run(:flaky2_id) AS retried_in_tx;
SELECT pipeline_worker.wait_run(:flaky2_id, '1 minute');
ROLLBACK;
DO $$ BEGIN PERFORM pipeline_worker.wait_run(pipeline_worker.create_run('flow'), '1 minute');
EXCEPTION WHEN object_not_in_prerequisite_state THEN RAISE NOTICE 'wait_run refused: SQLSTATE %', SQLSTATE; END $$;
SELECT pipeline_worker.wait_run(:flaky2_id, '1 second') AS still_failed_after_rollback;

-- ---------------------------------------------------------------- cancel_run
SELECT pipeline_worker.cancel_run(:wait_id) AS cancel_pending;
SELECT status, finished_at IS NOT NULL AS finished FROM pipeline_worker.runs WHERE id = :wait_id;
SELECT pipeline_worker.wait_run(:wait_id, '1 second') AS cancelled_run;
SELECT pipeline_worker.cancel_run(:wait_id) AS cancel_again;
SELECT pipeline_worker.claim_run() AS nothing_to_claim;
SELECT public.try_exec(:wait_id);
SELECT pipeline_worker.cancel_run(:flow_id) AS cancel_succeeded;
SELECT pipeline_worker.cancel_run(:flaky2_id) AS cancel_failed;
SELECT status FROM pipeline_worker.runs WHERE id IN (:flow_id, :flaky2_id, :wait_id) ORDER BY id;
SELECT pipeline_worker.cancel_run(-1) AS cancel_missing;
-- A cancel_run rolled back -- the transaction, or to a savepoint -- leaves the run to run: its request to whoever
-- executes the run goes with its write (until 2026-12-05 the request stayed, and the next execute_run cancelled it).
SELECT pipeline_worker.create_run('flow', '{"x": 3}') AS undone_id \gset
BEGIN;
SELECT pipeline_worker.cancel_run(:undone_id) AS cancel_rolled_back;
ROLLBACK;
BEGIN;
SAVEPOINT before_cancel;
SELECT pipeline_worker.cancel_run(:undone_id) AS cancel_to_savepoint;
ROLLBACK TO before_cancel;
COMMIT;
SELECT pipeline_worker.claim_run() = :undone_id AS claimed_after_undone_cancels;
SELECT pipeline_worker.execute_run(:undone_id) AS after_undone_cancels;
-- ... and one that commits still cancels
SELECT pipeline_worker.create_run('flow', '{"x": 4}') AS kept_id \gset
BEGIN;
SAVEPOINT other;
SELECT pipeline_worker.cancel_run(:kept_id) AS cancel_kept;
RELEASE other;
COMMIT;
SELECT status FROM pipeline_worker.runs WHERE id = :kept_id;

-- ---------------------------------------------------------------- a transaction made read-only
-- Set read-only after its claim, a transaction cannot record the run's steps: execute_run refuses at once (as a
-- statement writing there would; the bookkeeping's writes without a statement, store/direct_writes, are not done
-- past the setting either), and the rollback leaves the run pending, executed normally at the next claim.
CREATE FUNCTION public.ex_pure(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('pure', 1) $$;
SELECT pipeline_worker.create_pipeline('pure', '[{"name": "p1", "function": "ex_pure"}, {"name": "p2", "function": "ex_pure"}]');
SELECT pipeline_worker.create_run('pure', '{}') AS ro_id \gset
BEGIN;
SELECT pipeline_worker.claim_run() = :ro_id AS claimed_before_read_only;
SET LOCAL transaction_read_only = on;
SELECT public.try_exec(:ro_id) AS executed_read_only;
ROLLBACK;
SELECT status, claims, started_at IS NULL AS not_started FROM pipeline_worker.runs WHERE id = :ro_id;
SELECT count(*) AS step_rows FROM pipeline_worker.run_steps WHERE run_id = :ro_id;
SELECT pipeline_worker.claim_run() = :ro_id AS claimed_again;
SELECT pipeline_worker.execute_run(:ro_id) AS executed;
SELECT status, claims, result FROM pipeline_worker.runs WHERE id = :ro_id;
SELECT count(*) AS step_rows FROM pipeline_worker.run_steps WHERE run_id = :ro_id;

-- Every function that writes refuses a read-only transaction (a standby's too) at once, naming itself -- not with
-- the internal statement that would have written first; the ones that only read still answer.
BEGIN READ ONLY;
DO $$
DECLARE c text;
BEGIN
    FOREACH c IN ARRAY ARRAY[
        $c$create_run('pure', '{}')$c$, $c$create_runs('pure', '[{}]')$c$,
        $c$create_pipeline('ro', '[{"name": "a", "function": "ex_pure"}]')$c$, $c$drop_pipeline('pure')$c$,
        $c$alter_pipeline('pure', '{}')$c$, $c$pause_pipeline('pure')$c$, $c$resume_pipeline('pure')$c$,
        $c$grant_pipeline('pure', 'pg_monitor')$c$, $c$revoke_pipeline('pure', 'pg_monitor')$c$,
        $c$cancel_run(1)$c$, $c$retry_run(1)$c$, $c$send_event(1, 'e')$c$, $c$send_event('pure', 'k', 'e')$c$,
        $c$purge_runs('1 day')$c$, $c$claim_run()$c$, $c$execute_run(1)$c$,
        $c$schedule('ro', 'pure', '* * * * *')$c$, $c$unschedule('ro')$c$,
        $c$recover_runs()$c$, $c$wait_run(1, '0 s')$c$, $c$pipeline_owner('pure')$c$]
    LOOP
        BEGIN
            EXECUTE 'SELECT pipeline_worker.' || c;
            RAISE NOTICE '%: answered', split_part(c, '(', 1);
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE '%: % %', split_part(c, '(', 1), SQLSTATE, SQLERRM;
        END;
    END LOOP;
END $$;
ROLLBACK;

-- ---------------------------------------------------------------- two-phase commit
-- A transaction that submitted, changed or claimed runs cannot be prepared: the workers hear of it at this
-- session's commit (wake-ups, the claim hint, cancels, slots), and a prepared transaction commits elsewhere.
BEGIN;
SELECT pipeline_worker.create_run('flow', '{"n": 1}') > 0 AS created_in_2pc;
PREPARE TRANSACTION 'pw_created';
SELECT count(*) AS prepared FROM pg_prepared_xacts;
SELECT count(*) AS runs_of_the_refused_prepare FROM pipeline_worker.runs WHERE input = '{"n": 1}';
SELECT pipeline_worker.create_run('flow', '{"n": 2}') AS twopc_id \gset
BEGIN;
SELECT pipeline_worker.cancel_run(:twopc_id) AS cancel_in_2pc;
PREPARE TRANSACTION 'pw_cancelled';
SELECT status AS after_refused_2pc FROM pipeline_worker.runs WHERE id = :twopc_id;
SELECT pipeline_worker.cancel_run(:twopc_id) AS cancel_after_refused_2pc;
-- reading is fine (and so is a transaction whose calls changed nothing)
BEGIN;
SELECT count(*) >= 0 AS read_in_2pc FROM pipeline_worker.runs;
PREPARE TRANSACTION 'pw_read';
COMMIT PREPARED 'pw_read';

-- ---------------------------------------------------------------- the caller's own cancel; execute_run in a step
-- The caller's statement_timeout ends execute_run's statement, as any statement's: the step is not failed, no step
-- row is written, and the run stays this session's claim, executed to its end by the next call.
CREATE FUNCTION public.exec_sleepy(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep((ctx->'input'->>'s')::float8); RETURN '"slept"'; END $$;
SELECT pipeline_worker.create_pipeline('sleepy', '[{"name": "z", "function": "public.exec_sleepy"}]', '{"max_attempts": 1}');
SELECT pipeline_worker.create_run('sleepy', '{"s": 0.5}') AS st_id \gset
SELECT pipeline_worker.claim_run() = :st_id AS claimed;
SET statement_timeout = '100ms';
SELECT pipeline_worker.execute_run(:st_id);
RESET statement_timeout;
SELECT status, worker_pid = pg_backend_pid() AS still_mine FROM pipeline_worker.runs WHERE id = :st_id;
SELECT count(*) AS step_rows FROM pipeline_worker.run_steps WHERE run_id = :st_id;
SELECT pipeline_worker.execute_run(:st_id) AS executed_after_the_timeout;
SELECT status, result FROM pipeline_worker.runs WHERE id = :st_id;
-- a step's own timeout_ms is the step's: it fails the step
SELECT pipeline_worker.create_pipeline('sleepy_to', '[{"name": "z", "function": "public.exec_sleepy", "timeout_ms": 100}]', '{"max_attempts": 1}');
SELECT pipeline_worker.create_run('sleepy_to', '{"s": 0.5}') AS st2_id \gset
SELECT pipeline_worker.claim_run() = :st2_id AS claimed;
SELECT pipeline_worker.execute_run(:st2_id) AS timed_out_step;
SELECT status, error FROM pipeline_worker.runs WHERE id = :st2_id;
-- execute_run (or claim_run) inside a step that a session's execute_run executes: refused, and the run fails
-- cleanly (until 2026-12-07: a raw duplicate-key error, and the run left running)
CREATE FUNCTION public.exec_nested(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN to_jsonb(pipeline_worker.execute_run((ctx->>'run_id')::bigint)); END $$;
SELECT pipeline_worker.create_pipeline('nested', '[{"name": "n", "function": "public.exec_nested"}]', '{"max_attempts": 1}');
SELECT pipeline_worker.create_run('nested') AS nest_id \gset
SELECT pipeline_worker.claim_run() = :nest_id AS claimed;
SELECT pipeline_worker.execute_run(:nest_id) AS nested_status;
SELECT status, error FROM pipeline_worker.runs WHERE id = :nest_id;
CREATE FUNCTION public.exec_nested_claim(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN to_jsonb(pipeline_worker.claim_run()); END $$;
SELECT pipeline_worker.create_pipeline('nested_claim', '[{"name": "c", "function": "public.exec_nested_claim"}]', '{"max_attempts": 1}');
SELECT pipeline_worker.create_run('nested_claim') AS nestc_id \gset
SELECT pipeline_worker.claim_run() = :nestc_id AS claimed;
SELECT pipeline_worker.execute_run(:nestc_id) AS nested_claim_status;
SELECT status, error FROM pipeline_worker.runs WHERE id = :nestc_id;
-- wait_run of its own run inside a step: refused at once, not retried (until 2026-12-07 it slept until its timeout,
-- holding its worker); waiting for another run from a step still works
CREATE FUNCTION public.exec_wait(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN to_jsonb(pipeline_worker.wait_run(coalesce((ctx->'input'->>'other')::bigint, (ctx->>'run_id')::bigint), '1 minute')); END $$;
SELECT pipeline_worker.create_pipeline('wait_self', '[{"name": "w", "function": "public.exec_wait"}]', '{"max_attempts": 3}');
SELECT pipeline_worker.create_run('wait_self') AS ws_id \gset
SELECT pipeline_worker.claim_run() = :ws_id AS claimed;
SELECT clock_timestamp() AS ws_start \gset
SELECT pipeline_worker.execute_run(:ws_id) AS wait_self_status;
SELECT clock_timestamp() - :'ws_start'::timestamptz < '30 seconds' AS refused_before_the_timeout;
SELECT status, error FROM pipeline_worker.runs WHERE id = :ws_id;
SELECT count(*) AS attempts FROM pipeline_worker.run_steps WHERE run_id = :ws_id;
SELECT pipeline_worker.create_run('wait_self', jsonb_build_object('other', :flow_id)) AS wo_id \gset
SELECT pipeline_worker.claim_run() = :wo_id AS claimed;
SELECT pipeline_worker.execute_run(:wo_id) AS wait_other_status;
SELECT result FROM pipeline_worker.runs WHERE id = :wo_id;
-- cancel_run of its own run inside a step: the step's effects are rolled back and the run ends cancelled, no retry and
-- no later step (until 2026-12-07 the attempt failed with "run cancelled", was retried, and the run could succeed)
CREATE TABLE public.exec_effects (run_id bigint, attempt int);
CREATE FUNCTION public.exec_cancel_self(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.exec_effects VALUES ((ctx->>'run_id')::bigint, (ctx->>'attempt')::int);
    RETURN to_jsonb(pipeline_worker.cancel_run((ctx->>'run_id')::bigint));
END $$;
SELECT pipeline_worker.create_pipeline('cancel_self', '[{"name": "c", "function": "public.exec_cancel_self"},
    {"name": "after", "function": "public.exec_wait"}]', '{"max_attempts": 3, "retry_delay_ms": 0}');
SELECT pipeline_worker.create_run('cancel_self') AS cs_id \gset
SELECT pipeline_worker.claim_run() = :cs_id AS claimed;
SELECT pipeline_worker.execute_run(:cs_id) AS cancel_self_status;
SELECT status, error FROM pipeline_worker.runs WHERE id = :cs_id;
SELECT position, attempt, status, error FROM pipeline_worker.run_steps WHERE run_id = :cs_id ORDER BY position, attempt;
SELECT count(*) AS effects_kept FROM public.exec_effects;
SELECT count(pipeline_worker.drop_pipeline(p)) AS dropped FROM unnest(ARRAY['sleepy', 'sleepy_to', 'nested', 'nested_claim', 'wait_self', 'cancel_self']) p;

-- nothing left unfinished for the next file
SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');
SELECT pipeline_worker.recover_runs() AS recovered;
