#!/bin/bash
# pg_dump + pg_restore of a database with pipelines, grants, secret headers, schedules and runs into a new server:
# everything comes back, ids are not reused afterwards (0.1 did not dump the identity sequences: create_pipeline
# failed on "pipelines_id_key"), and nothing executes while the restore runs (pipeline_worker.enabled = off, the
# documented procedure); turned on, the restored pending runs execute.
source "$(dirname "$0")/../lib/cluster.sh"
# (the second server first: pw_cleanup exits; $? given back to it through a subshell)
trap 'dr_rc=$?; [ -n "${B_DATA:-}" ] && pw_as_pg "$PW_BINDIR/pg_ctl" -D "$B_DATA" stop -m immediate >/dev/null 2>&1; (exit $dr_rc); pw_cleanup' EXIT

pw_cluster_up dumpsrc 2 20 "pipeline_worker.http_allowed_hosts = '127.0.0.1'" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE ROLE dr_tenant;
CREATE TABLE effects (run_id bigint, step text);
GRANT INSERT ON effects TO PUBLIC;
CREATE FUNCTION dr_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO effects VALUES ((ctx->>'run_id')::bigint, ctx->>'step'); RETURN jsonb_build_object('n', ctx->'input'->'n'); END $$;
SELECT pipeline_worker.create_pipeline('dr', '[{"name": "a", "function": "dr_step"}, {"name": "b", "function": "dr_step"}]',
                                       '{"concurrency": 3}');
SELECT pipeline_worker.create_pipeline('dr_http', '[{"name": "call", "http": {"url": "http://127.0.0.1:9/x",
    "headers": {"Authorization": "Bearer s3cret"}, "secret_headers": ["Authorization"]}}]');
SELECT pipeline_worker.grant_pipeline('dr', 'dr_tenant');
SELECT pipeline_worker.schedule('dr_nightly', 'dr', '0 3 * * *', '{"n": 0}', options => '{"timezone": "Europe/Paris"}');
SELECT pipeline_worker.create_run('dr', jsonb_build_object('n', g), idempotency_key => 'k' || g) FROM generate_series(1, 20) g;
SQL
pw_wait_all_finished 30
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.pause_pipeline('dr');
SELECT pipeline_worker.create_run('dr', jsonb_build_object('n', 100 + g), priority => g) FROM generate_series(1, 5) g;
SQL
counts="SELECT (SELECT count(*) FROM pipeline_worker.pipelines) || '|' || (SELECT count(*) FROM pipeline_worker.pipeline_grants)
  || '|' || (SELECT count(*) FROM pipeline_worker.pipeline_secrets) || '|' || (SELECT count(*) FROM pipeline_worker.schedules)
  || '|' || (SELECT count(*) FROM pipeline_worker.runs) || '|' || (SELECT count(*) FILTER (WHERE status = 'pending') FROM pipeline_worker.runs)
  || '|' || (SELECT count(*) FROM pipeline_worker.run_steps) || '|' || (SELECT count(*) FROM effects)"
src_counts=$(pw_psql -c "$counts")
pw_info "source: pipelines|grants|secrets|schedules|runs|pending|steps|effects = $src_counts"
max_ids=$(pw_psql -c "SELECT (SELECT max(id) FROM pipeline_worker.pipelines) || ' ' || (SELECT max(id) FROM pipeline_worker.runs)")
"$PW_BINDIR/pg_dumpall" --roles-only > "$PW_CLUSTER_DIR/roles.sql" || pw_die "pg_dumpall --roles-only failed"
"$PW_BINDIR/pg_dump" -Fc -f "$PW_CLUSTER_DIR/db.dump" postgres || pw_die "pg_dump failed"
pw_ok "pg_dump of a database with the extension succeeded"
SRC_HOST=$PGHOST SRC_PORT=$PGPORT

# ------------------------------------------------------------------ a new server, the workers off while restoring
B_DIR=$PW_CLUSTER_DIR/b
mkdir -p "$B_DIR" && chown "$PW_OS_USER": "$B_DIR"
B_DATA=$B_DIR/data
pw_as_pg "$PW_BINDIR/initdb" -D "$B_DATA" -U postgres --auth=trust --no-locale -E UTF8 >/dev/null 2>&1 || pw_die "initdb b"
B_PORT=$(pw_free_port)
cat >> "$B_DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $B_PORT
unix_socket_directories = '$B_DIR'
shared_preload_libraries = 'pipeline_worker'
pipeline_worker.workers = 2
pipeline_worker.enabled = off
pipeline_worker.http_allowed_hosts = '127.0.0.1'
max_worker_processes = 20
CONF
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$B_DATA" -l "$B_DIR/server.log" -w start >/dev/null || pw_die "server b did not start"
export PGHOST=$B_DIR PGPORT=$B_PORT
pw_psql -q -f "$PW_CLUSTER_DIR/roles.sql" >/dev/null 2>&1
"$PW_BINDIR/pg_restore" -d postgres "$PW_CLUSTER_DIR/db.dump" 2> "$B_DIR/restore.err"
grep -v "role \"postgres\" already exists" "$B_DIR/restore.err" | grep -q . \
    && pw_fail "pg_restore reported: $(head -3 "$B_DIR/restore.err")" || pw_ok "pg_restore without errors"
pw_wait_workers 2 20 >/dev/null || pw_fail "workers of the restored server did not start"
sleep 1
pw_check "everything restored (pipelines|grants|secrets|schedules|runs|pending|steps|effects)" "$src_counts" "$(pw_psql -c "$counts")"
pw_check_sql "the secret header value came back (and stays masked in the definition)" "Bearer s3cret|true" \
    "SELECT s.value || '|' || (p.steps::text LIKE '%********%') FROM pipeline_worker.pipeline_secrets s
       JOIN pipeline_worker.pipelines p ON p.id = s.pipeline_id"
pw_check_sql "grants and pause state came back" "dr_tenant|true" \
    "SELECT g.grantee::text || '|' || p.paused FROM pipeline_worker.pipeline_grants g JOIN pipeline_worker.pipelines p ON p.name = g.pipeline"
pw_check_sql "the schedule came back with its options" "Europe/Paris" \
    "SELECT options->>'timezone' FROM pipeline_worker.schedules WHERE name = 'dr_nightly'"
read -r maxp maxr <<< "$max_ids"
pw_psql -c "SELECT pipeline_worker.create_pipeline('dr_new', '[{\"name\": \"a\", \"function\": \"dr_step\"}]')" >/dev/null 2>"$B_DIR/create.err" \
    && pw_ok "create_pipeline after the restore (no id collision)" || pw_fail "create_pipeline after the restore: $(cat "$B_DIR/create.err")"
pw_check_sql "new ids continue after the restored ones" t \
    "SELECT (SELECT id FROM pipeline_worker.pipelines WHERE name = 'dr_new') > $maxp
        AND pipeline_worker.create_run('dr_new', '{\"n\": 1}') > $maxr"
pw_check_sql "an idempotency key restored with its run still answers with it" t \
    "SELECT pipeline_worker.create_run('dr', '{\"n\": 3}', idempotency_key => 'k3') = (SELECT id FROM pipeline_worker.runs WHERE idempotency_key = 'k3')"
sleep 1
pw_check_sql "enabled = off: nothing executed after the restore" "0|$(echo "$src_counts" | cut -d'|' -f7)" \
    "SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'dr_new' AND status <> 'pending') || '|'
            || (SELECT count(*) FROM pipeline_worker.run_steps)"

# A schedule in the server started with the workers off: its slots before they are turned on count as missed while
# down ("catch_up" none: no run for them), not fired at once. (Until 2026-12-07 only the server's start counted.)
pw_psql -c "SELECT pipeline_worker.schedule('dr_every', 'dr_new', '1 seconds')" >/dev/null
sleep 3

# ------------------------------------------------------------------ turned on: the restored runs execute
on_at=$(pw_psql -c "SELECT clock_timestamp()")
pw_psql -c "ALTER SYSTEM SET pipeline_worker.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
pw_psql -c "SELECT pipeline_worker.resume_pipeline('dr')" >/dev/null
sleep 2.5
pw_psql -c "SELECT pipeline_worker.unschedule('dr_every')" >/dev/null
pw_check_sql "a schedule while the workers were off: no run for its slots before they were turned on, runs after" "0|true" \
    "SELECT count(*) FILTER (WHERE (metadata->>'scheduled_for')::timestamptz < '$on_at'::timestamptz - interval '0.2 s')
            || '|' || (count(*) FILTER (WHERE (metadata->>'scheduled_for')::timestamptz > '$on_at') >= 1)
       FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'dr_every'"
pw_wait_all_finished 30
pw_check_sql "enabled again: the restored pending runs and the new one succeeded" "0" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status <> 'succeeded'"
pw_check_sql "each step's effect once: the source's runs and the restored ones, none repeated" t \
    "SELECT count(*) = count(DISTINCT (run_id, step))
            AND count(*) = (SELECT 2 * count(*) FILTER (WHERE pipeline = 'dr') + count(*) FILTER (WHERE pipeline = 'dr_new')
                              FROM pipeline_worker.runs)
       FROM effects"
export PGHOST=$SRC_HOST PGPORT=$SRC_PORT
pw_finish
