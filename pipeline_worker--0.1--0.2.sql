-- pipeline_worker 0.1 -> 0.2: flow control (priorities, delayed runs, idempotency and concurrency keys,
-- concurrency and rate limits, pause, bulk submission, cron schedules).
-- Every reference below is schema-qualified; nothing depends on the installer's search_path.
-- The first statement alters the run table: the workers lock it first in every transaction (no deadlock with them).
\echo Use "ALTER EXTENSION pipeline_worker UPDATE TO '0.2'" to load this file. \quit

-- ---------------------------------------------------------------- runs

-- New columns have constant defaults or none: no table rewrite.
ALTER TABLE pipeline_worker.runs
    ADD COLUMN priority        int NOT NULL DEFAULT 0,  -- between -32768 and 32767
    ADD COLUMN run_at          timestamptz,   -- as submitted: not claimed before (not_before holds it while due)
    ADD COLUMN idempotency_key text,          -- not empty, at most 1000 bytes
    ADD COLUMN concurrency_key text,
    -- set while a pending run waits outside the queue: 1 its pipeline is at a limit, 2 its concurrency key
    -- is, 3 its pipeline is paused. The workers put it back (parked = NULL) when there is room again.
    ADD COLUMN parked          smallint;

-- The run tables' CHECK constraints call these (C, in row_checks.cpp) rather than spelling their rules out in SQL:
-- PostgreSQL reads and plans a table's CHECK expressions again in every statement that writes to it, and the rules
-- written out (`status IN (...)` above all) were a quarter of the cost of a create_run call. NULL passes, as in SQL.
CREATE FUNCTION pipeline_worker.check_run_status(status text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_run_status_ok';
CREATE FUNCTION pipeline_worker.check_step_status(status text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_step_status_ok';
CREATE FUNCTION pipeline_worker.check_priority(priority int) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_priority_ok';
CREATE FUNCTION pipeline_worker.check_idempotency_key(key text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_key_ok';
CREATE FUNCTION pipeline_worker.check_parked(parked smallint) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_parked_ok';
ALTER TABLE pipeline_worker.runs
    ADD CONSTRAINT runs_priority_check CHECK (pipeline_worker.check_priority(priority)),  -- BETWEEN -32768 AND 32767
    -- <> '' AND octet_length(idempotency_key) <= 1000
    ADD CONSTRAINT runs_idempotency_key_check CHECK (pipeline_worker.check_idempotency_key(idempotency_key)),
    ADD CONSTRAINT runs_parked_check CHECK (pipeline_worker.check_parked(parked));  -- BETWEEN 1 AND 3

-- The queue: pending runs that may start now, highest priority first, then FIFO. Runs that must wait (run_at
-- or a retry back-off in not_before; a limit or a pause in parked) are outside it, so a backlog of them costs
-- the claim nothing.
CREATE INDEX runs_ready_idx ON pipeline_worker.runs ((- priority), id)
    WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL;
-- The timer's list: runs due at not_before (run_at, retry back-off, the end of a sleep or of an event wait).
-- Waiting runs (durable sleeps, event timeouts) share it: one timer for run_at, back-offs and wake-ups.
CREATE INDEX runs_due_idx ON pipeline_worker.runs (not_before)
    WHERE status IN ('pending', 'waiting') AND not_before IS NOT NULL;
-- Runs parked by a pipeline-wide limit or a pause, and by a per-key limit, in the order they go back.
CREATE INDEX runs_parked_idx ON pipeline_worker.runs (pipeline_id, parked, (- priority), id)
    WHERE status = 'pending' AND parked IS NOT NULL;
CREATE INDEX runs_parked_key_idx ON pipeline_worker.runs
    (pipeline_id, pg_catalog.hashtextextended(concurrency_key, 0), (- priority), id)
    WHERE status = 'pending' AND parked = 2;
-- Idempotency keys: unique per pipeline and submitting role for as long as the run exists.
CREATE UNIQUE INDEX runs_idempotency_idx ON pipeline_worker.runs (pipeline_id, submitted_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Finished runs are found by pipeline, status and age through runs_stats_finished_idx (below): retention, purge_runs
-- and the minute roll-ups read each (pipeline, status) range up to their time bound. No index on finished_at alone:
-- it was one more entry for every finished run (~6 % of a W1 drain) and one more large index in every vacuum.
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

-- What pipeline_stats and metrics() count, per pipeline, by index-only range scans (their cost follows the runs
-- counted, not the table): unfinished runs (no unique column: btree deduplication keeps it small), the oldest pending
-- ones, and finished ones by status and time. submitted_by and pipeline_owner are there for row-level security;
-- not_before tells a run waiting for a retry's back-off (not claimable now: counted as scheduled) -- a key column,
-- not an INCLUDE one, which would end the deduplication.
CREATE INDEX runs_stats_open_idx ON pipeline_worker.runs
    (pipeline_id, status, run_at, submitted_by, pipeline_owner, not_before)
    WHERE status NOT IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX runs_stats_oldest_idx ON pipeline_worker.runs (pipeline_id, created_at)
    INCLUDE (run_at, submitted_by, pipeline_owner, not_before) WHERE status = 'pending';
CREATE INDEX runs_stats_finished_idx ON pipeline_worker.runs (pipeline_id, status, finished_at)
    INCLUDE (started_at, submitted_by, pipeline_owner) WHERE status IN ('succeeded', 'failed', 'cancelled');
-- Index-only scans need the visibility map: vacuum after bulk submissions too. And with retention, every run is
-- inserted, updated and deleted (and its steps inserted and deleted) within minutes: autovacuum at its default cost
-- limits fell behind by millions of dead rows in a steady W1 load with retention '1 minute' and the tables grew
-- without end (bench --steady --steady-retention); unthrottled on these two tables it keeps them flat.
ALTER TABLE pipeline_worker.runs SET (autovacuum_vacuum_insert_scale_factor = 0.02,
                                      autovacuum_vacuum_cost_delay = 0);
ALTER TABLE pipeline_worker.run_steps SET (autovacuum_vacuum_insert_scale_factor = 0.05,
                                           autovacuum_vacuum_cost_delay = 0);

-- The same visibility as may_see_run(), written inline: a SQL function with SET search_path cannot be inlined and
-- cost ~2.5 us per row (2.5 s for a million runs) for every role but superusers.
ALTER POLICY runs_visible ON pipeline_worker.runs
    USING ((SELECT pipeline_worker.is_admin()) OR pipeline_worker.has_role(submitted_by::oid)
           OR pipeline_worker.has_role(pipeline_owner::oid));

-- Roll-ups of finished runs per minute, for pipeline_stats: a million runs finished within the hour are a million
-- index entries to count (~100-400 ms). Each database's lead worker seals the minutes no open transaction can still
-- add a finished run to (older than every open transaction's start) and counts them once; pipeline_stats sums the
-- sealed minutes of the hour and counts the rest (the hour's first partial minute, the minutes not sealed yet) from
-- the index. Retention, purge_runs and retry_run unseal the minutes of recent runs they delete or reopen, a run
-- inserted already finished unseals its minute, and a TRUNCATE of the runs empties the roll-ups (a hand-made UPDATE
-- of a finished run's status or finished_at is not seen: it counts again once its minute leaves the hour). Row-level security as on runs: each role sums the counts it may see.
CREATE TABLE pipeline_worker.finished_minutes (
    pipeline_id    bigint      NOT NULL,
    minute         timestamptz NOT NULL,
    status         text        NOT NULL,
    submitted_by   regrole     NOT NULL,
    pipeline_owner regrole     NOT NULL,
    n              bigint      NOT NULL
);
CREATE INDEX finished_minutes_idx ON pipeline_worker.finished_minutes (pipeline_id, status, minute)
    INCLUDE (n, submitted_by, pipeline_owner);
-- minutes before upto are counted in finished_minutes (within the last 62 minutes)
CREATE TABLE pipeline_worker.finished_sealed (upto timestamptz NOT NULL);
INSERT INTO pipeline_worker.finished_sealed VALUES ('-infinity');
ALTER TABLE pipeline_worker.finished_minutes ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline_worker.finished_sealed ENABLE ROW LEVEL SECURITY;
CREATE POLICY finished_minutes_visible ON pipeline_worker.finished_minutes FOR SELECT
    USING ((SELECT pipeline_worker.is_admin()) OR pipeline_worker.has_role(submitted_by::oid)
           OR pipeline_worker.has_role(pipeline_owner::oid));
CREATE POLICY finished_sealed_visible ON pipeline_worker.finished_sealed FOR SELECT USING (true);
GRANT SELECT ON pipeline_worker.finished_minutes, pipeline_worker.finished_sealed TO PUBLIC;
CREATE FUNCTION pipeline_worker.runs_truncated() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    TRUNCATE pipeline_worker.finished_minutes;
    UPDATE pipeline_worker.finished_sealed SET upto = '-infinity';
    TRUNCATE pipeline_worker.cancel_requests;  -- (run ids may start again: RESTART IDENTITY)
    RETURN NULL;
END $$;
CREATE TRIGGER runs_truncated AFTER TRUNCATE ON pipeline_worker.runs
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline_worker.runs_truncated();
-- A run inserted already finished (a restore, a hand-made history) may belong to a minute sealed before: that
-- minute is counted again. (Runs finished by the extension are updated, not inserted: the WHEN clause keeps the
-- submissions' cost at one call per row, of a C function: PostgreSQL reads and plans a trigger's WHEN clause again in
-- every statement, and the status and time tests written out in SQL, there until 2026-12-05, were a tenth of a
-- create_run. Runs finished before the roll-ups' minutes, most of a restore, queue no trigger event.)
CREATE FUNCTION pipeline_worker.finished_within_rollups(finished_at timestamptz) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_finished_within_rollups';
CREATE FUNCTION pipeline_worker.run_inserted_finished() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.status NOT IN ('succeeded', 'failed', 'cancelled') THEN
        RETURN NULL;
    END IF;
    -- the sealer's lock first: the statements after it see what a sealer holding it committed
    PERFORM 1 FROM pipeline_worker.finished_sealed FOR UPDATE;
    UPDATE pipeline_worker.finished_sealed SET upto = LEAST(upto, date_trunc('minute', NEW.finished_at))
     WHERE upto > date_trunc('minute', NEW.finished_at);
    DELETE FROM pipeline_worker.finished_minutes WHERE minute >= date_trunc('minute', NEW.finished_at);
    RETURN NULL;
END $$;
CREATE TRIGGER run_inserted_finished AFTER INSERT ON pipeline_worker.runs FOR EACH ROW
    WHEN (pipeline_worker.finished_within_rollups(NEW.finished_at))
    EXECUTE FUNCTION pipeline_worker.run_inserted_finished();

-- One row per pipeline the caller may see, counting the runs the caller may see (security invoker: row-level
-- security applies). Each count is its own index range scan. The duration percentiles are those of the latest
-- 1,000 runs finished in the last hour (exact up to 1,000; a bounded sample of a busier hour). In a function for its
-- settings: JIT would compile the many small subplans at every call (~280 ms against ~0.5 ms of work) whenever the
-- estimates are large, e.g. while pipelines has never been analyzed.
CREATE FUNCTION pipeline_worker.pipeline_stats_rows(
        OUT pipeline text, OUT pending bigint, OUT scheduled bigint, OUT running bigint, OUT waiting bigint,
        OUT succeeded_1h bigint, OUT failed_1h bigint, OUT cancelled_1h bigint, OUT oldest_pending_age interval,
        OUT p50_duration_1h interval, OUT p95_duration_1h interval, OUT paused boolean)
    RETURNS SETOF record LANGUAGE sql STABLE SECURITY INVOKER ROWS 100
    SET search_path = pg_catalog, pg_temp
    SET jit = off
    AS $$
SELECT p.name AS pipeline,
       nw.ready + due.ready AS pending,
       (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at > pg_catalog.now())
     + nw.backoff + due.backoff AS scheduled,
       (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'running') AS running,
       (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'waiting') AS waiting,
       (SELECT COALESCE(pg_catalog.sum(m.n), 0) FROM pipeline_worker.finished_minutes m
         WHERE m.pipeline_id = p.id AND m.status = 'succeeded' AND m.minute >= w.b AND m.minute < w.up)::bigint
     + (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'succeeded'
           AND r.finished_at > w.since AND r.finished_at < w.b)
     + (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'succeeded'
           AND r.finished_at >= GREATEST(w.up, w.b)) AS succeeded_1h,
       (SELECT COALESCE(pg_catalog.sum(m.n), 0) FROM pipeline_worker.finished_minutes m
         WHERE m.pipeline_id = p.id AND m.status = 'failed' AND m.minute >= w.b AND m.minute < w.up)::bigint
     + (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'failed'
           AND r.finished_at > w.since AND r.finished_at < w.b)
     + (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'failed'
           AND r.finished_at >= GREATEST(w.up, w.b)) AS failed_1h,
       (SELECT COALESCE(pg_catalog.sum(m.n), 0) FROM pipeline_worker.finished_minutes m
         WHERE m.pipeline_id = p.id AND m.status = 'cancelled' AND m.minute >= w.b AND m.minute < w.up)::bigint
     + (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'cancelled'
           AND r.finished_at > w.since AND r.finished_at < w.b)
     + (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r
         WHERE r.pipeline_id = p.id AND r.status = 'cancelled'
           AND r.finished_at >= GREATEST(w.up, w.b)) AS cancelled_1h,
       pg_catalog.now() - (SELECT r.created_at FROM pipeline_worker.runs r
                            WHERE r.pipeline_id = p.id AND r.status = 'pending'
                              AND NOT COALESCE(r.run_at > pg_catalog.now(), false)
                              AND NOT COALESCE(r.not_before > pg_catalog.now(), false)
                            ORDER BY r.created_at LIMIT 1) AS oldest_pending_age,
       d.pct[1] AS p50_duration_1h,
       d.pct[2] AS p95_duration_1h,
       p.paused
  FROM pipeline_worker.pipelines p
 -- pending runs without run_at (nw) and with run_at come (due), each counted in one range scan: claimable now
 -- (ready), or waiting for a retry's back-off (counted as scheduled, with future run_at; until 2026-12-07 as pending)
 CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*) FILTER (WHERE NOT COALESCE(r.not_before > pg_catalog.now(), false)) AS ready,
              pg_catalog.count(*) FILTER (WHERE r.not_before > pg_catalog.now()) AS backoff
         FROM pipeline_worker.runs r
        WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at IS NULL) nw
 CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*) FILTER (WHERE NOT COALESCE(r.not_before > pg_catalog.now(), false)) AS ready,
              pg_catalog.count(*) FILTER (WHERE r.not_before > pg_catalog.now()) AS backoff
         FROM pipeline_worker.runs r
        WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at <= pg_catalog.now()) due
 -- the hour: since; its first whole minute b; the sealed minutes end at up
 CROSS JOIN (SELECT pg_catalog.now() - interval '1 hour' AS since,
                    pg_catalog.date_trunc('minute', pg_catalog.now() - interval '1 hour') + interval '1 minute' AS b,
                    LEAST(COALESCE((SELECT f.upto FROM pipeline_worker.finished_sealed f LIMIT 1), '-infinity'),
                          pg_catalog.now()) AS up) w
 CROSS JOIN LATERAL (
       SELECT pg_catalog.percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY s.duration) AS pct
         FROM ((SELECT r.finished_at, r.finished_at - r.started_at AS duration FROM pipeline_worker.runs r
                 WHERE r.pipeline_id = p.id AND r.status = 'succeeded'
                   AND r.finished_at > pg_catalog.now() - interval '1 hour'
                 ORDER BY r.finished_at DESC LIMIT 1000)
               UNION ALL
               (SELECT r.finished_at, r.finished_at - r.started_at FROM pipeline_worker.runs r
                 WHERE r.pipeline_id = p.id AND r.status = 'failed'
                   AND r.finished_at > pg_catalog.now() - interval '1 hour'
                 ORDER BY r.finished_at DESC LIMIT 1000)
               UNION ALL
               (SELECT r.finished_at, r.finished_at - r.started_at FROM pipeline_worker.runs r
                 WHERE r.pipeline_id = p.id AND r.status = 'cancelled'
                   AND r.finished_at > pg_catalog.now() - interval '1 hour'
                 ORDER BY r.finished_at DESC LIMIT 1000)
               ORDER BY 1 DESC LIMIT 1000) s) d
$$;
CREATE VIEW pipeline_worker.pipeline_stats WITH (security_invoker = true) AS
    SELECT * FROM pipeline_worker.pipeline_stats_rows();
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

-- ---------------------------------------------------------------- workflows

-- A run is 'waiting' while nothing of it executes and it sleeps or waits for an event: no worker, no transaction,
-- no concurrency slot. not_before is when it wakes (the sleep's end, the event's timeout; NULL: only an event
-- wakes it); waiting_for the event its waiting step expects.
ALTER TABLE pipeline_worker.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE pipeline_worker.runs ADD CONSTRAINT runs_status_check
    CHECK (pipeline_worker.check_run_status(status));  -- pending, running, waiting, succeeded, failed, cancelled
ALTER TABLE pipeline_worker.runs
    ADD COLUMN parent_run_id bigint,   -- the run whose "pipeline" step started this one
    ADD COLUMN waiting_for   text;
CREATE INDEX runs_parent_idx ON pipeline_worker.runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- A skipped step ("if" not met) and a step sleeping or waiting for an event have rows too; a map task has its
-- element index in task (NULL for ordinary steps).
ALTER TABLE pipeline_worker.run_steps DROP CONSTRAINT run_steps_status_check;
ALTER TABLE pipeline_worker.run_steps ADD CONSTRAINT run_steps_status_check
    CHECK (pipeline_worker.check_step_status(status));  -- running, waiting, succeeded, failed, skipped
ALTER TABLE pipeline_worker.run_steps ADD COLUMN task int CHECK (task >= 0);
-- One row per attempt of a step or of a map task: the key gains task (NULL, one value, for ordinary steps). It keeps
-- its name, which the workers' statements use.
ALTER TABLE pipeline_worker.run_steps DROP CONSTRAINT run_steps_pkey;
CREATE UNIQUE INDEX run_steps_pkey ON pipeline_worker.run_steps (run_id, position, task, attempt) NULLS NOT DISTINCT;
-- (logical replication of the table, if anyone publishes it, needs an identity without the primary key)
ALTER TABLE pipeline_worker.run_steps REPLICA IDENTITY FULL;

-- The mailbox of send_event(): kept until the run is deleted; consumed_at is set when a "wait_for" step takes it
-- (each event once, oldest first).
CREATE TABLE pipeline_worker.events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      bigint      NOT NULL,
    event       text        NOT NULL CHECK (event <> '' AND octet_length(event) <= 200),
    payload     jsonb       NOT NULL DEFAULT '{}',
    sent_by     regrole     NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    consumed_at timestamptz,
    position    int          -- the step that consumed it
);
CREATE INDEX events_unconsumed_idx ON pipeline_worker.events (run_id, event, id) WHERE consumed_at IS NULL;
CREATE INDEX events_run_idx ON pipeline_worker.events (run_id);
ALTER TABLE pipeline_worker.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_visible ON pipeline_worker.events FOR SELECT
    USING (EXISTS (SELECT 1 FROM pipeline_worker.runs r WHERE r.id = run_id));
GRANT SELECT ON pipeline_worker.events TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.events', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.events_id_seq', '');

-- Events to a run: its submitter, its pipeline's owner and admins; anyone else gets 42501, whether or not the run
-- exists. false (nothing stored) for a finished run.
CREATE FUNCTION pipeline_worker.send_event(run_id bigint, event text, payload jsonb DEFAULT '{}')
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_send_event';
-- The caller's own run of that pipeline, by its idempotency key.
CREATE FUNCTION pipeline_worker.send_event(pipeline text, idempotency_key text, event text, payload jsonb DEFAULT '{}')
    RETURNS boolean LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_send_event_by_key';

-- Cancels that cascaded from a parent (cancel_run, or the parent failing) to a descendant another transaction held
-- at that moment: that run's executor is told through shared memory, which a crash or an immediate stop forgets. The
-- cancelling transaction records the run here as well (error: what the cancel writes on it). About once a second the
-- lead worker cancels the recorded runs no transaction holds any more, gives those still held their request back if
-- shared memory lost it, and deletes the records of finished or deleted runs; a claim of a recorded run (after a
-- crash, before that look) cancels it before its first step; retry_run deletes the run's record.
-- Internal: no privileges for anyone but the owner. (Not unique: a worker recording a run must not wait for a user's
-- open transaction that recorded it too; every record of a run goes at once.)
CREATE TABLE pipeline_worker.cancel_requests (
    run_id       bigint      NOT NULL,
    error        text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX cancel_requests_run_idx ON pipeline_worker.cancel_requests (run_id);
REVOKE ALL ON pipeline_worker.cancel_requests FROM PUBLIC;
ALTER TABLE pipeline_worker.cancel_requests ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.cancel_requests', '');

-- The grants' row-level security helper: 0.1's SECURITY DEFINER SQL function told any role the owner of any pipeline
-- by name. It answers now only for a pipeline the caller may see (its owner's privileges, an admin, a grantee), NULL
-- otherwise -- what the policy needs, and nothing more.
CREATE OR REPLACE FUNCTION pipeline_worker.pipeline_owner(pipeline text) RETURNS regrole
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'pw_pipeline_owner';

-- Workers serving this database switch to the 0.2 statements when this update commits.
SELECT pipeline_worker.wake_workers();
