#!/usr/bin/env bash
# The test command (README, `make test` and CI): lint, then every test. The multi-node Ray tests (`-m cluster`: they
# start `ray start` clusters with their own temp folders and ports) run in a pytest process of their own, beside the
# rest on 2 pytest-xdist workers; much of both is waiting on processes, so the two overlap on 2 cores.
# `pytest -m "not slow" -n 2` is the quick subset (`make test-fast`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
cluster_log="$(mktemp)"
"$PYTHON" -m pytest -q -m cluster -p no:benchmark --durations=10 tests/cluster >"$cluster_log" 2>&1 &
cluster=$!
rest_status=0
"$PYTHON" -m pytest -q -n 2 -m "not cluster" -p no:benchmark --durations=60 || rest_status=$?
cluster_status=0
wait "$cluster" || cluster_status=$?
echo "---- multi-node Ray tests (tests/cluster, run beside the others) ----"
cat "$cluster_log"
rm -f "$cluster_log"
if [ "$rest_status" -ne 0 ] || [ "$cluster_status" -ne 0 ]; then
  echo "tests failed: the others exited $rest_status, the multi-node tests $cluster_status" >&2
  exit 1
fi
