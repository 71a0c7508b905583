#!/bin/bash
# Map tasks in parallel across workers (exec/shared_tasks.hpp): a function map step's tasks run on several workers at
# once when workers are idle -- each task's effects once, its row committed with them; max_parallel caps how many
# run at once; a task failing for good on a helper fails the step (naming the task), one with attempts left is
# retried; cancel_run stops the rest. Faults: a helper terminated, the owner terminated, a SIGKILL (crash restart)
# in the middle of shared maps -- every task's effects exactly once, every run finished right.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up map_parallel 4 20 || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint, idx int, attempt int, pid int, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON effects TO PUBLIC;
CREATE FUNCTION mp_split(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(g) FROM generate_series(1, (ctx->'input'->>'n')::int) g $$;
-- a task: records its effect (who executed it), sleeps input.ms, returns item * item
CREATE FUNCTION mp_square(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (run_id, idx, attempt, pid)
    VALUES ((ctx->>'run_id')::bigint, (ctx->>'index')::int, (ctx->>'attempt')::int, pg_backend_pid());
    PERFORM pg_sleep(coalesce((ctx->'input'->>'ms')::int, 0) / 1000.0);
    IF (ctx->>'index')::int = coalesce((ctx->'input'->>'fail_index')::int, -1)
       AND (ctx->>'attempt')::int <= coalesce((ctx->'input'->>'fail_attempts')::int, 1000) THEN
        RAISE EXCEPTION 'task % refuses', ctx->>'index';
    END IF;
    RETURN to_jsonb((ctx->>'item')::int * (ctx->>'item')::int);
END $$;
-- an independent step: records its effect (idx = its position), sleeps input.ms, fails where input.fail_pos says
CREATE FUNCTION mp_slow(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (run_id, idx, attempt, pid)
    VALUES ((ctx->>'run_id')::bigint, (ctx->>'position')::int, (ctx->>'attempt')::int, pg_backend_pid());
    PERFORM pg_sleep(coalesce((ctx->'input'->>'ms')::int, 0) / 1000.0);
    IF (ctx->>'position')::int = coalesce((ctx->'input'->>'fail_pos')::int, -1) THEN
        RAISE EXCEPTION 'step % refuses', ctx->>'step';
    END IF;
    RETURN to_jsonb((ctx->>'position')::int);
END $$;
-- fails its first attempt
CREATE FUNCTION mp_fail_once(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.2);
    IF (ctx->>'attempt')::int = 1 THEN RAISE EXCEPTION 'first attempt fails'; END IF;
    RETURN '"ok"';
END $$;
CREATE FUNCTION mp_sum_of(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT to_jsonb(sum(v::int)) FROM jsonb_array_elements_text(ctx->'prev'->'square') v $$;
CREATE FUNCTION mp_sum(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT to_jsonb(sum(v::int)) FROM jsonb_array_elements_text(ctx->'prev') v $$;
SELECT pipeline_worker.create_pipeline('mp', '[
  {"name": "split", "function": "mp_split"},
  {"name": "square", "function": "mp_square", "map": true, "max_attempts": 3, "retry_delay_ms": 10},
  {"name": "sum", "function": "mp_sum"}]');
SELECT pipeline_worker.create_pipeline('mp_two', '[
  {"name": "split", "function": "mp_split"},
  {"name": "square", "function": "mp_square", "map": true, "max_parallel": 2},
  {"name": "sum", "function": "mp_sum"}]');
SELECT pipeline_worker.create_pipeline('mp_once', '[
  {"name": "split", "function": "mp_split"},
  {"name": "square", "function": "mp_square", "map": true},
  {"name": "sum", "function": "mp_sum"}]');
-- a map next to a branch that waits for an event
SELECT pipeline_worker.create_pipeline('ev_map', '[
  {"name": "split", "function": "mp_split"},
  {"name": "approve", "wait_for": "go", "depends_on": ["split"]},
  {"name": "square", "function": "mp_square", "map": true, "depends_on": ["split"]},
  {"name": "sum", "function": "mp_sum_of", "depends_on": ["square", "approve"]}]');
-- a step retried after a 3 s back-off beside a fast independent one
SELECT pipeline_worker.create_pipeline('retry_beside', '[
  {"name": "b", "function": "mp_fail_once", "depends_on": [], "max_attempts": 2, "retry_delay_ms": 3000},
  {"name": "c", "function": "mp_slow", "depends_on": []}]');
-- a step retried after a 3 s back-off beside a map whose task is retried after 3 s, and a fast step after both
SELECT pipeline_worker.create_pipeline('retry_map_beside', '[
  {"name": "b", "function": "mp_fail_once", "depends_on": [], "max_attempts": 2, "retry_delay_ms": 3000},
  {"name": "l", "function": "mp_split", "depends_on": []},
  {"name": "m", "function": "mp_square", "map": true, "depends_on": ["l"], "max_attempts": 2, "retry_delay_ms": 3000},
  {"name": "c", "function": "mp_slow", "depends_on": []}]');
-- independent function steps written before an event wait
SELECT pipeline_worker.create_pipeline('fan_and_wait', '[
  {"name": "b", "function": "mp_slow", "depends_on": []},
  {"name": "c", "function": "mp_slow", "depends_on": []},
  {"name": "d", "function": "mp_slow", "depends_on": []},
  {"name": "e", "function": "mp_slow", "depends_on": []},
  {"name": "approve", "wait_for": "go", "depends_on": []}]');
-- a retried branch next to one that waits for an event
SELECT pipeline_worker.create_pipeline('retry_and_wait', '[
  {"name": "flaky", "function": "mp_fail_once", "depends_on": [], "max_attempts": 2, "retry_delay_ms": 0},
  {"name": "other", "function": "mp_slow", "depends_on": []},
  {"name": "approval", "wait_for": "approved", "depends_on": []}]');
-- independent steps that fail (after 0.5 s: time for idle workers to join) on the worker that executed their root --
-- the run's own worker -- and take 2 s elsewhere
CREATE FUNCTION mp_pid(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('pid', pg_backend_pid()) $$;
CREATE FUNCTION mp_owner_fails(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (run_id, idx, attempt, pid)
    VALUES ((ctx->>'run_id')::bigint, (ctx->>'position')::int, (ctx->>'attempt')::int, pg_backend_pid());
    IF pg_backend_pid() = (ctx->'prev'->>'pid')::int THEN
        PERFORM pg_sleep(0.5);
        RAISE EXCEPTION 'step % refuses on the run''s own worker', ctx->>'step';
    END IF;
    PERFORM pg_sleep(2);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('fan_owner', '[
  {"name": "root", "function": "mp_pid", "depends_on": []},
  {"name": "b", "function": "mp_owner_fails", "depends_on": ["root"]},
  {"name": "c", "function": "mp_owner_fails", "depends_on": ["root"]},
  {"name": "d", "function": "mp_owner_fails", "depends_on": ["root"]},
  {"name": "e", "function": "mp_owner_fails", "depends_on": ["root"]},
  {"name": "f", "function": "mp_owner_fails", "depends_on": ["root"]},
  {"name": "g", "function": "mp_owner_fails", "depends_on": ["root"]},
  {"name": "join", "function": "mp_slow", "depends_on": ["b", "c", "d", "e", "f", "g"]}]');
-- a root, four independent slow steps, a join
SELECT pipeline_worker.create_pipeline('fan_steps', '[
  {"name": "root", "function": "mp_slow", "depends_on": []},
  {"name": "b", "function": "mp_slow", "depends_on": ["root"]},
  {"name": "c", "function": "mp_slow", "depends_on": ["root"]},
  {"name": "d", "function": "mp_slow", "depends_on": ["root"]},
  {"name": "e", "function": "mp_slow", "depends_on": ["root"]},
  {"name": "join", "function": "mp_slow", "depends_on": ["b", "c", "d", "e"]}]');
SQL

# sum of squares 1..n
sq() { echo $(( $1 * ($1 + 1) * (2 * $1 + 1) / 6 )); }
# the most tasks of RUN executing at the same moment, from their effects' start and their rows' end
overlap_sql() {
    echo "SELECT max(c) FROM (SELECT (SELECT count(*) FROM pipeline_worker.run_steps t
            WHERE t.run_id = s.run_id AND t.position = 2 AND t.task IS NOT NULL
              AND t.started_at <= s.started_at AND t.finished_at > s.started_at) c
          FROM pipeline_worker.run_steps s WHERE s.run_id = $1 AND s.position = 2 AND s.task IS NOT NULL) x"
}

pw_wait_workers 4 20 >/dev/null || pw_die "4 workers did not start"
pw_wait_sql 4 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'idle'" >/dev/null

# ---------------------------------------------------------------- several workers execute one map
run=$(pw_run mp '{"n": 12, "ms": 300}')
pw_check "a 12-task map of 0.3 s tasks succeeds with the sum of squares" "succeeded $(sq 12)" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "its tasks ran on more than one worker" t \
    "SELECT count(DISTINCT pid) > 1 FROM effects WHERE run_id = $run"
pw_check_sql "tasks ran at the same moment (overlapping rows)" t "SELECT ($(overlap_sql "$run")) > 1"
pw_check_sql "every task's effect once, one succeeded row per task, output in element order" "12 12 0 true" \
    "SELECT (SELECT count(DISTINCT idx) FROM effects WHERE run_id = $run) || ' ' ||
            (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND task IS NOT NULL AND status = 'succeeded') || ' ' ||
            (SELECT count(*) - count(DISTINCT idx) FROM effects WHERE run_id = $run) || ' ' ||
            ((SELECT output FROM pipeline_worker.run_steps WHERE run_id = $run AND position = 2 AND task IS NULL)
              = (SELECT jsonb_agg(g * g ORDER BY g) FROM generate_series(1, 12) g))"

# ---------------------------------------------------------------- max_parallel caps the workers at once
pw_wait_sql 4 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'idle'" >/dev/null
run=$(pw_run mp_two '{"n": 8, "ms": 300}')
pw_check "max_parallel 2: succeeds" "succeeded $(sq 8)" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "max_parallel 2: never more than 2 tasks at once, and 2 at some moment" 2 "$(overlap_sql "$run")"

idle4() { pw_wait_sql 4 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'idle'" >/dev/null; }
# exactly once: every task's effect once, each with its succeeded row (effects of rolled-back chunks are gone with them)
once_sql() {
    echo "SELECT (SELECT count(*) FROM effects WHERE run_id = $1) || ' ' ||
                 (SELECT count(*) - count(DISTINCT (idx, attempt)) FROM effects WHERE run_id = $1) || ' ' ||
                 (SELECT count(*) FROM effects e WHERE run_id = $1 AND NOT EXISTS (
                    SELECT 1 FROM pipeline_worker.run_steps s WHERE s.run_id = e.run_id AND s.position = 2
                      AND s.task = e.idx AND s.attempt = e.attempt))"
}

# ---------------------------------------------------------------- retries and failures of shared tasks
idle4
run=$(pw_run mp '{"n": 10, "ms": 100, "fail_index": 7, "fail_attempts": 1}')
pw_check "a shared task failing once is retried: the run succeeds" "succeeded $(sq 10)" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "task 7: attempt 1 failed, attempt 2 succeeded; the others one attempt each" "failed,succeeded 9" \
    "SELECT (SELECT string_agg(status, ',' ORDER BY attempt) FROM pipeline_worker.run_steps WHERE run_id = $run AND task = 7)
            || ' ' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND task <> 7 AND attempt = 1 AND status = 'succeeded')"
idle4
run=$(pw_run mp_once '{"n": 10, "ms": 100, "fail_index": 6}')
pw_check "a shared task failing with no attempts left fails the run" failed "$(pw_wait_run "$run" 60)"
pw_check_sql "the run's error names the step and the task" t \
    "SELECT error LIKE 'step \"square\" failed: task 6: %refuses%' FROM pipeline_worker.runs WHERE id = $run"
pw_check_sql "the step's own row failed; sum never ran" "failed 0" \
    "SELECT (SELECT status FROM pipeline_worker.run_steps WHERE run_id = $run AND position = 2 AND task IS NULL) || ' ' ||
            (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND position = 3)"

# ---------------------------------------------------------------- cancel_run while tasks are shared
idle4
run=$(pw_run mp '{"n": 12, "ms": 700}')
pw_wait_row 20 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $run step 2 (square) task %'" >/dev/null
pw_psql -c "SELECT pipeline_worker.cancel_run($run)" >/dev/null
pw_check "cancel_run: the run ends cancelled" cancelled "$(pw_wait_run "$run" 30)"
pw_wait_sql 4 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND state = 'idle'" >/dev/null
pw_check_sql "cancel_run: no task left running, every effect has its row, fewer than 12 tasks ran" "0 0 0 true" \
    "SELECT (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND status IN ('running', 'waiting')) || ' ' ||
            (SELECT split_part(($(once_sql "$run")), ' ', 2)) || ' ' || (SELECT split_part(($(once_sql "$run")), ' ', 3)) || ' ' ||
            ((SELECT count(*) FROM effects WHERE run_id = $run) < 12)"

# ---------------------------------------------------------------- a map next to a branch waiting for an event
# The map is shared although a branch waits (until 2026-12-07 nothing was shared once a step waited): the commit
# before sharing releases the run's row, so an event sent meanwhile finds the run running and wakes nothing -- the run
# goes back to the queue at the end of the walk instead of waiting, and its next look takes the event.
idle4
run=$(pw_run ev_map '{"n": 6, "ms": 300}')
pw_wait_row 20 "SELECT 1 FROM effects WHERE run_id = $run" >/dev/null
pw_psql -c "SELECT pipeline_worker.send_event($run, 'go', '{}')" >/dev/null
pw_check "an event sent while the map runs next to its wait wakes the run" "succeeded $(sq 6) 6" \
    "$(pw_wait_run "$run" 30) $(pw_psql -c "SELECT result::text || ' ' || (SELECT count(*) FROM effects WHERE run_id = $run) FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "... its tasks ran on more than one worker, each once with its row" "true 6 0 0" \
    "SELECT (count(DISTINCT pid) > 1) || ' ' || count(*) || ' ' || (count(*) - count(DISTINCT idx)) || ' ' ||
            count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM pipeline_worker.run_steps s WHERE s.run_id = e.run_id
                                                 AND s.position = 3 AND s.task = e.idx AND s.status = 'succeeded'))
     FROM effects e WHERE run_id = $run"

# Independent function steps next to an event wait written after them: the wait begins first (steps that only start
# something go before function steps), and the function steps are still shared; the event arrives while they run.
idle4
run=$(pw_run fan_and_wait '{"ms": 500}')
pw_wait_row 20 "SELECT 1 FROM effects WHERE run_id = $run" >/dev/null
pw_check_sql "the event wait written last began before the function steps ended" "waiting" \
    "SELECT status FROM pipeline_worker.run_steps WHERE run_id = $run AND name = 'approve'"
pw_psql -c "SELECT pipeline_worker.send_event($run, 'go', '{\"ok\": 1}')" >/dev/null
pw_check "... the event sent while the steps run ends the run" "succeeded {\"ok\": 1}" \
    "$(pw_wait_run "$run" 30) $(pw_psql -c "SELECT result->'approve' FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "... the four steps ran on more than one worker, each once with its row" "true 4 0 4" \
    "SELECT (SELECT count(DISTINCT pid) > 1 FROM effects WHERE run_id = $run) || ' ' || count(*) || ' ' ||
            (count(*) - count(DISTINCT idx)) || ' ' ||
            (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND status = 'succeeded' AND name <> 'approve')
     FROM effects WHERE run_id = $run"

# ---------------------------------------------------------------- cancel_run + retry_run while tasks are shared
idle4
run=$(pw_run mp '{"n": 10, "ms": 500}')
pw_wait_row 20 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $run step 2 (square) task %'" >/dev/null
pw_psql -c "SELECT pipeline_worker.cancel_run($run)" -c "SELECT pipeline_worker.retry_run($run)" >/dev/null
cr_run=$run  # (its old owner may roll back with a 40001 -- by design, see the log check at the end)
pw_check "cancelled and retried while shared: the run succeeds" "succeeded $(sq 10)" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "... every task's effect exactly once, each with its row" "10 0 0" "$(once_sql "$run")"

idle4
run=$(pw_run retry_and_wait '{"ms": 200}')
pw_check "a shared step failing with attempts left is retried before the run waits for its event" "succeeded 2 waiting" \
    "$(pw_wait_sql "succeeded 2 waiting" 20 "SELECT s.status || ' ' || s.attempt || ' ' || r.status FROM pipeline_worker.run_steps s
        JOIN pipeline_worker.runs r ON r.id = s.run_id WHERE s.run_id = $run AND s.name = 'flaky' ORDER BY s.attempt DESC LIMIT 1")"
pw_psql -c "SELECT pipeline_worker.send_event($run, 'approved', '{}')" >/dev/null
pw_check "... and the event then ends it" succeeded "$(pw_wait_run "$run" 20)"

# A step failing with attempts left does not hold back a ready sibling until its back-off is over (until 2026-12-07 it
# did whenever the two were not shared: here one worker, so that nothing is).
pw_set_conf pipeline_worker.workers 1 || pw_fail "set workers"
pw_wait_sql 1 20 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" >/dev/null
for i in 1 2; do
    run=$(pw_run retry_beside '{"ms": 0}')
    pw_check "retry_beside $i: the run succeeds" succeeded "$(pw_wait_run "$run" 30)"
    pw_check_sql "retry_beside $i: the sibling ran before the retry's back-off was over" t \
        "SELECT (SELECT at FROM effects WHERE run_id = $run AND idx = 2)
                  < (SELECT started_at FROM pipeline_worker.run_steps WHERE run_id = $run AND name = 'b' AND attempt = 2)
                    - interval '1 second'"
done
# ... nor does a map whose task fails with attempts left (until 2026-12-07 the map stopped the walk)
run=$(pw_run retry_map_beside '{"n": 2, "fail_index": 0, "fail_attempts": 1, "ms": 0}')
pw_check "retry_map_beside: the run succeeds" succeeded "$(pw_wait_run "$run" 30)"
pw_check_sql "retry_map_beside: the step after the map ran before the task's retry" t \
    "SELECT (SELECT at FROM effects WHERE run_id = $run AND idx = 4)
              < (SELECT started_at FROM pipeline_worker.run_steps WHERE run_id = $run AND name = 'm' AND task = 0
                   AND attempt = 2) - interval '1 second'"
pw_set_conf pipeline_worker.workers 4 || pw_fail "set workers"
pw_wait_workers 4 30 >/dev/null

# ---------------------------------------------------------------- faults
# F1: a helper terminated in the middle of its chunk: its chunk rolls back, the owner executes those tasks
idle4
run=$(pw_run mp '{"n": 12, "ms": 600}')
helper=$(pw_wait_row 20 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $run step 2 (square) task %' LIMIT 1")
pw_check "F1: a worker helping with the run's tasks was terminated" t \
    "$([ -n "$helper" ] && pw_psql -c "SELECT pg_terminate_backend($helper)")"
pw_check "F1 helper terminated: the run succeeds" "succeeded $(sq 12)" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "F1: every task's effect exactly once, each with its row" "12 0 0" "$(once_sql "$run")"

# F2: the owner terminated while helpers execute its tasks: their chunks commit only while its claim holds; the
# run is recovered and resumed from the tasks' committed rows
pw_wait_workers 4 30 >/dev/null; idle4
run=$(pw_run mp '{"n": 12, "ms": 600}')
owner=$(pw_wait_row 20 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                        AND (query = 'run $run step 2 (square)' OR query LIKE 'run $run: waiting%') LIMIT 1")
pw_wait_row 20 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $run step 2 (square) task %'" >/dev/null
pw_check "F2: the run's own worker was terminated while helpers worked" t \
    "$([ -n "$owner" ] && pw_psql -c "SELECT pg_terminate_backend($owner)")"
pw_check "F2 owner terminated: the run succeeds" "succeeded $(sq 12)" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "F2: every task's effect exactly once, each with its row" "12 0 0" "$(once_sql "$run")"
pw_check_sql "F2: the run was claimed again" t "SELECT claims > 1 FROM pipeline_worker.runs WHERE id = $run"

# F3: SIGKILL of a helper (crash restart of the whole server) with several shared maps under way
pw_wait_workers 4 30 >/dev/null; idle4
runs=$(pw_create_runs mp '{"n": 30, "ms": 50}' '{"n": 30, "ms": 50}' '{"n": 30, "ms": 50}')
helper=$(pw_wait_row 20 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run % step 2 (square) task %' LIMIT 1")
pw_check "F3: a helping worker was found (and is killed)" t "$([ -n "$helper" ] && echo t)"
[ -n "$helper" ] && kill -9 "$helper"
sleep 1
pw_wait_workers 4 30 >/dev/null
for r in $runs; do
    pw_check "F3 SIGKILL: run $r succeeds" "succeeded $(sq 30)" \
        "$(pw_wait_run "$r" 90) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $r")"
    pw_check_sql "F3: run $r: every task's effect exactly once, each with its row" "30 0 0" "$(once_sql "$r")"
done

# ---------------------------------------------------------------- independent function steps on several workers
idle4
run=$(pw_run fan_steps '{"ms": 400}')
pw_check "four independent 0.4 s steps: the run succeeds, join last" "succeeded 6" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "they ran on more than one worker, at the same moment" "true true" \
    "SELECT (SELECT count(DISTINCT pid) > 1 FROM effects WHERE run_id = $run AND idx BETWEEN 2 AND 5) || ' ' ||
            (SELECT max(c) > 1 FROM (SELECT (SELECT count(*) FROM pipeline_worker.run_steps t WHERE t.run_id = s.run_id
               AND t.position BETWEEN 2 AND 5 AND t.started_at <= s.started_at AND t.finished_at > s.started_at) c
             FROM pipeline_worker.run_steps s WHERE s.run_id = $run AND s.position BETWEEN 2 AND 5) x)"
pw_check_sql "every step's effect once, one succeeded row each" "6 0 6" \
    "SELECT count(*) || ' ' || (count(*) - count(DISTINCT idx)) || ' ' ||
            (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND status = 'succeeded')
     FROM effects WHERE run_id = $run"
idle4
run=$(pw_run fan_steps '{"ms": 300, "fail_pos": 4}')
pw_check "an independent step failing for good on another worker fails the run, naming it" "failed true 0" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT (error LIKE 'step \"d\" failed: %refuses%') || ' ' ||
        (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND position = 6) FROM pipeline_worker.runs WHERE id = $run")"
# a step the run's own worker executes fails for good while other workers execute theirs: those finish and are
# recorded (committed with their effects), then the run fails naming it (until 2026-12-05 the run failed at once and
# the other workers' steps under way rolled back)
idle4
run=$(pw_run fan_owner '{}')
pw_check "the owner's step failing for good fails the run, naming it; join never starts" "failed true 0" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT (error LIKE 'step \"_\" failed: %refuses on the run''s own worker%') || ' ' ||
        (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND position = 8) FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "... other workers executed steps meanwhile: their effects, each with its succeeded row" "true 0" \
    "SELECT (count(*) > 0) || ' ' || count(*) FILTER (WHERE NOT EXISTS (
        SELECT 1 FROM pipeline_worker.run_steps s WHERE s.run_id = e.run_id AND s.position = e.idx
          AND s.attempt = e.attempt AND s.status = 'succeeded'))
     FROM effects e WHERE run_id = $run AND idx BETWEEN 2 AND 7"
pw_check_sql "... and the failed step has its failed row" 1 \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $run AND status = 'failed'"
idle4
run=$(pw_run fan_steps '{"ms": 800}')
helper=$(pw_wait_row 20 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $run step % helping' LIMIT 1")
pw_check "F4: a worker helping with the run's steps was terminated" t \
    "$([ -n "$helper" ] && pw_psql -c "SELECT pg_terminate_backend($helper)")"
pw_check "F4 a helper of independent steps terminated: the run succeeds" "succeeded 6" \
    "$(pw_wait_run "$run" 60) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $run")"
pw_check_sql "F4: every step's effect exactly once, each with its row" "6 0 0" \
    "SELECT count(*) || ' ' || (count(*) - count(DISTINCT idx)) || ' ' || count(*) FILTER (WHERE NOT EXISTS (
        SELECT 1 FROM pipeline_worker.run_steps s WHERE s.run_id = e.run_id AND s.position = e.idx AND s.attempt = e.attempt
          AND s.task IS NULL AND s.status = 'succeeded')) FROM effects e WHERE run_id = $run"
pw_wait_workers 4 30 >/dev/null

# F5: an immediate stop while shared maps and shared steps run, then a start: every effect exactly once
pw_wait_workers 4 30 >/dev/null; idle4
runs=$(pw_create_runs mp '{"n": 40, "ms": 40}' '{"n": 40, "ms": 40}')
fan=$(pw_run fan_steps '{"ms": 700}')
fw=$(pw_run fan_and_wait '{"ms": 700}')  # steps shared while its event wait is noted
pw_wait_row 20 "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run % task %'" >/dev/null
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" stop -m immediate -w >/dev/null 2>&1
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
for r in $runs; do
    pw_check "F5 immediate stop: map run $r succeeds" "succeeded $(sq 40)" \
        "$(pw_wait_run "$r" 90) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $r")"
    pw_check_sql "F5: run $r: every task's effect exactly once, each with its row" "40 0 0" "$(once_sql "$r")"
done
pw_check "F5 immediate stop: the graph run succeeds" "succeeded 6" \
    "$(pw_wait_run "$fan" 90) $(pw_psql -c "SELECT result FROM pipeline_worker.runs WHERE id = $fan")"
pw_check_sql "F5: the graph run's steps each ran once" "6 0" \
    "SELECT count(*) || ' ' || (count(*) - count(DISTINCT idx)) FROM effects WHERE run_id = $fan"
pw_psql -c "SELECT pipeline_worker.send_event($fw, 'go')" >/dev/null
pw_check "F5 immediate stop: the run sharing steps next to its event wait succeeds once the event comes" succeeded \
    "$(pw_wait_run "$fw" 90)"
pw_check_sql "F5: its steps' effects each committed once, with their rows" "0 0" \
    "SELECT (count(*) - count(DISTINCT idx)) || ' ' || count(*) FILTER (WHERE NOT EXISTS (
        SELECT 1 FROM pipeline_worker.run_steps s WHERE s.run_id = e.run_id AND s.position = e.idx AND s.attempt = e.attempt
          AND s.status = 'succeeded')) FROM effects e WHERE run_id = $fw"

# ---------------------------------------------------------------- a large map in one worker: memory
# Each task's context carries the map's input array (and the results that hold it): it is freed after the task.
# (Until 2026-12-05 each was kept until the batch ended: ~3 GB in the worker for these 10,000 tasks.)
pw_psql -c "SELECT pipeline_worker.create_pipeline('mp_solo', '[
  {\"name\": \"split\", \"function\": \"mp_split\"},
  {\"name\": \"square\", \"function\": \"mp_square\", \"map\": true, \"max_parallel\": 1},
  {\"name\": \"sum\", \"function\": \"mp_sum\"}]')" >/dev/null
r=$(pw_run mp_solo '{"n": 10000}')
pw_check "a map of 10,000 tasks one at a time succeeds" succeeded "$(pw_psql -c "SELECT pipeline_worker.wait_run($r, '180 s')")"
pw_check_sql "... with the sum of squares" "$(sq 10000)" "SELECT result FROM pipeline_worker.runs WHERE id = $r"
pid=$(pw_psql -c "SELECT pid FROM effects WHERE run_id = $r GROUP BY pid ORDER BY count(*) DESC LIMIT 1")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null)
pw_info "peak memory of the worker that executed its tasks: ${hwm:-?} kB"
[ -n "$hwm" ] && [ "$hwm" -lt 716800 ] && pw_ok "... in a worker whose memory stayed under 700 MB" \
    || pw_fail "the worker executing a map of 10,000 tasks peaked at ${hwm:-?} kB"

# ---------------------------------------------------------------- many maps at once (W2's shape), each task once
pw_wait_workers 4 30 >/dev/null; idle4
inputs=(); for i in $(seq 1 20); do inputs+=('{"n": 50}'); done
runs=$(pw_create_runs mp "${inputs[@]}")
pw_wait_all_finished 120
pw_check_sql "20 maps of 50 tasks: all succeeded with the sum of squares" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($(echo $runs | tr ' ' ',')) AND status = 'succeeded' AND result = '$(sq 50)'"
pw_check_sql "20 maps of 50 tasks: 1,000 effects, none twice" "1000 0" \
    "SELECT count(*) || ' ' || (count(*) - count(DISTINCT (run_id, idx))) FROM effects WHERE run_id IN ($(echo $runs | tr ' ' ','))"
pw_check_sql "no step row left running or waiting anywhere" 0 \
    "SELECT count(*) FROM pipeline_worker.run_steps WHERE status IN ('running', 'waiting')"
# (The run cancelled and retried while shared: its old owner, still executing it when the retry let another worker
# claim it, rolls its work back with a 40001 -- at its claim check after the helpers, or at its commit when the
# takeover came first; either is the designed outcome, nothing runs twice. Seen once in CI, 2026-12-08.)
problems=$(pw_log_problems_beyond_kills | grep -vE "run $cr_run (was taken over by another backend|is no longer this backend's)" \
    | grep -vE "^\s*(DETAIL|CONTEXT|STATEMENT):" | head -5)
pw_check "no unexpected error in the server log" "" "$problems"

pw_finish
