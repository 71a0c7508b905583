#!/bin/bash
# Load on 10 workers: 100 plain runs, 50 runs with exact data checks, 120 runs alternating
# success/failure. Every run finishes, every step runs exactly once, results are exact and every
# run was executed by a pipeline_worker backend.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up load 10 20
pw_load_fixtures
pids=$(pw_worker_pids)
PIDS=$(pw_int_array "$pids")

# pw_check_batch NAME TAG NRUNS NSTEPS : generic checks for the runs whose input.tag = TAG
pw_check_common() {
    local what=$1 tag=$2 nruns=$3 nfx=$4
    pw_check_sql "$what: worker_pid of every run is a pipeline_worker backend" "$nruns" \
        "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = '$tag' AND worker_pid = ANY ($PIDS)"
    pw_check_sql "$what: $nfx step side effects, all in the run's worker" "$nfx" \
        "SELECT count(*) FROM fx JOIN pipeline_worker.runs r ON r.id = fx.run_id
          WHERE r.input->>'tag' = '$tag' AND fx.pid = r.worker_pid"
    pw_check_sql "$what: started_at <= finished_at, both set" "$nruns" \
        "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = '$tag'
            AND created_at <= started_at AND started_at <= finished_at"
}

# ---------------------------------------------------------------- 100 runs
start=$(pw_now)
pw_psql -c "SELECT count(pipeline_worker.create_run('p3', jsonb_build_object('n', i, 'tag', 'plain')))
              FROM generate_series(1, 100) i" >/dev/null
pw_wait_all_finished 40
pw_info "100 runs finished in $(pw_elapsed "$start") s"
pw_check_sql "100 runs succeeded" 100 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'plain' AND status = 'succeeded'"
pw_check_sql "100 results exact" 100 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'plain' AND result =
        jsonb_build_object('n', input->'n', 'acc', 6 * (input->>'n')::int, 'tag', 'plain', 'step', 's3', 'prev_step', 's2')"
pw_check_sql "300 step rows succeeded, attempt 1" 300 \
    "SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
      WHERE r.input->>'tag' = 'plain' AND s.status = 'succeeded' AND s.attempt = 1"
pw_check_common "100 runs" plain 100 300
pw_info "100 runs used $(pw_psql -c "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE input->>'tag' = 'plain'") distinct workers"

# ---------------------------------------------------------------- 50 runs, data integrity
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.i1(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE n bigint := (ctx->'input'->>'n')::bigint;
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    RETURN jsonb_build_object('n', n, 'sq', n * n, 's', ctx->'input'->'s');
END $$;
CREATE FUNCTION public.i2(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    RETURN jsonb_build_object('sum', (ctx->'prev'->>'sq')::bigint + (ctx->'results'->'one'->>'n')::bigint,
                              's', md5(ctx->'prev'->>'s'),
                              'keys', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(ctx->'results') k));
END $$;
CREATE FUNCTION public.i3(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    RETURN jsonb_build_object('final', (ctx->'prev'->>'sum')::bigint * 2 + (ctx->'results'->'one'->>'sq')::bigint,
                              's', upper(ctx->'prev'->>'s'),
                              'keys', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(ctx->'results') k),
                              'run_id', ctx->'run_id', 'position', ctx->'position', 'pipeline', ctx->'pipeline',
                              'tenant', ctx->'metadata'->'tenant');
END $$;
SELECT pipeline_worker.create_pipeline('integrity', '[{"name": "one", "function": "public.i1"},
                                                      {"name": "two", "function": "public.i2"},
                                                      {"name": "three", "function": "public.i3"}]');
SQL
# one transaction per run this time: many separate wake-ups
for i in $(seq 1 50); do
    echo "SELECT pipeline_worker.create_run('integrity', jsonb_build_object('n', $i, 's', md5('$i'), 'tag', 'integrity'), '{\"tenant\": \"t$((i % 3))\"}');"
done | pw_psql >/dev/null
pw_wait_all_finished 40
pw_check_sql "50 integrity runs succeeded" 50 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'integrity' AND status = 'succeeded'"
pw_check_sql "50 integrity results exact" 50 \
    "SELECT count(*) FROM pipeline_worker.runs r, LATERAL (SELECT (r.input->>'n')::bigint AS n) x
      WHERE r.input->>'tag' = 'integrity' AND r.result = jsonb_build_object(
            'final', (x.n * x.n + x.n) * 2 + x.n * x.n,
            's', upper(md5(md5(x.n::text))),
            'keys', '[\"one\", \"two\"]'::jsonb,
            'run_id', r.id, 'position', 3, 'pipeline', 'integrity',
            'tenant', 't' || (x.n % 3))"
pw_check_sql "step 2 outputs exact (results keys = earlier steps only)" 50 \
    "SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
      WHERE r.input->>'tag' = 'integrity' AND s.position = 2 AND s.name = 'two' AND s.output = jsonb_build_object(
            'sum', (r.input->>'n')::bigint * (r.input->>'n')::bigint + (r.input->>'n')::bigint, 's', md5(r.input->>'s'), 'keys', '[\"one\"]'::jsonb)"
pw_check_sql "metadata unchanged on the runs" 50 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'integrity'
        AND metadata = jsonb_build_object('tenant', 't' || ((input->>'n')::int % 3))"
pw_check_common "integrity" integrity 50 150

# ---------------------------------------------------------------- 120 runs alternating success/failure
start=$(pw_now)
pw_psql -c "SELECT count(pipeline_worker.create_run('p3',
                CASE WHEN i % 2 = 0 THEN jsonb_build_object('n', i, 'tag', 'alt')
                     ELSE jsonb_build_object('n', i, 'tag', 'alt', 'fail_at', 's2') END))
              FROM generate_series(1, 120) i" >/dev/null
pw_wait_all_finished 40
pw_info "120 alternating runs finished in $(pw_elapsed "$start") s"
A="pipeline_worker.runs r WHERE r.input->>'tag' = 'alt'"
pw_check_sql "even runs succeeded" 60 \
    "SELECT count(*) FROM $A AND (r.input->>'n')::int % 2 = 0 AND r.status = 'succeeded'
        AND r.result = jsonb_build_object('n', r.input->'n', 'acc', 6 * (r.input->>'n')::int, 'tag', 'alt', 'step', 's3', 'prev_step', 's2')"
pw_check_sql "odd runs failed with an error naming step s2 and the message" 60 \
    "SELECT count(*) FROM $A AND (r.input->>'n')::int % 2 = 1 AND r.status = 'failed'
        AND r.error LIKE '%s2%' AND r.error LIKE '%planned failure for n=' || (r.input->>'n') || '%' AND r.finished_at IS NOT NULL"
pw_check_sql "failed runs: step rows are s1 succeeded, s2 failed with error, no s3" 60 \
    "SELECT count(*) FROM $A AND (r.input->>'n')::int % 2 = 1
        AND (SELECT string_agg(s.position || s.name || s.status || (s.error IS NOT NULL), ',' ORDER BY s.position)
               FROM pipeline_worker.run_steps s WHERE s.run_id = r.id) = '1s1succeededfalse,2s2failedtrue'"
pw_check_sql "failed runs: step 2 effects rolled back, step 3 never ran (only s1 in fx)" 60 \
    "SELECT count(*) FROM $A AND (r.input->>'n')::int % 2 = 1
        AND (SELECT string_agg(step, ',' ORDER BY step) FROM fx WHERE fx.run_id = r.id) = 's1'"
pw_check_sql "succeeded runs: 3 step rows, 3 side effects" 60 \
    "SELECT count(*) FROM $A AND (r.input->>'n')::int % 2 = 0
        AND (SELECT count(*) FROM pipeline_worker.run_steps s WHERE s.run_id = r.id AND s.status = 'succeeded') = 3
        AND (SELECT count(*) FROM fx WHERE fx.run_id = r.id) = 3"
pw_check_common "alternating" alt 120 240
pw_check "worker pids unchanged after all that" "$pids" "$(pw_worker_pids)"
pw_check_sql "nothing left pending or running" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status NOT IN ('succeeded', 'failed')"
# The workers (still running) report their table statistics, so autovacuum sees what they write and update.
stats=$(pw_wait_sql t 5 "SELECT (SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'pipeline_worker.run_steps'::regclass) > 0
                           AND (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'pipeline_worker.runs'::regclass) > 0")
pw_check "running workers' writes show in pg_stat_user_tables" t "$stats"
# The step contexts are written in jsonb's layout directly; the first ones of every worker are compared with what
# jsonb's own functions build (inputs, metadata, outputs of every shape used above).
pw_check "the step context writer agreed with jsonb's in every worker" 0 "$(grep -c 'context writer disagrees' "$PW_LOG")"
pw_finish
