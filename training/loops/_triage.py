"""The triage training loop: AdamW, BCE-with-logits, best epoch by validation AUROC."""

from __future__ import annotations

import copy
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

TriageArrays = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.integer]]
"""``(values [N, F], present [N, F], labels [N])`` as :meth:`VitalsTable.arrays` gives them."""


@dataclass(frozen=True)
class TriageEpoch:
    """What one epoch did: mean training loss, validation loss and AUROC, wall time."""

    epoch: int
    train_loss: float
    val_loss: float
    val_auroc: float
    seconds: float


@dataclass
class TriageFit:
    """The outcome of :func:`fit_triage`; the model passed in holds the weights of ``best_epoch``."""

    best_epoch: int
    best_val_auroc: float
    history: list[TriageEpoch] = field(default_factory=list)
    seconds: float = 0.0


def predict_triage(
    model: torch.nn.Module,
    values: NDArray[np.float32],
    present: NDArray[np.float32],
    *,
    batch_size: int = 4096,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Run ``model`` in eval mode in batches; return ``(logit [N], contributions [N, F])`` as numpy."""
    import torch

    model.eval()
    logits, contributions = [], []
    with torch.inference_mode():
        for start in range(0, len(values), batch_size):
            v = torch.from_numpy(np.ascontiguousarray(values[start : start + batch_size]))
            p = torch.from_numpy(np.ascontiguousarray(present[start : start + batch_size]))
            logit, contrib = model(v, p)
            logits.append(logit.numpy())
            contributions.append(contrib.numpy())
    if not logits:
        return np.zeros(0, np.float32), np.zeros((0, values.shape[1]), np.float32)
    return np.concatenate(logits), np.concatenate(contributions)


def fit_triage(
    model: torch.nn.Module,
    train: TriageArrays,
    val: TriageArrays,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    mask_rate: float = 0.0,
    progress: bool | None = None,
) -> TriageFit:
    """Train ``model`` with AdamW on the binary cross-entropy of its logit.

    After each epoch the validation loss and AUROC are logged; the weights of the epoch with the best
    validation AUROC are restored at the end.

    Args:
        model: An :class:`~training.models.AdditiveTriage` (anything returning ``(logit, ...)``).
        train: Training ``(values, present, labels)``.
        val: Validation ``(values, present, labels)``.
        epochs: Passes over the training data.
        batch_size: Rows per optimisation step.
        lr: AdamW learning rate (cosine-annealed to 5 % of it).
        weight_decay: AdamW decoupled weight decay.
        seed: Seed of the shuffling order and of the masking.
        mask_rate: Probability with which each measured sign of a training row is hidden in each step
            (missing completely at random), so the model learns a risk that stays calibrated when a
            sign is not measured; 0 trains on the rows as they are.
        progress: Show a tqdm bar; ``None`` shows it only on a terminal.
    """
    import torch
    from tqdm.auto import tqdm

    from training.evaluate import auroc

    if epochs < 1:
        raise ValueError(f"The number of epochs must be at least 1; got {epochs}.")
    if not 0.0 <= mask_rate < 1.0:
        raise ValueError(f"The masking rate must be in [0, 1); got {mask_rate}.")
    show = sys.stderr.isatty() if progress is None else progress
    values, present, labels = (torch.from_numpy(np.ascontiguousarray(a)) for a in train)
    y = labels.to(torch.float32)
    val_values, val_present = (torch.from_numpy(np.ascontiguousarray(a)) for a in val[:2])
    val_y = torch.from_numpy(np.asarray(val[2], dtype=np.float32))

    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, -(-len(y) // batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=epochs * steps_per_epoch, eta_min=0.05 * lr
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()

    fit = TriageFit(best_epoch=0, best_val_auroc=float("-inf"))
    best_state = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total, seen = 0.0, 0
        bar = tqdm(
            range(steps_per_epoch), desc=f"triage epoch {epoch}/{epochs}", disable=not show, leave=False
        )
        for step in bar:
            idx = order[step * batch_size : (step + 1) * batch_size]
            batch_present = present[idx]
            if mask_rate > 0.0:
                keep = torch.rand(batch_present.shape, generator=generator) >= mask_rate
                batch_present = batch_present * keep.to(batch_present.dtype)
            logit, _ = model(values[idx], batch_present)
            loss = loss_fn(logit, y[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        bar.close()

        model.eval()
        with torch.inference_mode():
            val_logit, _ = model(val_values, val_present)
            val_loss = float(loss_fn(val_logit, val_y))
        val_auc = auroc(val[2], val_logit.numpy())
        stats = TriageEpoch(epoch, total / max(seen, 1), val_loss, val_auc, time.perf_counter() - t0)
        fit.history.append(stats)
        logger.info(
            "triage epoch %d/%d: train loss %.4f, val loss %.4f, val AUROC %.4f (%.1f s)",
            epoch,
            epochs,
            stats.train_loss,
            stats.val_loss,
            stats.val_auroc,
            stats.seconds,
        )
        if val_auc > fit.best_val_auroc:
            fit.best_epoch, fit.best_val_auroc = epoch, val_auc
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    fit.seconds = time.perf_counter() - started
    logger.info("triage training done: best epoch %d, val AUROC %.4f", fit.best_epoch, fit.best_val_auroc)
    return fit
