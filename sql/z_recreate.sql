-- The extension dropped and created again (run last: it leaves a fresh installation). Run ids start again at 1:
-- nothing of the old installation's runs may reach the new ones -- here a cancel request left for old run 1
-- (until 2026-12-05 the new run 1 was cancelled by it).
DROP EXTENSION pipeline_worker CASCADE;
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION public.rc_step(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
SELECT pipeline_worker.create_pipeline('rc', '[{"name": "s", "function": "public.rc_step"}]');
SELECT pipeline_worker.create_run('rc') AS first_id;
SELECT pipeline_worker.cancel_run(1) AS cancelled_old_run_1;
DROP EXTENSION pipeline_worker;
CREATE EXTENSION pipeline_worker;
SELECT pipeline_worker.create_pipeline('rc', '[{"name": "s", "function": "public.rc_step"}]');
SELECT pipeline_worker.create_run('rc') AS new_id;
SELECT pipeline_worker.claim_run() AS claimed;
SELECT pipeline_worker.execute_run(1) AS new_run_1;
SELECT id, status, result FROM pipeline_worker.runs;
-- A run created in a subtransaction that rolls back is not counted as created (metrics(): "Runs created
-- (committed)"; until 2026-12-05 it was).
SELECT pipeline_worker.create_pipeline('rc_sp', '[{"name": "s", "function": "public.rc_step"}]');
SELECT pipeline_worker.create_run('rc_sp') IS NOT NULL AS kept;
BEGIN;
SAVEPOINT a;
SELECT pipeline_worker.create_run('rc_sp') IS NOT NULL AS rolled_back;
ROLLBACK TO a;
COMMIT;
SELECT substring(pipeline_worker.metrics()
                 from 'pipeline_worker_runs_created_total\{database="contrib_regression",pipeline="rc_sp"\} ([0-9]+)')
       AS created_total;
-- A bulk cancel in one statement takes no lock per run (calls that find the row free take no turn): 10,000 runs
-- do not fill the lock table (the first version of cancel_run's turns failed with "out of shared memory").
SELECT count(*) AS bulk_created FROM pipeline_worker.create_runs('rc_sp', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 10000)));
SELECT count(*) FILTER (WHERE pipeline_worker.cancel_run(id)) AS bulk_cancelled
  FROM pipeline_worker.runs WHERE status = 'pending' AND pipeline = 'rc_sp';
DROP EXTENSION pipeline_worker;
DROP FUNCTION public.rc_step(jsonb);
CREATE EXTENSION pipeline_worker;
