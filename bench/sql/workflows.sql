-- --workflows: the pipelines and peer tables of the 0.2 workflow figures (bench/js/workflows.mjs). Run after pw.sql.
DROP SCHEMA IF EXISTS pwflow CASCADE;
CREATE SCHEMA pwflow;

-- W2: split returns [1..n]; square maps over it, each task persists its own row (the unique key makes a duplicate
-- execution fail loudly) and returns item²; sum adds the squares it gets as prev.
CREATE TABLE pwflow.squares (run_id bigint, idx int, v bigint, PRIMARY KEY (run_id, idx));
CREATE FUNCTION pwflow.split(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN (SELECT jsonb_agg(g) FROM generate_series(1, (ctx->'input'->>'n')::int) g); END $$;
CREATE FUNCTION pwflow.square(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE x bigint := (ctx->>'item')::bigint;
BEGIN
    INSERT INTO pwflow.squares VALUES ((ctx->>'run_id')::bigint, (ctx->>'index')::int + 1, x * x);
    RETURN to_jsonb(x * x);
END $$;
CREATE FUNCTION pwflow.sum(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN jsonb_build_object('value', (SELECT sum(v::bigint) FROM jsonb_array_elements_text(ctx->'prev') v)); END $$;
-- diamond: a -> b, c -> d, each {"value": ...}
CREATE FUNCTION pwflow.add1(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN jsonb_build_object('value', (ctx->'prev'->>'value')::bigint + 1); END $$;
CREATE FUNCTION pwflow.join2(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN jsonb_build_object('value', (ctx->'prev'->'b'->>'value')::bigint + (ctx->'prev'->'c'->>'value')::bigint); END $$;
CREATE FUNCTION pwflow.noop(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RETURN ctx->'prev'; END $$;

DO $$
DECLARE p text;
BEGIN
    FOREACH p IN ARRAY ARRAY['w2', 'diamond', 'nap', 'evt'] LOOP
        IF EXISTS (SELECT 1 FROM pipeline_worker.pipelines WHERE name = p) THEN
            PERFORM pipeline_worker.drop_pipeline(p);
        END IF;
    END LOOP;
END $$;
SELECT pipeline_worker.create_pipeline('w2', '[
    {"name": "split", "function": "pwflow.split"},
    {"name": "square", "function": "pwflow.square", "map": true},
    {"name": "sum", "function": "pwflow.sum"}]');
SELECT pipeline_worker.create_pipeline('diamond', '[
    {"name": "a", "function": "pwflow.add1"},
    {"name": "b", "function": "pwflow.add1", "depends_on": ["a"]},
    {"name": "c", "function": "pwflow.add1", "depends_on": ["a"]},
    {"name": "d", "function": "pwflow.join2", "depends_on": ["b", "c"]}]');
SELECT pipeline_worker.create_pipeline('nap', '[
    {"name": "zz", "sleep": "30 seconds"}, {"name": "after", "function": "pwflow.noop"}]');
SELECT pipeline_worker.create_pipeline('evt', '[
    {"name": "go", "wait_for": "go"}, {"name": "after", "function": "pwflow.noop"}]');

-- The Node pool's W2 (bench/js/peer-node-w2.mjs): a task table claimed with SKIP LOCKED, one transaction per task.
CREATE TABLE pwflow.peer_runs (id bigserial PRIMARY KEY, n int NOT NULL, status text NOT NULL DEFAULT 'pending',
                               result jsonb, started_at timestamptz, finished_at timestamptz);
CREATE TABLE pwflow.peer_tasks (id bigserial PRIMARY KEY, run_id bigint NOT NULL,
                                kind text NOT NULL CHECK (kind IN ('split', 'square', 'sum')), prio int NOT NULL,
                                idx int, item bigint, output jsonb, status text NOT NULL DEFAULT 'pending');
CREATE INDEX ON pwflow.peer_tasks (prio, id) WHERE status = 'pending';
CREATE INDEX ON pwflow.peer_tasks (run_id) WHERE kind = 'square' AND status <> 'done';
CREATE UNIQUE INDEX ON pwflow.peer_tasks (run_id, idx) WHERE kind = 'square';
CREATE TABLE pwflow.peer_squares (run_id bigint, idx int, v bigint, PRIMARY KEY (run_id, idx));
