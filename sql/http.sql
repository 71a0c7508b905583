-- HTTP steps executed in a session (claim_run() + execute_run(); no background workers): egress control,
-- connection errors, retries and the run-time privilege check, all without an HTTP server. The workers' path
-- (requests with no transaction open, concurrency, every answer kind) is tested by test/scripts/http.sh.

SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');

-- ---------------------------------------------------------------- settings
SHOW pipeline_worker.http_allowed_hosts;
SHOW pipeline_worker.http_max_response_bytes;
SHOW pipeline_worker.http_max_in_flight;
-- superuser-only, reloadable, validated
ALTER SYSTEM SET pipeline_worker.http_allowed_hosts = '10.0.0.0/33';
ALTER SYSTEM SET pipeline_worker.http_allowed_hosts = 'exa mple.com';
SET pipeline_worker.http_allowed_hosts = '*';

-- ---------------------------------------------------------------- nothing is allowed by default
SELECT pipeline_worker.create_pipeline('h_refused',
    '[{"name": "call", "http": {"url": "http://127.0.0.1:1/hook"}, "max_attempts": 2, "retry_delay_ms": 0}]');
SELECT pipeline_worker.create_pipeline('h_denied',
    '[{"name": "call", "http": {"url": "http://127.0.0.2:1/hook", "method": "GET"}, "max_attempts": 3}]');
SELECT pipeline_worker.create_run('h_refused') AS refused_id \gset
SELECT pipeline_worker.claim_run() = :refused_id AS claimed;
SELECT pipeline_worker.execute_run(:refused_id);
SELECT status, error FROM pipeline_worker.runs WHERE id = :refused_id;
SELECT position, attempt, status, error FROM pipeline_worker.run_steps WHERE run_id = :refused_id;
-- a denial is not retried (1 attempt of 2); retry_run() re-queues it by hand
SELECT pipeline_worker.retry_run(:refused_id);

-- ---------------------------------------------------------------- allow 127.0.0.1: a refused connection
ALTER SYSTEM SET pipeline_worker.http_allowed_hosts = '127.0.0.1';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SHOW pipeline_worker.http_allowed_hosts;
SELECT pipeline_worker.claim_run() = :refused_id AS claimed;
SELECT pipeline_worker.execute_run(:refused_id);
SELECT status, regexp_replace(error, ': connection failed: .*', ': connection failed: ...') AS error
  FROM pipeline_worker.runs WHERE id = :refused_id;
SELECT attempt, status, error LIKE 'connection failed: %' AS connection_failed
  FROM pipeline_worker.run_steps WHERE run_id = :refused_id ORDER BY attempt;
-- a connection error is retried: attempt 1 fails, the run waits for attempt 2 (same idempotency key scheme)
SELECT pipeline_worker.create_run('h_refused') AS refused2_id \gset
SELECT pipeline_worker.claim_run() = :refused2_id AS claimed;
SELECT pipeline_worker.execute_run(:refused2_id);
SELECT status, not_before IS NOT NULL AS retry_scheduled FROM pipeline_worker.runs WHERE id = :refused2_id;
SELECT pipeline_worker.claim_run() = :refused2_id AS claimed;
SELECT pipeline_worker.execute_run(:refused2_id);
SELECT attempt, status, error LIKE 'connection failed: %' AS connection_failed
  FROM pipeline_worker.run_steps WHERE run_id = :refused2_id ORDER BY attempt;

-- an address that is not in the list: refused before connecting, not retried
SELECT pipeline_worker.create_run('h_denied') AS denied_id \gset
SELECT pipeline_worker.claim_run() = :denied_id AS claimed;
SELECT pipeline_worker.execute_run(:denied_id);
SELECT status, error FROM pipeline_worker.runs WHERE id = :denied_id;

-- ---------------------------------------------------------------- the owner must still be allowed HTTP steps
CREATE ROLE regress_http_owner;
GRANT pipeline_worker_http TO regress_http_owner;
SET ROLE regress_http_owner;
SELECT pipeline_worker.create_pipeline('h_owner', '[{"name": "call", "http": {"url": "http://127.0.0.1:1/x"}}]');
SELECT pipeline_worker.create_run('h_owner') AS owner_id \gset
RESET ROLE;
REVOKE pipeline_worker_http FROM regress_http_owner;
SELECT pipeline_worker.claim_run() = :owner_id AS claimed;
SELECT pipeline_worker.execute_run(:owner_id);
SELECT status, error FROM pipeline_worker.runs WHERE id = :owner_id;

-- ---------------------------------------------------------------- clean up
SELECT pipeline_worker.drop_pipeline(p) FROM unnest(ARRAY['h_owner', 'h_refused', 'h_denied']) p;
DELETE FROM pipeline_worker.runs WHERE pipeline = 'h_owner';
DROP ROLE regress_http_owner;
ALTER SYSTEM RESET pipeline_worker.http_allowed_hosts;
SELECT pg_reload_conf();
SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');
