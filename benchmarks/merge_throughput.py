"""Merge throughput: evomerge vs mergekit 0.1.5 on the same files in the same run.

1. Streaming to disk: TIES and DARE-TIES over base + 3 sources of a synthetic Llama-shaped
   model (1.1B parameters, bf16, random weights, 3 shards each), one mergekit config handed to
   both tools (`evomerge merge CFG` reads mergekit configs). Wall time and peak RSS of each
   process (measured in a fresh wrapper per run), and the floor: reading every input once.
2. In memory: `materialize_into` of linear / task_arithmetic / ties / dare_ties into an
   allocated model from resident sources, against one plain copy of the model's weights; and
   the one-pass floor: reading base + 3 resident sources once and writing the result
   (what any single-pass merge of 3 sources must move: 2.5x a copy's bytes).

`output_vs_mergekit` is expected to differ on these bf16 inputs: mergekit takes deltas and trims
them in bf16, keeping exactly k entries (argsort breaks ties), evomerge works in float32 and keeps
every entry tied at the threshold. On float32 inputs the two agree to 2e-6
(tests/test_mergekit_oracle.py).

    nice -n 10 .venv/bin/python benchmarks/merge_throughput.py            # ~9 GB in /tmp
    .venv/bin/python benchmarks/merge_throughput.py --quick --no-mergekit  # smoke run

Writes benchmarks/results/merge_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
EVOMERGE = ROOT / ".venv" / "bin" / "evomerge"
MERGEKIT_YAML = ROOT / ".venv-mergekit" / "bin" / "mergekit-yaml"
MERGEKIT_PY = ROOT / ".venv-mergekit" / "bin" / "python"

# TinyLlama-1.1B's shape
BIG = dict(hidden=2048, inter=5632, layers=22, heads=32, kv=4, vocab=32000)
QUICK = dict(hidden=256, inter=704, layers=4, heads=4, kv=2, vocab=2000)
# the in-memory part: a ~31M-parameter model held in float32
MEM = dict(hidden=512, inter=1408, layers=8, heads=8, kv=4, vocab=8000)
MEM_QUICK = dict(hidden=256, inter=704, layers=4, heads=4, kv=2, vocab=2000)

# Runs a command, then prints its wall time, CPU time (user + system, all threads) and the peak
# RSS of that command alone. CPU time is the fairer figure on a machine shared with other jobs.
WRAPPER = """
import json, os, resource, subprocess, sys, time
t = time.perf_counter()
with open(os.environ["BENCH_LOG"], "w") as log:
    rc = subprocess.call(sys.argv[1:], stdout=log, stderr=subprocess.STDOUT)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": rc, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024}))
"""

READ_ALL = """
import sys, time
from safetensors import safe_open
from pathlib import Path
t = time.perf_counter(); n = 0
for d in sys.argv[1:]:
    for f in sorted(Path(d).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                n += h.get_tensor(k).numel()
print(n, time.perf_counter() - t)
"""


def llama_shapes(s: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, i, hd = s["hidden"], s["inter"], s["hidden"] // s["heads"]
    out = [("model.embed_tokens.weight", (s["vocab"], h))]
    for n in range(s["layers"]):
        p = f"model.layers.{n}."
        out += [(p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,)),
                (p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (s["kv"] * hd, h)),
                (p + "self_attn.v_proj.weight", (s["kv"] * hd, h)), (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i))]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (s["vocab"], h))]


def llama_config(s: dict, dtype: str) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": s["hidden"],
            "intermediate_size": s["inter"], "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
            "num_key_value_heads": s["kv"], "vocab_size": s["vocab"], "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": dtype, "hidden_act": "silu"}


def model_tensors(s: dict, index: int, dtype: torch.dtype):
    """(name, tensor) of model `index`: 0 is the base, others the base plus a small task vector."""
    for j, (name, shape) in enumerate(llama_shapes(s)):
        g = torch.Generator().manual_seed(j)
        if name.endswith("norm.weight"):
            t = torch.ones(shape)
        else:
            t = torch.randn(shape, generator=g).mul_(0.02)
        if index:
            g2 = torch.Generator().manual_seed(1000 * index + j)
            t.add_(torch.randn(shape, generator=g2), alpha=0.002)
        yield name, t.to(dtype)


def write_model(folder: Path, s: dict, index: int, shards: int = 3) -> None:
    folder.mkdir(parents=True)
    shapes = llama_shapes(s)
    total = sum(torch.Size(sh).numel() for _, sh in shapes)
    per, buf, size, files, weight_map = total / shards, {}, 0, [], {}

    def flush():
        name = f"model-{len(files) + 1:05d}-of-{shards:05d}.safetensors"
        save_file(buf, str(folder / name), metadata={"format": "pt"})
        files.append(name)
        weight_map.update({k: name for k in buf})

    for name, t in model_tensors(s, index, torch.bfloat16):
        buf[name] = t
        size += t.numel()
        if size >= per * (len(files) + 1) and len(files) < shards - 1:
            flush()
            buf = {}
    flush()
    # fix shard names if fewer were written than announced
    n = len(files)
    if n != shards:
        for old in files:
            new = old.replace(f"-of-{shards:05d}", f"-of-{n:05d}")
            os.rename(folder / old, folder / new)
            weight_map = {k: (new if v == old else v) for k, v in weight_map.items()}
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total * 2}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(llama_config(s, "bfloat16")))


def measure(cmd: list[str], log: Path) -> dict:
    env = dict(os.environ, BENCH_LOG=str(log))
    out = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, cmd)], capture_output=True, text=True,
                         env=env, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        res["log_tail"] = log.read_text()[-2000:]
    return res


def mergekit_config(method: str, models: dict[str, Path]) -> dict:
    weights = [1.0, 0.8, 0.6]
    return {"merge_method": method, "base_model": str(models["base"]), "dtype": "bfloat16",
            "models": [{"model": str(models[f"e{i}"]), "parameters": {"weight": w, "density": 0.5}}
                       for i, w in enumerate(weights)]}


def compare_outputs(a: Path, b: Path, names: list[str]) -> dict:
    from evomerge.engine import CheckpointReader

    ra, rb = CheckpointReader(a), CheckpointReader(b)
    out = {}
    for n in names:
        x, y = ra.get(n).float(), rb.get(n).float()
        out[n] = {"max_abs_diff": (x - y).abs().max().item(), "max_abs": y.abs().max().item(),
                  "fraction_equal": (x == y).float().mean().item()}
    return out


def streaming(work: Path, shape: dict, with_mergekit: bool, keep: bool) -> dict:
    models = {}
    t = time.perf_counter()
    for i, name in enumerate(["base", "e0", "e1", "e2"]):
        models[name] = work / name
        if not (keep and (models[name] / "config.json").exists()):  # --keep: reuse earlier inputs
            shutil.rmtree(models[name], ignore_errors=True)
            write_model(models[name], shape, i)
    gen_s = time.perf_counter() - t
    params = sum(torch.Size(sh).numel() for _, sh in llama_shapes(shape))
    res: dict = {"model": {"shape": shape, "parameters": params, "dtype": "bfloat16", "shards_per_model": 3,
                           "input_bytes": 4 * params * 2}, "generate_inputs_s": gen_s}
    floor = []
    for _ in range(2):  # first read may be cold, second is from the page cache
        out = subprocess.run([sys.executable, "-c", READ_ALL, *map(str, models.values())], capture_output=True,
                             text=True, check=True)
        floor.append(float(out.stdout.split()[1]))
    res["read_inputs_once_s"] = {"first": floor[0], "page_cache": floor[1]}
    for method in ("ties", "dare_ties"):
        cfg = work / f"{method}.yaml"
        cfg.write_text(yaml.safe_dump(mergekit_config(method, models)))
        entry = {}
        ours_out, mk_out = work / f"ours_{method}", work / f"mk_{method}"
        entry["evomerge"] = measure([EVOMERGE, "merge", cfg, "--out", ours_out, "--force"], work / "ours.log")
        if with_mergekit:
            entry["mergekit"] = measure([MERGEKIT_YAML, cfg, mk_out, "--no-copy-tokenizer"], work / "mk.log")
            if entry["mergekit"]["rc"] == 0 and entry["evomerge"]["rc"] == 0:
                entry["speedup"] = entry["mergekit"]["wall_s"] / entry["evomerge"]["wall_s"]
                entry["cpu_time_ratio_mergekit_over_ours"] = entry["mergekit"]["cpu_s"] / entry["evomerge"]["cpu_s"]
                entry["peak_rss_ratio_ours_over_mergekit"] = (entry["evomerge"]["peak_rss_mb"]
                                                              / entry["mergekit"]["peak_rss_mb"])
                if method == "ties":  # mergekit computes in bf16, evomerge in float32
                    entry["output_vs_mergekit"] = compare_outputs(
                        ours_out, mk_out, ["model.layers.3.mlp.down_proj.weight", "model.embed_tokens.weight"])
        shutil.rmtree(ours_out, ignore_errors=True)
        shutil.rmtree(mk_out, ignore_errors=True)
        res[method] = entry
        print(method, json.dumps(entry), flush=True)
    if not keep:
        for p in models.values():
            shutil.rmtree(p)
    return res


def in_memory(shape: dict, repeats: int, device: str) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    from evomerge.engine import ResidentSources, materialize_into
    from evomerge.engine.resident import ResidentModel
    from evomerge.recipe import parse_recipe

    cfg = llama_config(shape, "float32")
    fake = Path(tempfile.gettempdir()) / "evomerge-bench-resident"
    models = {}
    for i, name in enumerate(["base", "e0", "e1", "e2"]):
        tensors = {n: t.to(device) for n, t in model_tensors(shape, i, torch.float32)}
        models[(fake / name).resolve()] = ResidentModel(fake / name, tensors, cfg)
    sources = ResidentSources(models, torch.device(device))
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k != "architectures"}))
    model = model.to_empty(device=device).float()
    params = dict(model.state_dict())
    base = models[(fake / "base").resolve()].tensors

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def once(fn) -> float:
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    def plain_copy():
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(base[n])

    copies: list[float] = []

    def paired(fn) -> dict:
        """Each timed run right after a timed plain copy: on a shared machine the ratio of
        neighbours is steadier than a ratio of separate medians."""
        fn()  # warm-up (kernels, magnitude histograms, workspace)
        plain_copy()
        pairs = [(once(plain_copy), once(fn)) for _ in range(repeats)]
        copies.extend(c for c, _ in pairs)
        times = [t for _, t in pairs]
        return {"median_s": statistics.median(times), "times_s": times,
                "copy_times_s": [c for c, _ in pairs],
                "ratio_to_plain_copy": statistics.median(t / c for c, t in pairs)}

    res = {"model": {"shape": shape, "parameters": sum(p.numel() for p in params.values()), "dtype": "float32",
                     "device": device, "sources": 3},
           "method": "each run paired with a plain copy just before it; ratio = median of the pairs' ratios"}
    res["one_pass_floor"] = one_pass_floor(models, [(fake / n).resolve() for n in ("base", "e0", "e1", "e2")],
                                           params, paired)
    print("one_pass_floor", res["one_pass_floor"]["ratio_to_plain_copy"], flush=True)
    src = [{"model": str(fake / f"e{i}"), "parameters": {"weight": w, "density": 0.5}}
           for i, w in enumerate([1.0, 0.8, 0.6])]
    recipes = {
        "linear": {"method": "linear", "sources": [{"model": s["model"], "parameters": {"weight": s["parameters"]["weight"]}}
                                                   for s in src]},
        "task_arithmetic": {"method": "task_arithmetic", "base": str(fake / "base"),
                            "sources": [{"model": s["model"], "parameters": {"weight": s["parameters"]["weight"]}}
                                        for s in src]},
        "ties": {"method": "ties", "base": str(fake / "base"), "sources": src},
        "dare_ties": {"method": "dare_ties", "base": str(fake / "base"), "sources": src, "seed": 1},
    }
    for name, data in recipes.items():
        r = parse_recipe(data)
        res[name] = paired(lambda r=r: materialize_into(r, sources, model))
        print(name, res[name]["ratio_to_plain_copy"], flush=True)
    res["plain_copy_s"] = statistics.median(copies)
    res["workspace_mb"] = sources.workspace.nbytes / 2**20
    return res


def one_pass_floor(models: dict, paths: list, params: dict, paired) -> dict:
    """base + sum of 3 task vectors into the model, one pass (the fused kernel, no trimming,
    every tensor in one batch, task vectors formed in registers from the resident sources)."""
    from evomerge.ops.fused import Batch, Mix, Rule, combine

    base, *srcs = (models[p].tensors for p in paths)
    mix = Mix(Rule("dense"), (1.0, 0.8, 0.6), (1.0, 0.8, 0.6))

    def run():
        batch = Batch()
        with torch.no_grad():
            for n, p in params.items():
                combine(base[n], [s[n] for s in srcs], mix, p, batch)
            batch.run()

    return paired(run)


def mergekit_version() -> str | None:
    """The oracle venv's mergekit (not importable here)."""
    if not MERGEKIT_PY.exists():
        return None
    return subprocess.run([str(MERGEKIT_PY), "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
                          capture_output=True, text=True).stdout.strip() or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small models (smoke test of this script)")
    ap.add_argument("--no-mergekit", action="store_true")
    ap.add_argument("--skip-streaming", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--workdir", default=None, help="where the synthetic models go (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the synthetic models in --workdir")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "merge_throughput.json"))
    args = ap.parse_args()
    result = {"benchmark": "merge_throughput", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "machine": machine("torch", "numba")}
    result["machine"]["versions"]["mergekit"] = mergekit_version()
    if args.keep and not args.workdir:
        ap.error("--keep needs --workdir")
    work = Path(args.workdir) if args.keep else Path(tempfile.mkdtemp(prefix="evomerge-bench-", dir=args.workdir))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_streaming:
            with_mk = not args.no_mergekit and MERGEKIT_YAML.exists()
            result["streaming"] = streaming(work, QUICK if args.quick else BIG, with_mk, args.keep)
        elif Path(args.out).exists():  # keep the earlier streaming figures, marked with their run
            old = json.loads(Path(args.out).read_text())
            if "streaming" in old:
                result["streaming"] = {**old["streaming"], "from_run": old["streaming"].get(
                    "from_run", {"date": old.get("date"), "machine": old.get("machine")})}
        result["in_memory"] = in_memory(MEM_QUICK if args.quick else MEM, args.repeats, args.device)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
