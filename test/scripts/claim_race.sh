#!/bin/bash
# 20 sessions race for 10 pending runs (no background workers): exactly 10 claims succeed, all
# distinct, nobody blocks on another session's claim; recover_runs() then frees the claims of the
# sessions that are gone, and only those.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

PW_WORKERS=0 pw_cluster_start claimrace
pw_load_fixtures
pw_check_sql "no pipeline_worker backends with workers = 0" 0 \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pipeline_worker'"
pw_psql -c "SELECT count(pipeline_worker.create_run('p1', jsonb_build_object('n', i))) FROM generate_series(1, 10) i" >/dev/null
sleep 0.5
pw_check_sql "runs stay pending without workers" 10 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending'"

out=/tmp/pw-claimrace/claims
mkdir -p "$out"
go=$(pw_psql -c "SELECT clock_timestamp() + interval '1.5 seconds'")
start=$(pw_now)
for s in $(seq 1 20); do
    # each session: wait for the common start time, claim inside a transaction and keep the
    # claim uncommitted for 1 s (others must skip it, not wait), then claim twice more
    pw_psql >"$out/$s.out" 2>"$out/$s.err" <<SQL &
SELECT pg_sleep_until('$go');
BEGIN;
SELECT 'claim', pipeline_worker.claim_run(), pg_backend_pid();
SELECT pg_sleep(1);
COMMIT;
SELECT 'claim', pipeline_worker.claim_run(), pg_backend_pid();
SELECT 'claim', pipeline_worker.claim_run(), pg_backend_pid();
SQL
done
wait
t=$(pw_elapsed "$start")
errs=$(cat "$out"/*.err)
pw_check "no session had an error" "" "$errs"
claims=$(cat "$out"/*.out | grep '^claim|' )
pw_check "60 claim_run calls returned" 60 "$(echo "$claims" | wc -l)"
pw_check "exactly 10 non-null claims" 10 "$(echo "$claims" | awk -F'|' '$2 != ""' | wc -l)"
pw_check "claimed ids are distinct" 10 "$(echo "$claims" | awk -F'|' '$2 != "" {print $2}' | sort -u | wc -l)"
if pw_lt "$t" 5; then pw_ok "20 racing sessions done in $t s (1.5 s start delay + 1 s held claims): nobody blocked"
else pw_fail "20 racing sessions took $t s: claim_run blocked on other sessions' claims?"; fi
# every claim is recorded with the claiming backend's pid
pairs=$(echo "$claims" | awk -F'|' '$2 != "" {printf "(%s,%s),", $2, $3}' | sed 's/,$//')
pw_check_sql "runs are running with worker_pid = claiming backend and started_at set" 10 \
    "SELECT count(*) FROM pipeline_worker.runs r JOIN (VALUES $pairs) c(id, pid) ON c.id = r.id
      WHERE r.status = 'running' AND r.worker_pid = c.pid AND r.started_at IS NOT NULL"
pw_check_sql "claim_run returns NULL when nothing is pending" "" "SELECT pipeline_worker.claim_run()"

# ---------------------------------------------------------------- recover_runs
# a live session keeps one claim while the 10 orphaned ones are recovered
pw_psql -c "SELECT count(pipeline_worker.create_run('p1', '{\"n\": 99}'))" >/dev/null
pw_psql >"$out/live.out" 2>&1 <<'SQL' &
SELECT 'live', pipeline_worker.claim_run(), pg_backend_pid();
SELECT pg_sleep(8);
SQL
live_job=$!
pw_wait_until 5 0.1 grep -q '^live|' "$out/live.out" 2>/dev/null
live=$(grep '^live|' "$out/live.out")
live_id=$(echo "$live" | cut -d'|' -f2)
[ -n "$live_id" ] || pw_fail "live session could not claim the new run: $live"
pw_check_sql "recover_runs() puts the 10 runs of the exited sessions back" 10 "SELECT pipeline_worker.recover_runs()"
pw_check_sql "the recovered runs are pending again" 10 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending' AND input->>'n' <> '99'"
pw_check_sql "the live session's claim is untouched" running \
    "SELECT status FROM pipeline_worker.runs WHERE id = ${live_id:-0}"
pw_check_sql "recover_runs() again finds nothing" 0 "SELECT pipeline_worker.recover_runs()"
kill "$live_job" 2>/dev/null; wait "$live_job" 2>/dev/null

# ---------------------------------------------------------------- cancel_run vs. the claiming session
# An unprivileged submitter cancels its run while an admin session holds the claim and is busy with
# something else: the admin session's unrelated query must not be cancelled.
pw_psql -c "CREATE ROLE regress_sub LOGIN; SELECT pipeline_worker.grant_pipeline('p1', 'regress_sub')" >/dev/null
pw_psql -c "UPDATE pipeline_worker.runs SET status = 'cancelled' WHERE status = 'pending'" >/dev/null
id=$(PGUSER=regress_sub pw_psql -c "SELECT pipeline_worker.create_run('p1', '{\"n\": 1}')")
pw_psql -c "SELECT 'claimed', pipeline_worker.claim_run() = $id" -c "SELECT pg_sleep(3) /* cr_admin */" \
        -c "SELECT 'unrelated query finished'" >"$out/admin.out" 2>&1 &
admin_job=$!
# (the claim is done once the admin session's sleep is seen running)
pw_wait_sql 1 10 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%cr_admin */' AND state = 'active'
                    AND pid <> pg_backend_pid()" >/dev/null || pw_fail "the admin session did not claim"
PGUSER=regress_sub pw_psql -c "SELECT pipeline_worker.cancel_run($id)" >/dev/null 2>&1
kill -0 "$admin_job" 2>/dev/null && pw_ok "the cancel_run came while the admin session's query ran" \
    || pw_fail "the cancel_run came after the admin session's query (the check below would prove nothing)"
wait "$admin_job"
pw_check "the claiming session's unrelated query is not cancelled by the submitter's cancel_run" \
    "claimed|t unrelated query finished" "$(grep -v '^$' "$out/admin.out" | tr '\n' ' ' | sed 's/ $//')"

# Runs parked by a limit before a restart: after it the lanes know of none, and the first put-back in the database (the
# fresh start) puts them all back -- without workers, a session's claim_run. One rolled back to a savepoint undid that
# put-back, but the fresh start stayed taken: the runs stayed parked for good (until 2026-12-05). Runs parked in the
# transaction that creates them stand for runs parked before the restart.
pw_parked_runs fresh public.t_step 3 || pw_fail "parked runs not set up"
pw_cluster_restart || pw_fail "restart failed"
pw_psql -c "BEGIN" -c "SAVEPOINT s" -c "SELECT pipeline_worker.claim_run()" -c "ROLLBACK TO s" -c "COMMIT" >/dev/null ||
    pw_fail "claim_run rolled back to a savepoint"
pw_psql -c "SELECT pipeline_worker.claim_run()" >/dev/null || pw_fail "claim_run after it"
pw_check_sql "runs parked before a restart: put back by a claim_run after one rolled back to a savepoint" 0 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'fresh' AND parked IS NOT NULL"
pw_finish
