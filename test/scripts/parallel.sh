#!/bin/bash
# Parallel execution: slow runs overlap in different workers; interleaved runs keep their own data.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up parallel 4 20
pw_load_fixtures

# ---------------------------------------------------------------- two slow runs in parallel
# slow_pair LABEL TAG: submit two 2-second runs in one transaction; they must run at the same time
# in two different workers
slow_pair() {
    local label=$1 tag=$2 ids a b t start
    start=$(pw_now)
    ids=$(pw_create_runs p1 "{\"n\": 1, \"sleep\": 2, \"tag\": \"$tag-a\"}" "{\"n\": 2, \"sleep\": 2, \"tag\": \"$tag-b\"}")
    a=$(echo "$ids" | sed -n 1p); b=$(echo "$ids" | sed -n 2p)
    pw_check "$label: wait_run(a)" succeeded "$(pw_wait_run "$a" 20)"
    pw_check "$label: wait_run(b)" succeeded "$(pw_wait_run "$b" 20)"
    t=$(pw_elapsed "$start")
    if pw_lt "$t" 3.8; then pw_ok "$label: two 2-second runs the last done $t s after their commit (parallel)"
    else pw_fail "$label: two 2-second runs took $t s (serial?)"; fi
    pw_check_sql "$label: executed by different worker backends" t \
        "SELECT a.worker_pid <> b.worker_pid FROM pipeline_worker.runs a, pipeline_worker.runs b WHERE a.id = $a AND b.id = $b"
    pw_check_sql "$label: started_at/finished_at intervals overlap" t \
        "SELECT a.started_at < b.finished_at AND b.started_at < a.finished_at
           FROM pipeline_worker.runs a, pipeline_worker.runs b WHERE a.id = $a AND b.id = $b"
    pw_check_sql "$label: step rows overlap too" t \
        "SELECT a.started_at < b.finished_at AND b.started_at < a.finished_at
           FROM pipeline_worker.run_steps a, pipeline_worker.run_steps b WHERE a.run_id = $a AND b.run_id = $b"
    pw_check_sql "$label: both worker_pids are pipeline_worker backends" 2 \
        "SELECT count(*) FROM pipeline_worker.runs r JOIN pg_stat_activity a ON a.pid = r.worker_pid
          WHERE r.id IN ($a, $b) AND a.backend_type = 'pipeline_worker'"
    pw_check_sql "$label: results" "{\"n\": 1, \"acc\": 1, \"tag\": \"$tag-a\", \"step\": \"s1\", \"prev_step\": null}|{\"n\": 2, \"acc\": 2, \"tag\": \"$tag-b\", \"step\": \"s1\", \"prev_step\": null}" \
        "SELECT string_agg(result::text, '|' ORDER BY id) FROM pipeline_worker.runs WHERE id IN ($a, $b)"
}
slow_pair "fresh workers" slow
# the workers have just executed many fast runs (they may batch claims now): slow runs still
# must not queue up behind each other in one worker
pw_psql -c "SELECT count(pipeline_worker.create_run('p1', jsonb_build_object('n', i, 'tag', 'warm'))) FROM generate_series(1, 200) i" >/dev/null
pw_wait_all_finished 20
pw_check_sql "200 fast warm-up runs succeeded" 200 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'tag' = 'warm' AND status = 'succeeded'"
slow_pair "after a burst of fast runs" warmed

# ---------------------------------------------------------------- slow runs of another pipeline after a burst
# The workers batch claims after thousands of fast runs; 4 one-second runs of a pipeline they have not seen (and then
# of one they have seen to be slow), submitted together, still go to the 4 workers: a worker keeps no run claimed
# behind one that may take long. (Until 2026-12-07 two workers took two each, one after the other, while the other two
# waited for runs; acceptance walk-through.)
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_pipeline('p_slow_new', '[{"name": "s1", "function": "public.t_step"}]');
SELECT count(*) FROM pipeline_worker.create_runs('p1', (SELECT jsonb_agg(jsonb_build_object('n', i, 'tag', 'burst'))
                                                          FROM generate_series(1, 3000) i));
SQL
pw_wait_all_finished 30
for round in unseen seen; do
    last=$(pw_psql -c "SELECT max(id) FROM pipeline_worker.runs")
    pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('p_slow_new',
                  (SELECT jsonb_agg(jsonb_build_object('n', i, 'sleep', 1, 'tag', 'slow4')) FROM generate_series(1, 4) i))" >/dev/null
    pw_wait_all_finished 20
    t=$(pw_psql -c "SELECT round(extract(epoch FROM max(finished_at) - min(created_at))::numeric, 3)
                      FROM pipeline_worker.runs WHERE id > $last")
    pw_check_sql "4 slow runs of a pipeline $round after a burst: 4 workers" 4 \
        "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE id > $last"
    if pw_lt "$t" 1.9; then pw_ok "4 slow runs of a pipeline $round after a burst: the last done $t s after their commit (parallel)"
    else pw_fail "4 slow runs of a pipeline $round after a burst: the last done $t s after their commit (queued behind each other?)"; fi
done

# ---------------------------------------------------------------- 3 interleaved 3-step runs
pw_psql <<'SQL' >/dev/null
BEGIN;
SELECT pipeline_worker.create_run('p3', '{"n": 10, "sleep": 0.3, "tag": "A"}', '{"who": "A"}');
SELECT pipeline_worker.create_run('p3', '{"n": 20, "sleep": 0.3, "tag": "B"}', '{"who": "B"}');
SELECT pipeline_worker.create_run('p3', '{"n": 30, "sleep": 0.3, "tag": "C"}', '{"who": "C"}');
COMMIT;
SQL
pw_wait_all_finished 20
pw_psql -c "CREATE VIEW tr AS SELECT * FROM pipeline_worker.runs WHERE input->>'tag' IN ('A', 'B', 'C')"
pw_check_sql "3 interleaved runs succeeded" 3 "SELECT count(*) FROM tr WHERE status = 'succeeded'"
pw_check_sql "each result is exactly its own" 3 \
    "SELECT count(*) FROM tr r WHERE r.result = jsonb_build_object('n', r.input->'n', 'acc', 6 * (r.input->>'n')::int,
                                                               'tag', r.input->'tag', 'step', 's3', 'prev_step', 's2')"
pw_check_sql "every step output carries its run's tag and acc chain" 9 \
    "SELECT count(*) FROM pipeline_worker.run_steps s JOIN tr r ON r.id = s.run_id
      WHERE s.status = 'succeeded' AND s.output->'tag' = r.input->'tag'
        AND (s.output->>'acc')::int = (r.input->>'n')::int * s.position * (s.position + 1) / 2"
pw_check_sql "every step context belongs to its run (run_id, input, metadata, pipeline, pid)" 9 \
    "SELECT count(*) FROM fx JOIN tr r ON r.id = fx.run_id
      WHERE (fx.ctx->>'run_id')::bigint = r.id AND fx.ctx->'input' = r.input
        AND fx.ctx->'metadata' = r.metadata AND fx.ctx->>'pipeline' = 'p3' AND fx.pid = r.worker_pid"
pw_check_sql "results seen by step s3 are its own run's" 3 \
    "SELECT count(*) FROM fx JOIN tr r ON r.id = fx.run_id
      WHERE fx.step = 's3' AND fx.ctx->'results'->'s1'->'tag' = r.input->'tag'
        AND fx.ctx->'results'->'s2'->'tag' = r.input->'tag' AND fx.ctx->'prev' = fx.ctx->'results'->'s2'"
pw_check_sql "runs overlapped in time (interleaved)" t \
    "SELECT bool_or(a.started_at < b.finished_at AND b.started_at < a.finished_at) FROM tr a JOIN tr b ON b.id > a.id"
n=$(pw_psql -c "SELECT count(DISTINCT worker_pid) FROM tr")
if [ "$n" -ge 2 ]; then pw_ok "interleaved runs spread over $n workers"; else pw_fail "interleaved runs used $n worker(s)"; fi

# ---------------------------------------------------------------- a step made ready while another branch runs
# Ready steps of one run execute concurrently (issue #14): a step whose dependency a helper finished starts at once
# on an idle worker, not once the longest step of the wave ends -- whichever worker took the long step (written
# first or second). r0 -> {long (2 s), b (0.1 s)}; b -> {c, d} (0.3 s each, at once); {c, d} -> e; {long, e} -> f.
# Until 2026-12-08 c and d waited for long (the acceptance walk-through's "wave" case).
wave_log=$(pw_log_size)
pw_psql <<'SQL' >/dev/null
CREATE TABLE wave_fx (run_id bigint, step text, started timestamptz, ended timestamptz);
CREATE FUNCTION wave_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_sleep(coalesce((ctx->'input'->>(ctx->>'step'))::float8, 0));
    INSERT INTO wave_fx VALUES ((ctx->>'run_id')::bigint, ctx->>'step', t0, clock_timestamp());
    RETURN jsonb_build_object('step', ctx->>'step', 'prev', ctx->'prev');
END $$;
SELECT pipeline_worker.create_pipeline('wave_long_first', '[
  {"name": "r0", "function": "wave_step"},
  {"name": "long", "function": "wave_step", "depends_on": ["r0"]},
  {"name": "b", "function": "wave_step", "depends_on": ["r0"]},
  {"name": "c", "function": "wave_step", "depends_on": ["b"]},
  {"name": "d", "function": "wave_step", "depends_on": ["b"]},
  {"name": "e", "function": "wave_step", "depends_on": ["c", "d"]},
  {"name": "f", "function": "wave_step", "depends_on": ["long", "e"]}]');
SELECT pipeline_worker.create_pipeline('wave_long_second', '[
  {"name": "r0", "function": "wave_step"},
  {"name": "b", "function": "wave_step", "depends_on": ["r0"]},
  {"name": "long", "function": "wave_step", "depends_on": ["r0"]},
  {"name": "c", "function": "wave_step", "depends_on": ["b"]},
  {"name": "d", "function": "wave_step", "depends_on": ["b"]},
  {"name": "e", "function": "wave_step", "depends_on": ["c", "d"]},
  {"name": "f", "function": "wave_step", "depends_on": ["long", "e"]}]');
SQL
for pl in wave_long_first wave_long_second wave_long_first wave_long_second; do
    r=$(pw_psql -c "SELECT pipeline_worker.create_run('$pl', '{\"long\": 2, \"b\": 0.1, \"c\": 0.3, \"d\": 0.3, \"e\": 0.1}')")
    pw_check "$pl: succeeded" succeeded "$(pw_wait_run "$r" 30)"
    pw_check_sql "$pl: each step's effect once, f last with both branches' outputs" "7|f|true" \
        "SELECT (SELECT count(*) FROM wave_fx WHERE run_id = $r) || '|' || (result->>'step') || '|' ||
                (result->'prev' ? 'long' AND result->'prev'->'e'->'prev' ? 'c' AND result->'prev'->'e'->'prev' ? 'd')
           FROM pipeline_worker.runs WHERE id = $r"
    pw_check_sql "$pl: c, d and e started before long ended; c and d overlapped" "true|true|true|true" \
        "SELECT bool_and(x.started < l.ended) FILTER (WHERE x.step = 'c') || '|' ||
                bool_and(x.started < l.ended) FILTER (WHERE x.step = 'd') || '|' ||
                bool_and(x.started < l.ended) FILTER (WHERE x.step = 'e') || '|' ||
                (SELECT c.started < d.ended AND d.started < c.ended FROM wave_fx c, wave_fx d
                  WHERE c.run_id = $r AND d.run_id = $r AND c.step = 'c' AND d.step = 'd')
           FROM wave_fx x, wave_fx l WHERE x.run_id = $r AND l.run_id = $r AND l.step = 'long'"
done
# two runs at once on the four workers: each gets one helper (the workers a commit has just woken count as free, not
# only idle ones), and each owner takes up the steps its own unit made ready (here b's: c, d, e) while its helper runs
# the long step
rs=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run(p, '{\"long\": 2, \"b\": 0.1, \"c\": 0.3, \"d\": 0.3, \"e\": 0.1}')::text, ' ')
                   FROM unnest(ARRAY['wave_long_second', 'wave_long_first']) p")
for r in $rs; do
    pw_check "two at once, run $r: succeeded" succeeded "$(pw_wait_run "$r" 30)"
    pw_check_sql "two at once, run $r: each step's effect once; c, d and e started before long ended" "7|true|true|true" \
        "SELECT (SELECT count(*) FROM wave_fx WHERE run_id = $r) || '|' ||
                bool_and(x.started < l.ended) FILTER (WHERE x.step = 'c') || '|' ||
                bool_and(x.started < l.ended) FILTER (WHERE x.step = 'd') || '|' ||
                bool_and(x.started < l.ended) FILTER (WHERE x.step = 'e')
           FROM wave_fx x, wave_fx l WHERE x.run_id = $r AND l.run_id = $r AND l.step = 'long'"
done
pw_check "waves: no error, crash or exit in the server log" "" "$(pw_log_problems "$wave_log")"
pw_finish
