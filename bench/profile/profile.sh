#!/usr/bin/env bash
# Where a run's microseconds go: profiles the workers with perf on a throwaway cluster and sorts their samples into
# the parts of a run (buckets.py). Needs perf (Debian: linux-perf) and root, like the tests (servers run as postgres).
#
#   bash bench/profile/profile.sh w1     # W1 drain (PL/pgSQL steps), 10 workers, 300,000 runs, 3 s in the middle
#   bash bench/profile/profile.sh http   # one-step HTTP runs against the Node test endpoint, 4 workers already
#                                        # running, 3 drains of 10,000 runs committed at once; the third profiled
#
# Extra arguments are postgresql.conf lines, e.g. "pipeline_worker.http_max_in_flight = 128".
# PW_PROFILE_OUT: where the perf data and its text dump go (default: a temporary directory, kept and printed).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=${1:-}
shift || true
case "$MODE" in w1 | http) ;; *) echo "usage: $0 w1|http [postgresql.conf lines...]" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "$0: perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "$0: python3 is not installed (apt-get install python3)" >&2; exit 2; }
OUT=${PW_PROFILE_OUT:-$(mktemp -d /tmp/pw-profile.XXXXXX)}
mkdir -p "$OUT"
HZ=1999

# shellcheck source=../../test/lib/cluster.sh
source "$ROOT/test/lib/cluster.sh"
export PW_KEEP=0

# sample SECONDS: perf on every CPU while the server clock is read at the start and at the end, both inside perf's
# window: the runs finished between them are the runs the samples paid for, or a few less. (Not with pg_sleep() in
# one session: its snapshot would hold back the xmin horizon, and claims would walk entries they could otherwise
# skip -- a different workload.)
sample() {
    local now="$PW_BINDIR/psql -X -Atq -c 'SELECT clock_timestamp()'"
    perf record -a -g -F $HZ -o "$OUT/perf.data" -- bash -c "$now; sleep $1; $now" >"$OUT/window" 2>/dev/null
}

if [ "$MODE" = w1 ]; then
    trap pw_cleanup EXIT  # (the cluster is stopped and removed at the end; until 2026-12-04 it was left running)
    pw_cluster_up profile 10 20 "pipeline_worker.enabled = off" "$@" || exit 1
    pw_psql -c "CREATE EXTENSION pipeline_worker" >/dev/null
    pw_psql -f "$ROOT/bench/sql/pw.sql" >/dev/null 2>&1
    pw_psql -c "SELECT count(pipeline_worker.create_run('w1', jsonb_build_object('value', g)))
                  FROM generate_series(1, 300000) g" >/dev/null
    pw_psql -c "VACUUM ANALYZE pipeline_worker.runs" -c "CHECKPOINT" >/dev/null
    pw_psql -c "ALTER SYSTEM SET pipeline_worker.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1  # past the start: the workers are all busy
    sample 3
    pw_wait_sql 0 300 "SELECT count(*) FROM (SELECT 1 FROM pipeline_worker.runs WHERE status = 'pending' LIMIT 1) x" 0.5 >/dev/null
else
    # shellcheck source=../../test/lib/http.sh
    source "$ROOT/test/lib/http.sh"
    trap pw_http_cleanup EXIT
    pw_http_start
    pw_cluster_up profile 4 20 "pipeline_worker.http_allowed_hosts = '127.0.0.1'" "$@" || exit 1
    pw_psql -c "CREATE EXTENSION pipeline_worker" >/dev/null
    pw_psql -c "SELECT pipeline_worker.create_pipeline('http_ok', '[{\"name\":\"call\",\"http\":{\"url\":\"$B/ok\"}}]')" >/dev/null
    for rep in 1 2 3; do
        if [ $rep = 3 ]; then
            sample 2 &
            perf_pid=$!
            sleep 0.5  # perf is sampling
        fi
        pw_psql -At >/dev/null <<SQL
BEGIN;
SELECT count(pipeline_worker.create_run('http_ok', jsonb_build_object('i', g))) FROM generate_series(1, 10000) g;
COMMIT;
DO \$\$ BEGIN
  LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM pipeline_worker.runs WHERE status IN ('pending', 'running'));
    PERFORM pg_sleep(0.02);
  END LOOP;
END \$\$;
SQL
    done
    wait "$perf_pid"
fi
runs=$(pw_psql -c "SELECT count(*) FROM pipeline_worker.runs
                     WHERE finished_at BETWEEN '$(sed -n 1p "$OUT/window")' AND '$(sed -n 2p "$OUT/window")'")
perf script -i "$OUT/perf.data" >"$OUT/perf.txt" 2>/dev/null
echo "profile: $MODE, $runs runs finished while perf sampled (data in $OUT)"
python3 "$HERE/buckets.py" "$OUT/perf.txt" "$runs" $HZ
pw_finish
