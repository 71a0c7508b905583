-- Shared fixtures of the script tests (test/scripts/*.sh): the extension, a side-effect table and a
-- generic step function. Loaded with: pw_psql -f test/lib/fixtures.sql
CREATE EXTENSION IF NOT EXISTS pipeline_worker;

-- One row per executed step. The primary key makes a step executed twice for the same run fail
-- loudly (the second execution errors, so the run fails and the duplicate never commits).
CREATE TABLE public.fx (
    run_id bigint      NOT NULL,
    step   text        NOT NULL,
    pid    int         NOT NULL DEFAULT pg_backend_pid(),
    usr    name        NOT NULL DEFAULT current_user,
    at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    ctx    jsonb,
    PRIMARY KEY (run_id, step)
);

-- While this table has a row, t_step does not sleep even when the input asks for it.
CREATE TABLE public.fx_nosleep (x int);

-- Generic step. Input keys it understands:
--   n        number folded into the result: after k steps acc = (1 + 2 + ... + k) * n
--   tag      copied into every output
--   sleep    seconds to pg_sleep in every step (unless fx_nosleep has a row)
--   fail_at  name of the step that raises an error (after recording itself in fx)
CREATE FUNCTION public.t_step(ctx jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n   numeric := coalesce((ctx->'input'->>'n')::numeric, 0);
    acc numeric := coalesce((ctx->'prev'->>'acc')::numeric, 0);
BEGIN
    INSERT INTO public.fx (run_id, step, ctx) VALUES ((ctx->>'run_id')::bigint, ctx->>'step', ctx);
    IF ctx->'input' ? 'sleep' AND NOT EXISTS (SELECT 1 FROM public.fx_nosleep) THEN
        PERFORM pg_sleep((ctx->'input'->>'sleep')::float8);
    END IF;
    IF ctx->'input'->>'fail_at' = ctx->>'step' THEN
        RAISE EXCEPTION 'planned failure for n=%', n;
    END IF;
    RETURN jsonb_build_object('n', n,
                              'acc', acc + (ctx->>'position')::int * n,
                              'tag', ctx->'input'->'tag',
                              'step', ctx->>'step',
                              'prev_step', ctx->'prev'->'step');
END $$;

SELECT pipeline_worker.create_pipeline('p1', '[{"name": "s1", "function": "public.t_step"}]');
SELECT pipeline_worker.create_pipeline('p3', '[{"name": "s1", "function": "public.t_step"},
                                               {"name": "s2", "function": "public.t_step"},
                                               {"name": "s3", "function": "t_step"}]');
