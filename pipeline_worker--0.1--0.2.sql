-- pipeline_worker 0.1 -> 0.2: flow control (priorities, delayed runs, idempotency and concurrency keys,
-- concurrency and rate limits, pause, bulk submission, cron schedules).
-- Every reference below is schema-qualified; nothing depends on the installer's search_path.
\echo Use "ALTER EXTENSION pipeline_worker UPDATE TO '0.2'" to load this file. \quit

-- ---------------------------------------------------------------- runs

-- New columns have constant defaults or none: no table rewrite.
ALTER TABLE pipeline_worker.runs
    ADD COLUMN priority        int NOT NULL DEFAULT 0 CHECK (priority BETWEEN -32768 AND 32767),
    ADD COLUMN run_at          timestamptz,   -- as submitted: not claimed before (not_before holds it while due)
    ADD COLUMN idempotency_key text CHECK (idempotency_key <> '' AND octet_length(idempotency_key) <= 1000),
    ADD COLUMN concurrency_key text,
    -- set while a pending run waits outside the queue: 1 its pipeline is at a limit, 2 its concurrency key
    -- is, 3 its pipeline is paused. The workers put it back (parked = NULL) when there is room again.
    ADD COLUMN parked          smallint CHECK (parked BETWEEN 1 AND 3);

-- The queue: pending runs that may start now, highest priority first, then FIFO. Runs that must wait (run_at
-- or a retry back-off in not_before; a limit or a pause in parked) are outside it, so a backlog of them costs
-- the claim nothing.
CREATE INDEX runs_ready_idx ON pipeline_worker.runs ((- priority), id)
    WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL;
-- The timer's list: pending runs due at not_before (run_at, retry back-off).
CREATE INDEX runs_due_idx ON pipeline_worker.runs (not_before)
    WHERE status = 'pending' AND not_before IS NOT NULL;
-- Runs parked by a pipeline-wide limit or a pause, and by a per-key limit, in the order they go back.
CREATE INDEX runs_parked_idx ON pipeline_worker.runs (pipeline_id, parked, (- priority), id)
    WHERE status = 'pending' AND parked IS NOT NULL;
CREATE INDEX runs_parked_key_idx ON pipeline_worker.runs
    (pipeline_id, pg_catalog.hashtextextended(concurrency_key, 0), (- priority), id)
    WHERE status = 'pending' AND parked = 2;
-- Idempotency keys: unique per pipeline and submitting role for as long as the run exists.
CREATE UNIQUE INDEX runs_idempotency_idx ON pipeline_worker.runs (pipeline, submitted_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Finished runs by age: what retention deletes (pipeline_worker.retention, the "retention" option, purge_runs).
CREATE INDEX runs_finished_idx ON pipeline_worker.runs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
-- The 0.1 queue (FIFO only) is replaced by runs_ready_idx.
DROP INDEX pipeline_worker.runs_pending_idx;

-- ---------------------------------------------------------------- pipelines

ALTER TABLE pipeline_worker.pipelines ADD COLUMN paused boolean NOT NULL DEFAULT false;

-- ---------------------------------------------------------------- schedules

CREATE TABLE pipeline_worker.schedules (
    name        text        PRIMARY KEY CHECK (name <> ''),
    pipeline    text        NOT NULL,
    pipeline_id bigint      NOT NULL,   -- pipelines.id when scheduled: a later pipeline of the same name is not it
    cron        text        NOT NULL,
    input       jsonb       NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}',
    options     jsonb       NOT NULL DEFAULT '{}',
    owner       regrole     NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    next_run_at timestamptz,            -- the next slot (NULL: inactive, or no future slot)
    last_slot   timestamptz,            -- the latest slot handled (a run created, or skipped)
    last_run_id bigint,
    skipped     bigint      NOT NULL DEFAULT 0,   -- slots without a run ("overlap": "skip")
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX schedules_due_idx ON pipeline_worker.schedules (next_run_at) WHERE active;
ALTER TABLE pipeline_worker.schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY schedules_visible ON pipeline_worker.schedules FOR SELECT
    USING (pipeline_worker.has_role(owner::oid) OR pipeline_worker.is_admin());
GRANT SELECT ON pipeline_worker.schedules TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.schedules', '');

-- A dump and restore keeps the ids: new pipelines and runs must not reuse restored ones (0.1 did not dump the
-- identity sequences: after a restore, create_pipeline failed on "pipelines_id_key").
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.pipelines_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.runs_id_seq', '');

-- ---------------------------------------------------------------- functions

-- create_run gains priority, run_at and the keys; positional calls of 0.1 keep working.
DROP FUNCTION pipeline_worker.create_run(text, jsonb, jsonb);
CREATE FUNCTION pipeline_worker.create_run(pipeline text, input jsonb DEFAULT '{}', metadata jsonb DEFAULT '{}',
                                           priority int DEFAULT 0, run_at timestamptz DEFAULT NULL,
                                           idempotency_key text DEFAULT NULL, concurrency_key text DEFAULT NULL)
    RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_create_run';

CREATE FUNCTION pipeline_worker.create_runs(pipeline text, inputs jsonb, metadata jsonb DEFAULT '{}',
                                            priority int DEFAULT 0, run_at timestamptz DEFAULT NULL,
                                            idempotency_keys text[] DEFAULT NULL,
                                            concurrency_keys text[] DEFAULT NULL)
    RETURNS SETOF bigint LANGUAGE c VOLATILE ROWS 1000 AS 'MODULE_PATHNAME', 'pw_create_runs';

CREATE FUNCTION pipeline_worker.alter_pipeline(name text, options jsonb)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_alter_pipeline';

CREATE FUNCTION pipeline_worker.pause_pipeline(name text)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_pause_pipeline';

CREATE FUNCTION pipeline_worker.resume_pipeline(name text)
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_resume_pipeline';

CREATE FUNCTION pipeline_worker.purge_runs(older_than interval, pipeline text DEFAULT NULL)
    RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_purge_runs';

CREATE FUNCTION pipeline_worker.schedule(name text, pipeline text, cron text, input jsonb DEFAULT '{}',
                                         metadata jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_schedule';

CREATE FUNCTION pipeline_worker.unschedule(name text)
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_unschedule';

-- workers() shows every worker of the server with its database (pipeline_worker.databases).
DROP FUNCTION pipeline_worker.workers();
CREATE FUNCTION pipeline_worker.workers(OUT slot int, OUT pid int, OUT state text, OUT run_id bigint,
                                        OUT runs_done bigint, OUT batches bigint, OUT database name)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_workers';

-- ---------------------------------------------------------------- statistics and metrics

-- Unfinished runs by pipeline: what pipeline_stats and metrics() count (finished runs cost them nothing).
CREATE INDEX runs_unfinished_idx ON pipeline_worker.runs (pipeline_id, status) INCLUDE (run_at, created_at)
    WHERE status IN ('pending', 'running', 'waiting');

-- One row per pipeline the caller may see; its runs as the caller may see them (row-level security applies:
-- security_invoker). Unfinished runs come from runs_unfinished_idx, those finished in the last hour from
-- runs_finished_idx.
CREATE VIEW pipeline_worker.pipeline_stats WITH (security_invoker = true) AS
SELECT p.name AS pipeline,
       COALESCE(u.pending, 0) AS pending,
       COALESCE(u.scheduled, 0) AS scheduled,
       COALESCE(u.running, 0) AS running,
       COALESCE(u.waiting, 0) AS waiting,
       COALESCE(f.succeeded_1h, 0) AS succeeded_1h,
       COALESCE(f.failed_1h, 0) AS failed_1h,
       COALESCE(f.cancelled_1h, 0) AS cancelled_1h,
       pg_catalog.now() - u.oldest_pending AS oldest_pending_age,
       f.p50_duration_1h,
       f.p95_duration_1h,
       p.paused
  FROM pipeline_worker.pipelines p
  LEFT JOIN (SELECT r.pipeline_id,
                    pg_catalog.count(*) FILTER (WHERE r.status = 'pending'
                                                  AND NOT COALESCE(r.run_at > pg_catalog.now(), false)) AS pending,
                    pg_catalog.count(*) FILTER (WHERE r.status = 'pending' AND r.run_at > pg_catalog.now()) AS scheduled,
                    pg_catalog.count(*) FILTER (WHERE r.status = 'running') AS running,
                    pg_catalog.count(*) FILTER (WHERE r.status = 'waiting') AS waiting,
                    pg_catalog.min(r.created_at) FILTER (WHERE r.status = 'pending'
                                                  AND NOT COALESCE(r.run_at > pg_catalog.now(), false)) AS oldest_pending
               FROM pipeline_worker.runs r
              WHERE r.status IN ('pending', 'running', 'waiting')
              GROUP BY r.pipeline_id) u ON u.pipeline_id = p.id
  LEFT JOIN (SELECT r.pipeline_id,
                    pg_catalog.count(*) FILTER (WHERE r.status = 'succeeded') AS succeeded_1h,
                    pg_catalog.count(*) FILTER (WHERE r.status = 'failed') AS failed_1h,
                    pg_catalog.count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled_1h,
                    pg_catalog.percentile_disc(0.5) WITHIN GROUP (ORDER BY r.finished_at - r.started_at)
                        AS p50_duration_1h,
                    pg_catalog.percentile_disc(0.95) WITHIN GROUP (ORDER BY r.finished_at - r.started_at)
                        AS p95_duration_1h
               FROM pipeline_worker.runs r
              WHERE r.status IN ('succeeded', 'failed', 'cancelled')
                AND r.finished_at > pg_catalog.now() - interval '1 hour'
              GROUP BY r.pipeline_id) f ON f.pipeline_id = p.id;
GRANT SELECT ON pipeline_worker.pipeline_stats TO PUBLIC;

-- Prometheus: counters from shared memory (every database served), gauges of unfinished runs, workers.
CREATE FUNCTION pipeline_worker.metric_samples(OUT metric text, OUT database text, OUT pipeline text,
                                               OUT status text, OUT kind text, OUT outcome text, OUT le text,
                                               OUT value double precision)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_metric_samples';
CREATE FUNCTION pipeline_worker.metrics() RETURNS text
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_metrics';
REVOKE ALL ON FUNCTION pipeline_worker.metric_samples(), pipeline_worker.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline_worker.metric_samples(), pipeline_worker.metrics()
    TO pg_monitor, pipeline_worker_admin;

-- Workers serving this database switch to the 0.2 statements when this update commits.
SELECT pipeline_worker.wake_workers();
