#!/bin/bash
# Streaming replication and failover. A `pg_basebackup -R` standby (same machine) with the library preloaded and
# workers configured executes nothing: no pipeline_worker process runs there, workers() and every relation of the
# extension are readable, writes through the API fail read-only (25006), and runs replayed as pending stay pending.
# Then, while 300 three-step runs execute on the primary (some steps sleeping, so that runs are running and many
# are pending), the primary is SIGKILLed (postmaster and children) and the standby promoted: its workers serve within
# 5 s and finish every run it knew of, each step's effects exactly once on the new timeline, every run succeeded.
# (Runs committed on the primary but not yet replayed die with it: asynchronous replication. The submission is
# waited for on the standby, so all 300 must be there.)
source "$(dirname "$0")/../lib/cluster.sh"
RUNS=${PW_STANDBY_RUNS:-300}
WORKERS=4

SB_DIR=/tmp/pw-standby/replica
SB_LOG=/tmp/pw-standby/replica.log
SB_PORT=

sb_stop() {
    if [ -f "$SB_DIR/postmaster.pid" ]; then
        pw_as_pg "$PW_BINDIR/pg_ctl" -D "$SB_DIR" stop -m fast -w -t 30 >/dev/null 2>&1 \
            || pw_as_pg "$PW_BINDIR/pg_ctl" -D "$SB_DIR" stop -m immediate -w >/dev/null 2>&1
    fi
}
on_exit() {
    local rc=$?
    sb_stop
    (exit "$rc")
    pw_cleanup
}
trap on_exit EXIT

# psql / checks against the standby (whatever PGPORT the primary has)
sb_psql() { PGPORT=$SB_PORT pw_psql "$@"; }
sb_check_sql() { PGPORT=$SB_PORT pw_check_sql "$@"; }
sb_wait_sql() { PGPORT=$SB_PORT pw_wait_sql "$@"; }
# sqlstate_on PORT SQL : the SQLSTATE of the error SQL raises on PORT ("no error: ..." when it succeeds)
sqlstate_on() {
    local out
    out=$(PGPORT=$1 pw_psql -v VERBOSITY=verbose -c "$2" 2>&1) && { echo "no error: $out"; return; }
    echo "$out" | sed -n 's/^[^:]*ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' | head -1
}

# ---------------------------------------------------------------- primary
pw_cluster_up standby "$WORKERS" 20 "wal_level = replica" "max_wal_senders = 5" "wal_keep_size = '256MB'" \
    || exit 1
PRIMARY_PORT=$PGPORT
PRIMARY_DATA=$PW_DATA
pw_psql >/dev/null <<'SQL' || pw_die "setup failed"
CREATE EXTENSION pipeline_worker;
-- one effect row per executed step, no unique key: a repeated execution shows up as a second row
CREATE TABLE fx (run_id bigint NOT NULL, step int NOT NULL, at timestamptz DEFAULT clock_timestamp());
CREATE INDEX ON fx (run_id, step);
CREATE FUNCTION sb_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE k int := (ctx->>'position')::int; i int := (ctx->'input'->>'i')::int;
BEGIN
    INSERT INTO fx (run_id, step) VALUES ((ctx->>'run_id')::bigint, k);
    -- the slow runs' first step outlasts commit_interval_ms (20 ms): it commits before their second step sleeps
    IF k = 1 AND i % 6 = 0 THEN PERFORM pg_sleep(0.03);
    ELSIF k = 2 AND i % 6 = 0 THEN PERFORM pg_sleep(0.3);
    ELSIF k = 3 AND i % 10 = 0 THEN PERFORM pg_sleep(0.2);
    ELSE PERFORM pg_sleep(0.002);
    END IF;
    RETURN jsonb_build_object('value', coalesce((ctx->'prev'->>'value')::bigint, (ctx->'input'->>'i')::bigint) + k);
END $$;
SELECT pipeline_worker.create_pipeline('sb', '[{"name": "s1", "function": "sb_step"},
    {"name": "s2", "function": "sb_step"}, {"name": "s3", "function": "sb_step"}]');
SELECT pipeline_worker.create_run('sb', jsonb_build_object('i', g, 'phase', 0)) FROM generate_series(1, 5) g;
SQL
pw_wait_all_finished 20 || pw_die "the first runs did not finish on the primary"

# ---------------------------------------------------------------- standby
rm -rf "$SB_DIR" "$SB_LOG"
SB_PORT=$(pw_free_port) || pw_die "no free port"
start=$(pw_now)
if ! pw_as_pg "$PW_BINDIR/pg_basebackup" -D "$SB_DIR" -R -X stream -c fast -h "$PGHOST" -p "$PRIMARY_PORT" -U postgres \
        >"$PW_CLUSTER_DIR/basebackup.log" 2>&1; then
    cat "$PW_CLUSTER_DIR/basebackup.log" >&2
    pw_die "pg_basebackup failed"
fi
{
    echo "# --- standby"
    echo "port = $SB_PORT"
    echo "unix_socket_directories = '$PW_CLUSTER_DIR'"
    echo "hot_standby = on"
    echo "log_recovery_conflict_waits = on"
    echo "shared_preload_libraries = 'pipeline_worker'"
    echo "pipeline_worker.workers = $WORKERS"
} >>"$SB_DIR/postgresql.conf"
grep -q primary_conninfo "$SB_DIR/postgresql.auto.conf" && [ -f "$SB_DIR/standby.signal" ] \
    && pw_ok "pg_basebackup -R wrote primary_conninfo and standby.signal" || pw_fail "pg_basebackup -R: no standby setup"
if ! pw_as_pg "$PW_BINDIR/pg_ctl" -D "$SB_DIR" -l "$SB_LOG" -w -t 60 start >"$PW_CLUSTER_DIR/sb_pg_ctl.log" 2>&1; then
    cat "$PW_CLUSTER_DIR/sb_pg_ctl.log" >&2
    tail -n 30 "$SB_LOG" >&2
    pw_die "the standby did not start"
fi
got=$(pw_wait_sql 1 20 "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") \
    && pw_ok "primary streams to the standby" || pw_fail "no streaming standby in pg_stat_replication ($got)"
sb_check_sql "standby is in recovery" t "SELECT pg_is_in_recovery()"
pw_info "standby up in $(pw_elapsed "$start") s: port $SB_PORT, data $SB_DIR"
sb_check_sql "standby: library preloaded, $WORKERS workers configured" "pipeline_worker|$WORKERS" \
    "SELECT current_setting('shared_preload_libraries') || '|' || current_setting('pipeline_worker.workers')"

# replay_wait TIMEOUT_S : wait until the standby has replayed the primary's current WAL position
replay_wait() {
    local lsn got
    lsn=$(pw_psql -c "SELECT pg_current_wal_lsn()") || return 1
    got=$(sb_wait_sql t "$1" "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 0.05) && return 0
    echo "standby did not replay $lsn within $1 s ($got; replayed $(sb_psql -c "SELECT pg_last_wal_replay_lsn()"), startup process waits on $(sb_psql -c "SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity WHERE backend_type = 'startup'"))" >&2
    return 1
}

# ---------------------------------------------------------------- the standby executes nothing
# On the primary: no claims for a moment, then runs that stay pending there -- and must stay pending on the standby,
# whose own pipeline_worker.enabled is on (ALTER SYSTEM is not replicated).
pw_set_conf pipeline_worker.enabled off || pw_fail "could not disable the primary's workers"
held=$(pw_psql -c "SELECT count(pipeline_worker.create_run('sb', jsonb_build_object('i', g, 'phase', 1))) FROM generate_series(1, 20) g")
pw_check "20 runs submitted with the primary's workers disabled" 20 "$held"
replay_wait 10 && pw_ok "standby replayed the submission" || pw_fail "standby replay"
sb_check_sql "standby: its pipeline_worker.enabled is on" on "SELECT current_setting('pipeline_worker.enabled')"
sb_check_sql "standby sees the 20 runs pending" 20 "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '1' AND status = 'pending'"
sleep 3
sb_check_sql "standby: the 20 runs are still pending 3 s later, claims 0, no step rows" "20|0|0" \
    "SELECT count(*) FILTER (WHERE status = 'pending') || '|' || coalesce(sum(claims), 0) || '|'
            || (SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id
                 WHERE r.input->>'phase' = '1')
       FROM pipeline_worker.runs WHERE input->>'phase' = '1'"
sb_check_sql "standby: no effects of those runs" 0 \
    "SELECT count(*) FROM fx JOIN pipeline_worker.runs r ON r.id = fx.run_id WHERE r.input->>'phase' = '1'"
pw_check_sql "primary: the 20 runs are still pending too (no write came from elsewhere)" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '1' AND status = 'pending'"

sb_check_sql "standby: no pipeline_worker backend (worker or launcher) in pg_stat_activity" 0 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pipeline_worker%'"
sb_pm=$(head -1 "$SB_DIR/postmaster.pid")
sb_procs=$(ps -o pid=,args= --ppid "$sb_pm")
pw_info "standby processes: $(echo "$sb_procs" | sed 's/^ *[0-9]* //' | sed 's/postgres: //' | paste -sd, | cut -c1-300)"
pw_check "standby: no pipeline_worker process among the postmaster's children (ps)" 0 \
    "$(echo "$sb_procs" | grep -c 'pipeline_worker')"
out=$(sb_psql -c "SELECT count(*) FROM pipeline_worker.workers()" 2>&1)
pw_check "standby: SELECT * FROM pipeline_worker.workers() works read-only, no slot in use" 0 "$out"
sb_check_sql "standby: workers() in a READ ONLY transaction" 0 \
    "BEGIN TRANSACTION READ ONLY; SELECT count(*) FROM pipeline_worker.workers(); COMMIT"
rels=$(sb_psql -c "SELECT string_agg(oid::regclass::text, ' ' ORDER BY relname) FROM pg_class
                    WHERE relnamespace = 'pipeline_worker'::regnamespace AND relkind IN ('r', 'v', 'm', 'p', 'f')")
pw_info "the extension's relations: $rels"
[ -n "$rels" ] || pw_fail "no relation found in schema pipeline_worker on the standby"
bad=
for r in $rels; do
    sb_psql -c "SELECT count(*) FROM $r" >/dev/null 2>&1 || bad="$bad $r"
done
pw_check "standby: every relation of the extension is readable (${rels// /, })" "" "$bad"
sb_check_sql "standby: runs and run_steps replayed (5 finished runs, 15 step rows)" "5|15" \
    "SELECT count(*) || '|' || (SELECT count(*) FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r2 ON r2.id = s.run_id
                                 WHERE r2.input->>'phase' = '0')
       FROM pipeline_worker.runs WHERE input->>'phase' = '0' AND status = 'succeeded'"
first=$(sb_psql -c "SELECT min(id) FROM pipeline_worker.runs WHERE input->>'phase' = '0'")
sb_check_sql "standby: wait_run of a finished run answers" succeeded "SELECT pipeline_worker.wait_run($first, '2 s')"
pending_one=$(sb_psql -c "SELECT min(id) FROM pipeline_worker.runs WHERE input->>'phase' = '1'")
for call in "create_run('sb', '{\"i\": 1}')" "create_runs('sb', '[{\"i\": 1}]')" \
            "create_pipeline('sb2', '[{\"name\": \"a\", \"function\": \"sb_step\"}]')" \
            "cancel_run($pending_one)" "claim_run()" "purge_runs('0 s')"; do
    pw_check "standby: $call fails read-only (SQLSTATE 25006)" 25006 "$(sqlstate_on "$SB_PORT" "SELECT pipeline_worker.$call")"
done
# ... naming the function, with the hint to call it on the primary (not the internal statement that wrote first)
out=$(PGPORT=$SB_PORT pw_psql -c "SELECT pipeline_worker.create_run('sb', '{}')" 2>&1)
pw_check "standby: create_run's error names it, hints at the primary, and carries no internal statement" "1|1|0" \
    "$(grep -c 'cannot execute pipeline_worker.create_run() in a read-only transaction' <<<"$out")|$(grep -c 'HINT:  This server is a standby. Call it on the primary.' <<<"$out")|$(grep -c 'CONTEXT' <<<"$out")"
# TRUNCATE of the extension's tables: src/worker/ddl_locks.cpp takes the run table first only where the command can
# succeed. On a standby that lock would itself fail (55000, "cannot acquire lock mode AccessExclusiveLock ... while
# recovery is in progress"), before PostgreSQL's own read-only error.
pw_check "standby: TRUNCATE run_steps, runs fails read-only (SQLSTATE 25006)" 25006 \
    "$(sqlstate_on "$SB_PORT" "TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs")"
sb_check_sql "standby: recover_runs() with no running run is a read-only no-op" 0 "SELECT pipeline_worker.recover_runs()"
sb_check_sql "standby: the pending run is still pending after those calls" pending \
    "SELECT status FROM pipeline_worker.runs WHERE id = $pending_one"
sb_check_sql "standby: still no pipeline_worker backend" 0 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pipeline_worker%'"
n=$(grep -cE 'background worker "pipeline_worker|pipeline_worker.*(FATAL|PANIC)|(FATAL|PANIC).*pipeline_worker' "$SB_LOG")
pw_check "standby log: no pipeline_worker process started, crashed or exited" 0 "$n"

# back on: the primary finishes them, the standby replays the results
pw_set_conf pipeline_worker.enabled on || pw_fail "could not enable the primary's workers"
pw_wait_all_finished 20
replay_wait 10 || pw_fail "standby replay of the finished runs"
sb_check_sql "standby replays the finished runs (20 succeeded)" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '1' AND status = 'succeeded'"

# ---------------------------------------------------------------- load, then the primary dies
before_ids=$(pw_psql -c "SELECT coalesce(max(id), 0) FROM pipeline_worker.runs")
start=$(pw_now)
got=$(pw_psql -c "SELECT count(pipeline_worker.create_run('sb', jsonb_build_object('i', g, 'phase', 2)))
                   FROM generate_series(1, $RUNS) g")
pw_check "$RUNS runs submitted on the primary" "$RUNS" "$got"
replay_wait 10 && pw_ok "standby replayed the submission of the $RUNS runs" || pw_fail "standby replay of the submission"
pw_info "submitted and replayed in $(pw_elapsed "$start") s"
# kill while steps sleep (runs running) and runs are still pending
sleeping=$(pw_wait_sleeping_worker 10)
[ -n "$sleeping" ] || pw_fail "no worker sleeping in a step"
sleep 0.7
pw_wait_sleeping_worker 5 >/dev/null
state_at_kill=$(pw_psql -c "SELECT string_agg(status || '=' || n, ' ' ORDER BY status) FROM (
                              SELECT status, count(*) n FROM pipeline_worker.runs WHERE input->>'phase' = '2' GROUP BY 1) s")
pm=$(head -1 "$PRIMARY_DATA/postmaster.pid")
shmid=$(sed -n 7p "$PRIMARY_DATA/postmaster.pid" | awk '{print $2}')
children=$(pgrep -P "$pm" | paste -sd' ')
# shellcheck disable=SC2086
kill -9 "$pm" $children
killed_at=$(pw_now)
pw_info "primary just before SIGKILL: $state_at_kill (postmaster $pm and $(echo $children | wc -w) children killed)"
gone=1
for p in $pm $children; do pw_wait_exit "$p" 10 || gone=0; done
pw_check "primary: postmaster and all its children are gone" 1 "$gone"
# the killed postmaster's SysV segment (nobody is attached any more) and pid file
[ -n "$shmid" ] && ipcrm -m "$shmid" 2>/dev/null
rm -f "$PRIMARY_DATA/postmaster.pid"
# from here on pw_cleanup stops the (promoted) standby and shows its log
PW_DATA=$SB_DIR PW_LOG=$SB_LOG
export PGPORT=$SB_PORT

sb_check_sql "standby: still in recovery after the primary's death" t "SELECT pg_is_in_recovery()"
known=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '2'")
unfinished=$(pw_psql -c "SELECT count(*) FILTER (WHERE status = 'pending') || ' ' || count(*) FILTER (WHERE status = 'running')
                          FROM pipeline_worker.runs WHERE input->>'phase' = '2'")
pending_sb=${unfinished% *} running_sb=${unfinished#* }
pw_info "standby before promotion: $known runs known, $pending_sb pending, $running_sb running; $(pw_psql -c \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '2' AND status = 'succeeded'") succeeded"
midway=$(pw_psql -c "SELECT count(DISTINCT r.id) FROM pipeline_worker.runs r
                       JOIN pipeline_worker.run_steps s ON s.run_id = r.id AND s.status = 'succeeded'
                      WHERE r.input->>'phase' = '2' AND r.status IN ('pending', 'running')")
pw_check "standby knows all $RUNS submitted runs (the submission was replayed)" "$RUNS" "$known"
pw_lt 0 "$pending_sb" && pw_ok "runs were pending on the standby when the primary died ($pending_sb)" \
    || pw_fail "no pending run at the kill: the test proved nothing"
pw_lt 0 "$midway" && pw_ok "unfinished runs had committed steps on the standby: they resume mid-run ($midway)" \
    || pw_fail "no unfinished run with a committed step at the kill: resuming mid-run is not exercised"
pw_lt 0 "$running_sb" && pw_ok "runs were running on the standby when the primary died ($running_sb)" \
    || pw_fail "no running run at the kill: the test proved nothing about recovered claims"

# the claims of the dead primary's workers cannot be recovered before the promotion: a read-only error, no change
pw_check "standby: recover_runs() with $running_sb runs of dead claimers fails read-only (SQLSTATE 25006)" 25006 \
    "$(sqlstate_on "$SB_PORT" "SELECT pipeline_worker.recover_runs()")"
pw_check_sql "standby: those runs are still running" "$running_sb" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '2' AND status = 'running'"

# ---------------------------------------------------------------- promotion
log_from=$(stat -c %s "$SB_LOG")
start=$(pw_now)
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$SB_DIR" promote -w -t 30 >/dev/null 2>&1 || pw_fail "pg_ctl promote failed"
promoted_in=$(pw_elapsed "$start")
pw_check_sql "promoted: not in recovery any more" f "SELECT pg_is_in_recovery()"
pw_check_sql "promoted: writes WAL on a new timeline" t \
    "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int > 1"
# serving = all workers up and in the shared-memory slots, and a run finished since the promotion
if got=$(pw_wait_sql "$WORKERS" 10 "SELECT count(*) FROM pipeline_worker.workers()" 0.02); then
    workers_in=$(pw_elapsed "$start")
else
    workers_in=never
fi
if got2=$(pw_wait_sql t 10 "SELECT count(*) > 0 FROM pipeline_worker.runs WHERE input->>'phase' = '2' AND status = 'succeeded'
                               AND finished_at >= to_timestamp($start)" 0.02); then
    serving_in=$(pw_elapsed "$start")
else
    serving_in=never
fi
pw_info "promote returned after $promoted_in s; $WORKERS workers in workers() after $workers_in s; first run finished on the new timeline after $serving_in s"
[ "$workers_in" != never ] && pw_lt "$workers_in" 5 && pw_ok "workers up within 5 s of promotion ($workers_in s)" \
    || pw_fail "workers not up within 5 s of promotion ($workers_in; workers(): $got)"
[ "$serving_in" != never ] && pw_lt "$serving_in" 5 && pw_ok "workers serve (a run finished) within 5 s of promotion ($serving_in s)" \
    || pw_fail "no run finished within 5 s of promotion ($serving_in: $got2)"

left=$(pw_wait_sql 0 60 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running')" 0.1) \
    && pw_ok "every run finished on the promoted server ($(pw_elapsed "$start") s after the promotion, $(pw_elapsed "$killed_at") s after the SIGKILL)" \
    || pw_fail "runs unfinished 60 s after the promotion: $left ($(pw_psql -c "SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM pipeline_worker.runs GROUP BY 1 ORDER BY 1) s"))"
pw_check_sql "all $RUNS runs succeeded" "$RUNS" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '2' AND status = 'succeeded'"
pw_check_sql "no run was lost or added (ids after $before_ids: $RUNS)" "$RUNS" \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id > $before_ids"
pw_check_sql "every step's effect exactly once on the new timeline: $((RUNS * 3)) (run, step) pairs, none twice" \
    "$((RUNS * 3)) 0 0" \
    "SELECT count(*) || ' ' || count(*) FILTER (WHERE n <> 1) || ' ' || coalesce(sum(n - 1), 0) FROM (
       SELECT f.run_id, f.step, count(*) n FROM fx f JOIN pipeline_worker.runs r ON r.id = f.run_id
        WHERE r.input->>'phase' = '2' GROUP BY 1, 2) s"
pw_check_sql "no effect rows of a step that is not recorded as succeeded" 0 \
    "SELECT count(*) FROM fx f JOIN pipeline_worker.runs r ON r.id = f.run_id
      WHERE r.input->>'phase' = '2' AND NOT EXISTS (SELECT 1 FROM pipeline_worker.run_steps s
                  WHERE s.run_id = f.run_id AND s.position = f.step AND s.status = 'succeeded')"
pw_check_sql "one succeeded step row per (run, position), none failed, outputs exact" "$((RUNS * 3)) 0 0" \
    "SELECT count(*) FILTER (WHERE s.status = 'succeeded') || ' ' || count(*) FILTER (WHERE s.status <> 'succeeded') || ' '
            || count(*) FILTER (WHERE s.status = 'succeeded' AND (s.output->>'value')::bigint
                                <> (r.input->>'i')::bigint + (s.position * (s.position + 1)) / 2)
       FROM pipeline_worker.run_steps s JOIN pipeline_worker.runs r ON r.id = s.run_id WHERE r.input->>'phase' = '2'"
pw_check_sql "results exact (i + 6)" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE input->>'phase' = '2'
       AND (result->>'value')::bigint IS DISTINCT FROM (input->>'i')::bigint + 6"
pw_info "claims after the failover: $(pw_psql -c "SELECT string_agg(claims || ' claim(s): ' || n || ' runs', ', ' ORDER BY claims)
                                       FROM (SELECT claims, count(*) n FROM pipeline_worker.runs WHERE input->>'phase' = '2' GROUP BY 1) s")"
pw_check_sql "runs that were running at the failover were claimed again (claims > 1 for at least $running_sb)" t \
    "SELECT count(*) >= $running_sb FROM pipeline_worker.runs WHERE input->>'phase' = '2' AND claims > 1"
problems=$(tail -c +"$((log_from + 1))" "$SB_LOG" | grep -E 'PANIC:|terminated by signal|exited with exit code|server process .* was terminated' || true)
pw_check "promoted server's log: no crash or worker exit" "" "$problems"
pw_info "recovery lines: $(tail -c +"$((log_from + 1))" "$SB_LOG" | grep -o 'recovered .* run(s)[^"]*' | head -3 | paste -sd';')"
pw_finish
