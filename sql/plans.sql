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
SELECT pipeline_worker.drop_pipeline('plans');
DROP FUNCTION plans_step(jsonb);
