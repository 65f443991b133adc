#!/usr/bin/env bash
# The models stage of `floorsight bench` (limit c: every machine's models and alert rules over the
# bench plant's closed windows, outside the dataflow) on the tree at REV and on this tree, on
# the same data, alternating, RUNS times each (default 3). Prints one line per run.
#
#   bash benchmarks/models_stage.sh e6b2449          # before issue 16 vs this tree
#   bash benchmarks/models_stage.sh REV RUNS SIZE    # SIZE: tiny, small or default (default)
set -euo pipefail
rev=${1:?usage: models_stage.sh REV [RUNS] [SIZE]}
runs=${2:-3}
size=${3:-default}
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/before" "$tmp/work"
git -C "$here" archive "$rev" | tar -x -C "$tmp/before"
settings=$("$py" - "$size" "$tmp/work" <<'EOF2'
import json, sys
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from floorsight.bench import SIZES

settings, work = SIZES[sys.argv[1]], Path(sys.argv[2])
plant = settings.plant
end = plant.start + timedelta(seconds=settings.seconds)
plant.write_context(work / "erp", end)
plant.write_readings(work / "readings", end, timedelta(seconds=settings.file_seconds))
print(json.dumps({"settings": asdict(settings), "work": str(work)}))
EOF2
)
# the closed windows, once, by this tree's feature code (both trees score the same windows)
phase() {  # phase NAME: one phase of floorsight.bench in a fresh process, its JSON result
  "$py" -c "import json, sys
from pathlib import Path
from floorsight import bench
a = json.loads(sys.argv[2])
print(json.dumps(getattr(bench, 'phase_' + sys.argv[1])(bench.BenchSettings(**a['settings']), Path(a['work']))))" "$1" "$settings"
}
POLARS_MAX_THREADS=1 phase compute >/dev/null
for i in $(seq "$runs"); do
  for code in before after; do
    path=""
    [ "$code" = before ] && path="$tmp/before"
    PYTHONPATH="$path" POLARS_MAX_THREADS=1 phase models |
      "$py" -c "import json,sys; r=json.loads(sys.stdin.read().splitlines()[-1]); print('$code', 'run $i:', round(r['seconds'], 2), 's wall,', round(r['cpu_s'], 2), 's CPU')"
  done
done
