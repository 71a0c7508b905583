#!/bin/bash
# Without shared_preload_libraries the extension still works in-session (no background workers:
# pipeline_worker.workers() is "empty unless preloaded"); loading the library must not kill the
# session.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_PRELOAD= PW_WORKERS=0 pw_cluster_start nopreload
out=$(pw_psql -v ON_ERROR_STOP=0 2>&1 <<'SQL'
CREATE EXTENSION pipeline_worker;
SELECT 'session alive';
SQL
)
case "$out" in
    *"session alive"*) pw_ok "the session survives CREATE EXTENSION without preloading" ;;
    *) pw_fail "CREATE EXTENSION without preloading killed the session: $(echo "$out" | head -1)" ;;
esac
pw_check_sql "the extension is installed" 1 "SELECT count(*) FROM pg_extension WHERE extname = 'pipeline_worker'"
[ "$(pw_psql -c "SELECT count(*) FROM pg_extension WHERE extname = 'pipeline_worker'")" = 1 ] || pw_finish
pw_check_sql "workers() is empty" 0 "SELECT count(*) FROM pipeline_worker.workers()"
pw_psql -f "$PW_LIB_DIR/fixtures.sql" >/dev/null 2>&1
got=$(pw_psql 2>&1 <<'SQL'
SELECT pipeline_worker.create_run('p3', '{"n": 3}') AS id \gset
SELECT pipeline_worker.claim_run() = :id AS claimed \gset
SELECT pipeline_worker.execute_run(:id) AS status \gset
SELECT :'status', (SELECT result FROM pipeline_worker.runs WHERE id = :id);
SQL
)
pw_check "in-session claim and execute work" 'succeeded|{"n": 3, "acc": 18, "tag": null, "step": "s3", "prev_step": "s2"}' "$got"
pw_check_sql "wait_run works without shared memory" succeeded \
    "SELECT pipeline_worker.wait_run(max(id), '1 second') FROM pipeline_worker.runs"
problems=$(pw_log_problems)
if [ -z "$problems" ]; then pw_ok "no ERROR/FATAL in the server log"
else pw_fail "log problems: $(echo "$problems" | head -2)"; fi
pw_finish
