"""The new-task probe of add_task: two linear probes (closed-form ridge regressions, far cheaper than a logistic
regression at a near-equal ranking) of the new label on the same sampled rows, one on the raw input (one-hot ids +
dense) and one on the frozen backbone's representations. When the frozen one is clearly
weaker, a head on the frozen backbone cannot reach what the raw input offers, and add_task says so."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from mtrec.data.batches import EncodedFrame
from mtrec.model import MultiTaskModel
from mtrec.models.inputs import network_inputs
from mtrec.tasks.cache import representations
from mtrec.tasks.freezing import frozen
from mtrec.train.linear import one_hot, ridge_scores
from mtrec.train.metrics import auc

PROBE_ROWS = 2048  # rows each probe is fitted on (and at most as many scored)
MARGIN = 0.01  # "clearly less signal": the frozen probe's AUC below the raw one's by more than this
INPUT_KEYS = frozenset({"emb", "gate_in", "prompts", "copies"})  # inputs and constants, not representations
WIDER_METHODS = ("task_embedding", "finetune", "pecl", "cnf", "child_tuning", "joint")  # train more than a head


class WeakBackboneWarning(UserWarning):
    """The frozen representations carry clearly less of a new task's signal than the raw input."""


@dataclass(frozen=True)
class ProbeResult:
    """AUCs of the raw-input and frozen-representation probes on the same rows, and what they cost."""

    raw_auc: float
    frozen_auc: float
    rows: int
    seconds: float

    @property
    def backbone_weaker(self) -> bool:
        """Whether the frozen representations are clearly (more than MARGIN AUC) below the raw input."""
        return self.frozen_auc < self.raw_auc - MARGIN


def frozen_features(model: MultiTaskModel, encoded: EncodedFrame) -> np.ndarray:
    """[rows, width]: every per-row representation of the frozen backbone, flattened."""
    network = model.require_network()
    with frozen(network), torch.no_grad():
        reps = representations(network, network_inputs(encoded.take(np.arange(len(encoded)))))
    parts = [v.reshape(len(encoded), -1).double().numpy() for k, v in reps.items()
             if k not in INPUT_KEYS and v.dim() >= 2 and v.shape[0] == len(encoded)]
    return np.concatenate(parts, axis=1)


def probe_new_task(model: MultiTaskModel, encoded: EncodedFrame, encoded_valid: EncodedFrame | None = None,
                   rows: int = PROBE_ROWS, seed: int = 0) -> ProbeResult:
    """Fit both probes on up to `rows` sampled training rows and score them on up to `rows` validation rows (or
    on a held-out quarter of the sample without validation data); labels are the frames' last task column."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    if encoded_valid is not None:
        fit = encoded.select(np.sort(rng.permutation(len(encoded))[:rows]))
        score = encoded_valid.select(np.sort(rng.permutation(len(encoded_valid))[:rows]))
    else:
        order = rng.permutation(len(encoded))[: rows + rows // 3]
        cut = len(order) * 3 // 4
        fit, score = encoded.select(np.sort(order[:cut])), encoded.select(np.sort(order[cut:]))
    y_fit, y_score = fit.labels_array()[:, -1], score.labels_array()[:, -1]
    raw = auc(y_score, ridge_scores(one_hot(fit, model.vocabs), y_fit, one_hot(score, model.vocabs)))
    x_fit, x_score = frozen_features(model, fit), frozen_features(model, score)
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    rep = auc(y_score, ridge_scores((x_fit - mean) / std, y_fit, (x_score - mean) / std))
    return ProbeResult(raw_auc=raw, frozen_auc=rep, rows=len(fit), seconds=time.perf_counter() - start)


def warn_if_weaker(task: str, method: str, probe: ProbeResult) -> None:
    """A WeakBackboneWarning naming the methods that train more of the model, when the probe says so."""
    if probe.backbone_weaker and method in ("prompt", "tower"):
        warnings.warn(
            f"add_task({task!r}, method={method!r}): a linear probe on the frozen representations reaches AUC "
            f"{probe.frozen_auc:.4f} against {probe.raw_auc:.4f} on the raw input ({probe.rows} rows): the frozen "
            f"backbone carries clearly less of this task's signal. Methods that train more of the model: "
            + ", ".join(f"method={m!r}" for m in WIDER_METHODS), WeakBackboneWarning, stacklevel=3)
