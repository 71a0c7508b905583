#!/bin/bash
# Wake-up sanity (not a benchmark): a committed create_run is picked up at once, and wait_run
# returns as soon as the run finishes or its timeout passes.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up latency 2 20
pw_load_fixtures
pw_psql >/dev/null <<'SQL'
CREATE FUNCTION public.echo(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT ctx->'input' $$;
SELECT pipeline_worker.create_pipeline('trivial', '[{"name": "echo", "function": "public.echo"}]');
SQL
sleep 1   # let the workers settle into their idle wait

# timed_run PIPELINE INPUT WAIT : create_run, then wait_run(WAIT) in the same session; sets st (the status
# wait_run returned) and t (seconds from before create_run to after wait_run)
timed_run() {
    local start
    start=$(pw_now)
    st=$(pw_psql <<SQL
SELECT pipeline_worker.create_run('$1', '$2') AS id \gset
SELECT pipeline_worker.wait_run(:id, '$3');
SQL
)
    t=$(pw_elapsed "$start")
}

# ---------------------------------------------------------------- create_run, then wait_run
worst=0
bad=0
for i in $(seq 1 10); do
    timed_run trivial "{\"i\": $i}" '5 seconds'
    [ "$st" = succeeded ] || bad=$((bad + 1))
    pw_lt "$worst" "$t" && worst=$t
    # spread the runs a bit so the workers are idle (waiting on their latch) each time
    sleep 0.$((RANDOM % 3 + 1))
done
pw_check "10 trivial runs: wait_run returned 'succeeded' each time" 0 "$bad"
if pw_lt "$worst" 2; then pw_ok "create_run -> wait_run 'succeeded': worst $worst s (< 2 s)"
else pw_fail "create_run -> wait_run took up to $worst s (wake-up by polling?)"; fi
pw_check_sql "results echo the input" 10 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'trivial' AND status = 'succeeded' AND result = input"
pw_check_sql "created_at -> finished_at under 2 s for every run" 10 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'trivial' AND finished_at - created_at < interval '2 seconds'"
pw_info "created_at -> finished_at: max $(pw_psql -c "SELECT round(extract(epoch FROM max(finished_at - created_at))::numeric, 3) FROM pipeline_worker.runs WHERE pipeline = 'trivial'") s"

# ---------------------------------------------------------------- wait_run wakes on completion
timed_run p1 '{"n": 1, "sleep": 1}' '10 seconds'
pw_check "wait_run on a 1-second run returns 'succeeded'" succeeded "$st"
if pw_lt 0.95 "$t" && pw_lt "$t" 2.2; then pw_ok "wait_run returned $t s after create_run (run takes 1 s)"
else pw_fail "wait_run on a 1-second run returned after $t s"; fi

# ---------------------------------------------------------------- wait_run timeout
timed_run p1 '{"n": 1, "sleep": 3}' '500 milliseconds'
pw_check "wait_run times out with the last seen status" running "$st"
if pw_lt 0.45 "$t" && pw_lt "$t" 1.5; then pw_ok "wait_run with a 500 ms timeout returned after $t s"
else pw_fail "wait_run with a 500 ms timeout returned after $t s"; fi

# ---------------------------------------------------------------- wait_run on a finished run
id=$(pw_psql -c "SELECT id FROM pipeline_worker.runs WHERE pipeline = 'trivial' ORDER BY id LIMIT 1")
start=$(pw_now)
st=$(pw_psql -c "SELECT pipeline_worker.wait_run($id, '10 seconds')")
t=$(pw_elapsed "$start")
pw_check "wait_run on a finished run" succeeded "$st"
if pw_lt "$t" 0.5; then pw_ok "wait_run on a finished run returns at once ($t s)"
else pw_fail "wait_run on a finished run took $t s"; fi
pw_wait_all_finished 20
pw_finish
