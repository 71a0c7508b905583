-- pipeline_worker 0.1: schema, tables and the SQL interface.
-- Every reference below is schema-qualified; nothing depends on the installer's search_path.
\echo Use "CREATE EXTENSION pipeline_worker" to load this file. \quit

-- Roles are cluster-wide: create them only if an earlier installation (another database) did not.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pipeline_worker_admin') THEN
        CREATE ROLE pipeline_worker_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pipeline_worker_http') THEN
        CREATE ROLE pipeline_worker_http NOLOGIN;
    END IF;
END
$roles$;

-- ---------------------------------------------------------------- tables

CREATE TABLE pipeline_worker.pipelines (
    name        text        PRIMARY KEY CHECK (name <> ''),
    -- a dropped and re-created pipeline of the same name is a different pipeline: runs record this id
    id          bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    steps       jsonb       NOT NULL,   -- normalised: function names schema-qualified
    options     jsonb       NOT NULL DEFAULT '{}',
    owner       regrole     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Values of HTTP headers listed in a step's "secret_headers": kept out of pipelines.steps (which shows
-- "********" instead). No role is granted anything on this table, and RLS has no policy for it.
CREATE TABLE pipeline_worker.pipeline_secrets (
    pipeline_id bigint NOT NULL REFERENCES pipeline_worker.pipelines (id) ON DELETE CASCADE,
    step        text   NOT NULL,
    header      text   NOT NULL,
    value       text   NOT NULL,
    PRIMARY KEY (pipeline_id, step, header)
);
ALTER TABLE pipeline_worker.pipeline_secrets ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON pipeline_worker.pipeline_secrets FROM PUBLIC;

CREATE TABLE pipeline_worker.pipeline_grants (
    pipeline    text    NOT NULL REFERENCES pipeline_worker.pipelines (name) ON DELETE CASCADE,
    grantee     regrole NOT NULL,
    PRIMARY KEY (pipeline, grantee)
);

CREATE TABLE pipeline_worker.runs (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline          text        NOT NULL,
    pipeline_id       bigint      NOT NULL,   -- pipelines.id when submitted
    pipeline_owner    regrole     NOT NULL,   -- its owner when submitted (who may see the run)
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    input             jsonb       NOT NULL DEFAULT '{}',
    metadata          jsonb       NOT NULL DEFAULT '{}',
    result            jsonb,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    started_at        timestamptz,
    finished_at       timestamptz,
    worker_pid        int,
    -- identity of the claiming backend: (worker_pid, worker_started_at) is unique for the server's
    -- lifetime, so a recycled pid is never mistaken for the claimer
    worker_started_at timestamptz,
    submitted_by      regrole     NOT NULL,
    claims            int         NOT NULL DEFAULT 0,   -- times claimed (1 for a run that ran straight through)
    not_before        timestamptz            -- retry back-off: not claimable before this time
) WITH (fillfactor = 80);

-- claimable runs, in FIFO order; small because finished runs leave it
CREATE INDEX runs_pending_idx ON pipeline_worker.runs (id) WHERE status = 'pending';
-- runs that are claimed: what the recovery sweep checks for a live claimer
CREATE INDEX runs_running_idx ON pipeline_worker.runs (worker_pid) WHERE status = 'running';

CREATE TABLE pipeline_worker.run_steps (
    run_id      bigint      NOT NULL,
    position    int         NOT NULL CHECK (position >= 1),
    attempt     int         NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    name        text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    output      jsonb,
    error       text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (run_id, position, attempt)
);

-- The run tables churn: vacuum them early.
ALTER TABLE pipeline_worker.runs SET (autovacuum_vacuum_scale_factor = 0.02,
                                      autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE pipeline_worker.run_steps SET (autovacuum_vacuum_scale_factor = 0.05);

SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.pipelines', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.pipeline_grants', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.pipeline_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.runs', '');
SELECT pg_catalog.pg_extension_config_dump('pipeline_worker.run_steps', '');

-- ---------------------------------------------------------------- visibility

-- Owner of a pipeline, readable by policies without exposing pipeline definitions.
CREATE FUNCTION pipeline_worker.pipeline_owner(pipeline text) RETURNS regrole
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT owner FROM pipeline_worker.pipelines WHERE name = $1 $$;

-- Does the current role have the privileges of role (false for a role that no longer exists)?
CREATE FUNCTION pipeline_worker.has_role(role oid) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_has_role';

-- Is the current role a member of pipeline_worker_admin (or a superuser)?
CREATE FUNCTION pipeline_worker.is_admin() RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'pw_is_admin';

-- Runs are visible to their submitter, to the owner of their pipeline (as recorded when submitted: a later
-- pipeline of the same name does not inherit them) and to admins.
CREATE FUNCTION pipeline_worker.may_see_run(submitted_by regrole, pipeline_owner regrole) RETURNS boolean
    LANGUAGE sql STABLE SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT pipeline_worker.has_role($1::oid)
            OR pipeline_worker.is_admin()
            OR pipeline_worker.has_role($2::oid)
    $$;

ALTER TABLE pipeline_worker.pipelines ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline_worker.pipeline_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline_worker.runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE pipeline_worker.run_steps ENABLE ROW LEVEL SECURITY;

CREATE POLICY pipelines_visible ON pipeline_worker.pipelines FOR SELECT
    USING (pipeline_worker.has_role(owner::oid)
           OR pipeline_worker.is_admin()
           OR EXISTS (SELECT 1 FROM pipeline_worker.pipeline_grants g
                       WHERE g.pipeline = name AND pipeline_worker.has_role(g.grantee::oid)));
CREATE POLICY grants_visible ON pipeline_worker.pipeline_grants FOR SELECT
    USING (pipeline_worker.has_role(grantee::oid)
           OR pipeline_worker.is_admin()
           OR COALESCE(pipeline_worker.has_role(pipeline_worker.pipeline_owner(pipeline)::oid), false));
CREATE POLICY runs_visible ON pipeline_worker.runs FOR SELECT
    USING (pipeline_worker.may_see_run(submitted_by, pipeline_owner));
CREATE POLICY run_steps_visible ON pipeline_worker.run_steps FOR SELECT
    USING (EXISTS (SELECT 1 FROM pipeline_worker.runs r WHERE r.id = run_id));

-- Reading is granted; writing happens only through the functions below.
GRANT USAGE ON SCHEMA pipeline_worker TO PUBLIC;
GRANT SELECT ON pipeline_worker.pipelines, pipeline_worker.pipeline_grants,
                pipeline_worker.runs, pipeline_worker.run_steps TO PUBLIC;

-- ---------------------------------------------------------------- functions

CREATE FUNCTION pipeline_worker.create_pipeline(name text, steps jsonb, options jsonb DEFAULT '{}')
    RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_create_pipeline';

CREATE FUNCTION pipeline_worker.drop_pipeline(name text)
    RETURNS void LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pw_drop_pipeline';

CREATE FUNCTION pipeline_worker.grant_pipeline(pipeline text, role regrole)
    RETURNS void LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pw_grant_pipeline';

CREATE FUNCTION pipeline_worker.revoke_pipeline(pipeline text, role regrole)
    RETURNS void LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pw_revoke_pipeline';

CREATE FUNCTION pipeline_worker.create_run(pipeline text, input jsonb DEFAULT '{}',
                                           metadata jsonb DEFAULT '{}')
    RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_create_run';

CREATE FUNCTION pipeline_worker.wait_run(run_id bigint, timeout interval DEFAULT '30 seconds')
    RETURNS text LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pw_wait_run';

CREATE FUNCTION pipeline_worker.claim_run()
    RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_claim_run';

CREATE FUNCTION pipeline_worker.execute_run(run_id bigint)
    RETURNS text LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pw_execute_run';

CREATE FUNCTION pipeline_worker.cancel_run(run_id bigint)
    RETURNS boolean LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pw_cancel_run';

CREATE FUNCTION pipeline_worker.retry_run(run_id bigint)
    RETURNS boolean LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'pw_retry_run';

-- Orphan recovery: runs claimed by a backend that no longer exists go back to pending.
-- The workers call this by themselves; it is exposed for operators and tests.
CREATE FUNCTION pipeline_worker.recover_runs()
    RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_recover_runs';

-- Workers' view of themselves (shared memory): empty unless preloaded.
CREATE FUNCTION pipeline_worker.workers(OUT slot int, OUT pid int, OUT state text, OUT run_id bigint,
                                        OUT runs_done bigint, OUT batches bigint)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_workers';

REVOKE ALL ON FUNCTION pipeline_worker.claim_run(), pipeline_worker.execute_run(bigint),
                       pipeline_worker.recover_runs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pipeline_worker.claim_run(), pipeline_worker.execute_run(bigint),
                          pipeline_worker.recover_runs() TO pipeline_worker_admin;

-- Workers waiting for this extension start serving as soon as CREATE EXTENSION commits.
CREATE FUNCTION pipeline_worker.wake_workers() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pw_wake_workers';
REVOKE ALL ON FUNCTION pipeline_worker.wake_workers() FROM PUBLIC;
SELECT pipeline_worker.wake_workers();
