-- Installs the extension into the regression database; the other files rely on it.
-- The temporary instance preloads the library with pipeline_worker.workers = 0 (test/regress.conf).
CREATE EXTENSION pipeline_worker;
SELECT extname, extversion, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'pipeline_worker';
SHOW pipeline_worker.workers;
SELECT count(*) AS background_workers FROM pg_stat_activity WHERE backend_type = 'pipeline_worker';
SELECT count(*) AS worker_slots FROM pipeline_worker.workers();
SELECT rolname FROM pg_roles WHERE rolname IN ('pipeline_worker_admin', 'pipeline_worker_http') ORDER BY 1;
SELECT count(*) AS pipelines FROM pipeline_worker.pipelines;
SELECT count(*) AS runs FROM pipeline_worker.runs;
