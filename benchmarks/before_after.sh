#!/usr/bin/env bash
# CPU and wall time of `floorsight run` before and after a change, on the same bench plant.
#
#   bash benchmarks/before_after.sh fb2cc04            # the pipeline before issue #9 vs this tree
#   bash benchmarks/before_after.sh REV SECONDS        # plant time of the history (default 120)
#
# Writes a history of the bench plant (200 machines x 20 sensors at 10 Hz, ERP context), checks
# REV out with `git archive` into a temporary folder, and runs both pipelines over it, one
# worker, polars single-threaded, at the old default batch (50,000 readings) and at one batch
# per 60 s file (2.4 M). Prints one line per run (time's user and sys are CPU seconds).
set -euo pipefail
rev=${1:?usage: before_after.sh REV [SECONDS]}
seconds=${2:-120}
here=$(cd "$(dirname "$0")/.." && pwd)
# PYTHON: the interpreter of a venv elsewhere (a git worktree has none of its own)
py="${PYTHON:-$here/.venv/bin/python}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" - "$tmp/history" "$seconds" <<'EOF'
import sys
from datetime import timedelta
from pathlib import Path

from floorsight.bench_plant import BenchPlant

out, seconds = Path(sys.argv[1]), float(sys.argv[2])
plant = BenchPlant()
end = plant.start + timedelta(seconds=seconds)
plant.write_context(out / "erp", end)
print(plant.write_readings(out / "readings", end, timedelta(seconds=60)), "readings")
EOF
mkdir "$tmp/before"
git -C "$here" archive "$rev" | tar -x -C "$tmp/before"
for code in before after; do
  for batch in 50000 2400000; do
    rm -f "$tmp/out.duckdb"
    # each tree's own code first on the path, whatever the venv's editable install points at
    path="$here"
    [ "$code" = before ] && path="$tmp/before"
    (cd "$tmp" && PYTHONPATH="$path" POLARS_MAX_THREADS=1 /usr/bin/time \
      -f "$code, --batch-rows $batch: %e s wall, %U s user + %S s sys, %M KB max RSS" \
      "$py" -m floorsight.cli run --history history/readings --context history/erp \
      --db out.duckdb --batch-rows "$batch" 2>&1 | tail -1)
    echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
