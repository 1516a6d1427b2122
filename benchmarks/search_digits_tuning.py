"""M2N2's options on digits, one change at a time, at equal evaluations (how its defaults were chosen).

Each variant runs ``search_digits.run`` (the experiment's space, 4 in flight) on seeds 0..n-1 and
reports the best-by-training net's test accuracy. Variants are JSON: name -> {"options": M2N2
options, "initial_points": seeded Xavier inits beside x0 (default 19; 0 = x0 plus ``init_std``
noise)}.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_digits_tuning.py \\
        '{"slerp": {"options": {"archive_size": 20, "mutation_std": 0.02, "mixing": "slerp"}}}' \\
        --evaluations 10000 --seeds 3

Prints one JSON line per variant. benchmarks/results/search_digits_tuning.json gathers the
measurements behind the defaults (some were taken with code states since changed; it says which).
"""

from __future__ import annotations

import argparse
import json
import statistics

from threadpoolctl import threadpool_limits

from evomerge.digits.net import DigitsTask
from search_digits import run  # noqa: E402  (benchmarks/ is the script's folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", type=json.loads)
    ap.add_argument("--evaluations", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    task = DigitsTask(hidden=10)
    with threadpool_limits(1):
        for name, v in args.variants.items():
            runs = [run(task, "m2n2", seed, args.evaluations, 1e9, v["options"], v.get("initial_points", 19))
                    for seed in range(args.seeds)]
            tests = [r["final"]["test"] for r in runs]
            print(json.dumps({"name": name, "evaluations": args.evaluations, "options": v["options"],
                              "test_mean": round(statistics.mean(tests), 4),
                              "train_mean": round(statistics.mean(r["final"]["train"] for r in runs), 4),
                              "test": [round(t, 3) for t in tests],
                              "cpu_seconds": round(sum(r["cpu_seconds"] for r in runs), 1)}), flush=True)


if __name__ == "__main__":
    main()
