# shellcheck shell=bash
# The fixtures and helpers of test/scripts/workflows.sh (sourced by it once its cluster is up): the step functions
# and pipelines every section uses, and q, wait_done, definition_error.
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint, step text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON effects TO PUBLIC;
-- records its effect and returns what it saw
CREATE FUNCTION wf_echo(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (run_id, step) VALUES ((ctx->>'run_id')::bigint, ctx->>'step');
    RETURN jsonb_build_object('step', ctx->'step', 'prev', ctx->'prev', 'results', ctx->'results');
END $$;
CREATE FUNCTION wf_num(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (run_id, step) VALUES ((ctx->>'run_id')::bigint, ctx->>'step');
    RETURN to_jsonb(length(ctx->>'step'));
END $$;
CREATE FUNCTION wf_fail(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'wf_fail always fails'; END $$;
CREATE FUNCTION wf_sleep(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep((ctx->'input'->>'sleep')::float); RETURN '"slept"'; END $$;
CREATE FUNCTION wf_slow_fail(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.5); RAISE EXCEPTION 'wf_slow_fail fails late'; END $$;
CREATE ROLE wf_user LOGIN;
CREATE ROLE wf_other LOGIN;
GRANT EXECUTE ON FUNCTION wf_echo(jsonb), wf_num(jsonb) TO wf_user;
SELECT pipeline_worker.create_pipeline('diamond', '[
  {"name": "a", "function": "wf_num"},
  {"name": "b", "function": "wf_num", "depends_on": ["a"]},
  {"name": "cc", "function": "wf_num", "depends_on": ["a"]},
  {"name": "d", "function": "wf_echo", "depends_on": ["b", "cc"]}]');
SELECT pipeline_worker.create_pipeline('two_sinks', '[
  {"name": "x", "function": "wf_num", "depends_on": []},
  {"name": "yy", "function": "wf_num", "depends_on": []}]');
-- written out of order: "first" runs first all the same
SELECT pipeline_worker.create_pipeline('backwards', '[
  {"name": "second", "function": "wf_echo", "depends_on": ["first"]},
  {"name": "first", "function": "wf_num", "depends_on": []}]');
SELECT pipeline_worker.create_pipeline('cond', '[
  {"name": "a", "function": "wf_num"},
  {"name": "paid_only", "function": "wf_num", "if": {"input": {"paid": true}}},
  {"name": "after", "function": "wf_echo"}]');
SELECT pipeline_worker.create_pipeline('failing', '[
  {"name": "a", "function": "wf_num", "depends_on": []},
  {"name": "boom", "function": "wf_fail", "depends_on": ["a"]},
  {"name": "never", "function": "wf_num", "depends_on": ["boom"]}]');
SELECT pipeline_worker.create_pipeline('nap', '[
  {"name": "a", "function": "wf_num"},
  {"name": "zz", "sleep": "2 seconds"},
  {"name": "after", "function": "wf_echo"}]');
SELECT pipeline_worker.create_pipeline('pay', '[
  {"name": "a", "function": "wf_num"},
  {"name": "paid", "wait_for": "payment"},
  {"name": "after", "function": "wf_echo"}]');
SELECT pipeline_worker.create_pipeline('twice', '[
  {"name": "w1", "wait_for": "tick"},
  {"name": "w2", "wait_for": "tick"},
  {"name": "done", "function": "wf_echo"}]');
SELECT pipeline_worker.create_pipeline('deadline', '[
  {"name": "w", "wait_for": "never_sent", "timeout_ms": 500, "max_attempts": 2, "retry_delay_ms": 0}]');
-- W2: split -> square (map) -> sum
CREATE FUNCTION wf_split(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT COALESCE(jsonb_agg(g), '[]') FROM generate_series(1, (ctx->'input'->>'n')::int) g $$;
CREATE TABLE squares (run_id bigint, idx int, v bigint);
CREATE FUNCTION wf_square(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO squares VALUES ((ctx->>'run_id')::bigint, (ctx->>'index')::int, (ctx->>'item')::bigint ^ 2);
    RETURN to_jsonb((ctx->>'item')::bigint * (ctx->>'item')::bigint);
END $$;
CREATE FUNCTION wf_sum(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT to_jsonb(sum(v::bigint)) FROM jsonb_array_elements_text(ctx->'prev') v $$;
SELECT pipeline_worker.create_pipeline('w2', '[
  {"name": "split", "function": "wf_split"},
  {"name": "square", "function": "wf_square", "map": true, "max_parallel": 10},
  {"name": "sum", "function": "wf_sum"}]');
-- a task fails its first attempt (odd elements), and one element always fails
CREATE TABLE tries (run_id bigint, idx int);
CREATE FUNCTION wf_flaky(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF ctx->'item' = '"never"' THEN RAISE EXCEPTION 'element % never works', ctx->>'index'; END IF;
    IF (ctx->>'attempt')::int = 1 AND (ctx->>'index')::int % 2 = 1 THEN
        RAISE EXCEPTION 'first attempt of task % fails', ctx->>'index';
    END IF;
    INSERT INTO tries VALUES ((ctx->>'run_id')::bigint, (ctx->>'index')::int);
    RETURN jsonb_build_object('i', ctx->'index', 'item', ctx->'item', 'attempt', ctx->'attempt');
END $$;
SELECT pipeline_worker.create_pipeline('flaky_map', '[
  {"name": "m", "function": "wf_flaky", "map": true, "max_attempts": 2, "retry_delay_ms": 0, "depends_on": []}]');
-- child pipelines
SELECT pipeline_worker.create_pipeline('kid', '[{"name": "k1", "function": "wf_echo"}]');
SELECT pipeline_worker.create_pipeline('parent', '[
  {"name": "p1", "function": "wf_num"},
  {"name": "child", "pipeline": "kid"},
  {"name": "p2", "function": "wf_echo"}]');
SELECT pipeline_worker.create_pipeline('kid_fails', '[{"name": "k", "function": "wf_fail"}]');
SELECT pipeline_worker.create_pipeline('parent_retries', '[
  {"name": "child", "pipeline": "kid_fails", "max_attempts": 2, "retry_delay_ms": 0}]');
SELECT pipeline_worker.create_pipeline('kid_waits', '[{"name": "w", "wait_for": "never"}]');
SELECT pipeline_worker.create_pipeline('parent_of_waiter', '[{"name": "child", "pipeline": "kid_waits"}]');
CREATE FUNCTION wf_down(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT jsonb_build_object('n', (ctx->'input'->>'n')::int - 1, 'more', (ctx->'input'->>'n')::int > 1) $$;
SELECT pipeline_worker.create_pipeline('rec', '[
  {"name": "down", "function": "wf_down"},
  {"name": "again", "pipeline": "rec", "if": {"prev": {"more": true}}}]');
SELECT pipeline_worker.create_pipeline('tenant', '[
  {"name": "w", "wait_for": "go"}, {"name": "e", "function": "wf_echo"}]');
SELECT pipeline_worker.grant_pipeline('tenant', 'wf_user');
SQL

q() { pw_psql -c "$1"; }
wait_done() {  # RUN_ID [TIMEOUT]; on a timeout, says what the run, its children and the workers are doing
    pw_wait_sql done "${2:-20}" "SELECT CASE WHEN status IN ('succeeded', 'failed', 'cancelled') THEN 'done' END
                                  FROM pipeline_worker.runs WHERE id = $1" >/dev/null && return 0
    pw_info "run $1 unfinished after ${2:-20} s:"
    pw_psql -c "SELECT id, parent_run_id, status, parked, not_before, waiting_for, worker_pid, claims
                  FROM pipeline_worker.runs WHERE id = $1 OR parent_run_id = $1 ORDER BY id" | sed 's/^/info     run: /'
    pw_psql -c "SELECT position, task, attempt, name, status FROM pipeline_worker.run_steps
                 WHERE run_id = $1 AND status <> 'succeeded' ORDER BY position, task" | sed 's/^/info     step: /'
    pw_psql -c "SELECT pid, state, wait_event, left(query, 60) FROM pg_stat_activity
                 WHERE backend_type = 'pipeline_worker'" | sed 's/^/info     worker: /'
    return 1
}
definition_error() {  # LABEL EXPECTED_TEXT STEPS_JSON
    local out
    out=$(pw_psql -v VERBOSITY=verbose -c "SELECT pipeline_worker.create_pipeline('bad', '$3')" 2>&1)
    if [[ "$out" == *"22023"* && "$out" == *"$2"* && "$out" == *HINT* ]]; then pw_ok "$1 refused (22023 with a hint)"
    else pw_fail "$1: $out"; fi
}
