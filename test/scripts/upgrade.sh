#!/bin/bash
# Upgrading from 0.1: the 0.2 library serves a database still at 0.1 exactly as 0.1 did (its functions, its
# workers); ALTER EXTENSION ... UPDATE with pending, running and finished runs loses nothing, runs no step twice,
# and needs no restart; the updated database and a fresh 0.2 install have the same objects; the committed full
# install script is what scripts/full-install-sql.sh writes; workflows (map, events, a child run of a 0.1 pipeline)
# work on the updated database.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# the committed pipeline_worker--0.2.sql is generated from 0.1 + the update script
tmp=$(mktemp -d)
cp -r "$ROOT/pipeline_worker--0.1.sql" "$ROOT/pipeline_worker--0.1--0.2.sql" "$ROOT/scripts" "$tmp/"
(cd "$tmp" && ./scripts/full-install-sql.sh)
if cmp -s "$tmp/pipeline_worker--0.2.sql" "$ROOT/pipeline_worker--0.2.sql"; then
    pw_ok "pipeline_worker--0.2.sql is scripts/full-install-sql.sh's output"
else
    pw_fail "pipeline_worker--0.2.sql differs from scripts/full-install-sql.sh's output (run the script)"
fi
rm -rf "$tmp"

pw_cluster_up upgrade 3 20 "pipeline_worker.commit_interval_ms = 20" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "0.1 fixtures failed"
CREATE EXTENSION pipeline_worker VERSION '0.1';
CREATE TABLE effects (run_id bigint, step text, PRIMARY KEY (run_id, step));
CREATE FUNCTION up_fast(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO effects VALUES ((ctx->>'run_id')::bigint, ctx->>'step'); RETURN ctx->'input'; END $$;
CREATE FUNCTION up_slow(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO effects VALUES ((ctx->>'run_id')::bigint, ctx->>'step'); PERFORM pg_sleep(1.5); RETURN '{}'; END $$;
SELECT pipeline_worker.create_pipeline('fast', '[{"name": "a", "function": "up_fast"}, {"name": "b", "function": "up_fast"}]');
SELECT pipeline_worker.create_pipeline('slow', '[{"name": "a", "function": "up_slow"}, {"name": "b", "function": "up_slow"}]',
                                       '{"max_attempts": 2, "retry_delay_ms": 100}');
SQL
pw_check_sql "installed at 0.1" "0.1" "SELECT extversion FROM pg_extension WHERE extname = 'pipeline_worker'"
out=$(pw_psql -v VERBOSITY=verbose -c "SELECT pipeline_worker.create_pipeline('wf01', '[{\"name\": \"a\", \"function\": \"up_fast\"}, {\"name\": \"s\", \"sleep\": \"1 second\"}]')" 2>&1)
[[ "$out" == *0A000* && "$out" == *"ALTER EXTENSION pipeline_worker UPDATE"* ]] \
    && pw_ok "0.1 database: workflow steps are refused with a hint to update (0A000)" || pw_fail "workflow steps at 0.1: $out"
pw_check_sql "0.1 has no create_runs" 0 \
    "SELECT count(*) FROM pg_proc WHERE proname = 'create_runs' AND pronamespace = 'pipeline_worker'::regnamespace"

# 0.1 behaviour under the 0.2 library: its create_run, its workers
for i in $(seq 1 20); do pw_run fast "{\"i\": $i}" >/dev/null; done
pw_wait_all_finished 30
pw_check_sql "0.1 database: 20 runs succeeded through the workers" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'"
pw_check_sql "0.1 database: each step once" 40 "SELECT count(*) FROM effects"
out=$(pw_psql -c "SELECT pipeline_worker.create_run('fast', '{}', '{}', 5)" 2>&1)
case "$out" in *"does not exist"*) pw_ok "0.1 database: create_run has 0.1's signature";;
               *) pw_fail "0.1 database: a 0.2 call worked or failed oddly: $out";; esac
id=$(pw_run fast '{"session": true}')
pw_check_sql "0.1 database: wait_run" succeeded "SELECT pipeline_worker.wait_run($id, '20 s')"

# a scrape of metrics() in another database (at 0.2) has the lead workers count their gauges: not the one of a
# database still at 0.1, whose tables have no such columns (until 2026-12-07 it logged an ERROR every few seconds;
# acceptance walk-through)
pw_psql -c "CREATE DATABASE other" >/dev/null
pw_psql -d other -c "CREATE EXTENSION pipeline_worker" >/dev/null
pw_psql -d other -c "SELECT length(pipeline_worker.metrics()) > 0" >/dev/null
sleep 7
pw_check "0.1 database after a scrape elsewhere: no error logged" "" \
    "$(grep -E 'ERROR: .*(run_at|does not exist)' "$PW_LOG" | grep -v 'create_run\|0A000\|wf01' | head -2)"

# runs in every state at the moment of the update: running (slow steps), pending (more than the workers take),
# finished
pw_psql -c "SELECT pipeline_worker.create_run('slow', jsonb_build_object('i', i)) FROM generate_series(1, 6) i" >/dev/null
pw_psql -c "SELECT pipeline_worker.create_run('fast', jsonb_build_object('j', i)) FROM generate_series(1, 200) i" >/dev/null
# (a run a worker claimed shows as running once its first step committed: the second step is slow too)
pw_wait_sql t 10 "SELECT count(*) >= 2 FROM pipeline_worker.runs WHERE status = 'running'" >/dev/null \
    || pw_fail "no runs running before the update"
before=$(pw_psql -c "SELECT count(*) FILTER (WHERE status = 'running') || ' running, '
                            || count(*) FILTER (WHERE status = 'pending') || ' pending' FROM pipeline_worker.runs")
pw_info "at the update: $before"
pw_psql -c "ALTER EXTENSION pipeline_worker UPDATE" || pw_fail "ALTER EXTENSION UPDATE failed"
pw_check_sql "updated to 0.2" "0.2" "SELECT extversion FROM pg_extension WHERE extname = 'pipeline_worker'"
pw_wait_all_finished 60
pw_check_sql "every run of 0.1 finished, succeeded" "0|227" \
    "SELECT count(*) FILTER (WHERE status <> 'succeeded') || '|' || count(*) FROM pipeline_worker.runs"
pw_check_sql "no step effect repeated or lost (slow: 2 steps x 6, fast: 2 x 221)" 454 "SELECT count(*) FROM effects"
pw_check_sql "old runs got the new columns' defaults" "0|0" \
    "SELECT count(*) FILTER (WHERE priority <> 0) || '|' || count(*) FILTER (WHERE parked IS NOT NULL)
       FROM pipeline_worker.runs"

# 0.2 works on the updated database, through the same workers (no restart)
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.create_runs('fast', (SELECT jsonb_agg(jsonb_build_object('k', i)) FROM generate_series(1, 50) i));
SELECT pipeline_worker.create_run('fast', '{"later": 1}', run_at => clock_timestamp() + interval '500 ms');
SELECT pipeline_worker.create_run('fast', '{"key": 1}', idempotency_key => 'once');
SELECT pipeline_worker.create_run('fast', '{"key": 1}', idempotency_key => 'once');
SQL
pw_wait_all_finished 30
pw_check_sql "0.2 runs on the updated database succeeded" 52 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded' AND id > 227"
pw_check_sql "run_at honoured after the update" t \
    "SELECT started_at >= run_at FROM pipeline_worker.runs WHERE input ? 'later'"
# workflows on the updated database: a DAG with a map step, an event wait and a child run of a 0.1 pipeline
pw_psql >/dev/null <<'SQL' || pw_fail "workflow fixtures on the updated database failed"
CREATE FUNCTION up_list(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '[1, 2, 3]'::jsonb $$;
CREATE FUNCTION up_double(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb((ctx->>'item')::int * 2) $$;
SELECT pipeline_worker.create_pipeline('wf_after', '[
  {"name": "list", "function": "up_list"},
  {"name": "double", "function": "up_double", "map": true},
  {"name": "go", "wait_for": "go", "depends_on": []},
  {"name": "kid", "pipeline": "fast", "depends_on": ["double", "go"]}]');
SQL
wf=$(pw_psql -c "SELECT pipeline_worker.create_run('wf_after', '{}')")
pw_wait_sql waiting 10 "SELECT status FROM pipeline_worker.runs WHERE id = $wf" >/dev/null
pw_psql -c "SELECT pipeline_worker.send_event($wf, 'go', '{\"ok\": true}')" >/dev/null
pw_wait_sql succeeded 20 "SELECT status FROM pipeline_worker.runs WHERE id = $wf" >/dev/null
pw_check_sql "workflows on the updated database: map, event, child run of a 0.1 pipeline" \
    'succeeded|{"go": {"ok": true}, "double": [2, 4, 6]}|3' \
    "SELECT status || '|' || result::text || '|' || (SELECT count(*) FROM pipeline_worker.run_steps WHERE run_id = $wf AND task IS NOT NULL)
       FROM pipeline_worker.runs WHERE id = $wf"
pw_check_sql "0.2 pause on the updated database" "" "SELECT pipeline_worker.pause_pipeline('fast')"

# the updated database and a fresh 0.2 install define the same objects
describe() {
    pw_psql -d "$1" <<'SQL'
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
       || COALESCE(column_default, '') FROM information_schema.columns WHERE table_schema = 'pipeline_worker'
UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'pipeline_worker'
UNION ALL SELECT 'function ' || p.oid::regprocedure || ' ' || pg_get_function_result(p.oid) || ' '
       || pg_get_function_arguments(p.oid) || ' ' || p.provolatile::text || p.prosecdef::text || COALESCE(array_to_string(p.proacl, ','), '')
       FROM pg_proc p WHERE p.pronamespace = 'pipeline_worker'::regnamespace
UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
       WHERE connamespace = 'pipeline_worker'::regnamespace
UNION ALL SELECT 'policy ' || tablename || ' ' || policyname || ' ' || qual FROM pg_policies
       WHERE schemaname = 'pipeline_worker'
UNION ALL SELECT 'table ' || c.oid::regclass || ' ' || c.relrowsecurity || ' ' || COALESCE(array_to_string(c.relacl, ','), '')
       || ' ' || COALESCE(array_to_string(c.reloptions, ','), '') FROM pg_class c
       WHERE c.relnamespace = 'pipeline_worker'::regnamespace AND c.relkind = 'r'
UNION ALL SELECT 'dumped ' || unnest(extconfig)::regclass FROM pg_extension WHERE extname = 'pipeline_worker'
ORDER BY 1
SQL
}
pw_psql -c "CREATE DATABASE fresh" >/dev/null
pw_psql -d fresh -c "CREATE EXTENSION pipeline_worker" >/dev/null
describe postgres > "$PW_CLUSTER_DIR/updated.txt" || pw_fail "describing the updated database failed"
describe fresh > "$PW_CLUSTER_DIR/fresh.txt" || pw_fail "describing the fresh database failed"
diff "$PW_CLUSTER_DIR/updated.txt" "$PW_CLUSTER_DIR/fresh.txt" > "$PW_CLUSTER_DIR/catalog.diff"
if [ -s "$PW_CLUSTER_DIR/catalog.diff" ] || [ ! -s "$PW_CLUSTER_DIR/fresh.txt" ]; then
    pw_fail "updated and fresh 0.2 differ: $(head -5 "$PW_CLUSTER_DIR/catalog.diff")"
else
    pw_ok "updated and fresh 0.2 define the same columns, indexes, functions, constraints, policies and grants"
fi
pw_check "the description covers the 0.2 objects" 1 "$(grep -c 'create_runs' "$PW_CLUSTER_DIR/fresh.txt")"
# the updated database's 0.1 runs in the 0.2 views and metrics
pw_check_sql "pipeline_stats counts the runs made under 0.1 and after" t \
    "SELECT sum(succeeded_1h) = (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'
                                   AND finished_at > now() - interval '1 hour') AND sum(succeeded_1h) > 0
       FROM pipeline_worker.pipeline_stats"
pw_check_sql "metrics() works in the updated database (workers gauge of the database)" t \
    "SELECT pipeline_worker.metrics() LIKE '%pipeline_worker_workers{database=\"postgres\",state=\"idle\"}%'"
pw_finish
