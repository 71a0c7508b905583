-- The extension's own statements are kept as generic plans, planned with sequential scans, sorts, hash and
-- merge joins disabled: statistics of the moment (here: tiny, freshly analyzed tables, on which a planner left
-- alone scans sequentially) must not leave a plan behind that scans the run tables once they are large.
-- Checked with this transaction's own table statistics, which count the statements run through SPI too.
CREATE FUNCTION plans_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN RETURN jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 1); END $$;
SELECT pipeline_worker.create_pipeline('plans',
    '[{"name": "a", "function": "plans_step"}, {"name": "b", "function": "plans_step"}]');
ANALYZE pipeline_worker.runs, pipeline_worker.run_steps;
BEGIN;
SELECT count(pipeline_worker.create_run('plans')) AS created FROM generate_series(1, 3);
SELECT pipeline_worker.execute_run(pipeline_worker.claim_run()) AS first,
       pipeline_worker.execute_run(pipeline_worker.claim_run()) AS second;
SELECT pipeline_worker.cancel_run(pipeline_worker.claim_run()) AS cancelled;
SELECT relname, seq_scan, idx_scan > 0 AS index_scans
  FROM pg_stat_xact_user_tables
 WHERE schemaname = 'pipeline_worker' AND relname IN ('runs', 'run_steps')
 ORDER BY relname;
COMMIT;
SELECT status, result FROM pipeline_worker.runs WHERE pipeline = 'plans' ORDER BY id;
-- An index a user adds to the run tables serves the user's queries, never the extension's statements (they name
-- the indexes they may use): here one on (status, id), which could also find pending runs in id order.
CREATE INDEX plans_user_idx ON pipeline_worker.runs (status, id);
ANALYZE pipeline_worker.runs;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM pipeline_worker.runs WHERE status = 'succeeded' AND id > 0;
RESET enable_seqscan;
SELECT pg_stat_force_next_flush();
BEGIN;
SELECT count(pipeline_worker.create_run('plans')) AS created FROM generate_series(1, 2);
SELECT pipeline_worker.execute_run(pipeline_worker.claim_run()) AS first,
       pipeline_worker.execute_run(pipeline_worker.claim_run()) AS second;
COMMIT;
SELECT pg_stat_force_next_flush();
SELECT pg_stat_clear_snapshot();
-- (the counters move: the queue index was scanned by the claims)
SELECT indexrelname, idx_scan > 0 AS scanned FROM pg_stat_user_indexes
 WHERE schemaname = 'pipeline_worker' AND indexrelname IN ('plans_user_idx', 'runs_ready_idx') ORDER BY 1;
DROP INDEX pipeline_worker.plans_user_idx;
SELECT pipeline_worker.drop_pipeline('plans');
DROP FUNCTION plans_step(jsonb);
