#!/usr/bin/env bash
# Quick start: set everything up, start a throwaway cluster with pipeline_worker preloaded (4 workers),
# define a 3-step pipeline, submit runs, and show what the background workers did.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
source "$ROOT/test/lib/cluster.sh"
trap pw_cleanup EXIT
PW_WORKERS=4 pw_cluster_start demo >/dev/null
echo "demo: throwaway cluster in $PW_CLUSTER_DIR (server log: $PW_LOG)"

run() { echo; echo "demo=# $1"; "$PW_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -c "$1"; }

"$PW_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION pipeline_worker;
CREATE TABLE orders (id int PRIMARY KEY, total numeric, status text);
INSERT INTO orders VALUES (1, 40, 'new'), (2, 250, 'new'), (3, 99, 'new');
-- step 1: load the order named in the run input
CREATE FUNCTION load_order(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT to_jsonb(o) FROM orders o WHERE o.id = (ctx->'input'->>'order_id')::int $$;
-- step 2: price it (fails loudly for unknown orders: the run fails, nothing is written)
CREATE FUNCTION price(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF ctx->'prev' = 'null' THEN RAISE EXCEPTION 'order % not found', ctx->'input'->>'order_id'; END IF;
    RETURN ctx->'prev' || jsonb_build_object('discount', CASE WHEN (ctx->'prev'->>'total')::numeric > 100 THEN 10 ELSE 0 END);
END $$;
-- step 3: write the result back; this runs as the submitting role, in the step's own transaction
CREATE FUNCTION confirm(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders SET status = 'confirmed by ' || (ctx->'metadata'->>'requested_by') WHERE id = (ctx->'prev'->>'id')::int;
    RETURN jsonb_build_object('order', ctx->'prev'->'id', 'charged', (ctx->'prev'->>'total')::numeric - (ctx->'prev'->>'discount')::numeric,
                              'run', ctx->'run_id', 'executed_as', current_user);
END $$;
SELECT pipeline_worker.create_pipeline('checkout', '[
    {"name": "load",    "function": "load_order"},
    {"name": "price",   "function": "price"},
    {"name": "confirm", "function": "confirm"}]');
SQL
run "SELECT pipeline_worker.create_run('checkout', jsonb_build_object('order_id', g), '{\"requested_by\": \"demo\"}') AS run_id FROM generate_series(1, 4) g"
run "SELECT id, pipeline_worker.wait_run(id, '10 seconds') AS status FROM pipeline_worker.runs ORDER BY id"
run "SELECT id, status, result, error, worker_pid, round(extract(epoch FROM finished_at - created_at) * 1000, 1) AS ms FROM pipeline_worker.runs ORDER BY id"
run "SELECT run_id, position, name, status, output, error FROM pipeline_worker.run_steps ORDER BY run_id, position"
run "SELECT * FROM orders ORDER BY id"
run "SELECT pid, backend_type FROM pg_stat_activity WHERE backend_type LIKE 'pipeline_worker%' ORDER BY backend_type, pid"
ok=$("$PW_BINDIR/psql" -XAtc "SELECT count(*) FILTER (WHERE status = 'succeeded') = 3 AND count(*) FILTER (WHERE status = 'failed') = 1 FROM pipeline_worker.runs")
echo
PW_FINISHED=1
if [ "$ok" = t ]; then echo "demo: OK - 3 runs succeeded, run 4 failed at step \"price\" as it should"; else echo "demo: unexpected result" >&2; exit 1; fi
