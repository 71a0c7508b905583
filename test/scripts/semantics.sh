#!/bin/bash
# Run semantics inside the background workers: steps run as the submitting role (and cannot change
# role), cancel_run() of a running run, retry_run(), step retries with back-off, step timeouts.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up semantics 3 20
pw_load_fixtures
pids=$(pw_worker_pids)

pw_psql >/dev/null <<'SQL'
GRANT SELECT, INSERT ON public.fx TO PUBLIC;
CREATE ROLE regress_alice LOGIN;
CREATE ROLE regress_bob LOGIN;
CREATE FUNCTION public.whoami(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    RETURN jsonb_build_object('current_user', current_user);
END $$;
CREATE FUNCTION public.read_authid(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT to_jsonb((SELECT count(*) FROM pg_catalog.pg_authid))
$$;
CREATE FUNCTION public.reset_role(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'RESET ROLE';
    RETURN to_jsonb(current_user::text);
END $$;
CREATE FUNCTION public.session_auth(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'SET SESSION AUTHORIZATION postgres';
    RETURN to_jsonb(current_user::text);
END $$;
SQL

# ---------------------------------------------------------------- steps run as the submitter
alice() { PGUSER=regress_alice pw_psql "$@"; }
bob() { PGUSER=regress_bob pw_psql "$@"; }
alice -c "SELECT pipeline_worker.create_pipeline('alice_who', '[{\"name\": \"who\", \"function\": \"public.whoami\"}, {\"name\": \"authid\", \"function\": \"public.read_authid\"}]')" >/dev/null
alice -c "SELECT pipeline_worker.create_pipeline('alice_esc1', '[{\"name\": \"reset\", \"function\": \"public.reset_role\"}]')" >/dev/null
alice -c "SELECT pipeline_worker.create_pipeline('alice_esc2', '[{\"name\": \"sessauth\", \"function\": \"public.session_auth\"}]')" >/dev/null
alice -c "SELECT pipeline_worker.grant_pipeline('alice_who', 'regress_bob')" >/dev/null
a=$(alice -c "SELECT pipeline_worker.create_run('alice_who')")
b=$(bob -c "SELECT pipeline_worker.create_run('alice_who')")
p=$(pw_psql -c "SELECT pipeline_worker.create_run('alice_who')")
e1=$(alice -c "SELECT pipeline_worker.create_run('alice_esc1')")
e2=$(alice -c "SELECT pipeline_worker.create_run('alice_esc2')")
pw_wait_all_finished 20
pw_check_sql "alice's run: step 1 ran as regress_alice, step 2 denied pg_authid" \
    'failed|{"current_user": "regress_alice"}|regress_alice|t' \
    "SELECT r.status, s.output, fx.usr, r.error LIKE '%authid%permission denied for table pg_authid%'
       FROM pipeline_worker.runs r JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.position = 1
       JOIN fx ON fx.run_id = r.id WHERE r.id = $a"
pw_check_sql "bob's run on alice's pipeline ran as regress_bob" \
    'failed|{"current_user": "regress_bob"}|regress_bob' \
    "SELECT r.status, s.output, fx.usr FROM pipeline_worker.runs r
       JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.position = 1
       JOIN fx ON fx.run_id = r.id WHERE r.id = $b"
pw_check_sql "the superuser's run ran as postgres and could read pg_authid" \
    'succeeded|postgres' \
    "SELECT r.status, fx.usr FROM pipeline_worker.runs r JOIN fx ON fx.run_id = r.id WHERE r.id = $p"
pw_check_sql "a step cannot RESET ROLE in a worker" 'failed|t' \
    "SELECT status, error LIKE '%cannot set parameter \"role\"%' FROM pipeline_worker.runs WHERE id = $e1"
pw_check_sql "a step cannot SET SESSION AUTHORIZATION in a worker" 'failed|t' \
    "SELECT status, error LIKE '%cannot set parameter \"session_authorization\"%' FROM pipeline_worker.runs WHERE id = $e2"
pw_check "same workers after the role tests" "$pids" "$(pw_worker_pids)"

# ---------------------------------------------------------------- cancel_run of a running run
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 1, \"sleep\": 30}')")
pw_wait_sleeping_worker 10 >/dev/null
start=$(pw_now)
pw_check_sql "cancel_run of a running run returns true" t "SELECT pipeline_worker.cancel_run($id)"
st=$(pw_psql -c "SELECT pipeline_worker.wait_run($id, '10 seconds')")
t=$(pw_elapsed "$start")
pw_check "the running run is cancelled" cancelled "$st"
if pw_lt "$t" 3; then pw_ok "cancelled $t s after cancel_run (step was sleeping 30 s)"; else pw_fail "cancel took $t s"; fi
pw_check_sql "the cancelled step's effects were rolled back, later steps never ran" 0 \
    "SELECT count(*) FROM fx WHERE run_id = $id"
sleep 1
pw_check_sql "the run stays cancelled" cancelled "SELECT status FROM pipeline_worker.runs WHERE id = $id"
pw_check "same workers after cancelling a running run" "$pids" "$(pw_worker_pids)"
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p3', '{\"n\": 2}')")
pw_check_sql "the workers still execute runs" succeeded "SELECT pipeline_worker.wait_run($id, '10 seconds')"

# cancels at random moments of 3-step runs: every run ends cancelled or succeeded, never stuck,
# each executed step left exactly one side effect, no worker dies
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('p3', jsonb_build_object('n', i, 'sleep', 0.15, 'tag', 'cx'))::text, ' ')
                    FROM generate_series(1, 12) i")
said_true=
said_false=
for i in $ids; do
    sleep 0.$((RANDOM % 3))
    if [ "$(pw_psql -c "SELECT pipeline_worker.cancel_run($i)")" = t ]; then said_true="$said_true,$i"
    else said_false="$said_false,$i"; fi
done
pw_wait_all_finished 30
pw_check_sql "runs for which cancel_run() returned true ended cancelled" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id = ANY ('{0$said_true}'::bigint[]) AND status <> 'cancelled'"
pw_check_sql "runs for which cancel_run() returned false ended succeeded" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id = ANY ('{0$said_false}'::bigint[]) AND status <> 'succeeded'"
pw_check_sql "12 randomly cancelled runs all ended cancelled or succeeded" 12 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'cx' AND status IN ('cancelled', 'succeeded')"
pw_check_sql "succeeded ones have their exact result and 3 effects" 0 \
    "SELECT count(*) FROM pipeline_worker.runs r WHERE input->>'tag' = 'cx' AND status = 'succeeded'
        AND (result <> jsonb_build_object('n', input->'n', 'acc', 6 * (input->>'n')::int, 'tag', 'cx', 'step', 's3', 'prev_step', 's2')
             OR (SELECT count(*) FROM fx WHERE fx.run_id = r.id) <> 3)"
pw_check_sql "cancelled ones: effects only of steps recorded as succeeded" 0 \
    "SELECT count(*) FROM pipeline_worker.runs r WHERE input->>'tag' = 'cx' AND status = 'cancelled'
        AND (SELECT count(*) FROM fx WHERE fx.run_id = r.id)
            <> (SELECT count(*) FROM pipeline_worker.run_steps s WHERE s.run_id = r.id AND s.status = 'succeeded')"
pw_info "random cancels: $(pw_psql -c "SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM pipeline_worker.runs WHERE input->>'tag' = 'cx' GROUP BY 1 ORDER BY 1) s")"
pw_check "same workers after random cancels" "$pids" "$(pw_worker_pids)"

# cancelling one run must not disturb another: A and B are submitted together, B is cancelled
# while A's step is executing (if one worker claimed both, B waits behind A in that worker).
# Fast runs first, so that workers that size their claim batches by recent run times batch now -- every worker:
# one claimed at a time, so that each executes its share. (With batches, one worker could get a handful of the fast
# runs and keep its average near the 150 ms runs above: a batch of exactly 2 takes A and B together and releases
# nothing, being full -- once in CI, 2026-12-04.) A batch drained the queue with idle workers left: B goes to one.
pw_set_conf pipeline_worker.claim_batch 1 >/dev/null || pw_fail "claim_batch not set"
last=$(pw_psql -c "SELECT max(id) FROM pipeline_worker.runs")
pw_psql -c "SELECT count(pipeline_worker.create_run('p1', jsonb_build_object('n', i))) FROM generate_series(1, 150) i" >/dev/null
pw_wait_all_finished 20
pw_check_sql "each worker executed some of the fast runs" 3 \
    "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE id > $last"
pw_reset_conf pipeline_worker.claim_batch
start=$(pw_now)
ids=$(pw_create_runs p1 '{"n": 1, "sleep": 2, "tag": "keep"}' '{"n": 2, "sleep": 2, "tag": "drop"}')
a=$(echo "$ids" | sed -n 1p); b=$(echo "$ids" | sed -n 2p)
sleep 0.5
pw_check_sql "cancel_run(B)" t "SELECT pipeline_worker.cancel_run($b)"
t=$(pw_elapsed "$start")
if pw_lt "$t" 1.5; then pw_ok "cancel_run(B) returned at once ($t s after submitting)"
else pw_fail "cancel_run(B) returned $t s after submitting (blocked behind A's step?)"; fi
pw_check_sql "B is cancelled" cancelled "SELECT pipeline_worker.wait_run($b, '10 seconds')"
pw_check_sql "A, submitted with B, is not disturbed by B's cancel" "succeeded|" \
    "SELECT pipeline_worker.wait_run($a, '10 seconds'), (SELECT error FROM pipeline_worker.runs WHERE id = $a)"

# ---------------------------------------------------------------- retry_run of a failed run
pw_psql >/dev/null <<'SQL'
CREATE TABLE public.fix (ok boolean);
CREATE FUNCTION public.needs_fix(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    IF NOT EXISTS (SELECT 1 FROM public.fix) THEN RAISE EXCEPTION 'not fixed yet'; END IF;
    RETURN jsonb_build_object('acc', (ctx->'prev'->>'acc')::int, 'fixed', true);
END $$;
SELECT pipeline_worker.create_pipeline('fixable', '[{"name": "s1", "function": "t_step"},
                                                    {"name": "s2", "function": "needs_fix"},
                                                    {"name": "s3", "function": "t_step"}]');
SQL
id=$(pw_psql -c "SELECT pipeline_worker.create_run('fixable', '{\"n\": 4}')")
pw_check_sql "fixable run fails first" failed "SELECT pipeline_worker.wait_run($id, '10 seconds')"
pw_psql -c "INSERT INTO public.fix VALUES (true)"
pw_check_sql "retry_run of the failed run" t "SELECT pipeline_worker.retry_run($id)"
pw_check_sql "the retried run succeeds in a worker" succeeded "SELECT pipeline_worker.wait_run($id, '10 seconds')"
pw_check_sql "retried run resumed at the failed step: each step's effects exactly once" "s1 s2 s3" \
    "SELECT string_agg(step, ' ' ORDER BY step) FROM fx WHERE run_id = $id"
pw_check_sql "retried run result" '{"n": 4, "acc": 16, "tag": null, "step": "s3", "prev_step": null}' \
    "SELECT result FROM pipeline_worker.runs WHERE id = $id"

# ---------------------------------------------------------------- step retries with back-off
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.flaky(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step' || '#' || (ctx->>'attempt'), ctx);
    IF (ctx->>'attempt')::int < 3 THEN RAISE EXCEPTION 'flaky attempt %', ctx->>'attempt'; END IF;
    RETURN jsonb_build_object('attempt', ctx->'attempt');
END $$;
SELECT pipeline_worker.create_pipeline('flaky', '[{"name": "f", "function": "flaky", "max_attempts": 3, "retry_delay_ms": 300}]');
SQL
start=$(pw_now)
id=$(pw_psql -c "SELECT pipeline_worker.create_run('flaky')")
st=$(pw_psql -c "SELECT pipeline_worker.wait_run($id, '15 seconds')")
t=$(pw_elapsed "$start")
pw_check "flaky step succeeds on attempt 3" succeeded "$st"
pw_check_sql "3 attempts recorded (failed, failed, succeeded)" "1:failed 2:failed 3:succeeded" \
    "SELECT string_agg(attempt || ':' || status, ' ' ORDER BY attempt) FROM pipeline_worker.run_steps WHERE run_id = $id"
pw_check_sql "only the successful attempt left effects" "f#3" "SELECT string_agg(step, ' ') FROM fx WHERE run_id = $id"
pw_check_sql "back-off respected: >= 0.2 s before attempt 2, >= 0.4 s before attempt 3" t \
    "SELECT bool_and(s2.started_at - s1.finished_at >= interval '0.2 s' * (s1.attempt))
       FROM pipeline_worker.run_steps s1 JOIN pipeline_worker.run_steps s2
         ON s2.run_id = s1.run_id AND s2.position = s1.position AND s2.attempt = s1.attempt + 1
      WHERE s1.run_id = $id"
pw_check_sql "retries are not delayed much beyond the back-off (< 1.5 s extra each)" t \
    "SELECT bool_and(s2.started_at - s1.finished_at < interval '0.375 s' * 2 ^ (s1.attempt - 1) + interval '1.5 s')
       FROM pipeline_worker.run_steps s1 JOIN pipeline_worker.run_steps s2
         ON s2.run_id = s1.run_id AND s2.position = s1.position AND s2.attempt = s1.attempt + 1
      WHERE s1.run_id = $id"
pw_info "flaky run took $t s"

# ---------------------------------------------------------------- step timeout in a worker
pw_psql -c "SELECT pipeline_worker.create_pipeline('slow', '[{\"name\": \"nap\", \"function\": \"t_step\", \"timeout_ms\": 300}]')" >/dev/null
start=$(pw_now)
id=$(pw_psql -c "SELECT pipeline_worker.create_run('slow', '{\"n\": 1, \"sleep\": 20}')")
st=$(pw_psql -c "SELECT pipeline_worker.wait_run($id, '15 seconds')")
t=$(pw_elapsed "$start")
pw_check "a step over its timeout_ms fails" failed "$st"
if pw_lt "$t" 3; then pw_ok "timed out after $t s (timeout_ms 300)"; else pw_fail "timeout took $t s"; fi
pw_check_sql "error says the step timed out" t \
    "SELECT error LIKE '%nap%timed out%' FROM pipeline_worker.runs WHERE id = $id"
pw_check_sql "timed-out step left no effects" 0 "SELECT count(*) FROM fx WHERE run_id = $id"
pw_check "same workers after timeouts" "$pids" "$(pw_worker_pids)"
id=$(pw_psql -c "SELECT pipeline_worker.create_run('p1', '{\"n\": 3, \"sleep\": 0.5}')")
pw_check_sql "no timeout left behind in the worker: a 0.5 s step of another pipeline succeeds" succeeded \
    "SELECT pipeline_worker.wait_run($id, '10 seconds')"

# ---------------------------------------------------------------- a step that changes its own run's row
# The outcome is written to the row version the claim locked (found by ctid), else by id: a step of a superuser's
# run that updates its run's row (a new version, in the worker's own transaction) must not leave the run pending
# (claimed again later: its steps would run twice). 200 runs, batched.
pw_psql >/dev/null <<'SQL'
CREATE TABLE public.touch_log (run_id bigint);
CREATE FUNCTION public.touch_own_row(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.touch_log VALUES ((ctx->>'run_id')::bigint);
    IF ((ctx->>'run_id')::bigint % 2 = 0) THEN
        UPDATE pipeline_worker.runs SET metadata = metadata || '{"touched": true}' WHERE id = (ctx->>'run_id')::bigint;
    END IF;
    RETURN '{"ok": true}';
END $$;
SELECT pipeline_worker.create_pipeline('touch', '[{"name": "t", "function": "public.touch_own_row"}]');
SELECT count(*) FROM pipeline_worker.create_runs('touch', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 200)));
SQL
pw_wait_sql 200 20 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'touch' AND status = 'succeeded'" 0.2 >/dev/null
pw_check_sql "runs whose step updated their own row finished (succeeded, with their result)" "200|100" \
    "SELECT count(*) FILTER (WHERE status = 'succeeded' AND result = '{\"ok\": true}') || '|'
            || count(*) FILTER (WHERE metadata ? 'touched') FROM pipeline_worker.runs WHERE pipeline = 'touch'"
sleep 1
pw_check_sql "... each step once" "200|0" \
    "SELECT count(DISTINCT run_id) || '|' || (count(*) - count(DISTINCT run_id)) FROM public.touch_log"
# ---------------------------------------------------------------- writes without a statement yield to triggers
# The workers write step rows and outcomes without a statement (store/direct_writes.cpp) only where a statement would
# do nothing more. Row triggers the owner puts on run_steps (INSERT) and runs (UPDATE) make the statements write, and
# see every row: two step rows and the outcome of each of 50 two-step runs.
pw_psql >/dev/null <<'SQL' || pw_fail "trigger fixtures"
CREATE TABLE public.trig_log (tbl text, run_id bigint, status text);
CREATE FUNCTION public.log_step_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.trig_log VALUES ('run_steps', NEW.run_id, NEW.status); RETURN NEW; END $$;
CREATE FUNCTION public.log_run_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.trig_log VALUES ('runs', NEW.id, NEW.status); RETURN NEW; END $$;
CREATE FUNCTION public.trig_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": 1}'::jsonb $$;
SELECT pipeline_worker.create_pipeline('trig2', '[{"name": "a", "function": "public.trig_step"},
                                                  {"name": "b", "function": "public.trig_step"}]');
CREATE TRIGGER log_step_rows AFTER INSERT ON pipeline_worker.run_steps FOR EACH ROW EXECUTE FUNCTION public.log_step_row();
CREATE TRIGGER log_run_rows BEFORE UPDATE ON pipeline_worker.runs FOR EACH ROW EXECUTE FUNCTION public.log_run_row();
SELECT count(*) FROM pipeline_worker.create_runs('trig2', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 50)));
SQL
pw_wait_sql 50 20 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'trig2' AND status = 'succeeded'" 0.2 >/dev/null
pw_check_sql "with triggers on the run tables: every step row and every outcome went through them" "100|50" \
    "SELECT count(*) FILTER (WHERE tbl = 'run_steps' AND status = 'succeeded') || '|'
            || count(DISTINCT run_id) FILTER (WHERE tbl = 'runs' AND status = 'succeeded')
       FROM public.trig_log WHERE run_id IN (SELECT id FROM pipeline_worker.runs WHERE pipeline = 'trig2')"
pw_psql -c "DROP TRIGGER log_step_rows ON pipeline_worker.run_steps" -c "DROP TRIGGER log_run_rows ON pipeline_worker.runs" \
    >/dev/null
id=$(pw_psql -c "SELECT pipeline_worker.create_run('trig2', '{}')")
pw_check_sql "... and without them, runs go on as before" succeeded "SELECT pipeline_worker.wait_run($id, '20 s')"
# A column the workers do not fill gets its default (the statement writes when the table has one).
pw_psql -c "ALTER TABLE pipeline_worker.run_steps ADD COLUMN note text DEFAULT 'by default'" >/dev/null
id=$(pw_psql -c "SELECT pipeline_worker.create_run('trig2', '{}')")
pw_check_sql "a column added to run_steps gets its default in the workers' step rows" "succeeded|2" \
    "SELECT pipeline_worker.wait_run($id, '20 s') || '|'
            || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $id AND note = 'by default')"
pw_psql -c "ALTER TABLE pipeline_worker.run_steps DROP COLUMN note" >/dev/null
# A column of another type than the workers write gets a converted value (the statement converts; a value written
# as is would be read as the other type). run_steps.finished_at as timestamp without time zone, the server's time
# zone 5 h 30 min from UTC: a timestamptz stored as is reads as UTC wall-clock time, 5 h 30 min off.
pw_set_conf TimeZone Asia/Kolkata || pw_fail "set timezone"
pw_psql -c "ALTER TABLE pipeline_worker.run_steps ALTER COLUMN finished_at TYPE timestamp" >/dev/null
id=$(pw_psql -c "SELECT pipeline_worker.create_run('trig2', '{}')")
pw_check_sql "a run_steps column changed to another type gets the converted value in the workers' step rows" "succeeded|2" \
    "SELECT pipeline_worker.wait_run($id, '20 s') || '|'
            || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $id
                   AND abs(extract(epoch FROM finished_at - localtimestamp)) < 600)"
pw_psql -c "ALTER TABLE pipeline_worker.run_steps ALTER COLUMN finished_at TYPE timestamptz" >/dev/null
pw_reset_conf TimeZone
# ... and so does a column of the same type with a modifier: timestamptz(0) holds whole seconds.
pw_psql -c "ALTER TABLE pipeline_worker.run_steps ALTER COLUMN finished_at TYPE timestamptz(0)" >/dev/null
id=$(pw_psql -c "SELECT pipeline_worker.create_run('trig2', '{}')")
pw_check_sql "a run_steps column given a type modifier (timestamptz(0)) gets whole seconds in the workers' step rows" \
    "succeeded|2" "SELECT pipeline_worker.wait_run($id, '20 s') || '|'
                          || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $id
                                 AND finished_at = date_trunc('second', finished_at))"
pw_psql -c "ALTER TABLE pipeline_worker.run_steps ALTER COLUMN finished_at TYPE timestamptz" >/dev/null
# ---------------------------------------------------------------- what the writes keep follows the tables
# The writes without a statement keep each table's index descriptions and CHECK constraints' expressions from batch
# to batch (pg/kept_writes.cpp). A CHECK constraint's function replaced (an inlined SQL function: the kept
# expression holds its body) is called as it is now; indexes created, dropped and created again with another
# predicate, and one created concurrently under load, get every entry (amcheck, heapallindexed).
pw_psql >/dev/null <<'SQL' || pw_fail "kept writes fixtures"
CREATE SEQUENCE public.kw_calls;
CREATE FUNCTION public.kw_ok(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
ALTER TABLE pipeline_worker.run_steps ADD CONSTRAINT kw_check CHECK (public.kw_ok(attempt));
SELECT count(*) FROM pipeline_worker.create_runs('trig2', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 30)));
SQL
pw_wait_all_finished 20
pw_psql >/dev/null <<'SQL' || pw_fail "kw_ok replaced"
CREATE OR REPLACE FUNCTION public.kw_ok(int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN PERFORM nextval('public.kw_calls'); RETURN true; END $$;
SELECT count(*) FROM pipeline_worker.create_runs('trig2', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 20)));
SQL
pw_wait_all_finished 20
pw_check_sql "a CHECK constraint's function replaced between batches: the new one checks each of 40 step rows" t \
    "SELECT last_value >= 40 FROM public.kw_calls"
pw_psql -c "ALTER TABLE pipeline_worker.run_steps DROP CONSTRAINT kw_check" >/dev/null
submit20="SELECT count(*) FROM pipeline_worker.create_runs('trig2', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 20)))"
pw_psql -c "CREATE INDEX kw_gone ON pipeline_worker.run_steps (run_id) WHERE status = 'succeeded'" \
        -c "CREATE INDEX kw_idx ON pipeline_worker.run_steps (position, run_id) WHERE attempt = 1" -c "$submit20" >/dev/null
pw_wait_all_finished 20
# (the index before kw_idx in the table's index list dropped: kw_idx takes its place)
pw_psql -c "DROP INDEX pipeline_worker.kw_gone" -c "$submit20" >/dev/null
pw_wait_all_finished 20
pw_psql -c "DROP INDEX pipeline_worker.kw_idx" \
        -c "CREATE INDEX kw_idx ON pipeline_worker.run_steps (run_id, position) WHERE status = 'succeeded'" -c "$submit20" >/dev/null
pw_wait_all_finished 20
( for i in $(seq 1 20); do
    pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('trig2', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 50)))" >/dev/null
    sleep 0.05
  done ) &
loader=$!
sleep 0.2
pw_psql -c "CREATE INDEX CONCURRENTLY kw_runs_idx ON pipeline_worker.runs (pipeline_id, id) WHERE status = 'succeeded'" \
    >/dev/null || pw_fail "CREATE INDEX CONCURRENTLY under load"
wait $loader
pw_wait_all_finished 30
pw_check_sql "indexes created, re-created and created concurrently under load: all valid" "2" \
    "SELECT count(*) FROM pg_index WHERE indexrelid IN ('pipeline_worker.kw_idx'::regclass, 'pipeline_worker.kw_runs_idx'::regclass)
        AND indisvalid AND indisready"
pw_check_indexes
pw_psql -c "DROP INDEX pipeline_worker.kw_idx" -c "DROP INDEX pipeline_worker.kw_runs_idx" >/dev/null
# A whole-row reference in a CHECK constraint and in a partial index's predicate: its evaluation keeps a row
# descriptor in the executor's memory of the batch, so such an expression is prepared for each batch, not kept
# (kept, the next batch read the freed descriptor).
pw_psql >/dev/null <<'SQL' || pw_fail "whole-row fixtures"
CREATE FUNCTION public.kw_row(r pipeline_worker.run_steps) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN RETURN r.attempt >= 1 AND r.run_id IS NOT NULL; END $$;
ALTER TABLE pipeline_worker.run_steps ADD CONSTRAINT kw_row_check CHECK (public.kw_row(run_steps));
CREATE INDEX kw_row_idx ON pipeline_worker.run_steps (run_id) WHERE public.kw_row(run_steps);
SQL
kw_before=$(pw_psql -c "SELECT coalesce(max(id), 0) FROM pipeline_worker.runs")
for i in 1 2 3; do pw_psql -c "$submit20" >/dev/null; pw_wait_all_finished 20; done
pw_check_sql "a whole-row CHECK and partial index on run_steps: 60 runs over 3 batches succeeded" 60 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id > $kw_before AND status = 'succeeded'"
pw_check_sql "... and the index holds each of their step rows" 120 \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id > $kw_before AND public.kw_row(run_steps)"
pw_check_indexes
pw_psql -c "DROP INDEX pipeline_worker.kw_row_idx" -c "ALTER TABLE pipeline_worker.run_steps DROP CONSTRAINT kw_row_check" >/dev/null
# A CHECK constraint that casts to a domain: the domain's constraints are compiled into the kept expression, and a
# constraint added to the domain between batches is checked from the next one on.
pw_psql >/dev/null <<'SQL' || pw_fail "domain fixtures"
CREATE SEQUENCE public.kw_dom_calls;
CREATE FUNCTION public.kw_dom_seen(int) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM nextval('public.kw_dom_calls'); RETURN true; END $$;
CREATE DOMAIN public.kw_dom AS int CHECK (VALUE >= 1);
ALTER TABLE pipeline_worker.run_steps ADD CONSTRAINT kw_dom_check CHECK ((attempt::public.kw_dom) IS NOT NULL);
SQL
pw_psql -c "$submit20" >/dev/null
pw_wait_all_finished 20
pw_psql -c "ALTER DOMAIN public.kw_dom ADD CONSTRAINT kw_dom_seen CHECK (public.kw_dom_seen(VALUE))" -c "$submit20" >/dev/null
pw_wait_all_finished 20
pw_check_sql "a constraint added to a domain a CHECK casts to, between batches: checked on each of 40 step rows" t \
    "SELECT is_called AND last_value >= 40 FROM public.kw_dom_calls"
pw_psql -c "ALTER TABLE pipeline_worker.run_steps DROP CONSTRAINT kw_dom_check" >/dev/null

# ---------------------------------------------------------------- cancel_run + retry_run while the run executes
# The step swallows the cancel (EXCEPTION WHEN query_canceled), and retry_run withdraws the cancel request at once:
# the worker does not see the cancel and goes on, while the retried run is claimed again by another worker. The
# first worker's next commit finds its claim over and rolls back; its outcome does not overwrite the retry. Every
# step's effect once, the run succeeded. (Until 2026-12-05 both executed the steps: effects twice, or a run failed
# with "internal error: duplicate key value".)
pw_psql >/dev/null <<'SQL' || pw_fail "stubborn fixtures"
CREATE FUNCTION public.stubborn(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        PERFORM pg_sleep((ctx->'input'->>'sleep')::float8);
    EXCEPTION WHEN query_canceled THEN
        PERFORM pg_sleep((ctx->'input'->>'sleep')::float8);
    END;
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('stubborn3', '[{"name": "s1", "function": "public.stubborn"},
    {"name": "s2", "function": "public.stubborn"}, {"name": "s3", "function": "public.stubborn"}]');
SQL
ids=
for i in 1 2 3; do
    id=$(pw_psql -c "SELECT pipeline_worker.create_run('stubborn3', '{\"sleep\": 0.4}')")
    pw_wait_row 10 "SELECT 1 FROM pipeline_worker.runs WHERE id = $id AND status = 'running'" >/dev/null
    sleep 0.$((2 + RANDOM % 5))
    pw_psql -c "SELECT pipeline_worker.cancel_run($id)" -c "SELECT pipeline_worker.retry_run($id)" >/dev/null
    ids="$ids,$id"
done
ids=${ids#,}
pw_check_sql "cancel + retry while executing: every run succeeded, none blamed" "3|0" \
    "SELECT count(*) FILTER (WHERE pipeline_worker.wait_run(id, '30 s') = 'succeeded') || '|'
            || count(*) FILTER (WHERE error IS NOT NULL) FROM pipeline_worker.runs WHERE id IN ($ids)"
pw_check_sql "cancel + retry while executing: each step's effect once" "9|9" \
    "SELECT count(*) || '|' || count(DISTINCT (run_id, step)) FROM public.fx WHERE run_id IN ($ids)"
pw_check "no internal error in the server log" "" "$(grep -m1 'internal error' "$PW_LOG")"

# A run cancelled while its step swallows the cancel, and its request then forgotten (CREATE EXTENSION in another
# database forgets the server's requests): the worker's next commit between steps finds the run cancelled under its
# claim, makes the request again and stops -- the later steps never run. (Without it the worker went on with them.)
pw_psql -c "CREATE DATABASE sem_other" >/dev/null
id=$(pw_psql -c "SELECT pipeline_worker.create_run('stubborn3', '{\"sleep\": 1.5}')")
pw_wait_row 10 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $id step 1 %'" \
    >/dev/null || pw_fail "forgotten cancel: step 1 did not start"
pw_check_sql "forgotten cancel: cancel_run while step 1 swallows it" t "SELECT pipeline_worker.cancel_run($id)"
pw_psql -d sem_other -c "CREATE EXTENSION pipeline_worker" >/dev/null || pw_fail "CREATE EXTENSION in sem_other"
sleep 4
pw_check_sql "forgotten cancel: the run stays cancelled, only step 1's effect committed" "cancelled|1" \
    "SELECT status || '|' || (SELECT count(*) FROM public.fx WHERE run_id = $id) FROM pipeline_worker.runs WHERE id = $id"
pw_psql -c "DROP DATABASE sem_other" >/dev/null

pw_finish
