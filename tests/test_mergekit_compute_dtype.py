"""A mergekit config's `dtype` is the compute dtype: in bfloat16 and float16 our tensors equal
mergekit 0.1.5's bit for bit.

mergekit casts every input to `dtype` and rounds each step to it; `out_dtype` sets only the
output. The sources here are stored in float32, so the cast itself is exercised too.
"""

from __future__ import annotations

import pytest
import torch

from evomerge.engine import merge_to_disk
from evomerge.mergekit_config import from_mergekit, to_mergekit
from helpers_engine import load_tensors
from helpers_mergekit import have_mergekit, oracle_run, ours_and_theirs, run_mergekit
from test_mergekit_oracle import configs as float32_configs


def oracle_test(f):
    skip = pytest.mark.skipif(not have_mergekit(), reason="mergekit oracle venv .venv-mergekit absent")
    return pytest.mark.mergekit(skip(f))


DTYPES = ("bfloat16", "float16")
EXACT = ["linear", "task_arithmetic", "ties", "ties_sum", "dare_ties_full", "dare_linear_full",
         "breadcrumbs", "breadcrumbs_ties", "slerp", "slerp_far", "ties_slices"]


def configs(f):
    out = {}
    for dt in DTYPES:
        for name, cfg in float32_configs(f).items():
            if name in EXACT:
                out[f"{name}-{dt}"] = {**cfg, "dtype": dt}
    for dt in DTYPES:  # randomized: compared in distribution
        out[f"dare_linear_half-{dt}"] = {**float32_configs(f)["dare_linear_half"], "dtype": dt}
        out[f"della_half-{dt}"] = {**out[f"dare_linear_half-{dt}"], "merge_method": "della_linear"}
    # out_dtype differs from dtype: bfloat16 math, float32 output
    out["ties-bf16-out32"] = {**float32_configs(f)["ties"], "dtype": "bfloat16", "out_dtype": "float32"}
    return out


@pytest.fixture(scope="module")
def oracle(tiny_family, tmp_path_factory):
    return oracle_run(configs(tiny_family), tmp_path_factory.mktemp("mergekit16"))


pair = ours_and_theirs


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("method", EXACT)
@oracle_test
def test_bit_equal_to_mergekit_in_16_bit_compute(oracle, method, dt):
    ours, theirs = pair(oracle, f"{method}-{dt}")
    assert set(ours) == set(theirs)
    for k in ours:
        assert ours[k].dtype == theirs[k].dtype == getattr(torch, dt), k
        assert torch.equal(ours[k], theirs[k]), (k, (ours[k] != theirs[k]).sum().item())


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("method", ["dare_linear_half", "della_half"])
@oracle_test
def test_random_drops_match_mergekit_in_distribution_in_16_bit(oracle, tiny_family, method, dt):
    """Independent draws; about half the entries kept, survivors rescaled by one factor that
    restores the L1 norm (in 16-bit arithmetic: equal to a few ulps)."""
    ours, theirs = pair(oracle, f"{method}-{dt}")
    name = "model.layers.1.mlp.down_proj.weight"
    base = load_tensors(tiny_family["base"])[name].to(getattr(torch, dt))
    tau = load_tensors(tiny_family["e0"])[name].to(getattr(torch, dt)) - base
    for merged in (ours[name], theirs[name]):
        assert merged.dtype == getattr(torch, dt)
        delta = merged.float() - base.float()
        kept = (merged != base) & (tau != 0)
        assert abs(kept.float().mean().item() - 0.5) < 0.03
        scale = delta[kept] / tau[kept].float()
        l1 = (tau.float().abs().sum() / tau[kept].float().abs().sum()).item()
        assert abs(scale.median().item() - l1) < 0.02 * l1
    assert not torch.equal(ours[name], theirs[name])


@oracle_test
def test_out_dtype_sets_only_the_output(oracle):
    ours, theirs = pair(oracle, "ties-bf16-out32")
    for k in ours:
        assert ours[k].dtype == torch.float32 and torch.equal(ours[k], theirs[k]), k
        assert torch.equal(ours[k], ours[k].to(torch.bfloat16).float()), k  # bfloat16 values


@oracle_test
def test_compute_dtype_is_read_and_written_back(oracle):
    cfg = oracle[0]["ties-bf16-out32"]
    r = from_mergekit(cfg)
    assert (r.compute_dtype, r.dtype) == ("bfloat16", "float32")
    back = to_mergekit(r)
    assert (back["dtype"], back["out_dtype"]) == ("bfloat16", "float32")
    assert from_mergekit(back) == r


@pytest.mark.parametrize("method", ["linear", "ties", "slerp"])
def test_in_memory_16_bit_compute_equals_merge_to_disk(tiny_family, tmp_path, method):
    """The resident path (no cached float32 stacks for 16-bit math) gives the same tensors."""
    from transformers import AutoModelForCausalLM

    from evomerge.engine import ResidentSources, materialize_into, materialize_tensors

    r = from_mergekit({**float32_configs(tiny_family)[method], "dtype": "bfloat16", "out_dtype": "float32"})
    disk = load_tensors(merge_to_disk(r, tmp_path / method))
    sources = ResidentSources.load([str(p) for p in tiny_family.values()])
    model = AutoModelForCausalLM.from_pretrained(tiny_family["base"])
    materialize_into(r, sources, model)
    state = model.state_dict()
    yielded = dict(materialize_tensors(r, sources, clone=True))
    for name, t in disk.items():
        assert torch.equal(state[name], t) and torch.equal(yielded[name], t), name


def _wide_pair(root):
    """Two 1-layer Llamas whose MLP matrices exceed 2**20 entries (mergekit reduces SLERP's
    norms in chunks of that size)."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from helpers_engine import VOCAB, tiny_tokenizer

    cfg = LlamaConfig(hidden_size=512, intermediate_size=2304, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=4, head_dim=128, vocab_size=VOCAB, max_position_embeddings=64,
                      tie_word_embeddings=False, bos_token_id=2, eos_token_id=3, pad_token_id=1)
    out = []
    for seed in (0, 1):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
        if seed:
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(7)) * 0.02)
        folder = root / f"wide{seed}"
        model.save_pretrained(folder)
        GenerationConfig(bos_token_id=2, eos_token_id=3, pad_token_id=1).save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        out.append(str(folder))
    return out


@oracle_test
def test_slerp_on_tensors_past_a_million_entries_is_bit_equal(tmp_path):
    a, b = _wide_pair(tmp_path)
    cfgs = {f"wide-{dt}": {"merge_method": "slerp", "base_model": a, "models": [{"model": a}, {"model": b}],
                           "parameters": {"t": 0.4}, "dtype": dt} for dt in DTYPES}
    outs = run_mergekit(cfgs, tmp_path)
    for name, cfg in cfgs.items():
        assert outs[name].is_dir(), outs[name].read_text()
        ours, theirs = load_tensors(merge_to_disk(from_mergekit(cfg), tmp_path / f"ours_{name}")), load_tensors(outs[name])
        assert max(t.numel() for t in ours.values()) > 1 << 20
        for k in ours:
            assert torch.equal(ours[k], theirs[k]), (name, k, (ours[k] != theirs[k]).sum().item())
