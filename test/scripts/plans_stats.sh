#!/bin/bash
# The workers' own statements keep one plan shape whatever the run tables' statistics say, and a drain after
# ANALYZE is not slower than half the drain before it.
#
# The tables are analyzed in four states -- empty, all runs finished, all runs pending, a million finished runs
# and ten pending -- and after each, runs are executed with auto_explain logging every statement of the
# workers (nested ones included). Each bookkeeping statement must show exactly one plan shape (node types,
# relations, indexes) over all states. Found by a user: after ANALYZE of tables whose runs were all finished,
# the run-outcome UPDATE drove a join from a bitmap scan of the pending/running partial indexes (estimated
# empty, really the whole backlog): 150 ms per call, drains 20x slower.
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT

HISTORY=${PW_PLANS_HISTORY:-1000000}   # finished runs of the "history" state
DRAIN=${PW_PLANS_DRAIN:-20000}         # runs per timed drain

pw_cluster_up plans_stats 4 20 \
    "shared_preload_libraries = 'pipeline_worker,auto_explain'" \
    "auto_explain.log_min_duration = -1" "auto_explain.log_nested_statements = on" \
    "autovacuum = off" "shared_buffers = 256MB" "max_wal_size = 4GB" "checkpoint_timeout = 30min" || exit 1
pw_psql -c "CREATE EXTENSION pipeline_worker" >/dev/null || pw_die "CREATE EXTENSION failed"
pw_psql >/dev/null <<'SQL' || pw_die "fixtures failed"
CREATE FUNCTION ps_step(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN RETURN jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 1); END $$;
-- longer than commit_interval_ms: the other runs of the batch have their claims recorded (persist_claim)
CREATE FUNCTION ps_slow(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_sleep(0.03); RETURN ctx->'prev'; END $$;
-- fails its first attempt: a retry is scheduled (the run goes back to pending with a delay)
CREATE FUNCTION ps_flaky(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (ctx->>'attempt')::int < 2 THEN RAISE EXCEPTION 'first attempt fails'; END IF;
    RETURN ctx->'prev';
END $$;
SELECT pipeline_worker.create_pipeline('ps', '[{"name": "a", "function": "ps_step"}, {"name": "b", "function": "ps_step"},
                                               {"name": "c", "function": "ps_step"}]');
-- workflows (0.2): a map step, a child run, a sleep and an event wait that times out (the statements of each)
CREATE FUNCTION ps_list(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '[1, 2, 3]'::jsonb $$;
SELECT pipeline_worker.create_pipeline('ps_wf', '[{"name": "l", "function": "ps_list"},
    {"name": "m", "function": "ps_step", "map": true}, {"name": "k", "pipeline": "ps"},
    {"name": "z", "sleep": "10 milliseconds"}, {"name": "w", "wait_for": "go", "timeout_ms": 30}]');
-- a pipeline-wide limit: its runs are parked and put back (the statements of each)
SELECT pipeline_worker.create_pipeline('ps_lim', '[{"name": "a", "function": "ps_step"}]', '{"concurrency": 1}');
-- The workers write step rows, outcomes and claims without a statement where the table allows it
-- (store/direct_writes.cpp: no plan to go wrong); the statements they keep for tables with triggers are the ones
-- checked here. A no-op statement trigger on each run table makes the workers use them.
CREATE FUNCTION ps_noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER ps_statements AFTER UPDATE ON pipeline_worker.runs
    FOR EACH STATEMENT EXECUTE FUNCTION ps_noop_trigger();
CREATE TRIGGER ps_statements AFTER INSERT ON pipeline_worker.run_steps
    FOR EACH STATEMENT EXECUTE FUNCTION ps_noop_trigger();
SELECT pipeline_worker.create_pipeline('ps_mixed', '[{"name": "a", "function": "ps_step"},
    {"name": "slow", "function": "ps_slow"}, {"name": "flaky", "function": "ps_flaky", "max_attempts": 2, "retry_delay_ms": 10}]');
SQL

set_workers() {  # N : run exactly N workers
    pw_set_conf pipeline_worker.workers "$1"
    pw_wait_workers "$1" 20 >/dev/null || pw_fail "workers did not become $1"
}

explain_on() {
    pw_set_conf auto_explain.log_min_duration 0
    sleep 0.5   # every worker has read the setting (a reload wakes idle workers)
}
explain_off() {
    pw_reset_conf auto_explain.log_min_duration
    sleep 0.5
}

submit() {  # PIPELINE N
    pw_psql -c "SELECT count(pipeline_worker.create_run('$1', jsonb_build_object('n', g))) FROM generate_series(1, $2) g" \
        >/dev/null || pw_fail "create_run of $2 runs failed"
}

# drain N : submits N runs with the workers running, prints runs/s once all finished
drain() {
    local start
    submit ps "$1"
    start=$(pw_now)
    wait_done 300 || return 1
    awk -v n="$1" -v t="$(pw_elapsed "$start")" 'BEGIN { printf "%.0f", n / t }'
}

# drain_after BEFORE : a drain after ANALYZE; a second one when the first is under half of BEFORE (a drain of 20,000
# runs lasts half a second now: a checkpoint in it halves it). A collapse (20x slower) fails both.
drain_after() {
    local a
    a=$(drain "$DRAIN") || return 1
    if [ "$a" -lt "$(($1 / 2))" ]; then
        pw_info "a drain after ANALYZE at $a runs/s, under half of $1: once more" >&2
        a=$(drain "$DRAIN") || return 1
    fi
    echo "$a"
}

# wait_done TIMEOUT_S : no run pending or running. Counted through the partial indexes: the count of
# pw_wait_all_finished is planned from the statistics of the moment, and scans a million rows (in parallel,
# taking the workers' CPU) when they say "all pending".
wait_done() {
    local left
    left=$(PGOPTIONS="-c enable_seqscan=off -c enable_bitmapscan=off" pw_wait_sql 0 "$1" \
        "SELECT (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'pending')
              + (SELECT count(*) FROM pipeline_worker.runs WHERE status = 'running')" 0.05) && return 0
    pw_fail "$left runs unfinished after $1 s"
    return 1
}

analyze() { pw_psql -c "ANALYZE pipeline_worker.runs, pipeline_worker.run_steps" >/dev/null; }

# capture STATE FROM_BYTE : the plans auto_explain logged since FROM_BYTE, one line per bookkeeping statement
# execution: STATE <tab> query start <tab> query length <tab> shape (plan nodes and conditions joined by ' / ').
SHAPES=$PW_CLUSTER_DIR/shapes.tsv
capture() {
    tail -c +"$(($2 + 1))" "$PW_LOG" | awk -v state="$1" '
        function emit() {
            if (query ~ /pipeline_worker\./ && shape != "") {
                printf "%s\t%s\t%s\t%s\n", state, substr(query, 1, 110), length(query), shape
            }
            query = ""; shape = ""; inplan = 0
        }
        / pipeline_worker LOG:  duration: .* plan:/ { emit(); inplan = 1; next }
        /^[0-9][0-9][0-9][0-9]-/ { emit(); next }
        inplan && /^\tQuery Text: / { sub(/^\tQuery Text: /, ""); query = $0; next }
        inplan && /^\t/ {
            line = $0
            # node lines and their conditions (Index Cond, Filter, ...), without estimates
            sub(/^\t */, "", line); sub(/^-> */, "", line); sub(/ *\(cost=.*$/, "", line)
            shape = shape (shape == "" ? "" : " / ") line
            next
        }
        END { emit() }' >>"$SHAPES"
}

# execute_in STATE : runs of the pipelines executed right after the tables were analyzed in STATE
execute_in() {
    local from
    from=$(pw_log_size)
    explain_on
    submit ps 200
    submit ps_mixed 40
    submit ps_wf 20
    submit ps_lim 30
    wait_done 120
    pw_wait_sql 0 30 "SELECT count(*) FROM pipeline_worker.runs WHERE status IN ('waiting', 'pending', 'running')" \
        >/dev/null || pw_fail "workflow runs still unfinished"
    explain_off
    capture "$1" "$from"
    pw_info "$1: $(awk -F'\t' -v s="$1" '$1 == s' "$SHAPES" | wc -l) statement executions captured"
}

# ------------------------------------------------------------------ empty
analyze
execute_in empty

# ------------------------------------------------------------------ all finished
before=$(drain "$DRAIN")
analyze
execute_in finished
after=$(drain_after "$before")
pw_info "all finished: drain before ANALYZE $before runs/s, after $after runs/s"
pw_lt "$((before / 2))" "$after" && pw_ok "all finished: drain after ANALYZE >= half the drain before" \
    || pw_fail "all finished: drain after ANALYZE $after runs/s < half of $before runs/s"

# ------------------------------------------------------------------ vacuumed after retention emptied them
# VACUUM of tables whose rows were all deleted (retention's work) records no live rows on pages that stay: the
# planner then takes a table of any size for one row, and a join's probe by index and a full scan of the same index
# under a join filter cost the same. Found in CI: retention's parent check, planned in this state, read the whole
# runs_pkey for every expired run (88 s for 10,000 runs). The last ANALYZE saw runs none of which had a parent: by
# the statistics, the child-run walk's partial index (parent_run_id IS NOT NULL) selects nothing either.
set_workers 0
pw_psql >/dev/null <<'SQL' || pw_fail "the vacuumed state was not made"
DELETE FROM pipeline_worker.runs;
DELETE FROM pipeline_worker.run_steps;
INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, status, input, result, created_at, started_at,
                                  finished_at, submitted_by, claims)
SELECT 'ps', p.id, p.owner, 'succeeded', '{}', '{}', now(), now(), now(), p.owner, 1
  FROM pipeline_worker.pipelines p, generate_series(1, 1000) g WHERE p.name = 'ps';
ANALYZE pipeline_worker.runs;
DELETE FROM pipeline_worker.runs;
VACUUM (TRUNCATE false) pipeline_worker.runs, pipeline_worker.run_steps;
SQL
pw_info "vacuumed: $(pw_psql -c "SELECT string_agg(relname || ' ' || reltuples || ' rows on ' || relpages || ' pages', ', ')
                                   FROM pg_class WHERE oid IN ('pipeline_worker.runs'::regclass, 'pipeline_worker.run_steps'::regclass)"),
                    parent_run_id null_frac $(pw_psql -c "SELECT null_frac FROM pg_stats
                                   WHERE schemaname = 'pipeline_worker' AND tablename = 'runs' AND attname = 'parent_run_id'")"
set_workers 4
execute_in vacuumed

# ------------------------------------------------------------------ all pending
# pending_backlog : the workers stopped, the tables emptied, DRAIN runs submitted and analyzed (all pending)
pending_backlog() {
    set_workers 0
    pw_psql -c "DELETE FROM pipeline_worker.runs" -c "DELETE FROM pipeline_worker.run_steps" >/dev/null
    pw_psql -c "VACUUM pipeline_worker.runs, pipeline_worker.run_steps" >/dev/null
    submit ps "$DRAIN"
    analyze
}
# pending_drain : the backlog's drain by 4 workers started for it, in runs/s
pending_drain() {
    local start
    set_workers 4
    start=$(pw_now)
    wait_done 300
    awk -v n="$DRAIN" -v t="$(pw_elapsed "$start")" 'BEGIN { printf "%.0f", n / t }'
}
before=$(drain "$DRAIN")
pending_backlog
explain_on
from=$(pw_log_size)
after=$(pending_drain)
explain_off
capture pending "$from"
execute_in pending
# (once more, as drain_after does, when a checkpoint or the machine halved that half-second drain; a collapse fails both)
if ! [ "$after" -ge "$((before / 2))" ] 2>/dev/null; then  # (also when the drain printed no number)
    pw_info "all pending: a drain at $after runs/s, under half of $before: once more"
    pending_backlog
    after=$(pending_drain)
fi
pw_info "all pending: drain before ANALYZE $before runs/s, of the analyzed backlog $after runs/s"
pw_lt "$((before / 2))" "$after" && pw_ok "all pending: drain after ANALYZE >= half the drain before" \
    || pw_fail "all pending: drain after ANALYZE $after runs/s < half of $before runs/s"

# ------------------------------------------------------------------ a million finished, ten pending
set_workers 0
pw_psql >/dev/null <<SQL || pw_fail "history rows not inserted"
INSERT INTO pipeline_worker.runs (pipeline, pipeline_id, pipeline_owner, status, input, result, created_at, started_at,
                                  finished_at, submitted_by, claims)
SELECT 'ps', p.id, p.owner, 'succeeded', jsonb_build_object('h', g), '{"n": 3}', now(), now(), now(), p.owner, 1
  FROM pipeline_worker.pipelines p, generate_series(1, $HISTORY) g WHERE p.name = 'ps';
INSERT INTO pipeline_worker.run_steps (run_id, position, attempt, name, status, output, started_at, finished_at)
SELECT id, 1, 1, 'a', 'succeeded', '{"n": 1}', now(), now() FROM pipeline_worker.runs WHERE input ? 'h';
CHECKPOINT;
SQL
set_workers 4
before=$(drain "$DRAIN")   # the history is there; statistics still of the state before
set_workers 0
submit ps 10
analyze
pw_info "history: $(pw_psql -c "SELECT string_agg(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM pipeline_worker.runs GROUP BY 1 ORDER BY 1) s")"
explain_on
from=$(pw_log_size)
set_workers 4
wait_done 120
explain_off
capture history "$from"
execute_in history
after=$(drain_after "$before")
pw_info "history: drain before ANALYZE $before runs/s, after $after runs/s"
pw_lt "$((before / 2))" "$after" && pw_ok "history: drain after ANALYZE >= half the drain before" \
    || pw_fail "history: drain after ANALYZE $after runs/s < half of $before runs/s"

# ------------------------------------------------------------------ one shape per statement
statements=$(cut -f2,3 "$SHAPES" | sort -u | wc -l)
pw_info "$statements bookkeeping statements captured"
[ "$statements" -ge 4 ] && pw_ok "the workers' bookkeeping statements were captured ($statements)" \
    || pw_fail "only $statements bookkeeping statements captured"
for want in "SELECT id, pipeline, submitted_by" "INSERT INTO pipeline_worker.run_steps" \
            "UPDATE pipeline_worker.runs r SET status = u.status" "UPDATE pipeline_worker.runs r SET status = 'running'" \
            "/* pw_indexes: none */ UPDATE pipeline_worker.runs r SET status = u.status"; do
    grep -qF "$want" "$SHAPES" && pw_ok "captured: $want" || pw_fail "not captured: $want"
done
while IFS=$'\t' read -r stmt len; do
    shapes=$(awk -F'\t' -v q="$stmt" -v l="$len" '$2 == q && $3 == l { print $4 }' "$SHAPES" | sort -u)
    n=$(printf '%s\n' "$shapes" | wc -l)
    if [ "$n" -eq 1 ]; then
        pw_ok "one plan in every state: $stmt... ($shapes)"
    else
        pw_fail "$n plans for: $stmt..."
        awk -F'\t' -v q="$stmt" -v l="$len" '$2 == q && $3 == l { print "       " $1 ": " $4 }' "$SHAPES" | sort -u
    fi
done < <(cut -f2,3 "$SHAPES" | sort -u)
seq=$(grep -cE 'Seq Scan on (runs|run_steps)' "$SHAPES")
pw_check "no sequential scan of the run tables in any state" 0 "$seq"
# Every join probes its inner side by an index condition: a "Join Filter" is a join whose inner side is scanned whole
# for each outer row (the "vacuumed" state above made retention's parent check and the child-run walk plan so).
filtered=$(awk -F'\t' 'index($4, "Join Filter: ") { print $1 ": " substr($2, 1, 80) }' "$SHAPES" | sort -u)
pw_check "no join in any state filters its inner side instead of probing it by index (no Join Filter)" "" "$filtered"
# Time bounds are index conditions, not filters: retention's scans of runs_stats_finished_idx (run by the lead worker
# every second; each pipeline and status up to its own bound) and the timer's scan of runs_due_idx stop at the bound. Written with clock_timestamp() (volatile) they were
# filters, and with a million finished runs the idle lead worker read the whole index every second.
# bounded INDEX COLUMN OPERATOR : every captured plain Index Scan of INDEX has an Index Cond with COLUMN OPERATOR
# (alone or with a lower bound: the minute roll-ups scan [from, to))
bounded() {
    local scans bad
    scans=$(awk -F'\t' -v i="Index Scan using $1 " 'index($4, i) { print $4 }' "$SHAPES" | sort -u)
    if [ -z "$scans" ]; then
        pw_fail "no captured statement scans $1"
        return
    fi
    bad=$(printf '%s\n' "$scans" | awk -v i="Index Scan using $1 " -v c="$2 $3 " '{
        n = split($0, part, " / ")
        for (k = 1; k <= n; k++)
            if (index(part[k], i) && (k == n || index(part[k + 1], "Index Cond: ") != 1 || !index(part[k + 1], c))) {
                print; break
            }
    }')
    if [ -z "$bad" ]; then
        pw_ok "$1: every scan is bounded by its Index Cond on $2 $3 ($(printf '%s\n' "$scans" | wc -l) shapes)"
    else
        pw_fail "$1: a scan without an Index Cond on $2 $3: $(printf '%s' "$bad" | head -1 | cut -c1-300)"
    fi
}
bounded runs_stats_finished_idx finished_at '<'
bounded runs_due_idx not_before '<='
# ------------------------------------------------------------------ SQL-language steps
# A simple SQL-language step is called through a kept plan of SELECT fn($1) into which its body is inlined
# (planned once, not in every step's subtransaction): the workers' plan of that statement computes the body's
# expression and calls no ps_sql.
pw_psql >/dev/null <<'SQL' || pw_fail "SQL step fixtures failed"
CREATE FUNCTION public.ps_sql(ctx jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('n', coalesce((ctx->'prev'->>'n')::int, 0) + 1) $$;
SELECT pipeline_worker.create_pipeline('ps_sql', '[{"name": "a", "function": "public.ps_sql"},
                                                   {"name": "b", "function": "public.ps_sql"}]');
ALTER SYSTEM SET auto_explain.log_verbose = on;
SQL
from=$(pw_log_size)
explain_on
submit ps_sql 20
wait_done 60
explain_off
pw_check_sql "SQL-language steps: 20 runs succeeded with the right result" 20 \
    "SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'ps_sql' AND status = 'succeeded'
        AND (result->>'n')::int = (input->>'n')::int + 2"
plan=$(tail -c +"$((from + 1))" "$PW_LOG" | grep -A4 'Query Text: SELECT public.ps_sql(\$1)' | head -5)
if printf '%s\n' "$plan" | grep -q 'Output: jsonb_build_object' && ! printf '%s\n' "$plan" | grep -q 'Output: public.ps_sql'; then
    pw_ok "SQL-language steps: the workers run the kept plan with the function's body inlined"
else
    pw_fail "SQL-language steps: no inlined kept plan in the log: $(printf '%s' "$plan" | tr '\n\t' '  ' | cut -c1-300)"
fi
# The same window (runs of a pipeline without limits): the workers claimed them without the claim statement
# (store/direct_claim), while auto_explain logged their other statements (the kept plans above).
claims=$(tail -c +"$((from + 1))" "$PW_LOG" | grep -A1 ' pipeline_worker LOG:  duration: .* plan:' |
    grep -c 'Query Text: /\* pw_indexes: runs_ready_idx \*/ SELECT id, pipeline')
pw_check "plain runs: the workers' claims ran no claim statement (store/direct_claim)" 0 "$claims"
pw_finish
