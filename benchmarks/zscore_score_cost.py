"""CPU time of 100k ``MultivariateZScore.score_one`` calls, this tree against a git revision.

Four cases: eight continuous features (normal p-values) and six continuous plus two held per
cycle (few distinct values: Student-t), each with in-control windows and with one feature 6 to
1e4 sd out. Best of three runs of ``time.process_time``:

    .venv/bin/python benchmarks/zscore_score_cost.py --rev 8a6a5cc
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import tempfile
import time
from pathlib import Path

from floorsight.models.zscore import MultivariateZScore

ROOT = Path(__file__).resolve().parents[1]
POOL = [round(28 + 0.1 * k, 1) for k in range(-15, 16)]


def _old(rev: str) -> type:
    """``MultivariateZScore`` as it was at ``rev`` (models/zscore.py, imported standalone)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:models/zscore.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_zscore.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("old_zscore", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MultivariateZScore


def _case(detector: type, held: bool):
    rng = random.Random(1)
    model = detector()

    def observation() -> dict:
        x = {f"s{i}": rng.gauss(0, 1) for i in range(8 - 2 * held)}
        if held:
            x.update(h0=rng.choice(POOL), h1=rng.choice(POOL))
        return x

    for _ in range(600 if held else 2000):  # held: under 1000 value changes, Student-t
        model.learn_one(observation())
    normal = [observation() for _ in range(1000)]
    key = "h0" if held else "s3"
    extreme = [{**x, key: rng.choice([6.0, 12.0, 40.0, 1e4])} for x in normal]
    return model, normal, extreme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default="8a6a5cc", help="the revision to compare with")
    args = parser.parse_args()
    for label, detector in ((args.rev, _old(args.rev)), ("tree", MultivariateZScore)):
        for held in (False, True):
            model, normal, extreme = _case(detector, held)
            for name, xs in (("in-control", normal), ("one feature 6..1e4 sd out", extreme)):
                runs = []
                for _ in range(3):
                    started = time.process_time()
                    for _ in range(100):
                        for x in xs:
                            model.score_one(x)
                    runs.append(time.process_time() - started)
                kind = "held (Student-t)" if held else "continuous"
                print(f"{label:8} {kind:17} {name:26} {min(runs):.3f} s / 100k")


if __name__ == "__main__":
    main()
