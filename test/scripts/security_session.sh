#!/bin/bash
# Security: what another extension keeps per process must not pass from one role's step to the next role's on the
# same worker. dblink keeps its connections (named, and one unnamed) in the process for whoever calls it next: a
# connection one tenant's step opened served another role's dblink() calls, as the user it was opened as (until
# 2026-12-07; acceptance walk-through). They are closed when a step of another role runs; the same role keeps them.
# (The worker's own session state -- cursors, large objects, SET CONSTRAINTS, advisory locks, sequences, random(),
# temporary objects, GUCs -- is covered by security.sh.)
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up security_session 1 20 || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE EXTENSION dblink;
CREATE ROLE tenant LOGIN NOSUPERUSER;
CREATE ROLE intruder LOGIN NOSUPERUSER;
-- the tenant may open connections without a password (as an administrator would allow one trusted role)
GRANT EXECUTE ON FUNCTION dblink_connect_u(text), dblink_connect_u(text, text) TO tenant;
CREATE TABLE only_postgres (secret text);
INSERT INTO only_postgres VALUES ('postgres-only');
-- the tenant's step opens a named and the unnamed connection, reads through them, and leaves them open
CREATE FUNCTION public.open_links(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE named text; unnamed text; named_pid int; unnamed_pid int;
BEGIN
    IF NOT coalesce('link' = ANY (dblink_get_connections()), false) THEN
        PERFORM dblink_connect_u('link', ctx->'input'->>'conn');
    END IF;
    BEGIN PERFORM dblink_connect_u(ctx->'input'->>'conn'); EXCEPTION WHEN OTHERS THEN NULL; END;
    SELECT x INTO named FROM dblink('link', 'SELECT current_user::text') AS t(x text);
    SELECT x INTO unnamed FROM dblink('SELECT current_user::text') AS t(x text);
    SELECT x INTO named_pid FROM dblink('link', 'SELECT pg_backend_pid()') AS t(x int);
    SELECT x INTO unnamed_pid FROM dblink('SELECT pg_backend_pid()') AS t(x int);
    RETURN jsonb_build_object('named', named, 'unnamed', unnamed, 'named_pid', named_pid, 'unnamed_pid', unnamed_pid);
END $$;
-- a step that executes another run inside the worker's batch
CREATE FUNCTION public.nested(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RETURN to_jsonb(pipeline_worker.execute_run(0)); END $$;
-- the intruder's step tries to use them
CREATE FUNCTION public.use_links(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE named text; unnamed text;
BEGIN
    BEGIN SELECT x INTO named FROM dblink('link', 'SELECT secret FROM only_postgres') AS t(x text);
    EXCEPTION WHEN OTHERS THEN named := 'none'; END;
    BEGIN SELECT x INTO unnamed FROM dblink('SELECT secret FROM only_postgres') AS t(x text);
    EXCEPTION WHEN OTHERS THEN unnamed := 'none'; END;
    RETURN jsonb_build_object('named', named, 'unnamed', unnamed);
END $$;
GRANT USAGE ON SCHEMA pipeline_worker TO tenant, intruder;
SQL
pw_psql -U tenant -c "SELECT pipeline_worker.create_pipeline('links', '[{\"name\": \"s\", \"function\": \"public.open_links\"}]')" >/dev/null
pw_psql -U intruder -c "SELECT pipeline_worker.create_pipeline('use', '[{\"name\": \"s\", \"function\": \"public.use_links\"}]')" >/dev/null
pw_check_sql "the intruder may not read the table itself" "permission denied" \
    "SELECT 'permission denied' WHERE NOT has_table_privilege('intruder', 'only_postgres', 'SELECT')"

conn="dbname=postgres host=$PGHOST port=$PGPORT user=postgres"
runas() { pw_psql -U "$1" -c "SELECT pipeline_worker.create_run('$2', '$3')"; }
t1=$(runas tenant links "{\"conn\": \"$conn\"}")
pw_check "the tenant's step opened two connections" 'succeeded|postgres|postgres' \
    "$(pw_wait_run "$t1")|$(pw_psql -c "SELECT concat_ws('|', result->>'named', result->>'unnamed') FROM pipeline_worker.runs WHERE id = $t1")"
t2=$(runas tenant links "{\"conn\": \"$conn\"}")
pw_check "... its next run on the same worker" succeeded "$(pw_wait_run "$t2")"
pw_check_sql "... found its named connection still open (the same remote backend)" t \
    "SELECT (SELECT result->'named_pid' FROM pipeline_worker.runs WHERE id = $t1) = (SELECT result->'named_pid' FROM pipeline_worker.runs WHERE id = $t2)"
i1=$(runas intruder use '{}')
pw_check "the intruder's step on the same worker then" succeeded "$(pw_wait_run "$i1")"
pw_check_sql "... ran on that worker" 1 "SELECT count(DISTINCT worker_pid) FROM pipeline_worker.runs WHERE id IN ($t1, $t2, $i1)"
pw_check_sql "... and found neither connection" '{"named": "none", "unnamed": "none"}' \
    "SELECT result FROM pipeline_worker.runs WHERE id = $i1"
t3=$(runas tenant links "{\"conn\": \"$conn\"}")
pw_check "the tenant's next run opens its connections again" succeeded "$(pw_wait_run "$t3")"
# (a closed connection's backend exits on its own time: waited for)
pw_check "... the connections closed before the intruder's step are gone from the server" 0 "$(pw_wait_sql 0 10 \
    "SELECT count(*) FROM pg_stat_activity WHERE pid IN (SELECT (result->>'named_pid')::int FROM pipeline_worker.runs WHERE id = $t2
                                                       UNION SELECT (result->>'unnamed_pid')::int FROM pipeline_worker.runs WHERE id = $t2)")"

# A step cannot claim or execute another run inside the worker's batch (it would mix that run's writes into the
# batch's): refused, even for a superuser's run.
pw_psql -c "SELECT pipeline_worker.create_pipeline('nest', '[{\"name\": \"s\", \"function\": \"public.nested\"}]')" >/dev/null
n1=$(pw_run nest)
pw_wait_run "$n1" >/dev/null
pw_check_sql "a step calling execute_run() fails, saying why" "failed|true" \
    "SELECT status || '|' || (error LIKE '%execute_run() cannot be called from a step executed by a background worker%')
       FROM pipeline_worker.runs WHERE id = $n1"
pw_finish
