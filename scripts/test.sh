#!/usr/bin/env bash
# Runs every test: set-up (apt packages, build, install), unit tests (CMake + GoogleTest),
# pg_regress, isolation specs, and the script tests that start their own clusters (test/run-tests.sh).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh" || exit 1

echo "=== unit tests (GoogleTest)"
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$ROOT/build" -j2 >/dev/null || exit 1
ctest --test-dir "$ROOT/build" --output-on-failure | tail -3
unit_rc=${PIPESTATUS[0]}

"$ROOT/test/run-tests.sh" "$@"
rc=$?
[ "$unit_rc" -eq 0 ] && exit $rc
echo "unit tests failed"
exit 1
