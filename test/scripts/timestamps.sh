#!/bin/bash
# Time inside steps executed by the workers: now() is the start of the worker's current transaction (several
# runs may share it: at most commit_interval_ms old), statement_timestamp() the step's own start, and
# pg_stat_activity shows the workers' real transaction and statement starts. Found by a user: now() in a step
# returned the worker's start time (the same value for runs a minute apart).
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up timestamps 2 20 "pipeline_worker.commit_interval_ms = 20" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE TABLE ts (run_id bigint, step int, tx timestamptz, stmt timestamptz, clock timestamptz);
GRANT INSERT ON ts TO PUBLIC;
CREATE FUNCTION ts_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ts VALUES ((ctx->>'run_id')::bigint, (ctx->>'position')::int, now(), statement_timestamp(),
                           clock_timestamp());
    PERFORM pg_sleep(0.05);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('ts', '[{"name": "a", "function": "ts_step"}, {"name": "b", "function": "ts_step"}]');
SQL

for i in 1 2 3; do
    pw_psql -c "SELECT pipeline_worker.create_run('ts')" >/dev/null
    pw_wait_all_finished 20
    sleep 1.2
done
pw_check_sql "3 runs succeeded" 3 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'"
pw_check_sql "6 steps recorded their times" 6 "SELECT count(*) FROM ts"
pw_check_sql "runs submitted seconds apart see distinct now(), at least a second apart" 3 \
    "SELECT count(*) FROM (SELECT tx - lag(tx) OVER (ORDER BY run_id) AS gap FROM ts WHERE step = 1) g
      WHERE gap IS NULL OR gap > interval '1 second'"
# (the upper bounds leave a loaded machine 200 ms of scheduling; the user's bug was off by the worker's age, seconds)
pw_check_sql "now() in every step is at most commit_interval_ms (+ 230 ms of slack) before clock_timestamp()" 0 \
    "SELECT count(*) FROM ts WHERE clock - tx > interval '250 ms' OR clock < tx"
pw_check_sql "statement_timestamp() is the step's own start (after now(), the second step's after the first's end)" 0 \
    "SELECT count(*) FROM ts a WHERE a.stmt < a.tx OR a.clock - a.stmt > interval '200 ms'
        OR EXISTS (SELECT 1 FROM ts b WHERE b.run_id = a.run_id AND b.step = a.step + 1
                                      AND b.stmt < a.clock + interval '50 ms')"
pw_check_sql "now() is not the worker's start time" 0 \
    "SELECT count(*) FROM ts, pg_stat_activity a WHERE a.backend_type = 'pipeline_worker' AND ts.tx = a.backend_start"

# pg_stat_activity of a worker inside a long step: its transaction and statement started with that step's run
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION slow_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN '{}'; END $$;
SELECT pipeline_worker.create_pipeline('slow2', '[{"name": "s", "function": "slow_step"}]');
SQL
sleep 2   # the workers' previous activity is old now
pw_psql -c "SELECT pipeline_worker.create_run('slow2')" >/dev/null
# (polled: the check needs the worker inside the step, which a slow machine may take more than a moment to reach)
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE '%step 1 (s)%'" \
    >/dev/null
pw_check_sql "a worker in a step shows xact_start and query_start of that step (< 1.5 s old)" 1 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE '%step 1 (s)%'
        AND now() - xact_start < interval '1.5 s' AND now() - query_start < interval '1.5 s'"
pw_wait_all_finished 20

# run_at just ahead of a long create_runs: the INSERT sets not_before on the rows it writes before run_at (by its own
# clock), and the commit must set the workers' timer for them. It decided by the clock after the INSERT: with run_at
# passed by then, no timer was set, and those rows waited for an unrelated timer round -- in a quiet database, for good
# (here ~3,000 of the 20,000, still unfinished after 10 s, with the build before 2026-12-04).
pw_psql >/dev/null <<'SQL' || pw_fail "fixtures of the soon pipeline"
CREATE FUNCTION noop(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RETURN '{}'; END $$;
SELECT pipeline_worker.create_pipeline('soon', '[{"name": "s", "function": "noop"}]');
SQL
pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('soon',
              (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 20000) g),
              run_at => clock_timestamp() + interval '20 ms')" >/dev/null || pw_fail "create_runs of soon"
if left=$(pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'soon' AND status <> 'succeeded'" 0.2); then
    pw_ok "20,000 runs whose run_at passed during their create_runs all ran"
else
    pw_fail "$left of 20,000 runs whose run_at passed during their create_runs still unfinished after 10 s ($(pw_psql -c \
        "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'soon' AND not_before IS NOT NULL") with not_before)"
fi

# Runs due one after another, 100 ms apart: each starts at its own run_at, not with the next one. Two timer rounds at
# once (the first set the timer for a run it had just promoted itself, and woke a worker for it) each locked the
# other's runs: the second's promote re-checked a row the first had promoted, no longer due, and kept it locked until
# its commit. The claims skipped it; it started with the next run due -- the last one a second later, at an idle
# worker's next look (flow_limits.sh, CI). Here up to 8 of 40 such runs started with the next one
# in some rounds of 4 s, with the build before 2026-12-05 and 10 workers; none after. (With 2 workers, seldom.)
pw_set_conf pipeline_worker.workers 10 || pw_fail "pipeline_worker.workers = 10"
pw_wait_workers 10 20 >/dev/null || pw_fail "10 workers did not show up"
pw_psql -c "SELECT pipeline_worker.create_pipeline('spaced', '[{\"name\": \"s\", \"function\": \"noop\"}]')" >/dev/null
for round in 1 2 3; do
    pw_psql -c "SELECT count(*) FROM (SELECT pipeline_worker.create_run('spaced', '{\"round\": $round}',
                  run_at => clock_timestamp() + (300 + g * 100) * interval '1 ms') FROM generate_series(1, 40) g) c" >/dev/null
    sleep 4.4
    pw_wait_all_finished 10
done
pw_info "delayed runs 100 ms apart: $(pw_psql -c "SELECT 'latest start ' || round(1000 * extract(epoch FROM max(started_at - run_at)))
           || ' ms after its run_at' FROM pipeline_worker.runs WHERE pipeline = 'spaced'")"
pw_check_sql "3 x 40 delayed runs 100 ms apart: each started before the next one was due" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'spaced' AND started_at >= run_at + interval '100 ms'"
pw_finish
