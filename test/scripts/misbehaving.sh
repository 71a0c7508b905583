#!/bin/bash
# Misbehaving steps and run control through the background workers: COMMIT inside a step, a function dropped or
# re-created with another signature after definition, deadlocks between runs, multi-MB inputs/outputs, timeouts,
# cancelling a running run, retry_run resuming at the failed step, a run's outcome refused as its batch commits. The
# workers must survive all of it.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT
PW_WORKERS=3 pw_cluster_start misbehaving
pw_psql <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE fx (run_id bigint, step text);
CREATE TABLE flags (name text PRIMARY KEY, on_ boolean);
INSERT INTO flags VALUES ('fail_b', true);
CREATE TABLE acct (id int PRIMARY KEY, n int);
INSERT INTO acct VALUES (1, 0), (2, 0);
CREATE FUNCTION committer(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN COMMIT; RETURN '1'; END $$;
CREATE FUNCTION doomed(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '1'::jsonb $$;
CREATE FUNCTION retyped(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '1'::jsonb $$;
-- locks acct rows in the order given by the input, with a pause between: two such runs deadlock
CREATE FUNCTION locker(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    UPDATE acct SET n = n + 1 WHERE id = (ctx->'input'->>'first')::int;
    PERFORM pg_sleep(0.3);
    UPDATE acct SET n = n + 1 WHERE id = (ctx->'input'->>'second')::int;
    RETURN jsonb_build_object('attempt', ctx->'attempt');
END $$;
CREATE FUNCTION big(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('echo', ctx->'prev'->'blob', 'more', repeat('y', 3000000)) $$;
CREATE FUNCTION sleeper(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fx VALUES ((ctx->>'run_id')::bigint, ctx->>'step');
    PERFORM pg_sleep((ctx->'input'->>'sleep')::float);
    RETURN '{}';
END $$;
CREATE FUNCTION rec(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fx VALUES ((ctx->>'run_id')::bigint, ctx->>'step');
    IF ctx->>'step' = 'b' AND (SELECT on_ FROM flags WHERE name = 'fail_b') THEN
        RAISE EXCEPTION 'b is not ready';
    END IF;
    RETURN jsonb_build_object('step', ctx->'step');
END $$;
SELECT pipeline_worker.create_pipeline('commit', '[{"name": "c", "function": "committer"}]');
SELECT pipeline_worker.create_pipeline('doomed', '[{"name": "d", "function": "doomed"}]');
SELECT pipeline_worker.create_pipeline('retyped', '[{"name": "r", "function": "retyped"}]');
SELECT pipeline_worker.create_pipeline('locks', '[{"name": "l", "function": "locker", "max_attempts": 3, "retry_delay_ms": 10}]');
SELECT pipeline_worker.create_pipeline('big', '[{"name": "b", "function": "big"}]');
SELECT pipeline_worker.create_pipeline('slow', '[{"name": "s1", "function": "sleeper"}, {"name": "s2", "function": "sleeper"}]');
SELECT pipeline_worker.create_pipeline('timeout', '[{"name": "t", "function": "sleeper", "timeout_ms": 200}]');
SELECT pipeline_worker.create_pipeline('resume', '[{"name": "a", "function": "rec"}, {"name": "b", "function": "rec"}, {"name": "c", "function": "rec"}]');
-- session-level state: an advisory lock that would outlive the step
CREATE FUNCTION leaver(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock(4242);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('leaver', '[{"name": "l", "function": "leaver"}]');
DROP FUNCTION doomed(jsonb);
DROP FUNCTION retyped(jsonb);
CREATE FUNCTION retyped(ctx jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
SQL
pids_before=$(pw_worker_pids)

r=$(pw_run commit)
pw_check "COMMIT in a step: run failed" "failed" "$(pw_wait_run "$r")"
pw_check_sql "COMMIT in a step: clear error" "t" "SELECT error LIKE '%invalid transaction termination%' FROM pipeline_worker.runs WHERE id = $r"

r=$(pw_run doomed)
pw_check "dropped function: run failed" "failed" "$(pw_wait_run "$r")"
pw_check_sql "dropped function: clear error" "step \"d\" failed: function public.doomed(jsonb) does not exist" \
    "SELECT error FROM pipeline_worker.runs WHERE id = $r"

r=$(pw_run retyped)
pw_check "re-created with another signature: run failed" "failed" "$(pw_wait_run "$r")"
pw_check_sql "re-created with another signature: clear error" "t" \
    "SELECT error LIKE '%no longer has the signature (jsonb) RETURNS jsonb%' FROM pipeline_worker.runs WHERE id = $r"

# A function renamed after the pipeline was defined is looked up by name again in every worker: the name's new
# function runs, and none once the name is gone -- not the renamed one's body, kept by its OID (until 2026-12-08 a
# worker that had run it went on running it under the old name; acceptance walk-through)
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.renamed(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RETURN '{"ver": 1}'; END $$;
SELECT pipeline_worker.create_pipeline('renamed', '[{"name": "r", "function": "renamed"}]');
SQL
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('renamed')::text, ' ') FROM generate_series(1, 8)")
for r in $ids; do pw_wait_run "$r" >/dev/null; done
pw_check_sql "renamed function: first its own body (every worker has run it)" '8|{"ver": 1}' \
    "SELECT count(*) || '|' || min(result::text) FROM pipeline_worker.runs WHERE pipeline = 'renamed'"
pw_psql >/dev/null <<'SQL'
CREATE SCHEMA moved;
ALTER FUNCTION public.renamed(jsonb) RENAME TO renamed_old;
CREATE FUNCTION public.renamed(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RETURN '{"ver": 2}'; END $$;
SQL
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('renamed')::text, ' ') FROM generate_series(1, 8)")
for r in $ids; do pw_wait_run "$r" >/dev/null; done
pw_check_sql "renamed function, another one created under the name: every run gets the new one" '8|{"ver": 2}|{"ver": 2}' \
    "SELECT count(*) || '|' || min(result::text) || '|' || max(result::text) FROM pipeline_worker.runs
      WHERE pipeline = 'renamed' AND id >= ${ids%% *}"
pw_psql >/dev/null <<'SQL'
ALTER FUNCTION public.renamed_old(jsonb) SET SCHEMA moved;
DROP FUNCTION public.renamed(jsonb);
SQL
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('renamed')::text, ' ') FROM generate_series(1, 8)")
for r in $ids; do pw_wait_run "$r" >/dev/null; done
pw_check_sql "the name gone (the old function moved away): every run fails saying so" "8|0" \
    "SELECT count(*) FILTER (WHERE status = 'failed' AND error = 'step \"r\" failed: function public.renamed(jsonb) does not exist')
            || '|' || count(*) FILTER (WHERE status <> 'failed')
       FROM pipeline_worker.runs WHERE pipeline = 'renamed' AND id >= ${ids%% *}"

r1=$(pw_run locks '{"first": 1, "second": 2}')
r2=$(pw_run locks '{"first": 2, "second": 1}')
pw_check "deadlock: both runs succeed (the victim's attempt is retried)" "succeeded succeeded" "$(pw_wait_run "$r1") $(pw_wait_run "$r2")"
pw_check_sql "deadlock: the victim's failed attempt says so" "1" \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id IN ($r1, $r2) AND status = 'failed' AND error LIKE 'deadlock detected%'"
pw_check_sql "deadlock: effects of the victim's failed attempt rolled back" "2 2" "SELECT string_agg(n::text, ' ' ORDER BY id) FROM acct"

r=$(pw_psql -c "SELECT pipeline_worker.create_run('big', jsonb_build_object('blob', repeat('x', 5000000)))")
pw_check "5 MB input, 8 MB output: succeeded" "succeeded" "$(pw_wait_run "$r" 60)"
pw_check_sql "5 MB input, 8 MB output: intact" "5000000 3000000" \
    "SELECT length(result->>'echo') || ' ' || length(result->>'more') FROM pipeline_worker.runs WHERE id = $r"

r=$(pw_run timeout '{"sleep": 5}')
pw_check "timeout: run failed" "failed" "$(pw_wait_run "$r")"
pw_check_sql "timeout: error names it" "step \"t\" failed: step timed out after 200 ms" "SELECT error FROM pipeline_worker.runs WHERE id = $r"
pw_check_sql "timeout: took well under the step's sleep" "t" "SELECT finished_at - started_at < interval '3 s' FROM pipeline_worker.runs WHERE id = $r"

r=$(pw_run slow '{"sleep": 10}')
pw_wait_sql running 5 "SELECT status FROM pipeline_worker.runs WHERE id = $r" >/dev/null
pw_check_sql "a run executing a slow step shows as running, claimed by a worker" "running true" \
    "SELECT status || ' ' || (worker_pid IN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'))
       FROM pipeline_worker.runs WHERE id = $r"
sleep 0.1
start=$(pw_now)
pw_check_sql "cancel running run: cancel_run returns true" "t" "SELECT pipeline_worker.cancel_run($r)"
pw_check "cancel running run: cancelled" "cancelled" "$(pw_wait_run "$r" 5)"
pw_lt "$(pw_elapsed "$start")" 3 && pw_ok "cancel running run: prompt" || pw_fail "cancel running run: took $(pw_elapsed "$start") s"
sleep 0.5
pw_check_sql "cancel running run: the interrupted step was rolled back, the second never started" "0" \
    "SELECT count(*) FROM fx WHERE run_id = $r"
pw_check_sql "cancel running run: the interrupted attempt is recorded" "s1:failed:cancelled" \
    "SELECT string_agg(name || ':' || status || ':' || error, ',') FROM pipeline_worker.run_steps WHERE run_id = $r"
pw_check_sql "cancel running run: no step row for the second step" "0" \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r AND position = 2"
pw_check_sql "cancel finished run: false" "f" "SELECT pipeline_worker.cancel_run($r)"

r=$(pw_run resume)
pw_check "retry_run: run failed at step b" "failed" "$(pw_wait_run "$r")"
pw_psql -c "UPDATE flags SET on_ = false"
pw_check_sql "retry_run: accepted" "t" "SELECT pipeline_worker.retry_run($r)"
pw_check "retry_run: succeeded" "succeeded" "$(pw_wait_run "$r")"
pw_check_sql "retry_run: a not re-run; b's failed attempt rolled back; c once" "a b c" \
    "SELECT string_agg(step, ' ' ORDER BY step) FROM fx WHERE run_id = $r"
pw_check_sql "retry_run: attempts recorded" "a:1:succeeded b:1:failed b:2:succeeded c:1:succeeded" \
    "SELECT string_agg(name || ':' || attempt || ':' || status, ' ' ORDER BY position, attempt) FROM pipeline_worker.run_steps WHERE run_id = $r"
pw_check_sql "retry_run: a succeeded run is not retried" "f" "SELECT pipeline_worker.retry_run($r)"

# the submitting role is dropped before the run executes: it fails, it never runs under another identity
pw_psql -c "CREATE ROLE gone_role" -c "GRANT USAGE ON SCHEMA public TO gone_role" \
        -c "SELECT pipeline_worker.grant_pipeline('doomed', 'gone_role')" >/dev/null
pw_psql -c "CREATE FUNCTION public.doomed(ctx jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT '1'::jsonb \$\$" >/dev/null
r=$(pw_psql <<'SQL'
BEGIN;
SET ROLE gone_role;
SELECT pipeline_worker.create_run('doomed');
RESET ROLE;
REVOKE USAGE ON SCHEMA public FROM gone_role;
DROP ROLE gone_role;
COMMIT;
SQL
)
pw_check "dropped submitter: run failed" "failed" "$(pw_wait_run "$r")"
pw_check_sql "dropped submitter: clear error, no step ran" "true 0" \
    "SELECT (error LIKE 'the role that submitted this run (OID %) no longer exists') || ' ' ||
            (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $r) FROM pipeline_worker.runs WHERE id = $r"

# a step's session-level advisory lock does not outlive it in the worker (the next run there may be another role's)
r=$(pw_run leaver)
pw_check "advisory lock in a step: run succeeded" succeeded "$(pw_wait_run "$r")"
pw_check_sql "advisory lock in a step: released after the step (no worker holds it, another session gets it)" "0 true" \
    "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242) || ' ' || pg_try_advisory_lock(4242)"

# The bookkeeping fails as the batch commits (a trigger rejects the run's outcome): the run is failed with that error,
# not left "running" under its live worker (which recovery never takes back) nor put back and retried forever
pw_psql >/dev/null <<'SQL' || pw_die "trigger setup failed"
SELECT pipeline_worker.create_pipeline('quick', '[{"name": "a", "function": "rec"}]');
CREATE FUNCTION refuse_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'succeeded' AND NEW.input->>'refuse' = 'yes' THEN RAISE EXCEPTION 'outcome refused'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_outcome BEFORE UPDATE ON pipeline_worker.runs FOR EACH ROW EXECUTE FUNCTION refuse_outcome();
SQL
r=$(pw_run quick '{"refuse": "yes"}')
r2=$(pw_run quick '{"refuse": "no"}')
pw_check "outcome refused at commit: the run failed, the other succeeded" "failed succeeded" \
    "$(pw_wait_run "$r" 20) $(pw_wait_run "$r2" 20)"
pw_check_sql "outcome refused at commit: the error says why; the step's effect rolled back" "true 0" \
    "SELECT (error LIKE 'internal error: outcome refused%') || ' ' || (SELECT count(*) FROM fx WHERE run_id = $r)
       FROM pipeline_worker.runs WHERE id = $r"
pw_psql -c "DROP TRIGGER refuse_outcome ON pipeline_worker.runs" >/dev/null
pw_check_sql "outcome refused at commit: no run left running" "0" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'running'"

# A step that terminates its own worker gets an error, the worker stays. Also when the signal is the step's last act
# (its RETURN expression): the interrupt is taken before the step's subtransaction is released. (Until 2026-12-05
# it stayed pending past the step: the next statement of the batch took it, and the run failed with "internal
# error: canceling statement due to user request" after its step had succeeded.)
pw_psql >/dev/null <<'SQL' || pw_fail "self-termination fixtures"
CREATE FUNCTION self_term_mid(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_terminate_backend(pg_backend_pid());
    INSERT INTO fx VALUES ((ctx->>'run_id')::bigint, 'mid');
    RETURN '{}';
END $$;
CREATE FUNCTION self_term_last(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fx VALUES ((ctx->>'run_id')::bigint, 'last');
    RETURN jsonb_build_object('t', pg_terminate_backend(pg_backend_pid()));
END $$;
SELECT pipeline_worker.create_pipeline('self_mid', '[{"name": "m", "function": "self_term_mid"}, {"name": "n", "function": "rec"}]');
SELECT pipeline_worker.create_pipeline('self_last', '[{"name": "l", "function": "self_term_last"}, {"name": "n", "function": "rec"}]');
SQL
for p in self_mid self_last; do
    r=$(pw_run $p)
    pw_check "$p: a step terminating its own worker fails its run" failed "$(pw_wait_run "$r")"
    pw_check_sql "$p: ... with the reason, at the step, its effects rolled back" "true|0" \
        "SELECT (error LIKE '%the step tried to terminate its own worker%') || '|'
                || (SELECT count(*) FROM fx WHERE run_id = $r) FROM pipeline_worker.runs WHERE id = $r"
    r2=$(pw_run quick '{"refuse": "no"}')
    pw_check "$p: the next run succeeds" succeeded "$(pw_wait_run "$r2")"
done

pw_check "workers survived everything (same pids)" "$pids_before" "$(pw_worker_pids)"
pw_finish
