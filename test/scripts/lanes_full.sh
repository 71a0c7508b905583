#!/bin/bash
# The table of lanes (concurrency and rate limits, in shared memory: 8,192 lanes) never strands a run.
# - Keys whose rate window has passed are forgotten when the table is full: 20,000 keys with a per-key rate limit, one
#   run each, all run, and a limited pipeline runs after them. Until 2026-12-04 a lane whose rate window still counted
#   a start when its slot was given back stayed for good; past ~13,000 such keys the table had eaten the server's
#   spare shared memory, and from then on every run of every limited pipeline was parked, for good.
# - A table full of lanes in use (9,000 keys inside a 20 s rate window): the runs that find no lane are parked, a LOG
#   line says so, and they are put back once a second -- each runs once the windows pass and lanes free up.
# - The last free lane taken by a run that needs two (a pipeline-wide and a per-key limit): its key is not left at its
#   limit for good.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

pw_cluster_up lanes_full 4 20 || exit 1
pw_psql >/dev/null <<'SQL' || pw_die "fixtures"
CREATE EXTENSION pipeline_worker;
CREATE TABLE effects (run_id bigint PRIMARY KEY);
CREATE FUNCTION st(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects VALUES ((ctx->>'run_id')::bigint);
    RETURN '{}';
END $$;
SELECT pipeline_worker.create_pipeline('brief', '[{"name": "s", "function": "st"}]',
                                       '{"rate_limit_per_key": {"runs": 1, "per_ms": 100}}');
SELECT pipeline_worker.create_pipeline('long', '[{"name": "s", "function": "st"}]',
                                       '{"rate_limit_per_key": {"runs": 1, "per_ms": 20000}}');
SELECT pipeline_worker.create_pipeline('one', '[{"name": "s", "function": "st"}]', '{"concurrency": 1}');
SQL
# keyed PIPELINE N PREFIX : N runs of PIPELINE, keys PREFIX1..PREFIXN
keyed() {
    pw_psql -c "SELECT count(*) FROM pipeline_worker.create_runs('$1', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, $2)),
                  concurrency_keys => (SELECT array_agg('$3' || g) FROM generate_series(1, $2) g))" >/dev/null
}
unfinished() { pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = '$1' AND status <> 'succeeded'"; }

# ---------------------------------------------------------------- the last free lane, for a run that needs two
# 8,191 keys inside a 20 s window leave one lane free (of 8,192). A run of a pipeline limited both pipeline-wide and
# per key takes it for its pipeline's lane, and finds the table full for its key's: the sweep that makes room removes
# that pipeline lane (idle: nothing counted in it yet), and the key's lane is entered in its place. Until 2026-12-07
# the run was then counted twice in that one entry and given back once: the key stayed at its limit for good.
pw_psql >/dev/null <<'SQL' || pw_die "fixtures (both)"
SELECT pipeline_worker.create_pipeline('keys8', '[{"name": "s", "function": "st"}]',
                                       '{"rate_limit_per_key": {"runs": 1, "per_ms": 20000}}');
SELECT pipeline_worker.create_pipeline('both', '[{"name": "s", "function": "st"}]',
                                       '{"concurrency": 10, "concurrency_per_key": 1}');
SQL
keys_start=$(pw_now)
keyed keys8 8191 e
pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'keys8' AND status <> 'succeeded'" 0.2 >/dev/null ||
    pw_fail "8,191 keys: not all ran at once"
# (Every window still open when the runs below come: else the sweep also takes expired keys' lanes, and the key's
# lane need not land in the pipeline lane's entry -- the case would not be made.)
took=$(pw_elapsed "$keys_start")
pw_lt "$took" 15 && pw_ok "8,191 keys ran within 15 s of their submission, inside their 20 s windows ($took s)" ||
    pw_fail "8,191 keys took $took s: their first windows may have passed, the case below is not made"
start=$(pw_now)
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('both', '{}', concurrency_key => 'x')::text, ',')
                    FROM generate_series(1, 3)")
if left=$(pw_wait_sql 0 40 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status <> 'succeeded'" 0.5); then
    # (they wait for the windows to pass: the key's lane finds no room until then)
    pw_ok "3 runs of one key of a pipeline limited pipeline-wide and per key ran, in a table with one lane free ($(pw_elapsed "$start") s)"
else
    pw_fail "$left of 3 runs of key x (pipeline-wide and per-key limits) unfinished after 40 s"
fi
# (A fresh table for what follows, and a fresh once-a-minute LOG line about runs no lane could note: this logged one.)
pw_cluster_restart || pw_die "restart"
pw_wait_workers 4 || pw_die "workers after the restart"

# ---------------------------------------------------------------- 20,000 keys, short windows
keyed brief 20000 k
if left=$(pw_wait_sql 0 90 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'brief' AND status <> 'succeeded'" 0.5); then
    pw_ok "20,000 runs with distinct rate-limited keys all ran"
else
    pw_fail "20,000 keys: $left runs unfinished after 90 s ($(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE parked IS NOT NULL") parked)"
fi
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('one', '{}')::text, ',') FROM generate_series(1, 3)")
if left=$(pw_wait_sql 0 10 "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status <> 'succeeded'" 0.2); then
    pw_ok "... and a pipeline at \"concurrency\": 1 after them runs (3 runs)"
else
    pw_fail "after 20,000 keys, $left of 3 runs at \"concurrency\": 1 stay unfinished"
fi

# ---------------------------------------------------------------- a table full of lanes in use
log_from=$(pw_log_size)
start=$(pw_now)
keyed long 9000 l
# all lanes taken for 20 s: most keys ran at once; the rest, and a new lane's runs, wait for room
pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'long' AND status = 'pending' AND parked IS NULL" 0.2 >/dev/null
ran=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'long' AND status = 'succeeded'")
pw_info "9,000 keys with a 20 s window: $ran ran at once ($(pw_elapsed "$start") s)"
pw_lt "$ran" 9000 && pw_lt 7000 "$ran" && pw_ok "the table filled up: $ran of 9,000 keys ran, the rest wait for a lane" \
    || pw_fail "9,000 keys with a 20 s window: $ran ran at once (expected most, not all: 8,192 lanes)"
ids=$(pw_psql -c "SELECT string_agg(pipeline_worker.create_run('one', '{}')::text, ',') FROM generate_series(1, 3)")
sleep 2
pw_check_sql "a new lane's runs wait too (parked, no lane to count them in)" 3 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE id IN ($ids) AND status = 'pending'"
if tail -c +"$((log_from + 1))" "$PW_LOG" | grep -q "parked by a limit that the table of lanes could not note"; then
    pw_ok "the server log says runs were parked that no lane could note"
else
    pw_fail "no LOG line about the full table of lanes"
fi
if left=$(pw_wait_sql 0 60 "SELECT count(*) FROM pipeline_worker.runs WHERE (pipeline = 'long' OR id IN ($ids)) AND status <> 'succeeded'" 0.5); then
    pw_ok "once the windows passed, every waiting run ran (after $(pw_elapsed "$start") s)"
else
    pw_fail "$left runs still unfinished 60 s after the 20 s windows began ($(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs WHERE parked IS NOT NULL") parked)"
fi
pw_check_sql "each run's effect once" 37200 "SELECT count(*) FROM effects"
pw_check "no worker ended abnormally" "" "$(grep -E 'PANIC|terminated by signal|exited with exit code [^01]' "$PW_LOG" | head -3)"
pw_finish
