#!/bin/bash
# 200 heavier runs (a few KB of JSON per run, some CPU work per step) on 15 workers.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up heavy 15 30
pw_load_fixtures
pids=$(pw_worker_pids)

pw_psql >/dev/null <<'SQL'
-- step 1: sum the array, hash the blob, return the array reversed (big output), burn a little CPU
CREATE FUNCTION public.h1(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE burn bigint;
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    SELECT sum(g) INTO burn FROM generate_series(1, 20000) g;
    RETURN jsonb_build_object(
        'sum', (SELECT sum(e::bigint) FROM jsonb_array_elements_text(ctx->'prev'->'arr') e),
        'md5', md5(ctx->'prev'->>'blob'),
        'rev', (SELECT jsonb_agg(e ORDER BY o DESC) FROM jsonb_array_elements(ctx->'prev'->'arr') WITH ORDINALITY a(e, o)),
        'burn', burn);
END $$;
-- step 2: uses prev (step 1) and the run input
CREATE FUNCTION public.h2(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE burn bigint;
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    SELECT count(*) INTO burn FROM generate_series(1, 20000) g WHERE g % 7 = 0;
    RETURN jsonb_build_object(
        'sum2', (ctx->'prev'->>'sum')::bigint + (SELECT sum(e::bigint) FROM jsonb_array_elements_text(ctx->'prev'->'rev') e),
        'md5', md5((ctx->'prev'->>'md5') || (ctx->'input'->>'blob')),
        'first', ctx->'prev'->'rev'->0,
        'blob', ctx->'input'->'blob',
        'burn', burn);
END $$;
-- step 3: uses results of both earlier steps
CREATE FUNCTION public.h3(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    RETURN jsonb_build_object(
        'n', ctx->'input'->'n',
        'total', (ctx->'results'->'h1'->>'sum')::bigint + (ctx->'results'->'h2'->>'sum2')::bigint,
        'md5', md5((ctx->'results'->'h2'->>'md5') || (ctx->'prev'->>'blob')),
        'first', ctx->'prev'->'first',
        'len', length(ctx->'prev'->>'blob'),
        'burns', (ctx->'results'->'h1'->>'burn')::bigint + (ctx->'prev'->>'burn')::bigint);
END $$;
SELECT pipeline_worker.create_pipeline('heavy', '[{"name": "h1", "function": "h1", "max_attempts": 1},
                                                  {"name": "h2", "function": "public.h2", "timeout_ms": 60000},
                                                  {"name": "h3", "function": "h3"}]');
-- expected result of run with input n
CREATE FUNCTION public.h_expected(n int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'n', n,
        'total', 3 * (200 * n + 19900),          -- sum(n .. n+199) = 200n + 19900; step 2 doubles it
        'md5', md5(md5(md5(repeat(md5(n::text), 100)) || repeat(md5(n::text), 100)) || repeat(md5(n::text), 100)),
        'first', n + 199,
        'len', 3200,
        'burns', 200010000 + 2857)
$$;
SQL

start=$(pw_now)
# 4 batches of 50 so creation overlaps execution
for b in 0 1 2 3; do
    pw_psql -c "SELECT count(pipeline_worker.create_run('heavy',
                    jsonb_build_object('n', i, 'tag', 'heavy',
                                       'arr', (SELECT jsonb_agg(g) FROM generate_series(i, i + 199) g),
                                       'blob', repeat(md5(i::text), 100)),
                    jsonb_build_object('batch', $b, 'pad', repeat('m', 500))))
                  FROM generate_series($b * 50 + 1, $b * 50 + 50) i" >/dev/null
done
pw_wait_all_finished 50
pw_info "200 heavy runs finished in $(pw_elapsed "$start") s"
pw_check_sql "200 heavy runs succeeded" 200 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'heavy' AND status = 'succeeded'"
pw_check_sql "200 results exact" 200 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'heavy' AND result = h_expected((input->>'n')::int)"
pw_check_sql "600 step rows succeeded with the big outputs stored" 600 \
    "SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
      WHERE r.pipeline = 'heavy' AND s.status = 'succeeded'
        AND CASE s.position WHEN 1 THEN jsonb_array_length(s.output->'rev') = 200
                            WHEN 2 THEN length(s.output->>'blob') = 3200
                            ELSE s.output = r.result END"
pw_check_sql "each step executed exactly once (600 side effects, 3 per run)" "600 200" \
    "SELECT count(*) || ' ' || count(DISTINCT run_id) FROM fx JOIN pipeline_worker.runs r ON r.id = fx.run_id
      WHERE r.pipeline = 'heavy' AND fx.pid = r.worker_pid"
pw_check_sql "input and metadata unchanged and seen by the steps" 600 \
    "SELECT count(*) FROM fx JOIN pipeline_worker.runs r ON r.id = fx.run_id
      WHERE r.pipeline = 'heavy' AND fx.ctx->'input' = r.input AND fx.ctx->'metadata' = r.metadata
        AND r.metadata->>'pad' = repeat('m', 500)"
pw_check_sql "every run's worker_pid is a pipeline_worker backend" 200 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'heavy' AND worker_pid = ANY ($(pw_int_array "$pids"))"
pw_info "heavy runs used $(pw_psql -c "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE pipeline = 'heavy'") distinct workers"
pw_check "worker pids unchanged" "$pids" "$(pw_worker_pids)"
problems=$(pw_log_problems)
if [ -z "$problems" ]; then pw_ok "no ERROR/FATAL/worker exit in the server log"
else pw_fail "log problems: $(echo "$problems" | head -3)"; fi
pw_finish
