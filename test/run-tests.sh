#!/bin/bash
# Runs the pipeline_worker test suites against the installed extension (run as root; every server
# runs as the OS user postgres):
#   regress    pg_regress on sql/*.sql (sorted) vs expected/*.out, temp instance, no workers
#   isolation  pg_isolation_regress on test/isolation/specs/*.spec vs test/isolation/expected/*.out
#   scripts    test/scripts/*.sh: background workers, parallelism, load, latency, claim races
#
# Usage: test/run-tests.sh                      all suites
#        test/run-tests.sh regress isolation    some suites
#        test/run-tests.sh workers load         some scripts (test/scripts/NAME.sh)
# Outputs: /tmp/pw-regress-out (results/, regression.diffs, log/), /tmp/pw-isolation-out,
#          /tmp/pw-scripts-out/NAME.log
# Ends with "N passed, M failed" (N, M count pg_regress tests, isolation specs and script checks)
# and exits non-zero on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PW_BINDIR:-/usr/lib/postgresql/15/bin}
PGXS=$(cd "$(dirname "$("$PGBIN/pg_config" --pgxs)")/../.." && pwd)
PG_REGRESS=$PGXS/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS/src/test/isolation/pg_isolation_regress
STAGE=/tmp/pw-tests-src
OS_USER=postgres

suites=()
scripts=()
for a in "$@"; do
    case "$a" in
        regress|isolation|scripts) suites+=("$a") ;;
        *) if [ -f "$ROOT/test/scripts/$a.sh" ]; then scripts+=("$a")
           elif [ -f "$ROOT/test/scripts/$a" ]; then scripts+=("${a%.sh}")
           else echo "unknown suite or script: $a" >&2; exit 2; fi ;;
    esac
done
[ ${#scripts[@]} -gt 0 ] && suites+=(scripts)
[ ${#suites[@]} -eq 0 ] && suites=(regress isolation scripts)
if [ ${#scripts[@]} -eq 0 ]; then
    for f in "$ROOT"/test/scripts/*.sh; do scripts+=("$(basename "$f" .sh)"); done
fi

PASSED=0
FAILED=0
SUMMARY=()
as_pg() { (cd "$STAGE" && runuser -u "$OS_USER" -- "$@"); }

# the server runs as postgres: give it a private, readable copy of the test inputs
stage() {
    rm -rf "$STAGE"
    mkdir -p "$STAGE/test" "$STAGE/expected"
    cp -r "$ROOT/sql" "$STAGE/"
    cp -r "$ROOT/expected/." "$STAGE/expected/" 2>/dev/null
    cp -r "$ROOT/test/isolation" "$ROOT/test/regress.conf" "$STAGE/test/"
    # a missing expected file makes pg_regress abort: let it be an ordinary failing diff instead
    local f
    mkdir -p "$STAGE/test/isolation/expected"
    for f in "$STAGE"/sql/*.sql; do
        f=$(basename "$f" .sql)
        [ -f "$STAGE/expected/$f.out" ] || : >"$STAGE/expected/$f.out"
    done
    for f in "$STAGE"/test/isolation/specs/*.spec; do
        f=$(basename "$f" .spec)
        [ -f "$STAGE/test/isolation/expected/$f.out" ] || : >"$STAGE/test/isolation/expected/$f.out"
    done
    chown -R "$OS_USER": "$STAGE"
}

# count "... ok" / "... FAILED" lines of pg_regress-style output
# (sets ok and bad of the caller)
count_results() {
    ok=$(grep -cE '\.\.\. ok ' "$1")
    bad=$(grep -cE '\.\.\. (FAILED|failed)' "$1")
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
}

# run_temp_instance NAME PROGRAM TESTS_VAR ARGS... : PROGRAM (pg_regress or pg_isolation_regress) on the tests
# named in the array TESTS_VAR, in its own temp instance with test/regress.conf; output in /tmp/pw-NAME-out
run_temp_instance() {
    local name=$1 prog=$2 out=/tmp/pw-$1-out rc ok bad
    local -n tests_=$3
    shift 3
    rm -rf "$out" "/tmp/pw-$name-tmp"; mkdir -p "$out"; chown "$OS_USER": "$out"
    echo "=== $name: ${tests_[*]}"
    as_pg "$prog" --bindir="$PGBIN" --temp-instance="/tmp/pw-$name-tmp" \
        --temp-config=test/regress.conf "$@" --outputdir="$out" \
        "${tests_[@]}" 2>&1 | tee "$out/$(basename "$prog").log"
    rc=${PIPESTATUS[0]}
    count_results "$out/$(basename "$prog").log"
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then FAILED=$((FAILED + 1)); bad=1; fi
    [ "$rc" -ne 0 ] && [ -f "$out/regression.diffs" ] && echo "    diffs: $out/regression.diffs"
    SUMMARY+=("$(printf '%-10s %s passed, %s failed (exit %s)' "$name:" "$ok" "$bad" "$rc")")
}

run_regress() {
    local tests=() f
    for f in "$ROOT"/sql/*.sql; do tests+=("$(basename "$f" .sql)"); done
    run_temp_instance regress "$PG_REGRESS" tests --inputdir=. --dbname=contrib_regression
}

run_isolation() {
    local specs=() f
    for f in "$ROOT"/test/isolation/specs/*.spec; do specs+=("$(basename "$f" .spec)"); done
    run_temp_instance isolation "$PG_ISOLATION_REGRESS" specs --inputdir=test/isolation
}

run_scripts() {
    local out=/tmp/pw-scripts-out s rc last p f t0
    mkdir -p "$out"
    for s in "${scripts[@]}"; do
        echo "=== script: $s"
        t0=$(date +%s)
        bash "$ROOT/test/scripts/$s.sh" 2>&1 | tee "$out/$s.log"
        rc=${PIPESTATUS[0]}
        last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/$s.log" | tail -n 1)
        if [ -n "$last" ]; then
            p=${last%% passed*}; f=${last#*, }; f=${f%% failed}
        else
            p=0; f=0
        fi
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
        SUMMARY+=("$(printf 'script %-12s %s passed, %s failed (exit %s, %ss)' "$s:" "$p" "$f" "$rc" "$(( $(date +%s) - t0 ))")")
    done
}

stage
for s in "${suites[@]}"; do
    case "$s" in
        regress) run_regress ;;
        isolation) run_isolation ;;
        scripts) run_scripts ;;
    esac
done
echo
echo "=== summary"
for l in "${SUMMARY[@]}"; do echo "$l"; done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
