#!/usr/bin/env bash
# Benchmark of the pipeline_worker extension on workload W1 (bench/README.md), next to the
# peers (plain Node pg worker pool, graphile-worker, an in-server PL/pgSQL floor), all on one
# throwaway PostgreSQL 15 cluster that this script starts and removes. See bench/README.md.
#
# usage: bench/run.sh [options]
#   --mode drain|latency   drain (default): N pre-inserted runs, time until all succeeded
#                          latency: one open-loop submitter at --rate runs/s for --duration s
#   --sweep                drain at --sweep-workers (1,2,4,10) for us and the peers, one latency run
#                          each at --workers, charts in bench/out/{throughput,latency}.png
#   --soak [N]             pipeline_worker only: drain N runs (default 200000) in batches of
#                          --soak-batch (10000) with the workers running; worker RSS, table sizes,
#                          dead tuples at start and end
#   --http                 pipeline_worker only, one-step HTTP pipelines against a local endpoint
#                          (--http-endpoint cpp: bench/endpoint/endpoint.cpp, built here with g++, default;
#                          node: test/http/server.js), on 127.0.0.1: 1. the endpoint alone (its own
#                          keep-alive capacity, js/http-load.mjs), live: with the workers already running,
#                          min(--http-runs, 10000) /ok runs committed at once, 3 drains in a row (as users run it),
#                          2. drain of --http-runs /ok runs
#                          (steps/s, median of --reps), 3. 10,000 runs to /delay?ms=100, 4. 10,000 runs to
#                          /delay?ms=2000 with http_max_in_flight 2500 (10k in flight), 5. latency at
#                          --rate runs/s for --duration s; every figure checked against the endpoint's
#                          counts (no lost, no duplicated request). Defaults here: --workers 4 --reps 3
#                          --rate 100 --duration 20 --quiet-wait 20; ulimit -n raised to the hard limit
#   --scale                pipeline_worker only: drains of --scale-backlogs (10000,100000,1000000) pre-inserted
#                          runs, then 10000 more on top of the last one's finished runs (history); runs/s as
#                          % of the first; claim cost from pg_stat_statements (workers' own claims during
#                          each drain) and from a probe of one 32-run claim with the workers stopped
#   --scale-backlogs LIST  (10000,100000,1000000)
#   --steady [SECONDS]     pipeline_worker only: a fresh-table drain of --runs, then SECONDS (default 1200) of
#                          continuous W1 load, submitter and workers running together (backlog kept between
#                          --steady-backlog and twice that, default 5000), autovacuum at its defaults; one line
#                          per 10 s window: runs/s and % of the fresh drain, completion latency p50/p99, table and
#                          index sizes, dead tuples, autovacuum/autoanalyze counts; a summary line (target: every
#                          window >= 80 % of the fresh drain)
#   --flow                 the 0.2 flow-control figures in one run (bench/js/flow.mjs): W1 drain and graphile's
#                          tuned no-op rate, W1 with priorities over 10 levels, W1 with 100 concurrency keys
#                          (concurrency_per_key 1), --flow-limited (50000) runs at "concurrency": 4, 10,000 runs with
#                          --flow-future (1000000) future-dated runs in the table, run_at lateness (1,000 runs),
#                          create_runs vs create_run (100,000), 100 '1 seconds' schedules for 20 s (lateness,
#                          duplicates, missed slots); --flow-figures LIST (all) picks some of:
#                          priorities,keys,limit,future,run_at,create_runs,schedules (the plain drain always runs)
#   --hold-snapshot 1      drain mode: during every timed drain (ours and the peers'), another session keeps a
#                          REPEATABLE READ snapshot open (as a long report, pg_dump or a client idle in a
#                          transaction does), so no dead row or index entry of the drain can be cleaned up
#   --steady-retention I   with --steady: pipeline_worker.retention during the load (e.g. '1 minute'): sizes flat
#   --steady-submit M      with --steady: create_runs (default: one bulk call per batch) or create_run (one call a run)
#   --steady-submitters S  with --steady: S sessions submit (default 1), each its share of a top-up; with one, the
#                          queue can run empty at 40,000+ runs/s (see workers_idle_pct)
#   --ops                  the 0.2 operations figures in one run (bench/js/ops.mjs): three databases with equal
#                          backlogs of --ops-db-runs (20000) and 6 workers; W1 drain (max(--runs, 200000)) with
#                          retention '1 second' deleting runs as they expire (plus --ops-retention-history (0)
#                          runs expired before), against retention off; pipeline_stats and metrics() with --ops-history (1000000) runs finished
#                          over an hour ago, within the hour, and pending; purge_runs of those runs while W1 drains;
#                          --ops-figures LIST (all) picks some of: databases,retention,stats,purge
#   --workflows            the 0.2 workflow figures in one run (bench/js/workflows.mjs): W1 and a diamond DAG
#                          (a -> b, c -> d) drain of --runs; W2 fan-out/fan-in (--w2-runs (1000) runs of
#                          {"n": --w2-n (100)}: split -> square (map) -> sum) against the peers of --w2-peers LIST
#                          (node,dbos,pgflow; none): a plain Node pg pool doing the same at --w2-runs, DBOS Transact
#                          (child workflows on a queue, --dbos-poll-ms (10) queue and getResult polling) and pgflow (a map
#                          step, --pgflow-workers (2) worker loops sharing --workers tasks in flight), these two in
#                          databases of their own at --w2-peer-runs (200) runs, plus ratio lines; --sleep-runs (100000)
#                          runs sleeping at once (workers busy and server CPU while asleep, then all due in the same
#                          second); send_event -> waiting step succeeded over --event-samples (500) events;
#                          --workflow-figures LIST (all): diamond,w2,sleep,events
#   --http-runs N (20000)  --http-figures LIST (endpoint,live,drain,delay,inflight,latency)  --http-endpoint cpp|node
#   --runs N (10000)  --workers W (10)  --reps R (1)
#   --rate R (100)  --duration S (30)  --poll-ms MS (50: node-pg idle poll in latency mode)
#   --peers all|none|p1,p2   (all) node-pg, graphile-3step, graphile-noop, graphile-noop-batched,
#                            plpgsql-floor, graphile-3step-batched
#   --pw-configs LIST        (default,strict) pipeline_worker settings to measure, or none
#   --step-lang plpgsql|sql  (plpgsql) language of the W1 step functions
#   --quiet-wait S (60) --quiet-pct P (15)  wait up to S s before each timed run for <= P % CPU busy
#   --timeout S (900)        bound of every timed phase; --max-seconds S (7200) bound of everything
#   --stall-timeout S (120)  the extension's runs fail as stalled after S s without progress
#   --sweep-workers LIST (1,2,4,10)  --soak-batch N (10000)  --out DIR (bench/out)
#   --keep                   keep the cluster directory (/tmp/pwbench.*) afterwards
#   --pg-setting 'NAME = VALUE'  a server setting added to the stock ones (repeatable; named in the results header),
#                            e.g. --pg-setting 'max_wal_size = 8GB' --pg-setting 'wal_compression = lz4'
# Result lines go to stdout (and bench/out/results-*.txt); progress and diagnostics to stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGBIN=${PWBENCH_PGBIN:-/usr/lib/postgresql/15/bin}
OSUSER=${PWBENCH_OSUSER:-postgres}

die() { echo "run.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

MODE=drain KEEP=0 MAXS=7200 SOAK_N=200000
ARGS=()
PG_SETTINGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --sweep) MODE=sweep ;;
    --http) MODE=http ;;
    --scale) MODE=scale ;;
    --flow)
      MODE=flow ;;
    --ops)
      MODE=ops ;;
    --workflows)
      MODE=workflows ;;
    --steady)
      MODE=steady STEADY_S=1200
      if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then STEADY_S=$2; shift; fi ;;
    --soak)
      MODE=soak
      if [ $# -gt 1 ] && [[ "$2" =~ ^[0-9]+$ ]]; then SOAK_N=$2; shift; fi ;;
    --keep) KEEP=1 ;;
    --pg-setting)
      [ $# -gt 1 ] || die "missing value for $1"
      [[ "$2" =~ ^[a-z_.]+\ *=\ *[^$'\n']+$ ]] || die "--pg-setting wants 'name = value', got: $2"
      PG_SETTINGS+=("$2"); shift ;;
    --max-seconds) [ $# -gt 1 ] || die "missing value for $1"; MAXS=$2; shift ;;
    --mode)
      [ $# -gt 1 ] || die "missing value for $1"
      case "$2" in drain|latency) MODE=$2 ;; *) die "--mode must be drain or latency" ;; esac
      shift ;;
    --runs|--workers|--reps|--rate|--duration|--poll-ms|--peers|--pw-configs|--step-lang|--quiet-wait|\
    --quiet-pct|--timeout|--stall-timeout|--sweep-workers|--soak-batch|--out|--http-runs|--http-figures|--http-endpoint|\
    --scale-backlogs|--steady-backlog|--steady-submitters|--flow-future|--flow-limited|--flow-figures|--ops-figures|--ops-history|--ops-db-runs|\
    --ops-retention-history|--steady-retention|--steady-submit|--w2-runs|--w2-n|--sleep-runs|--event-samples|--workflow-figures|\
    --w2-peers|--w2-peer-runs|--dbos-poll-ms|--pgflow-workers|--hold-snapshot)
      [ $# -gt 1 ] || die "missing value for $1"
      ARGS+=("$1" "$2"); shift ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[[ "$MAXS" =~ ^[1-9][0-9]*$ ]] || die "--max-seconds must be a positive integer"
[[ "$SOAK_N" =~ ^[1-9][0-9]*$ ]] || die "--soak N must be a positive integer"
# --http: its own defaults (the options given override them: main.mjs takes the last value)
[ "$MODE" = http ] && ARGS=(--workers 4 --reps 3 --rate 100 --duration 20 --quiet-wait 20 ${ARGS[@]+"${ARGS[@]}"})

for t in initdb pg_ctl postgres psql pg_waldump; do [ -x "$PGBIN/$t" ] || die "$PGBIN/$t not found (PWBENCH_PGBIN)"; done
command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"
if [ "$MODE" = sweep ] && ! command -v gnuplot >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "run.sh: installing gnuplot-nox (charts)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >&2 ||
      echo "run.sh: could not install gnuplot-nox; charts will be missing (data files are written)" >&2
  else
    echo "run.sh: gnuplot not found (apt-get install gnuplot-nox); charts will be missing" >&2
  fi
fi
# npm ci (from package-lock.json) when bench/node_modules is missing or lacks a dependency at its pinned version
if ! node -e 'const [pkg, nm] = process.argv.slice(1);
    for (const [k, v] of Object.entries(require(pkg).dependencies)) {
      if (require(`${nm}/${k}/package.json`).version !== v) process.exit(1);
    }' "$HERE/package.json" "$HERE/node_modules" 2>/dev/null; then
  echo "run.sh: installing node packages (npm ci)" >&2
  (cd "$HERE" && npm ci --no-audit --no-fund >&2)
fi

# ------------------------------------------------------------------ throwaway cluster
if [ "$(id -u)" = 0 ]; then
  id "$OSUSER" >/dev/null 2>&1 || die "OS user $OSUSER does not exist (PostgreSQL refuses to run as root)"
  as_pg() { (cd /tmp && runuser -u "$OSUSER" -- "$@"); }
  AS_PG=1
else
  as_pg() { "$@"; }
  AS_PG=0
fi
DIR=$(mktemp -d /tmp/pwbench.XXXXXX)
chmod 755 "$DIR"
[ "$AS_PG" = 1 ] && chown "$OSUSER": "$DIR"
DATA=$DIR/data
LOG=$DIR/server.log
STARTED=0
cleanup() {
  local rc=$?
  if [ "$STARTED" = 1 ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  if [ "$KEEP" = 1 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; }; then
    echo "run.sh: kept $DIR (server log: $LOG)" >&2
  else
    rm -rf "$DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 ||
  { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
PORT=$((20000 + RANDOM % 30000))
# Stock settings except: unix socket only (in our own directory), the extension preloaded, room
# for its background workers, and its workers off until the benchmark starts them.
cat >>"$DATA/postgresql.conf" <<EOF
# --- bench/run.sh
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'pipeline_worker'
max_worker_processes = 40
pipeline_worker.workers = 0
EOF
# Latency from the submitter's commit to the run's finishing commit is measured with commit timestamps.
case "$MODE" in latency|sweep|http|workflows) echo "track_commit_timestamp = on" >>"$DATA/postgresql.conf" ;; esac
# --scale reads the workers' own claim statements from pg_stat_statements (nested statements included).
if [ "$MODE" = scale ]; then
  printf "%s\n" "shared_preload_libraries = 'pipeline_worker,pg_stat_statements'" \
    "pg_stat_statements.track = all" >>"$DATA/postgresql.conf"
fi
# --pg-setting: the user's own settings, after all of the above (the last one of a name wins)
for s in ${PG_SETTINGS[@]+"${PG_SETTINGS[@]}"}; do
  echo "$s" >>"$DATA/postgresql.conf"
  ARGS+=(--pg-setting "$s")
done
PGCTL=("$PGBIN/pg_ctl")
if [ "$MODE" = http ]; then
  # 10,000 connections in flight: the endpoint (started by main.mjs) and the server need the open file
  # limit raised as far as the hard limit allows; runuser resets the soft limit, so raise it again there.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || echo "run.sh: could not raise ulimit -n to $(ulimit -Hn)" >&2
  PGCTL=(sh -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"' "$PGBIN/pg_ctl")
  echo "run.sh: --http: open file limit $(ulimit -Sn)/$(ulimit -Hn) (soft/hard)" >&2
  # the C++ endpoint (main.mjs runs it unless --http-endpoint node)
  g++ -O2 -std=c++17 -Wall -Wextra -Werror -o "$DIR/pw_endpoint" "$HERE/endpoint/endpoint.cpp" ||
    die "could not build bench/endpoint/endpoint.cpp"
  export PWBENCH_ENDPOINT_BIN=$DIR/pw_endpoint
fi
as_pg "${PGCTL[@]}" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null ||
  { tail -n 20 "$LOG" >&2; die "cluster did not start"; }
STARTED=1
export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres PGAPPNAME=pwbench
echo "run.sh: cluster up in $DIR (port $PORT, socket only); mode $MODE" >&2

EXTRA=()
[ "$MODE" = soak ] && EXTRA+=(--soak-runs "$SOAK_N")
[ "$MODE" = steady ] && EXTRA+=(--steady-seconds "$STEADY_S")
timeout --kill-after=30 "$MAXS" node "$HERE/js/main.mjs" --mode "$MODE" "${ARGS[@]}" "${EXTRA[@]}" \
  --pgdata "$DATA" --pglog "$LOG" --pgbin "$PGBIN" --as-pg "$AS_PG" --max-seconds "$MAXS"
