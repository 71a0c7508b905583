#!/bin/bash
# Cron schedules through the workers' timer: one run per slot, on time; catch_up after the server was down
# (none, latest, all); overlap skip; SIGKILLs while schedules fire (no slot twice, none missed); a schedule whose
# owner lost the right to submit becomes inactive; a schedule whose runs a trigger refuses is deactivated while delayed
# runs still come due; a schedule meeting an error that may pass fails timer rounds about once a second per worker, not
# at every claim, and the claims go on; while every worker is inside a step, a timer worker fires the slots on time
# (and timer workers terminated or killed mid-round fire no slot twice and miss none; after failed rounds the next
# timer worker comes later each time).
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up schedules 3 20 "pipeline_worker.commit_interval_ms = 20" || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE EXTENSION pipeline_worker;
CREATE FUNCTION sc_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(COALESCE((ctx->'input'->>'sleep')::float8, 0)); RETURN ctx->'metadata'; END $$;
SELECT pipeline_worker.create_pipeline('sc', '[{"name": "s", "function": "sc_step"}]');
-- slots of a schedule: consecutive seconds without gaps or repeats?
CREATE FUNCTION slot_gaps(s text) RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM (
        SELECT (metadata->>'scheduled_for')::timestamptz AS slot,
               lag((metadata->>'scheduled_for')::timestamptz) OVER (ORDER BY (metadata->>'scheduled_for')::timestamptz) AS prev
          FROM pipeline_worker.runs WHERE metadata->>'schedule' = s) x
     WHERE prev IS NOT NULL AND slot - prev <> interval '1 second'
$$;
CREATE FUNCTION slot_dups(s text) RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) - count(DISTINCT metadata->>'scheduled_for') FROM pipeline_worker.runs WHERE metadata->>'schedule' = s
$$;
SQL

# ------------------------------------------------------------------ one run per slot, on time
pw_psql -c "SELECT pipeline_worker.schedule('every1', 'sc', '1 seconds', '{\"x\": 1}', '{\"team\": \"a\"}')" >/dev/null
# (counted against the server's clock: the whole seconds since the schedule was created, less the one being fired --
# not against a sleep of the script, which psql start-ups on a slow machine stretch)
pw_wait_sql t 15 "SELECT count(*) >= 5 FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'every1'" 0.2 >/dev/null
got=$(pw_psql -c "SELECT count(*) || ' runs in ' || s.seconds || ' whole seconds|'
                         || (count(*) BETWEEN s.seconds - 1 AND s.seconds)
                    FROM pipeline_worker.runs r,
                         (SELECT (floor(extract(epoch FROM now())) - floor(extract(epoch FROM created_at)))::int AS seconds
                            FROM pipeline_worker.schedules WHERE name = 'every1') s
                   WHERE r.metadata->>'schedule' = 'every1' GROUP BY s.seconds")
pw_info "'1 seconds': ${got%|*}"
[ "${got##*|}" = true ] && pw_ok "'1 seconds' fired once a second" || pw_fail "'1 seconds' fired ${got%|*}"
pw_check_sql "no slot twice, none skipped" "0|0" "SELECT slot_dups('every1') || '|' || slot_gaps('every1')"
pw_check_sql "slots are whole seconds, created within 1 s of their slot" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'every1'
       AND (created_at - (metadata->>'scheduled_for')::timestamptz NOT BETWEEN interval '0' AND interval '1 s'
            OR extract(microseconds FROM (metadata->>'scheduled_for')::timestamptz)::bigint % 1000000 <> 0)"
lat=$(pw_psql -c "SELECT round(1000 * extract(epoch FROM max(created_at - (metadata->>'scheduled_for')::timestamptz)))
                    FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'every1'")
pw_info "fire lateness: max ${lat} ms (the benchmark measures p99 with 100 schedules)"
pw_check_sql "run: input, metadata + schedule and slot, idempotency key, submitted by the owner" "t" \
    "SELECT bool_and(input = '{\"x\": 1}' AND metadata->>'team' = 'a'
                     AND idempotency_key = 'schedule:every1:' || (metadata->>'scheduled_for')
                     AND submitted_by = 'postgres'::regrole)
       FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'every1'"
pw_check_sql "the schedule row tells the last slot and run" t \
    "SELECT s.last_run_id = (SELECT max(id) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'every1')
            AND s.next_run_at > s.last_slot FROM pipeline_worker.schedules s WHERE name = 'every1'"
pw_psql -c "SELECT pipeline_worker.unschedule('every1')" >/dev/null

# ------------------------------------------------------------------ catch_up across a stop
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.schedule('cu_none', 'sc', '1 seconds');
SELECT pipeline_worker.schedule('cu_latest', 'sc', '1 seconds', options => '{"catch_up": "latest"}');
SELECT pipeline_worker.schedule('cu_all', 'sc', '1 seconds', options => '{"catch_up": "all"}');
SQL
sleep 2.3
pw_cluster_stop fast
sleep 4
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
pw_wait_workers 3 20 >/dev/null
sleep 2.5
# slots missed while down: after the last slot fired before the stop, before the server started again
missed="(SELECT count(*) FROM generate_series(
            (SELECT max((metadata->>'scheduled_for')::timestamptz) FROM pipeline_worker.runs r
              WHERE r.metadata->>'schedule' = s.name AND r.created_at < pg_postmaster_start_time()) + interval '1 s',
            pg_postmaster_start_time(), interval '1 s') g WHERE g < pg_postmaster_start_time())"
fired_down="(SELECT count(*) FROM pipeline_worker.runs r WHERE r.metadata->>'schedule' = s.name
              AND r.created_at >= pg_postmaster_start_time()
              AND (r.metadata->>'scheduled_for')::timestamptz < pg_postmaster_start_time())"
m=$(pw_psql -c "SELECT $missed FROM pipeline_worker.schedules s WHERE name = 'cu_all'")
pw_info "slots missed while the server was down: $m"
[ "$m" -ge 3 ] || pw_fail "the stop did not span 3 slots ($m)"
pw_check_sql "catch_up none: no run for a slot missed while down" 0 \
    "SELECT $fired_down FROM pipeline_worker.schedules s WHERE name = 'cu_none'"
pw_check_sql "catch_up latest: one run, for the latest missed slot" "1|true" \
    "SELECT $fired_down || '|' || ((SELECT max((metadata->>'scheduled_for')::timestamptz) FROM pipeline_worker.runs r
        WHERE r.metadata->>'schedule' = s.name AND (r.metadata->>'scheduled_for')::timestamptz < pg_postmaster_start_time())
        > pg_postmaster_start_time() - interval '1 s') FROM pipeline_worker.schedules s WHERE name = 'cu_latest'"
pw_check_sql "catch_up all: one run per missed slot" "$m" \
    "SELECT $fired_down FROM pipeline_worker.schedules s WHERE name = 'cu_all'"
pw_check_sql "catch_up all: no gap, no repeat" "0|0" "SELECT slot_gaps('cu_all') || '|' || slot_dups('cu_all')"
# (waited for, not read after a fixed sleep: on a slow machine the first slots after the start may come after it;
# CI once read 0 here. On a failure the runs since the start and the workers' state say which way it went.)
fired_after="SELECT count(DISTINCT metadata->>'schedule') FROM pipeline_worker.runs
              WHERE (metadata->>'scheduled_for')::timestamptz > pg_postmaster_start_time() + interval '1 s'"
if got=$(pw_wait_sql 3 15 "$fired_after" 0.2); then
    pw_ok "every mode fires again after the start"
else
    pw_fail "every mode fires again after the start (expected '3' within 15 s, got '$got')"
    pw_psql -c "SELECT now() - pg_postmaster_start_time() AS up, metadata->>'schedule' AS s, metadata->>'scheduled_for'
                       AS slot, created_at - pg_postmaster_start_time() AS created
                  FROM pipeline_worker.runs WHERE created_at >= pg_postmaster_start_time() ORDER BY id" >&2
    pw_psql -c "SELECT name, next_run_at, last_slot, active FROM pipeline_worker.schedules" >&2
    pw_psql -c "SELECT pid, state, wait_event, query FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'" >&2
fi
pw_psql -c "SELECT pipeline_worker.unschedule(n) FROM unnest(ARRAY['cu_none', 'cu_latest', 'cu_all']) n" >/dev/null

# ------------------------------------------------------------------ catch_up across pipeline_worker.enabled = off
# While the workers are off the timer does not fire; turned on again, the slots due meanwhile count as missed while
# down. (Until 2026-12-07 they all fired at once when it was turned on, "catch_up": "none" or not -- 14 runs in 2 s
# after 12 s off in an acceptance walk-through; the dump/restore procedure keeps the workers off.)
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.schedule('en_none', 'sc', '1 seconds');
SELECT pipeline_worker.schedule('en_all', 'sc', '1 seconds', options => '{"catch_up": "all"}');
SQL
sleep 2.3
pw_set_conf pipeline_worker.enabled off >/dev/null || pw_fail "enabled not turned off"
off_at=$(pw_psql -c "SELECT clock_timestamp()")
sleep 4
on_at=$(pw_psql -c "SELECT clock_timestamp()")
pw_set_conf pipeline_worker.enabled on >/dev/null || pw_fail "enabled not turned on"
sleep 2.5
# (slots well inside the time off: from a second after it began to just before it ended)
while_off="(SELECT count(*) FROM pipeline_worker.runs r WHERE r.metadata->>'schedule' = s.name
             AND (r.metadata->>'scheduled_for')::timestamptz BETWEEN '$off_at'::timestamptz + interval '1 s'
                                                                AND '$on_at'::timestamptz - interval '0.2 s')"
pw_check_sql "catch_up none: no run for a slot due while pipeline_worker.enabled was off" 0 \
    "SELECT $while_off FROM pipeline_worker.schedules s WHERE name = 'en_none'"
pw_check_sql "catch_up all: a run for each slot due while it was off (3 seconds of them), none twice" "true|0" \
    "SELECT ($while_off >= 2) || '|' || slot_dups('en_all') FROM pipeline_worker.schedules s WHERE name = 'en_all'"
pw_check_sql "catch_up none: the schedule fires again once it is on" t \
    "SELECT count(*) >= 1 FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'en_none'
        AND (metadata->>'scheduled_for')::timestamptz > '$on_at'::timestamptz"
pw_psql -c "SELECT pipeline_worker.unschedule(n) FROM unnest(ARRAY['en_none', 'en_all']) n" >/dev/null

# ------------------------------------------------------------------ schedule() re-issued unchanged before a slot fires
# A deploy script re-issuing the same schedule() call keeps a slot that is due but not fired yet (recomputed from now,
# it was skipped for good: an acceptance walk-through lost one slot in three re-issuing every 0.1 s, 2026-12-08). A
# changed cron starts from now. (The workers are off: the slot stays due until they are on again.)
pw_set_conf pipeline_worker.enabled off >/dev/null || pw_fail "enabled not turned off"
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.schedule('reissue', 'sc', '1 seconds', options => '{"catch_up": "all"}');
SELECT pipeline_worker.schedule('recron', 'sc', '1 seconds', options => '{"catch_up": "all"}');
SQL
due=$(pw_psql -c "SELECT next_run_at FROM pipeline_worker.schedules WHERE name = 'reissue'")
sleep 1.5
pw_psql >/dev/null <<'SQL'
SELECT pipeline_worker.schedule('reissue', 'sc', '1 seconds', options => '{"catch_up": "all"}');
SELECT pipeline_worker.schedule('recron', 'sc', '2 seconds', options => '{"catch_up": "all"}');
SQL
pw_check_sql "schedule() re-issued unchanged: the slot due and not fired stays its next slot" t \
    "SELECT next_run_at = '$due'::timestamptz AND next_run_at < clock_timestamp() FROM pipeline_worker.schedules WHERE name = 'reissue'"
pw_check_sql "schedule() with another cron: the next slot is computed from now" t \
    "SELECT next_run_at > clock_timestamp() FROM pipeline_worker.schedules WHERE name = 'recron'"
pw_set_conf pipeline_worker.enabled on >/dev/null || pw_fail "enabled not turned on"
pw_wait_sql 1 10 "SELECT count(*) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'reissue'
                    AND (metadata->>'scheduled_for')::timestamptz = '$due'::timestamptz" 0.2 >/dev/null
pw_check_sql "... and its run is created once the workers are on again, once" 1 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'reissue'
        AND (metadata->>'scheduled_for')::timestamptz = '$due'::timestamptz"
pw_psql -c "SELECT pipeline_worker.unschedule(n) FROM unnest(ARRAY['reissue', 'recron']) n" >/dev/null

# ------------------------------------------------------------------ overlap skip
pw_psql -c "SELECT pipeline_worker.schedule('ov', 'sc', '1 seconds', '{\"sleep\": 2.5}', options => '{\"overlap\": \"skip\"}')" >/dev/null
sleep 7
pw_psql -c "SELECT pipeline_worker.unschedule('ov')" >/dev/null
pw_wait_all_finished 10
pw_check_sql "overlap skip: no two runs of the schedule at once" 0 \
    "SELECT count(*) FROM pipeline_worker.runs a, pipeline_worker.runs b
      WHERE a.metadata->>'schedule' = 'ov' AND b.metadata->>'schedule' = 'ov' AND a.id < b.id
        AND b.created_at < a.finished_at"
n=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'ov'")
pw_info "overlap skip: $n runs in 7 s of a 2.5 s step"
{ [ "$n" -ge 2 ] && [ "$n" -le 3 ]; } && pw_ok "overlap skip: 2-3 runs in 7 s" || pw_fail "overlap skip: $n runs"

# ------------------------------------------------------------------ overlap skip with every worker inside a step
# Two workers are kept busy by long runs, the third executes the schedule's 2.5 s runs: the timer's rounds then come
# only between runs, late. A slot the last run was busy over is still skipped -- judged at the slot, not when the
# round looks (until 2026-12-07 a late round found the run just finished and fired the slot after its start).
pw_set_conf pipeline_worker.claim_batch 1 >/dev/null || pw_fail "claim_batch not set"
for i in 1 2; do pw_psql -c "SELECT pipeline_worker.create_run('sc', '{\"sleep\": 8}', '{\"tag\": \"busy\"}')" >/dev/null; done
# (inside their steps: a run whose claim is not committed yet reads pending)
pw_wait_sql 2 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'" >/dev/null \
    || pw_fail "the two long runs did not start"
pw_psql -c "SELECT pipeline_worker.schedule('ov_busy', 'sc', '1 seconds', '{\"sleep\": 2.5}', options => '{\"overlap\": \"skip\"}')" >/dev/null
sleep 6
pw_psql -c "SELECT pipeline_worker.unschedule('ov_busy')" >/dev/null
pw_reset_conf pipeline_worker.claim_batch
pw_wait_all_finished 15
pw_check_sql "overlap skip, every worker busy: no run for a slot its schedule's last run was unfinished at" 0 \
    "SELECT count(*) FROM (SELECT (metadata->>'scheduled_for')::timestamptz AS slot,
                                  lag(finished_at) OVER (ORDER BY id) AS prev_finished
                             FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'ov_busy') x
      WHERE prev_finished > slot"
n=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'ov_busy'")
[ "$n" -ge 1 ] && pw_ok "overlap skip, every worker busy: $n run(s) in 6 s of a 2.5 s step" || pw_fail "overlap skip, every worker busy: no run"

# ------------------------------------------------------------------ on time with every worker inside a step
# All three workers inside 6 s steps: the due moments none of them can take go to a timer worker the launcher starts
# for the round. (Until 2026-12-07 the timer ran only in the workers, between steps: the slots' runs were created when
# the first step ended, up to ~5 s late here.)
pw_set_conf pipeline_worker.claim_batch 1 >/dev/null || pw_fail "claim_batch not set"
for i in 1 2 3; do pw_psql -c "SELECT pipeline_worker.create_run('sc', '{\"sleep\": 6}', '{\"tag\": \"busy3\"}')" >/dev/null; done
pw_wait_sql 3 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'" >/dev/null \
    || pw_fail "the three long runs did not start"
pw_psql -c "SELECT pipeline_worker.schedule('on_time', 'sc', '1 seconds')" >/dev/null
sleep 3.5
pw_psql -c "SELECT pipeline_worker.unschedule('on_time')" >/dev/null
pw_check_sql "every worker inside a step: the three long steps were still under way when the schedule was dropped" 3 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'"
late=$(pw_psql -c "SELECT count(*) || ' runs, created up to ' || coalesce(round(extract(epoch FROM max(created_at - (metadata->>'scheduled_for')::timestamptz)) * 1000), -1) || ' ms after their slot'
                     FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'on_time'")
pw_info "every worker inside a step, a schedule of '1 seconds' for 3.5 s: $late"
pw_check_sql "every worker inside a step: a schedule's runs are still created within 1 s of their slots" t \
    "SELECT count(*) >= 2 AND max(created_at - (metadata->>'scheduled_for')::timestamptz) < '1 second'
       FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'on_time'"
# (A timer worker started for a slot just before the unschedule may still be in its round: it leaves within a second
# or two -- seen once in CI, 4 at the first look.)
pw_check "... by a timer worker, beside the three (none left)" 3 \
    "$(pw_wait_sql 3 3 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'")"
pw_reset_conf pipeline_worker.claim_batch
pw_wait_all_finished 15

# ------------------------------------------------------------------ timer workers terminated and killed mid-round
# The same, with each round made slow (a trigger sleeping 0.4 s on the schedule's inserts): timer workers are caught
# in their round and ended -- twice by pg_terminate_backend, once by SIGKILL (a crash restart). No slot twice, none
# missed.
pw_set_conf pipeline_worker.claim_batch 1 >/dev/null || pw_fail "claim_batch not set"
pw_psql >/dev/null <<'SQL' || pw_fail "slow-round fixture"
CREATE FUNCTION sc_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.metadata->>'schedule' = 'tk' THEN PERFORM pg_sleep(0.4); END IF; RETURN NEW; END $$;
CREATE TRIGGER sc_slow BEFORE INSERT ON pipeline_worker.runs FOR EACH ROW EXECUTE FUNCTION sc_slow();
SQL
for i in 1 2 3; do pw_psql -c "SELECT pipeline_worker.create_run('sc', '{\"sleep\": 8}', '{\"tag\": \"busy4\"}')" >/dev/null; done
pw_wait_sql 3 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'" >/dev/null \
    || pw_fail "the three long runs did not start"
pw_psql -c "SELECT pipeline_worker.schedule('tk', 'sc', '1 seconds', options => '{\"catch_up\": \"all\"}')" >/dev/null
# timer_pid : the pid of a timer worker in its round, inside the trigger (waited for up to 5 s), or nothing
timer_pid() {
    pw_wait_sql t 5 "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                       AND query = 'moving due runs into the queue' AND wait_event = 'PgSleep'" 0.05 >/dev/null &&
        pw_psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                      AND query = 'moving due runs into the queue' AND wait_event = 'PgSleep' LIMIT 1"
}
ended=0
for how in terminate terminate kill; do
    pid=$(timer_pid)
    if [ -z "$pid" ]; then pw_fail "no timer worker in its round to $how"; continue; fi
    if [ $how = terminate ]; then
        [ "$(pw_psql -c "SELECT pg_terminate_backend($pid)")" = t ] && ended=$((ended + 1))
    else
        { pw_as_pg kill -9 "$pid" 2>/dev/null || kill -9 "$pid"; } && ended=$((ended + 1))
        sleep 0.3
        pw_wait_workers 3 30 >/dev/null || pw_fail "workers did not come back after the SIGKILL"
    fi
done
sleep 2
pw_psql -c "SELECT pipeline_worker.unschedule('tk')" -c "DROP TRIGGER sc_slow ON pipeline_worker.runs" >/dev/null
pw_check "three timer workers ended in their round (2 terminated, 1 killed)" 3 "$ended"
pw_reset_conf pipeline_worker.claim_batch
pw_wait_all_finished 30
n=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'tk'")
pw_info "timer workers ended mid-round: $n runs of the schedule"
pw_check_sql "timer workers ended mid-round: no slot twice" 0 "SELECT slot_dups('tk')"
pw_check_sql "timer workers ended mid-round: no slot missed" 0 "SELECT slot_gaps('tk')"
[ "$n" -ge 3 ] && pw_ok "timer workers ended mid-round: the schedule kept firing ($n runs)" || pw_fail "timer workers ended mid-round: $n runs"
pw_check_sql "... and every run of it succeeded" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'tk' AND status <> 'succeeded'"

# ------------------------------------------------------------------ SIGKILL while schedules fire
pw_psql -c "SELECT pipeline_worker.schedule('k' || i, 'sc', '1 seconds', options => '{\"catch_up\": \"all\"}')
              FROM generate_series(1, 10) i" >/dev/null
sleep 1.5
for round in 1 2 3; do
    pid=$(pw_psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' ORDER BY random() LIMIT 1")
    [ -n "$pid" ] && { pw_as_pg kill -9 "$pid" 2>/dev/null || kill -9 "$pid"; }
    sleep 0.3
    pw_wait_workers 3 30 >/dev/null || pw_fail "workers did not come back after SIGKILL $round"
    sleep 1.2
done
sleep 2
pw_psql -c "SELECT pipeline_worker.unschedule('k' || i) FROM generate_series(1, 10) i" >/dev/null
pw_check_sql "SIGKILLs while firing: no slot twice" 0 "SELECT sum(slot_dups('k' || i)) FROM generate_series(1, 10) i"
pw_check_sql "SIGKILLs while firing: no slot missed" 0 "SELECT sum(slot_gaps('k' || i)) FROM generate_series(1, 10) i"
pw_check_sql "SIGKILLs while firing: every schedule fired throughout" 10 \
    "SELECT count(*) FROM (SELECT metadata->>'schedule' FROM pipeline_worker.runs WHERE metadata->>'schedule' LIKE 'k%'
       GROUP BY 1 HAVING count(*) >= 5) x"

# ------------------------------------------------------------------ the owner loses the right to submit
pw_psql >/dev/null <<'SQL'
CREATE ROLE sc_tenant;
SELECT pipeline_worker.grant_pipeline('sc', 'sc_tenant');
SET ROLE sc_tenant;
SELECT pipeline_worker.schedule('tenant_every1', 'sc', '1 seconds');
RESET ROLE;
SQL
pw_wait_sql t 10 "SELECT count(*) > 0 FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'tenant_every1'" >/dev/null
pw_check_sql "the tenant's schedule fires as the tenant" t \
    "SELECT count(*) > 0 AND bool_and(submitted_by = 'sc_tenant'::regrole) FROM pipeline_worker.runs
      WHERE metadata->>'schedule' = 'tenant_every1'"
pw_psql -c "SELECT pipeline_worker.revoke_pipeline('sc', 'sc_tenant')" >/dev/null
# (at its next slot: waited for, up to 10 s)
got=$(pw_wait_sql "false|" 10 \
    "SELECT active || '|' || COALESCE(next_run_at::text, '') FROM pipeline_worker.schedules WHERE name = 'tenant_every1'")
pw_check "after the revoke the schedule is inactive" "false|" "$got"
grep -q 'schedule "tenant_every1" deactivated: its owner may no longer submit runs to pipeline "sc"' "$PW_LOG" \
    && pw_ok "the deactivation is logged with its reason" || pw_fail "no log line for the deactivation"
# Its owner dropped: the grant row stays (by the role's number), and until 2026-12-07 the schedule kept firing runs
# that failed at once ("the role that submitted this run ... no longer exists").
pw_psql >/dev/null <<'SQL'
CREATE ROLE sc_gone;
SELECT pipeline_worker.grant_pipeline('sc', 'sc_gone');
SET ROLE sc_gone;
SELECT pipeline_worker.schedule('gone_every1', 'sc', '1 seconds');
RESET ROLE;
SQL
pw_wait_sql t 10 "SELECT count(*) > 0 FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'gone_every1'" >/dev/null
pw_psql -c "DROP ROLE sc_gone" >/dev/null
got=$(pw_wait_sql "false|" 10 \
    "SELECT active || '|' || COALESCE(next_run_at::text, '') FROM pipeline_worker.schedules WHERE name = 'gone_every1'")
pw_check "a schedule whose owner was dropped is deactivated at its next slot" "false|" "$got"
grep -q 'schedule "gone_every1" deactivated: its owner (role OID [0-9]*) no longer exists' "$PW_LOG" \
    && pw_ok "... logged with that reason" || pw_fail "no log line for the dropped owner's schedule"

# ------------------------------------------------------------------ a schedule that cannot fire
# A user's trigger refuses the schedule's runs: the schedule is deactivated and logged, and the rest of the timer's
# round (delayed runs coming due, parked runs put back) goes on. Until 2026-12-04 the error rolled back the whole
# round, once a second, for as long as the schedule stayed: no delayed run of the database ever started.
pw_psql >/dev/null <<'SQL' || pw_fail "refused schedule fixture"
SELECT pipeline_worker.unschedule(name) FROM pipeline_worker.schedules;
CREATE FUNCTION sc_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.metadata->>'schedule' = 'refused' THEN RAISE EXCEPTION 'sc_refuse: no runs of this schedule'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sc_refuse BEFORE INSERT ON pipeline_worker.runs FOR EACH ROW EXECUTE FUNCTION sc_refuse();
SELECT pipeline_worker.schedule('refused', 'sc', '1 seconds');
SQL
d=$(pw_psql -c "SELECT pipeline_worker.create_run('sc', '{}', '{\"delayed\": 1}', run_at => clock_timestamp() + interval '2 seconds')")
pw_check "a delayed run comes due and runs while a schedule cannot fire" succeeded \
    "$(pw_psql -c "SELECT pipeline_worker.wait_run($d, '10 s')")"
pw_check_sql "the schedule that cannot fire is deactivated" f "SELECT active FROM pipeline_worker.schedules WHERE name = 'refused'"
grep -q 'schedule "refused" deactivated: sc_refuse: no runs of this schedule' "$PW_LOG" \
    && pw_ok "its deactivation is logged with the error" || pw_fail "no log line for the refused schedule"
pw_psql -c "DROP TRIGGER sc_refuse ON pipeline_worker.runs" -c "SELECT pipeline_worker.unschedule('refused')" >/dev/null

# ------------------------------------------------------------------ catch_up over more slots than one pass takes
# 2,500 slots missed (next_run_at moved back 2,500 s, all before the server's start): the timer handles 1,000 slots a
# pass, yet "latest" gives one run and "all" the latest catch_up_max. (Until 2026-12-05 catch_up applied per pass:
# 3 runs and 300.)
pw_psql >/dev/null <<'SQL' || pw_fail "long catch_up fixture"
SELECT pipeline_worker.unschedule(name) FROM pipeline_worker.schedules;
BEGIN;
SELECT pipeline_worker.schedule('lc_latest', 'sc', '1 seconds', options => '{"catch_up": "latest"}'),
       pipeline_worker.schedule('lc_all', 'sc', '1 seconds', options => '{"catch_up": "all", "catch_up_max": 100}'),
       pipeline_worker.schedule('lc_none', 'sc', '1 seconds');
UPDATE pipeline_worker.schedules SET next_run_at = date_trunc('second', now()) - interval '2500 s'
 WHERE name LIKE 'lc\_%';
COMMIT;
SQL
pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.schedules WHERE name LIKE 'lc\_%' AND next_run_at < now()" >/dev/null
sleep 1
missed_runs="FROM pipeline_worker.runs WHERE (metadata->>'scheduled_for')::timestamptz < pg_postmaster_start_time()
               AND created_at > pg_postmaster_start_time() AND metadata->>'schedule' ="
pw_check_sql "long catch_up latest: one run for the slots missed" "1|true" \
    "SELECT count(*) || '|' || bool_and((metadata->>'scheduled_for')::timestamptz > pg_postmaster_start_time() - interval '1 s')
       $missed_runs 'lc_latest'"
pw_check_sql "long catch_up all: the latest catch_up_max (100), consecutive" "100|0|0" \
    "SELECT (SELECT count(*) $missed_runs 'lc_all') || '|' || slot_gaps('lc_all') || '|' || slot_dups('lc_all')"
pw_check_sql "long catch_up none: no run for a slot missed" 0 "SELECT count(*) $missed_runs 'lc_none'"
pw_check_sql "... and all three fire again since the start" 3 \
    "SELECT count(DISTINCT metadata->>'schedule') FROM pipeline_worker.runs WHERE metadata->>'schedule' LIKE 'lc\_%'
        AND (metadata->>'scheduled_for')::timestamptz > pg_postmaster_start_time()"
pw_psql -c "SELECT pipeline_worker.unschedule(name) FROM pipeline_worker.schedules" >/dev/null

# ------------------------------------------------------------------ overlap skip while the last run waits
# A run in a durable sleep is unfinished: "overlap": "skip" creates no run for the slots meanwhile. (Until 2026-12-05
# only pending and running runs counted: a new run every second.)
pw_psql >/dev/null <<'SQL' || pw_fail "overlap-waiting fixture"
SELECT pipeline_worker.create_pipeline('sc_sleepy', '[{"name": "z", "sleep": "1 hour"}, {"name": "s", "function": "sc_step"}]');
SELECT pipeline_worker.schedule('ov_wait', 'sc_sleepy', '1 seconds', options => '{"overlap": "skip"}');
SQL
# (waited for: its first run must be claimed and asleep, and two slots skipped since -- up to 15 s on a slow machine)
ovq="SELECT count(*) || '|' || string_agg(DISTINCT status, ',') || '|'
            || ((SELECT skipped FROM pipeline_worker.schedules WHERE name = 'ov_wait') >= 2)
       FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'ov_wait'"
pw_wait_sql "1|waiting|true" 15 "$ovq" 0.3 >/dev/null
sk=$(pw_psql -c "SELECT skipped FROM pipeline_worker.schedules WHERE name = 'ov_wait'")
sleep 1.5   # (at least one more slot: skipped too)
pw_check_sql "overlap skip: one run while it sleeps, the other slots skipped (and still skipped 1.5 s later)" "1|waiting|true" \
    "SELECT count(*) || '|' || string_agg(DISTINCT status, ',') || '|'
            || ((SELECT skipped FROM pipeline_worker.schedules WHERE name = 'ov_wait') > ${sk:-0})
       FROM pipeline_worker.runs WHERE metadata->>'schedule' = 'ov_wait'"
pw_psql -c "SELECT pipeline_worker.unschedule('ov_wait')" >/dev/null

# ------------------------------------------------------------------ a worker terminated inside a due round
# The round takes the due moment, then waits (here for a session's lock on the schedules table) and its worker is
# terminated: the round rolls back, and the moment is due again. (Until 2026-12-05 it was lost: a delayed run stayed
# pending, and schedules stopped firing, until some other commit set the timer.)
# (the lock is taken first, and seen granted, before the run is created: a locker slower than the run's second
# would let the round pass without waiting, and no later round would come to wait)
pw_session_open "$PW_DATA/../tlock.out" "BEGIN; LOCK TABLE pipeline_worker.schedules IN ACCESS EXCLUSIVE MODE;" "COMMIT;"
pw_wait_sql t 10 "SELECT count(*) > 0 FROM pg_locks WHERE relation = 'pipeline_worker.schedules'::regclass
                    AND mode = 'AccessExclusiveLock' AND granted" >/dev/null || pw_fail "the locker did not take the lock"
d=$(pw_psql -c "SELECT pipeline_worker.create_run('sc', '{}', run_at => clock_timestamp() + interval '1 second')")
pid=$(pw_wait_row 8 "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'
                      AND query = 'moving due runs into the queue' AND wait_event_type = 'Lock'")
if [ -n "$pid" ]; then
    pw_psql -c "SELECT pg_terminate_backend($pid)" >/dev/null
    pw_ok "a due round waited for the lock, and its worker was terminated"
else
    pw_fail "no due round waited for the lock"
fi
pw_session_close
pw_check "after the lock, the delayed run of the terminated round ran" succeeded \
    "$(pw_psql -c "SELECT pipeline_worker.wait_run($d, '10 s')")"

# ------------------------------------------------------------------ a timer round that keeps failing
# A schedule whose runs meet an error that may pass (here a lock not available, raised by a trigger) fails every timer
# round. After a restart the first round also puts every parked run back, and a failed round asks for that again:
# still, the rounds are tried again about once a second (per worker), not at every claim of a busy worker -- and the
# claims go on.
pw_psql >/dev/null <<'SQL' || pw_fail "failing schedule fixture"
SELECT pipeline_worker.unschedule(name) FROM pipeline_worker.schedules;
CREATE FUNCTION sc_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.metadata->>'schedule' = 'boom' THEN
        RAISE EXCEPTION 'sc_boom: this schedule cannot fire' USING ERRCODE = 'lock_not_available';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sc_boom BEFORE INSERT ON pipeline_worker.runs FOR EACH ROW EXECUTE FUNCTION sc_boom();
SELECT pipeline_worker.schedule('boom', 'sc', '1 seconds', options => '{"catch_up": "latest"}');
SQL
pw_cluster_stop fast
sleep 1.5  # a slot passes while the server is down: the first round after the start fires it, and fails
log_from=$(( $(wc -l <"$PW_LOG") + 1 ))
t0=$(pw_now)
pw_as_pg "$PW_BINDIR/pg_ctl" -D "$PW_DATA" -l "$PW_LOG" -w -t 60 start >/dev/null 2>&1 || pw_die "restart failed"
pw_wait_workers 3 20 >/dev/null
pw_psql -c "SELECT count(pipeline_worker.create_run('sc', '{}')) FROM generate_series(1, 100000)" >/dev/null
pw_wait_sql 0 120 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('pending', 'running') AND metadata->>'schedule' IS NULL" 0.5 \
    >/dev/null && pw_ok "a failing timer does not stop the claims (100,000 runs finished)" \
    || pw_fail "runs left unfinished while the timer failed"
secs=$(pw_elapsed "$t0")
booms=$(tail -n +"$log_from" "$PW_LOG" | grep -c 'ERROR:  sc_boom: this schedule cannot fire')
limit=$(awk -v s="$secs" 'BEGIN { printf "%d", 4 * (s + 1) }')  # (awk: bc is not on a fresh machine)
pw_info "failed timer rounds: $booms in ${secs} s"
[ "$booms" -ge 1 ] && [ "$booms" -le "$limit" ] && pw_ok "a failing timer round is tried again about once a second per worker ($booms in ${secs} s)" \
    || pw_fail "failed timer rounds: $booms in ${secs} s (at most $limit expected)"

# The same failing round while every worker is inside a step: a timer worker takes it, fails (logged), and the launcher
# starts the next ones 1 s, 2 s, 4 s, 8 s ... (up to 30 s) later. (Until 2026-12-07, night, one a second: a process
# started and a failure logged each time, ~11 in 12 s.)
pw_set_conf pipeline_worker.claim_batch 1 >/dev/null || pw_fail "claim_batch not set"
# (the log is read from before the runs: the first timer worker may start as soon as the third worker is in its step;
# the workers' own failed rounds are told apart by pid)
log_from=$(( $(wc -l <"$PW_LOG") + 1 ))
for i in 1 2 3; do pw_psql -c "SELECT pipeline_worker.create_run('sc', '{\"sleep\": 14}', '{\"tag\": \"busy5\"}')" >/dev/null; done
pw_wait_sql 3 10 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'" >/dev/null \
    || pw_fail "the three long runs did not start"
busy=$(pw_psql -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND wait_event = 'PgSleep'")
sleep 12
# (pids of the failed rounds' log lines, '%m [%p] %b ERROR: ...', less the three workers' own)
timers=$(tail -n +"$log_from" "$PW_LOG" | grep 'ERROR:  sc_boom: this schedule cannot fire' | sed 's/^[^[]*\[\([0-9]*\)\].*/\1/' |
    sort -u | grep -v -x -F -f <(tr ' ' '\n' <<<"$busy") | wc -l)
pw_info "every worker inside a step, the timer failing: $timers timer worker(s) in 12 s"
{ [ "$timers" -ge 2 ] && [ "$timers" -le 5 ]; } \
    && pw_ok "a failing round while every worker is inside a step: $timers timer workers in 12 s, each later than the last" \
    || pw_fail "a failing round while every worker is inside a step: $timers timer workers failed in 12 s (2-5 expected)"
pw_reset_conf pipeline_worker.claim_batch
pw_finish
