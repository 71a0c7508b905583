-- SQL-language step functions. A simple one (a single SELECT of an expression) is called through a kept plan of
-- `SELECT fn($1)` into which PostgreSQL inlines it, so that its body is not planned again for every step; others
-- are called directly. Either way: the same results, errors, identity and privileges, and a replaced function's
-- new body is used by the next step. (That the body is really inlined is checked in test/scripts/plans_stats.sh,
-- from the workers' plans.)
SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');
CREATE ROLE regress_sql_submitter;
GRANT USAGE ON SCHEMA pipeline_worker TO regress_sql_submitter;
CREATE TABLE public.sq_orders (id int PRIMARY KEY, total numeric);
INSERT INTO public.sq_orders VALUES (1, 10), (2, 20);
GRANT SELECT ON public.sq_orders TO regress_sql_submitter;

-- inlinable: an expression of ctx
CREATE FUNCTION public.sq_add(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 1, 'as_submitter', current_user = 'regress_sql_submitter') $$;
-- not inlinable: reads a table
CREATE FUNCTION public.sq_order(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT jsonb_build_object('n', (ctx->'prev'->>'n')::int, 'total', o.total) FROM public.sq_orders o
        WHERE o.id = (ctx->'input'->>'order')::int $$;
-- not inlinable: SECURITY DEFINER
CREATE FUNCTION public.sq_definer(ctx jsonb) RETURNS jsonb LANGUAGE sql SECURITY DEFINER AS
    $$ SELECT (ctx->'prev') || jsonb_build_object('definer_is_owner', current_user <> 'regress_sql_submitter') $$;
CREATE FUNCTION public.sq_divide(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT jsonb_build_object('q', 1 / (ctx->'input'->>'d')::int) $$;
CREATE FUNCTION public.sq_null(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
SELECT pipeline_worker.create_pipeline('sq', '[{"name": "add", "function": "public.sq_add"},
    {"name": "add2", "function": "public.sq_add"}, {"name": "order", "function": "public.sq_order"},
    {"name": "definer", "function": "public.sq_definer"}]');
SELECT pipeline_worker.create_pipeline('sq_div', '[{"name": "div", "function": "public.sq_divide"},
    {"name": "null", "function": "public.sq_null"}]');
SELECT pipeline_worker.grant_pipeline('sq', 'regress_sql_submitter');

CREATE FUNCTION public.sq_exec() RETURNS TABLE (status text, result jsonb, error text) LANGUAGE plpgsql AS $$
DECLARE rid bigint := pipeline_worker.claim_run();
BEGIN
    PERFORM pipeline_worker.execute_run(rid);
    RETURN QUERY SELECT r.status, r.result, r.error FROM pipeline_worker.runs r WHERE r.id = rid;
END $$;

-- the same function twice in one run and in consecutive runs, as the submitter
SELECT pipeline_worker.create_run('sq', '{"order": 1}') AS sq1 \gset
SELECT * FROM public.sq_exec();
SET ROLE regress_sql_submitter;
SELECT pipeline_worker.create_run('sq', '{"order": 2}') AS sq2 \gset
RESET ROLE;
SELECT * FROM public.sq_exec();
SELECT position, status, output FROM pipeline_worker.run_steps WHERE run_id = :sq2 ORDER BY position;

-- replaced: the next step uses the new body (also when the language changes)
CREATE OR REPLACE FUNCTION public.sq_add(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 100, 'as_submitter', current_user = 'regress_sql_submitter') $$;
SELECT pipeline_worker.create_run('sq', '{"order": 1}') AS sq3 \gset
SELECT * FROM public.sq_exec();
CREATE OR REPLACE FUNCTION public.sq_add(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS
    $$ BEGIN RETURN jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 1000, 'as_submitter', 'plpgsql'); END $$;
SELECT pipeline_worker.create_run('sq', '{"order": 1}') AS sq4 \gset
SELECT * FROM public.sq_exec();
-- a PL/pgSQL step function's FmgrInfo is kept from call to call: a new body, SECURITY DEFINER and a new owner
-- still apply from the next step on
CREATE OR REPLACE FUNCTION public.sq_add(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS
    $$ BEGIN RETURN jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 2000,
                                       'as_definer', current_user = 'regress_sql_definer'); END $$;
SELECT pipeline_worker.create_run('sq', '{"order": 1}') AS sq4b \gset
SELECT status FROM public.sq_exec();
SELECT output FROM pipeline_worker.run_steps WHERE run_id = :sq4b AND position = 2;
CREATE ROLE regress_sql_definer;
ALTER FUNCTION public.sq_add(jsonb) OWNER TO regress_sql_definer;
ALTER FUNCTION public.sq_add(jsonb) SECURITY DEFINER;
SELECT pipeline_worker.create_run('sq', '{"order": 1}') AS sq4c \gset
SELECT status FROM public.sq_exec();
SELECT output FROM pipeline_worker.run_steps WHERE run_id = :sq4c AND position = 2;
ALTER FUNCTION public.sq_add(jsonb) SECURITY INVOKER;
SELECT pipeline_worker.create_run('sq', '{"order": 1}') AS sq4d \gset
SELECT status FROM public.sq_exec();
SELECT output FROM pipeline_worker.run_steps WHERE run_id = :sq4d AND position = 2;
ALTER FUNCTION public.sq_add(jsonb) OWNER TO CURRENT_USER;
DROP ROLE regress_sql_definer;

-- privileges are checked for the submitter at every step, inlined or not
CREATE OR REPLACE FUNCTION public.sq_add(ctx jsonb) RETURNS jsonb LANGUAGE sql AS
    $$ SELECT jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 1, 'as_submitter', current_user = 'regress_sql_submitter') $$;
REVOKE EXECUTE ON FUNCTION public.sq_add(jsonb) FROM PUBLIC;
SET ROLE regress_sql_submitter;
SELECT pipeline_worker.create_run('sq', '{"order": 1}') AS sq5 \gset
RESET ROLE;
SELECT status, error FROM public.sq_exec();
GRANT EXECUTE ON FUNCTION public.sq_add(jsonb) TO PUBLIC;

-- an error inside an inlined body fails the step with its message; NULL is JSON null
SELECT pipeline_worker.create_run('sq_div', '{"d": 0}') AS div0 \gset
SELECT status, error FROM public.sq_exec();
SELECT pipeline_worker.create_run('sq_div', '{"d": 4}') AS div4 \gset
SELECT * FROM public.sq_exec();

-- a SQL step with several statements that writes: not inlined; its first call goes through the kept plan, the
-- next ones directly: one effect per step either way
CREATE TABLE public.sq_effects (run_id bigint, step text);
CREATE FUNCTION public.sq_write(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO public.sq_effects VALUES ((ctx->>'run_id')::bigint, ctx->>'step');
    SELECT jsonb_build_object('written', (SELECT count(*) FROM public.sq_effects WHERE run_id = (ctx->>'run_id')::bigint));
$$;
SELECT pipeline_worker.create_pipeline('sq_write', '[{"name": "w1", "function": "public.sq_write"},
    {"name": "w2", "function": "public.sq_write"}, {"name": "w3", "function": "public.sq_write"}]');
SELECT pipeline_worker.create_run('sq_write') AS w_a \gset
SELECT * FROM public.sq_exec();
SELECT pipeline_worker.create_run('sq_write') AS w_b \gset
SELECT * FROM public.sq_exec();
SELECT run_id = :w_a AS first_run, step, count(*) FROM public.sq_effects GROUP BY 1, 2 ORDER BY 1 DESC, 2;
SELECT pipeline_worker.drop_pipeline('sq_write');
DROP FUNCTION public.sq_write(jsonb);
DROP TABLE public.sq_effects;

SELECT count(*) AS unfinished_runs FROM pipeline_worker.runs WHERE status IN ('pending', 'running');
SELECT pipeline_worker.drop_pipeline('sq');
SELECT pipeline_worker.drop_pipeline('sq_div');
DROP FUNCTION public.sq_exec(), public.sq_add(jsonb), public.sq_order(jsonb), public.sq_definer(jsonb),
    public.sq_divide(jsonb), public.sq_null(jsonb);
DROP TABLE public.sq_orders;
REVOKE USAGE ON SCHEMA pipeline_worker FROM regress_sql_submitter;
DROP ROLE regress_sql_submitter;
