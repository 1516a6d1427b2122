"""The from-scratch world (evomerge.digits): fixed splits, one net layout for numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest

from evomerge.digits.net import DigitsTask
from evomerge.digits.torch_net import DigitsMLP
from evomerge.errors import ConfigError
from evomerge.evaluate.requests import GenerationRequest
from evomerge.evaluate.tasks import load_task
from evomerge.evaluate.torch_backend import TorchBackend


def _trained_weights(task: DigitsTask) -> np.ndarray:
    """A quick least-squares readout on random tanh features: well above chance, deterministic."""
    rng = np.random.default_rng(0)
    w = task.init_weights(rng)
    w1, b1, _, _ = task.unflatten(w)
    h = np.tanh(task.x_train @ w1 + b1)
    target = np.eye(10)[task.y_train]
    w2 = np.linalg.lstsq(np.c_[h, np.ones(len(h))], target, rcond=None)[0]
    return np.concatenate([w1.reshape(-1), b1, w2[:-1].reshape(-1), w2[-1]])


def test_digits_splits_are_fixed_and_disjoint():
    task = load_task("digits")
    sizes = {s: len(task.items(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 900, "validation": 300, "test": 597}
    assert task.items("test")[0] == load_task("digits").items("test")[0]


def test_torch_backend_agrees_with_the_numpy_net():
    ref = DigitsTask()
    w = _trained_weights(ref)
    backend = TorchBackend(DigitsMLP.from_flat(w))
    res = load_task("digits").evaluate(backend, "test")
    assert res.score == pytest.approx(ref.accuracy(w, "test"))
    assert res.score > 0.5 and len(res.item_scores) == 597


def test_torch_backend_refuses_text_requests():
    with pytest.raises(ConfigError, match="no tokenizer"):
        TorchBackend(DigitsMLP()).generate_until([GenerationRequest("x")])


def test_the_torch_net_refuses_a_vector_of_the_wrong_length():
    with pytest.raises(ValueError, match="760"):
        DigitsMLP.from_flat(np.zeros(759))
