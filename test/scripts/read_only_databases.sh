#!/bin/bash
# Several databases, one read-only by default (ALTER DATABASE ... SET default_transaction_read_only = on) with runs
# queued, and one worker: the worker serves the other database and stays there -- the launcher does not count the
# read-only database's queued runs, sweeps or timer as work its workers could do (shared memory's read_only_until,
# worker/read_only.cpp) -- and once the setting is reset, the runs queued there run. Until then the worker was moved
# between the two about every 2 s, logging a pause each time it came back. (The single database's case, the
# configuration file, HTTP answers: claim_edges.sh.)
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_WORKERS=1 pw_cluster_start read_only_dbs "pipeline_worker.databases = 'db_a, db_b'" || exit 1
pw_psql -c "CREATE DATABASE db_a" -c "ALTER DATABASE db_a SET default_transaction_read_only = on" \
    -c "CREATE DATABASE db_b" >/dev/null || pw_die "databases not created"
for db in db_a db_b; do
    pw_psql -d $db >/dev/null <<'SQL' || pw_die "fixtures in $db failed"
SET default_transaction_read_only = off;
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint PRIMARY KEY);
CREATE FUNCTION st(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint);
    PERFORM pg_sleep(0.01);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('p', '[{"name": "a", "function": "st"}]');
SQL
done
pw_psql -c "CREATE EXTENSION pipeline_worker" >/dev/null  # (in postgres, not served: for workers())
pw_psql -d db_a -c "SET default_transaction_read_only = off" \
    -c "SELECT count(pipeline_worker.create_run('p')) FROM generate_series(1, 50)" >/dev/null || pw_fail "db_a: runs not created"
count() { pw_psql -d "$1" -c "SELECT count(*) FROM pipeline_worker.runs WHERE status = '$2'"; }
paused_in_a() { tail -c +"$((from + 1))" "$PW_LOG" | grep -c 'pauses in database "db_a"'; }

# (the worker visits db_a first or not, as the launcher places it: either way it ends in db_b below)
sleep 2
from=$(pw_log_size)
pw_psql -d db_b -c "SELECT count(pipeline_worker.create_run('p')) FROM generate_series(1, 500)" >/dev/null || pw_fail "db_b: runs not created"
PGDATABASE=db_b pw_wait_sql 500 40 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'" 0.2 >/dev/null
pw_check "db_b: its 500 runs ran" 500 "$(count db_b succeeded)"
sleep 8
pw_check "db_b: the worker stays, not moved to the read-only database and back" "db_b" \
    "$(pw_psql -c "SELECT string_agg(database, ',') FROM pipeline_worker.workers()")"
n=$(paused_in_a)
if [ "$n" -le 1 ]; then pw_ok "db_a: the worker came to pause there $n time(s) meanwhile"
else pw_fail "db_a: the worker came to pause there $n times meanwhile (moved back and forth)"; fi
pw_check "db_a: its 50 runs wait, unclaimed" 50 \
    "$(pw_psql -d db_a -c "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending' AND claims = 0")"
pw_check "no error logged" "" "$(pw_log_problems "$from")"

# Reset: within the 30 s its entry still says read-only, plus a visit, the worker runs them.
pw_psql -d db_a -c "SET default_transaction_read_only = off" -c "ALTER DATABASE db_a RESET default_transaction_read_only" \
    >/dev/null || pw_fail "ALTER DATABASE RESET failed"
PGDATABASE=db_a pw_wait_sql 50 60 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'" 0.5 >/dev/null
pw_check "db_a: once reset, its 50 runs ran, each once" "50 50" \
    "$(pw_psql -d db_a -c "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || (SELECT count(*) FROM effects) FROM pipeline_worker.runs")"
pw_check "no error logged" "" "$(pw_log_problems "$from")"
pw_finish
