#!/bin/bash
# Several databases, one read-only by default (ALTER DATABASE ... SET default_transaction_read_only = on) with runs
# queued, and one worker: the worker serves the other database and stays there -- the launcher does not count the
# read-only database's queued runs, sweeps or timer as work its workers could do (the note in shared memory its
# paused worker left, worker/read_only.cpp) -- and once the setting is reset (the commit of ALTER DATABASE ... RESET
# ends the note: worker/db_guard.cpp), the runs queued there run at once. Without the note the worker was moved
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

# The worker's visit to db_a notes the database read-only (its entry in shared memory): from then on the worker is not
# sent there.
from=0
pw_wait_until 20 0.2 eval '[ "$(paused_in_a)" -ge 1 ]' || pw_fail "the worker never visited db_a"
from=$(pw_log_size)
start=$(pw_now)
pw_psql -d db_b -c "SELECT count(pipeline_worker.create_run('p')) FROM generate_series(1, 500)" >/dev/null || pw_fail "db_b: runs not created"
PGDATABASE=db_b pw_wait_sql 500 40 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'" 0.2 >/dev/null
pw_check "db_b: its 500 runs ran" 500 "$(count db_b succeeded)"
sleep "$(pw_left "$start" 40)"
pw_check "db_b: the worker stays, not moved to the read-only database and back" "db_b" \
    "$(pw_psql -c "SELECT string_agg(database, ',') FROM pipeline_worker.workers()")"
n=$(paused_in_a)
pw_check "db_a: the worker did not come back to pause there in 40 s" 0 "$n"
pw_check "db_a: its 50 runs wait, unclaimed" 50 \
    "$(pw_psql -d db_a -c "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending' AND claims = 0")"
pw_check "no error logged" "" "$(pw_log_problems "$from")"

# A role's own setting (any role may change it) does not reach the workers: it ends no note.
from=$(pw_log_size)
pw_psql -d db_b >/dev/null <<'SQL' || pw_fail "the unprivileged role's ALTER ROLE failed"
CREATE ROLE ro_user LOGIN;
SET ROLE ro_user;
ALTER ROLE ro_user SET default_transaction_read_only = off;
ALTER ROLE ro_user IN DATABASE db_a SET default_transaction_read_only = off;
SQL
sleep 4
pw_check "a role's ALTER ROLE ... SET of its own: the worker was not sent to db_a" 0 "$(paused_in_a)"

# Reset: its commit ends the note, and the launcher sends the worker (the note alone would last 5 minutes).
# (spelt as PostgreSQL also accepts it: a setting's name in any case)
pw_psql -d db_a -c "SET default_transaction_read_only = off" -c 'ALTER DATABASE db_a RESET "Default_Transaction_Read_Only"' \
    >/dev/null || pw_fail "ALTER DATABASE RESET failed"
PGDATABASE=db_a pw_wait_sql 50 30 "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'succeeded'" 0.5 >/dev/null
pw_check "db_a: once reset, its 50 runs ran, each once" "50 50" \
    "$(pw_psql -d db_a -c "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || (SELECT count(*) FROM effects) FROM pipeline_worker.runs")"
pw_check "no error logged" "" "$(pw_log_problems "$from")"
pw_finish
