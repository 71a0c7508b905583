#!/bin/bash
# The crash guard counts crashes at one place: one run with a long map step whose tasks are shared across idle workers;
# three SIGKILLs, each of a worker helping with the map (never the run's own worker, never a task that crashes by itself),
# each in another task: the run succeeds, each task once. (Until 2026-12-05 any three abnormal ends of a run counted:
# the run failed "ended abnormally 3 times". Found by a fault audit.) The map lasts long enough for three kills with the
# recoveries between them: 300 tasks of 0.1 s, 20-35 done per round (at 400 tasks of 0.03 s, CI once found the map
# over before the third kill, 2026-12-07).
source "$(dirname "$0")/../lib/cluster.sh"
trap pw_cleanup EXIT
pw_cluster_up crash_guard_helpers 4 20 || exit 1
pw_psql >/dev/null <<'SQL'
CREATE EXTENSION pipeline_worker;
CREATE TABLE fx (run_id bigint, task int, pid int DEFAULT pg_backend_pid(), PRIMARY KEY (run_id, task));
CREATE FUNCTION cg_list(ctx jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_agg(g) FROM generate_series(1, 300) g $$;
CREATE FUNCTION cg_task(ctx jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO fx(run_id, task) VALUES ((ctx->>'run_id')::bigint, (ctx->>'index')::int);
  PERFORM pg_sleep(0.1); RETURN ctx->'item'; END $$;
SELECT pipeline_worker.create_pipeline('cg', '[{"name": "list", "function": "cg_list"},
  {"name": "sq", "function": "cg_task", "map": true}]');
SQL
R=$(pw_psql -c "SELECT pipeline_worker.create_run('cg', '{}')")
kills=0
for i in 1 2 3; do
    # a helper: a worker executing a task of run R that is not the run's own worker
    owner=""; helper=""
    for t in $(seq 1 100); do
        owner=$(pw_psql -c "SELECT worker_pid FROM pipeline_worker.runs WHERE id = $R AND status = 'running'" 2>/dev/null)
        helper=$(pw_psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pipeline_worker' AND query LIKE 'run $R step % task %'
                             AND pid IS DISTINCT FROM nullif('$owner', '')::int LIMIT 1" 2>/dev/null)
        [ -n "$owner" ] && [ -n "$helper" ] && break
        sleep 0.1
    done
    [ -z "$helper" ] && { pw_info "no helper found at round $i"; break; }
    pw_info "kill $i: SIGKILL of helper $helper (run $R is owned by $owner); tasks done so far: $(pw_psql -c "SELECT count(*) FROM fx")"
    pw_as_pg kill -9 "$helper" 2>/dev/null || kill -9 "$helper"
    kills=$((kills + 1))
    sleep 2
    pw_retry 30 pw_psql -c "SELECT 1" >/dev/null
    pw_wait_workers 4 20 >/dev/null
done
st=$(pw_wait_sql succeeded 60 "SELECT status FROM pipeline_worker.runs WHERE id = $R" 0.5)
pw_info "run $R: $st; error: $(pw_psql -c "SELECT error FROM pipeline_worker.runs WHERE id = $R")"
grep -oE '(fault|kill) [0-9]+ of [0-9]+ for this run' "$PW_LOG" | sed 's/^/info   log: /'
pw_check "three workers helping with the run's tasks were killed" 3 "$kills"
pw_check "the run whose helpers were killed from outside succeeds" succeeded "$st"
pw_check_sql "each task's effect once" "300 0" "SELECT count(*) || ' ' || (SELECT count(*) FROM (SELECT task FROM fx GROUP BY task HAVING count(*) > 1) x) FROM fx"
pw_finish
