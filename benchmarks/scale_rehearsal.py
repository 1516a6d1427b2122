"""Real-scale rehearsal: a search over base + 3 bf16 experts of a real model shape, end to end.

For each shape (246M: hidden 1024 x 16 layers; 1.1B: TinyLlama's; 7B: Llama-2's), random bf16
weights are written locally (experts = base + small perturbations; nothing is downloaded), then:

1. `inplace`  (a child process): the resident sources' read floor (every byte of base + 3
   sources read once), then `materialize_into` a bf16 model: TIES (first candidate, then
   steady), DARE-TIES and task arithmetic, each timed; the process's peak memory.
2. `hf`       `evomerge run` for 8 evaluations each of TIES and DARE-TIES (random search over
   weights and densities) and task arithmetic, HF backend, scored on the perplexity of a few
   sentences; peak memory of the whole process tree, per-candidate timings from the store.
3. `vllm`     the same TIES search on the vLLM backend (engine in the sources' dtype).
4. `workers2` the TIES search on 2 Ray workers: each actor's memory, and all of them together.
5. `export`   the best TIES trial exported (bfloat16) and loaded with transformers.

Memory is the proportional set size (PSS) summed over the process tree, sampled every 0.2 s:
pages shared by several processes (the sources' file pages mapped by every worker) count once
in the sum. "Above idle" subtracts the same command's peak on the `tiny` shape (the process's
own baseline: Python, torch, transformers, the engine). Bytes per parameter divide by one
model's parameters. The JSON projects the measured bytes per parameter to 7B.

    nice .venv/bin/python benchmarks/scale_rehearsal.py --shape 246m --shape 1.1b
    .venv/bin/python benchmarks/scale_rehearsal.py --shape 7b --device cuda --step inplace   # on a GPU

Writes benchmarks/results/scale.json (or --out); models are cached under benchmarks/results/tmp/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "results" / "tmp" / "scale"
SHAPES = {  # Llama shapes: hidden, layers, heads, kv heads, intermediate, vocab
    "tiny": (128, 2, 2, 1, 256, 32000),
    "50m": (512, 8, 8, 4, 1408, 32000),
    "246m": (1024, 16, 16, 4, 2816, 32000),
    "1.1b": (2048, 22, 32, 4, 5632, 32000),
    "7b": (4096, 32, 32, 32, 11008, 32000),
}
SENTENCES = ["the cat sat on the mat .", "a dog runs in the park ."]  # scored: a cheap task (bf16 CPU matmuls are slow)
VOCAB_WORDS = SENTENCES + ["we read a book at home .", "the sun is warm today .", "she plays the old piano ."]
PY = sys.executable


# ---- models -------------------------------------------------------------------------------

def config(shape: str) -> dict:
    h, layers, heads, kv, inter, vocab = SHAPES[shape]
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "intermediate_size": inter, "vocab_size": vocab, "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False, "rope_theta": 10000.0,
            "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for s in VOCAB_WORDS for w in s.split()})
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")
    fast.save_pretrained(str(folder))


def build_family(shape: str, device: str, cache: Path = CACHE) -> dict[str, Path]:
    """base + 3 experts (bf16 safetensors, ~2 GB shards), cached by shape."""
    import torch
    from safetensors.torch import save_file

    names = ["base", "e0", "e1", "e2"]
    root = cache / shape
    paths = {n: root / n for n in names}
    if all((p / "done").exists() for p in paths.values()):
        return paths
    cfg = config(shape)
    h, layers, heads, kv, inter, vocab = SHAPES[shape]
    hd = h // heads
    layout = [("model.embed_tokens.weight", (vocab, h))]
    for i in range(layers):
        p = f"model.layers.{i}."
        layout += [(p + "input_layernorm.weight", (h,)), (p + "post_attention_layernorm.weight", (h,)),
                   (p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv * hd, h)),
                   (p + "self_attn.v_proj.weight", (kv * hd, h)), (p + "self_attn.o_proj.weight", (h, h)),
                   (p + "mlp.gate_proj.weight", (inter, h)), (p + "mlp.up_proj.weight", (inter, h)),
                   (p + "mlp.down_proj.weight", (h, inter))]
    layout += [("model.norm.weight", (h,)), ("lm_head.weight", (vocab, h))]
    for n, folder in paths.items():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))
        write_tokenizer(folder)
    gen = torch.Generator(device=device)
    shard: dict[str, dict] = {n: {} for n in names}
    shard_bytes, index = 0, 0
    weight_map: dict[str, str] = {}

    def flush() -> None:
        nonlocal shard_bytes, index
        fname = f"model-{index:05d}.safetensors"
        for n in names:
            save_file(shard[n], str(paths[n] / fname), metadata={"format": "pt"})
            shard[n].clear()
        for t in list(weight_map):
            weight_map[t] = weight_map[t] or fname
        shard_bytes, index = 0, index + 1

    for i, (name, shp) in enumerate(layout):
        gen.manual_seed(1000 + i)
        if name.endswith("norm.weight"):
            base = torch.ones(shp, device=device)
        else:
            base = torch.randn(shp, generator=gen, device=device) * 0.02
        shard["base"][name] = base.bfloat16().cpu()
        for k, e in enumerate(names[1:]):
            delta = torch.randn(shp, generator=gen, device=device) * 0.002 * (1 + k)
            shard[e][name] = (base + delta).bfloat16().cpu()
        weight_map[name] = ""
        shard_bytes += 2 * base.numel()
        if shard_bytes >= 2 << 30:
            flush()
    if shard_bytes:
        flush()
    for n in names:
        (paths[n] / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        (paths[n] / "done").write_text("ok")
    return paths


def parameters(shape: str) -> int:
    h, layers, heads, kv, inter, vocab = SHAPES[shape]
    hd = h // heads
    return 2 * vocab * h + h + layers * (2 * h + 2 * h * h + 2 * kv * hd * h + 3 * inter * h)


# ---- memory sampling ------------------------------------------------------------------------

class TreeMemory:
    """Peak PSS / RSS summed over a process and its descendants, and each process's peak."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.every = every
        self.peak_pss = self.peak_rss = 0
        self.per_process: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            pss = rss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                    cmd = " ".join(p.cmdline())[:120]
                except psutil.Error:
                    continue
                pss, rss = pss + info.pss, rss + info.rss
                rec = self.per_process.setdefault(p.pid, {"cmd": cmd, "pss": 0, "rss": 0, "uss": 0})
                rec["pss"], rec["rss"], rec["uss"] = (max(rec["pss"], info.pss), max(rec["rss"], info.rss),
                                                      max(rec["uss"], info.uss))
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            time.sleep(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_pss": self.peak_pss, "peak_rss": self.peak_rss}


def swap_used() -> int:
    import psutil

    return psutil.swap_memory().used


def run_measured(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run a command, sampling its tree's memory; its exit code, wall time and output tail."""
    t0 = time.perf_counter()
    swap0 = swap_used()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    mem = TreeMemory(proc.pid)
    out, _ = proc.communicate()
    peaks = mem.stop()
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2), **peaks,
            "swap_grew": swap_used() - swap0, "tail": out[-1500:], "processes": mem.per_process}


# ---- runs ----------------------------------------------------------------------------------

def write_task(folder: Path) -> Path:
    data = folder / "ppl"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    task = folder / "rehearsal_ppl.yaml"
    task.write_text("name: rehearsal_ppl\ndescription: perplexity of two sentences (scale rehearsal)\n"
                    "kind: perplexity\ndata: ppl\n")
    return task


def experiment(name: str, family: dict[str, Path], task: Path, method: str, backend: str, device: str,
               workers: int = 1) -> dict:
    space = {"kind": "parameter", "method": method, "groups": "model", "weight": {"low": 0.0, "high": 1.5, "init": 1.0},
             "parameters": {"lambda": 1.0}, "seed": 0}
    if method != "task_arithmetic":
        space["density"] = {"low": 0.1, "high": 1.0, "init": 0.5}
    options = {"batch_size": 8, "device": device}
    if backend == "vllm":
        options = {"batch_size": 8, "max_model_len": 64, "kv_cache_gib": 1}
    return {"name": name, "models": {"base": str(family["base"]), "sources": [str(family[e]) for e in ("e0", "e1", "e2")]},
            "search_space": space, "fitness": {"tasks": [str(task)], "split": "validation", "options": options},
            "searcher": {"name": "random", "options": {}}, "budget": 8, "seed": 0, "backend": backend,
            "workers": workers, "resources": {"cpus_per_worker": 1}}


def trial_timings(run_dir: Path) -> list[dict]:
    import optuna

    info = json.loads((run_dir / "run.json").read_text())
    study = optuna.load_study(study_name=info["name"], storage=info["store"])
    out = []
    for t in sorted(study.trials, key=lambda t: t.number):
        res = t.user_attrs.get("result") or {}
        out.append({"trial": t.number, "state": t.state.name, "timings": res.get("timings", {}),
                    "worker": res.get("worker"), "error": res.get("error")})
    return out


def evomerge_run(shape: str, family: dict, work: Path, method: str, backend: str, device: str,
                 workers: int = 1) -> dict:
    import yaml

    name = f"{shape}-{method}-{backend}-w{workers}".replace(".", "_")
    exp = work / f"{name}.yaml"
    exp.write_text(yaml.safe_dump(experiment(name, family, write_task(work), method, backend, device, workers)))
    runs = work / "runs"
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers)), "RAY_AUTH_MODE": "disabled",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    res = run_measured([PY, "-m", "evomerge.cli", "run", str(exp), "--runs-dir", str(runs), "--no-progress"], env)
    res["trials"] = trial_timings(runs / name) if (runs / name / "run.json").exists() else []
    res["run_dir"] = str(runs / name)
    mat = [t["timings"].get("materialize") for t in res["trials"] if t["timings"].get("materialize") is not None]
    res["materialize_first_s"] = round(mat[0], 3) if mat else None
    res["materialize_steady_s"] = round(statistics.median(mat[1:]), 3) if len(mat) > 1 else None
    for key in ("score", "swap"):
        vals = [t["timings"][key] for t in res["trials"] if key in t["timings"]]
        res[f"{key}_median_s"] = round(statistics.median(vals), 3) if vals else None
    return res


def inplace_child(shape: str, device: str, placement: str = "device") -> dict:
    """Runs in a child process: read floor and in-place materialization timings."""
    import torch

    from evomerge.engine import materialize_into
    from evomerge.evaluate.loading import InPlaceLoader
    from evomerge.recipe import parse_recipe

    family = build_family(shape, device)
    refs = [str(family[n]) for n in ("base", "e0", "e1", "e2")]
    t0 = time.perf_counter()
    loader = InPlaceLoader(refs, {"device": device, "placement": placement, "base": refs[0]})
    load_s = time.perf_counter() - t0
    sources, model = loader.sources, loader.model
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def read_floor() -> float:
        """Every resident byte read once, nothing written: a bitwise-or reduction over 64-bit
        words (numpy, memory-bound; torch's int16 max ran 20x slower here). On CUDA, a sum."""
        import numpy as np

        t = time.perf_counter()
        for m in sources.models.values():
            for x in m.tensors.values():
                if x.is_cuda:
                    x.view(torch.int16).sum()
                    continue
                a = x.reshape(-1).view(torch.uint8).numpy()
                words = a[: a.nbytes // 8 * 8].view(np.uint64)
                np.bitwise_or.reduce(words) if words.size else None
        sync()
        return time.perf_counter() - t

    def plain_copy() -> float:
        """The candidate model's weights overwritten from the base once (what any merge must write)."""
        base = sources.model(refs[0])
        t = time.perf_counter()
        with torch.no_grad():
            for name, p in model.state_dict(keep_vars=True).items():
                if name in base.tensors:
                    p.copy_(base.tensors[name])
        sync()
        return time.perf_counter() - t

    def recipe(method: str, density: float) -> object:
        params = {"weight": 0.8} if method == "task_arithmetic" else {"weight": 0.8, "density": density}
        return parse_recipe({"kind": "parameter", "method": method, "base": refs[0],
                             "sources": [{"model": r, "parameters": params} for r in refs[1:]],
                             "parameters": {"lambda": 1.0}, "seed": 0}, "recipe")

    def timed(method: str, density: float) -> float:
        t = time.perf_counter()
        materialize_into(recipe(method, density), sources, model)
        sync()
        return time.perf_counter() - t

    read_floor()  # pages in
    floors = [read_floor() for _ in range(3)]
    copies = [plain_copy() for _ in range(3)]
    out = {"plain_copy_s": round(statistics.median(copies), 3),"load_s": round(load_s, 2), "index_magnitudes_s": round(loader.index_seconds, 2), "read_floor_s": round(statistics.median(floors), 3),
           "threads": torch.get_num_threads(), "placement": placement}
    first = timed("ties", 0.5)
    later = [timed("ties", d) for d in (0.3, 0.45, 0.6, 0.7)]
    out["ties_first_s"], out["ties_steady_s"] = round(first, 3), round(statistics.median(later), 3)
    out["dare_ties_s"] = round(statistics.median([timed("dare_ties", d) for d in (0.3, 0.5, 0.7)]), 3)
    out["task_arithmetic_s"] = round(statistics.median([timed("task_arithmetic", 1) for _ in range(3)]), 3)
    out["ties_over_read_floor"] = round(out["ties_steady_s"] / out["read_floor_s"], 2)
    out["ties_over_plain_copy"] = round(out["ties_steady_s"] / out["plain_copy_s"], 2)
    out["ties_first_over_steady"] = round(first / out["ties_steady_s"], 2)
    out["histogram_cache_bytes"] = sources.histograms.nbytes
    out["workspace_bytes"] = sources.workspace.nbytes
    out["model_dtype"] = str(next(model.parameters()).dtype)
    if device.startswith("cuda"):
        out["cuda_peak_allocated"] = torch.cuda.max_memory_allocated()
    return out


def export_and_load(run_dir: str, work: Path) -> dict:
    out = work / "export"
    t0 = time.perf_counter()
    res = run_measured([PY, "-m", "evomerge.cli", "export", run_dir, "--trial", "best", "--out", str(out), "--force"],
                       {"OMP_NUM_THREADS": str(os.cpu_count() or 1)})
    res.pop("processes", None)
    check = subprocess.run([PY, "-c", (
        "import sys, torch; from transformers import AutoModelForCausalLM as M, AutoTokenizer as T\n"
        f"m = M.from_pretrained({str(out)!r}); t = T.from_pretrained({str(out)!r})\n"
        "ids = t('the cat sat on the mat .', return_tensors='pt').input_ids\n"
        "print(m.dtype, m.num_parameters(), bool(torch.isfinite(m(ids).logits).all()))")],
        capture_output=True, text=True)
    return {"export": {k: res[k] for k in ("rc", "wall_s", "peak_pss", "tail")},
            "loaded_with_transformers": check.stdout.strip() or check.stderr[-500:], "seconds": time.perf_counter() - t0}


def child_measured(shape: str, device: str, placement: str) -> dict:
    res = run_measured([PY, __file__, "--child-inplace", shape, "--device", device, "--placement", placement])
    out = {"peak_pss": res["peak_pss"], "peak_rss": res["peak_rss"], "swap_grew": res["swap_grew"], "rc": res["rc"]}
    try:
        out.update(json.loads(res["tail"].strip().splitlines()[-1]))
    except (ValueError, IndexError):
        out["tail"] = res["tail"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", action="append", choices=list(SHAPES), help="repeatable (default: 246m, 1.1b)")
    ap.add_argument("--step", action="append", choices=["inplace", "hf", "vllm", "workers2", "export"],
                    help="repeatable (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--placement", default="device", choices=["device", "host"],
                    help="where the in-place step keeps the sources (host: streamed to the device per tensor)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    ap.add_argument("--rebaseline", action="store_true", help="rerun the tiny shape's baseline even if stored")
    ap.add_argument("--child-inplace", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_inplace:
        print(json.dumps(inplace_child(args.child_inplace, args.device, args.placement)))
        return
    shapes = args.shape or ["246m", "1.1b"]
    steps = args.step or ["inplace", "hf", "vllm", "workers2", "export"]
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.update({"benchmark": "scale_rehearsal", "date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "machine": machine("torch", "transformers", "vllm", "ray", "numba"), "note": __doc__.split("\n\n")[2].strip()})
    shapes_out = result.setdefault("shapes", {})
    baseline: dict[str, dict] = {}
    work_root = Path(tempfile.mkdtemp(prefix="evomerge-scale-"))
    for shape in ["tiny"] + [s for s in shapes if s != "tiny"]:
        if shape == "tiny" and not args.rebaseline and "tiny" not in shapes and shapes_out.get("tiny"):
            baseline = shapes_out["tiny"]  # the idle baseline of an earlier run on this machine
            if all(k in baseline for k in _step_keys(steps, args.placement)):
                continue
        t0 = time.perf_counter()
        family = build_family(shape, args.device)
        params = parameters(shape)
        rec = shapes_out.setdefault(shape, {})
        rec.update({"parameters": params, "build_s": round(time.perf_counter() - t0, 1),
                    "one_model_bf16_bytes": 2 * params})
        work = work_root / shape
        work.mkdir()
        if "inplace" in steps:
            rec["inplace" if args.placement == "device" else "inplace_host"] = child_measured(shape, args.device,
                                                                                               args.placement)
        for method in ("ties", "dare_ties", "task_arithmetic"):
            if "hf" in steps:
                rec[f"hf_{method}"] = evomerge_run(shape, family, work, method, "hf", args.device)
        if "vllm" in steps:
            rec["vllm_ties"] = evomerge_run(shape, family, work, "ties", "vllm", args.device)
        if "workers2" in steps:
            rec["workers2_ties"] = evomerge_run(shape, family, work, "ties", "hf", args.device, workers=2)
        if "export" in steps and rec.get("hf_ties", {}).get("run_dir"):
            rec["export"] = export_and_load(rec["hf_ties"]["run_dir"], work)
        if shape == "tiny":
            baseline = rec
            continue
        summarize(rec, baseline, params)
        out_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    out_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({s: r.get("summary") for s, r in shapes_out.items()}, indent=2))


def _step_keys(steps: list[str], placement: str) -> list[str]:
    keys = {"inplace": ["inplace" if placement == "device" else "inplace_host"],
            "hf": ["hf_ties", "hf_dare_ties", "hf_task_arithmetic"], "vllm": ["vllm_ties"],
            "workers2": ["workers2_ties"], "export": []}
    return [k for s in steps for k in keys[s]]


def summarize(rec: dict, baseline: dict, params: int) -> None:
    """Bytes per parameter above the tiny shape's peak for the same command, and the checks."""
    summary = {}
    for key, value in rec.items():
        if not isinstance(value, dict) or "peak_pss" not in value:
            continue
        base = baseline.get(key, {}).get("peak_pss", 0)
        above = value["peak_pss"] - base
        summary[key] = {"peak_pss_gb": round(value["peak_pss"] / 1e9, 2), "above_idle_gb": round(above / 1e9, 2),
                        "bytes_per_parameter": round(above / params, 2), "rc": value.get("rc"),
                        "swap_grew": value.get("swap_grew", 0)}
        for t in ("materialize_first_s", "materialize_steady_s", "score_median_s", "swap_median_s"):
            if value.get(t) is not None:
                summary[key][t] = value[t]
    w2 = rec.get("workers2_ties")
    if w2:
        actors = [p for p in w2["processes"].values()  # Ray's actor processes (their cmdline when first seen)
                  if "ray::EvalWorker" in p["cmd"] or "ray/_private/workers/default_worker.py" in p["cmd"]]
        if len(actors) >= 2:
            one = max(a["rss"] for a in actors)
            total = sum(a["pss"] for a in actors)
            summary["workers2_check"] = {
                "actors_pss_total_gb": round(total / 1e9, 2), "one_actor_rss_gb": round(one / 1e9, 2),
                "actor_uss_gb": [round(a["uss"] / 1e9, 2) for a in actors],
                "one_model_gb": round(2 * params / 1e9, 2),
                "extra_over_one_worker_in_models": round((total - one) / (2 * params), 2)}
    ip = rec.get("inplace", {})
    if "ties_steady_s" in ip:
        summary["inplace"] = {k: ip.get(k) for k in ("read_floor_s", "plain_copy_s", "ties_first_s", "ties_steady_s",
                                                     "dare_ties_s", "task_arithmetic_s", "ties_over_read_floor",
                                                     "ties_over_plain_copy", "ties_first_over_steady",
                                                     "index_magnitudes_s", "load_s")}
    bpp = max((v["bytes_per_parameter"] for k, v in summary.items() if k.startswith("hf_")), default=None)
    if bpp is not None:
        summary["projected_7b_worker_gb"] = round(bpp * parameters("7b") / 1e9, 1)
    rec["summary"] = summary


if __name__ == "__main__":
    main()
