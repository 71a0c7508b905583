#!/bin/bash
# Two databases, one server: what one database asks of its workers or sessions through shared memory reaches that
# database's, not the other's.
# - Runs parked by a concurrency limit come back in their own database while another database keeps its workers
#   busy. A freed slot leaves a wish to put parked runs back, which the next worker to look at it acts on. Until
#   2026-12-04 that wish was one flag for the whole server: a worker of db_b, looking first, cleared it and put back
#   only db_b's runs (none). db_a's parked runs then stayed parked until something freed another slot -- here, never.
#   The release below comes from a session (claim_run, execute_run) while db_a's only worker is busy for 3 s and
#   db_b's drains small runs: db_b's worker looks at the flag many times before db_a's can.
# - cancel_run of a run that a session executes (execute_run) interrupts that session, not one of the other
#   database executing a run with the same id (run ids are per database). Until 2026-12-04 the first session found
#   with that id was signalled, which ignored it, and the cancelled one ran its step to the end.
# - With pipeline_worker.enabled = off, queued runs in either database do not make the launcher move its one worker
#   between them.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_WORKERS=2 pw_cluster_start shdbs "pipeline_worker.databases = 'db_a, db_b'" \
    "pipeline_worker.max_workers_per_database = 1"
for db in db_a db_b; do
    pw_psql -c "CREATE DATABASE $db" >/dev/null || pw_die "CREATE DATABASE $db"
    pw_psql -d $db >/dev/null <<'SQL' || pw_die "fixtures in $db"
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint PRIMARY KEY);
CREATE FUNCTION lim_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(COALESCE((ctx->'input'->>'sleep')::float8, 0));
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('lim', '[{"name": "s", "function": "lim_step"}]', '{"concurrency": 1}');
SELECT pipeline_worker.create_pipeline('free', '[{"name": "s", "function": "lim_step"}]');
SQL
done
pw_wait_workers 2 15 >/dev/null || pw_die "2 workers did not show up"

# db_b: a backlog of 2 ms runs, drained by its one worker for ~15 s (a look at the wish before each batch)
pw_psql -d db_b -c "SELECT count(*) FROM pipeline_worker.create_runs('free',
                      (SELECT jsonb_agg('{\"sleep\": 0.002}'::jsonb) FROM generate_series(1, 7000)))" >/dev/null
PGDATABASE=db_b pw_wait_sql 1 10 "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'db_b' AND run_id IS NOT NULL" >/dev/null \
    || pw_fail "db_b's worker did not start its backlog"

# db_a, one session: 4 runs of the limited pipeline, the first claimed by the session (it holds the slot); the
# worker parks the other three. Then a 3 s run keeps db_a's worker busy while the session executes the first run
# and frees the slot. The session waits with \! (nothing open meanwhile).
P="$PW_BINDIR/psql -X -Atq -d db_a"
out=$(pw_psql -d db_a 2>&1 <<SQL
BEGIN;
SELECT count(*) FROM pipeline_worker.create_runs('lim', '[{}, {}, {}, {}]');
SELECT pipeline_worker.claim_run() AS first \gset
COMMIT;
\! for i in \$(seq 100); do [ "\$($P -c "SELECT count(*) FROM pipeline_worker.runs WHERE parked IS NOT NULL")" = 3 ] && break; sleep 0.1; done
SELECT count(*) AS parked FROM pipeline_worker.runs WHERE parked IS NOT NULL \gset
SELECT pipeline_worker.create_run('free', '{"sleep": 3}') AS slow \gset
\setenv SLOW :slow
\! for i in \$(seq 100); do [ "\$($P -c "SELECT count(*) FROM pipeline_worker.workers() WHERE database = 'db_a' AND run_id = \$SLOW")" = 1 ] && break; sleep 0.05; done
SELECT pipeline_worker.execute_run(:first);
SELECT 'parked=' || :parked || ' slow=' || :slow;
SQL
)
out=$(echo $out)
pw_info "db_a's session: $out"
case "$out" in *"succeeded parked=3 slow="*) pw_ok "the session executed its run while db_a's worker was busy and 3 runs were parked";;
    *) pw_fail "db_a's session: $out";; esac
slow=${out##*slow=}
pw_check "db_a's busy run succeeds" succeeded "$(pw_psql -d db_a -c "SELECT pipeline_worker.wait_run($slow, '10 s')")"
pending=$(pw_psql -d db_b -c "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending'")
pw_lt 0 "$pending" && pw_ok "db_b's worker was still draining ($pending runs queued)" \
    || pw_fail "db_b's backlog ran out: the test proves nothing"
# The three parked runs: put back as soon as db_a's worker is free again (at most a few hundred ms here)
if left=$(PGDATABASE=db_a pw_wait_sql 0 5 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'lim' AND status <> 'succeeded'" 0.1); then
    pw_ok "db_a's parked runs came back after the slot freed while db_b's worker looked first"
else
    pw_fail "db_a: $left limited runs still unfinished 5 s after its worker was free ($(pw_psql -d db_a -c "SELECT count(*) FROM pipeline_worker.runs WHERE parked IS NOT NULL") parked)"
fi
pw_check "each limited run's effect once" 4 "$(pw_psql -d db_a -c "SELECT count(*) FROM effects e JOIN pipeline_worker.runs r ON r.id = e.run_id WHERE r.pipeline = 'lim'")"
# ---------------------------------------------------------------- cancel_run of a session's run, same id in both
for db in db_a db_b; do
    pw_psql -d $db >/dev/null <<'SQL' || pw_fail "$db: cancel fixtures"
SELECT pipeline_worker.create_pipeline('slow', '[{"name": "s", "function": "lim_step"}]');
ALTER TABLE pipeline_worker.runs ALTER COLUMN id RESTART WITH 1000000;
SQL
done
OUT=$(mktemp -d /tmp/pw-shdbs.XXXXXX)
# session DB N : in database DB, create run N (priority 100: before any backlog), claim it, then execute it (a 20 s
# step), in the background; its output in $OUT/DB
session() {
    pw_psql -d "$1" >"$OUT/$1" 2>&1 <<SQL &
BEGIN;
SELECT pipeline_worker.create_run('slow', '{"sleep": 20}', priority => 100) = $2 AS right_id;
SELECT pipeline_worker.claim_run();
COMMIT;
SELECT pipeline_worker.execute_run($2);
SQL
}
in_step() {
    pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE datname = '$1' AND wait_event = 'PgSleep'
                       AND query LIKE '%execute_run($2)%'" 0.05 >/dev/null
}
# cancel_first DB OTHER N : both databases' sessions execute run N; cancel_run(N) in DB stops DB's, not OTHER's
cancel_first() {
    local db=$1 other=$2 n=$3 start t
    session "$other" "$n"; local bg_other=$!
    session "$db" "$n"; local bg=$!
    in_step "$other" "$n" && in_step "$db" "$n" || pw_fail "run $n: the two sessions did not both reach their step"
    start=$(pw_now)
    got=$(pw_psql -d "$db" -c "SET statement_timeout = '10s'" -c "SELECT pipeline_worker.cancel_run($n)" 2>&1)
    wait "$bg"
    t=$(pw_elapsed "$start")
    pw_check "cancel_run($n) in $db returns true" t "$got"
    pw_lt "$t" 3 && pw_ok "$db's session stopped $t s after cancel_run (its step sleeps 20 s)" \
        || pw_fail "$db's session stopped $t s after cancel_run ($(tail -1 "$OUT/$db"))"
    pw_check "$db's execute_run returned 'cancelled'" cancelled "$(tail -1 "$OUT/$db")"
    pw_check "$other's session still executes its run $n" "1 running" \
        "$(pw_psql -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$other' AND wait_event = 'PgSleep'
                        AND query LIKE '%execute_run($n)%'") $(pw_psql -d "$other" -c "SELECT status FROM pipeline_worker.runs WHERE id = $n")"
    pw_psql -d "$other" -c "SELECT pipeline_worker.cancel_run($n)" >/dev/null
    wait "$bg_other"
    pw_check "then cancelled in $other too" cancelled "$(tail -1 "$OUT/$other")"
}
cancel_first db_a db_b 1000000
cancel_first db_b db_a 1000001
rm -rf "$OUT"
# ---------------------------------------------------------------- disabled, fewer workers than databases
# pipeline_worker.enabled = off with runs queued in both databases and one worker: nothing is claimed, so neither
# database is active and the worker stays where it is. Until 2026-12-04 queued runs and due moments kept both active
# for good (the workers, disabled, never take them), and the launcher moved the worker every second.
pw_set_conf pipeline_worker.enabled off || pw_fail "setting enabled = off"
pw_set_conf pipeline_worker.workers 1 || pw_fail "setting workers = 1"
pw_wait_workers 1 15 >/dev/null || pw_fail "workers = 1: not 1 worker"
ids_a=$(pw_psql -d db_a -c "SELECT string_agg(pipeline_worker.create_run('free', '{}', run_at => clock_timestamp() + interval '1 second')::text, ',')
                             || ',' || pipeline_worker.create_run('free', '{}') FROM generate_series(1, 2)")
ids_b=$(pw_psql -d db_b -c "SELECT string_agg(pipeline_worker.create_run('free', '{}', run_at => clock_timestamp() + interval '1 second')::text, ',')
                             || ',' || pipeline_worker.create_run('free', '{}') FROM generate_series(1, 2)")
sleep 2
before=$(pw_worker_pids)
sleep 5
pw_check "disabled, one worker, runs queued in both databases: the worker stays (same process for 5 s)" "$before" "$(pw_worker_pids)"
pw_reset_conf pipeline_worker.enabled
pw_check "enabled again: db_a's queued and delayed runs run" 0 \
    "$(PGDATABASE=db_a pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids_a) AND status <> 'succeeded'" 0.2)"
pw_check "... and db_b's" 0 \
    "$(PGDATABASE=db_b pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids_b) AND status <> 'succeeded'" 0.2)"
pw_reset_conf pipeline_worker.workers

pw_check "no worker ended abnormally" "" "$(grep -E 'PANIC|terminated by signal|exited with exit code [^01]' "$PW_LOG" | head -3)"
pw_finish
