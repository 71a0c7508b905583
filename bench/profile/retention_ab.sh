#!/usr/bin/env bash
# Retention's deletion, one library against another: each rep drains N W1 runs (10 workers) with retention off on a
# throwaway cluster, then gives its pipeline the option "retention": "1 second" and times the lead worker deleting
# them all; prints the seconds until none is left and the workers' CPU (utime + stime) per run deleted. The two
# libraries are alternated (installed by an atomic rename, then a restart: a copy over the loaded file crashes the
# server), and the library installed before is put back at the end. Root, like the tests.
#
#   bash bench/profile/retention_ab.sh OLD.so NEW.so [N (200000)] [REPS (3)] [interleaved]
#
# interleaved: the N runs alternate between two pipelines (ids odd and even) and only one of them has a retention
# (the pipeline option '1 second'): every other id is deleted, the other runs stay -- batches of scattered ids.
set -u
[ $# -ge 2 ] || { echo "usage: $0 OLD.so NEW.so [N] [REPS] [interleaved]" >&2; exit 2; }
OLD=$1 NEW=$2 N=${3:-200000} REPS=${4:-3} SHAPE=${5:-consecutive}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../../test/lib/cluster.sh
source "$ROOT/test/lib/cluster.sh"
LIB=$("$PW_BINDIR/pg_config" --pkglibdir 2>/dev/null || pg_config --pkglibdir)/pipeline_worker.so
SAVED=$(mktemp /tmp/pw-retention-ab.XXXXXX.so)
cp "$LIB" "$SAVED" || { rm -f "$SAVED"; echo "$0: cannot copy $LIB" >&2; exit 2; }
install_lib() { cp "$1" "$LIB.tmp" && chmod 755 "$LIB.tmp" && mv "$LIB.tmp" "$LIB"; }  # (readable by postgres: the saved copy is a mktemp file, 0600)
trap 'ab_rc=$?; install_lib "$SAVED"; rm -f "$SAVED"; (exit $ab_rc); pw_cleanup' EXIT
install_lib "$OLD"
pw_cluster_up retention_ab 10 20 "pipeline_worker.enabled = off" || exit 1
pw_psql -c "CREATE EXTENSION pipeline_worker" >/dev/null
pw_psql -f "$ROOT/bench/sql/pw.sql" >/dev/null 2>&1
pw_psql -c "SELECT pipeline_worker.create_pipeline('w1_kept', (SELECT steps FROM pipeline_worker.pipelines WHERE name = 'w1'))" \
    >/dev/null || pw_die "w1_kept"
if [ "$SHAPE" = interleaved ]; then
    SUBMIT="SELECT count(pipeline_worker.create_run(CASE WHEN g % 2 = 0 THEN 'w1' ELSE 'w1_kept' END,
                                                     jsonb_build_object('value', g))) FROM generate_series(1, $N) g"
    LEFT="SELECT count(*) FROM pipeline_worker.runs WHERE pipeline = 'w1'"
    DELETED=$((N / 2))
else
    SUBMIT="SELECT count(pipeline_worker.create_run('w1', jsonb_build_object('value', g))) FROM generate_series(1, $N) g"
    LEFT="SELECT count(*) FROM pipeline_worker.runs"
    DELETED=$N
fi
cpu() { local t=0 p; for p in $(pw_worker_pids); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
for rep in $(seq 1 "$REPS"); do
    for v in old new; do
        if [ $v = old ]; then install_lib "$OLD"; else install_lib "$NEW"; fi
        pw_psql -c "ALTER SYSTEM SET pipeline_worker.enabled = off" -c "ALTER SYSTEM SET pipeline_worker.retention = -1" \
                -c "SELECT pipeline_worker.alter_pipeline('w1', '{\"retention\": \"-1\"}')" >/dev/null
        pw_cluster_restart >/dev/null 2>&1 || pw_die "restart failed"
        pw_psql -c "TRUNCATE pipeline_worker.run_steps, pipeline_worker.runs" >/dev/null
        pw_psql -c "$SUBMIT" >/dev/null
        pw_psql -c "ALTER SYSTEM SET pipeline_worker.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
        pw_wait_sql 0 600 "SELECT count(*) FROM (SELECT 1 FROM pipeline_worker.runs WHERE status <> 'succeeded' LIMIT 1) x" 0.5 >/dev/null \
            || pw_die "$v rep $rep: the drain did not finish within 600 s"
        pw_psql -c "VACUUM ANALYZE pipeline_worker.runs" -c "VACUUM ANALYZE pipeline_worker.run_steps" -c CHECKPOINT >/dev/null
        sleep 2
        c0=$(cpu); t0=$(date +%s.%N)
        pw_psql -c "SELECT pipeline_worker.alter_pipeline('w1', '{\"retention\": \"1 second\"}')" >/dev/null
        pw_wait_sql 0 600 "$LEFT" 0.1 >/dev/null \
            || pw_die "$v rep $rep: retention did not delete every run within 600 s"
        t1=$(date +%s.%N); c1=$(cpu)
        awk -v v=$v -v r="$rep" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v n="$DELETED" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%s rep %d: %.2f s, workers %.1f us CPU per run deleted\n", v, r, t1 - t0, 1e6 * (c1 - c0) / hz / n }'
    done
done
pw_finish
