"""Neural predictors: the MiniLM encoder and a scalar head, trained by one objective.

Head-only training (the default) runs on cached prompt embeddings and takes seconds to
minutes on a CPU; `finetune=True` trains the encoder too (a smaller learning rate for
it), re-encoding the prompts of every batch, which wants a GPU for real data. Either way
the epoch with the best Kendall tau on a held-out part of the training prompts is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import RankData, holdout
from .encoder import DIM, EmbeddingCache, TextEncoder, embed_texts
from .objectives import (
    OBJECTIVES,
    listmle_loss,
    pairwise_loss,
    pointwise_target,
    sample_lists,
    sample_pairs,
)


@dataclass(frozen=True, slots=True)
class NeuralConfig:
    objective: str = "pars"  # pars | pointwise | listmle
    epochs: int = 40
    lr: float = 1e-3  # head
    encoder_lr: float = 2e-5  # encoder, when fine-tuned
    weight_decay: float = 1e-4
    batch_size: int = 256  # pairs, rows or (listmle) lists x list_size rows, per step
    partners: int = 8  # pars: partners per prompt per epoch
    min_gap: float = 0.2  # pars: |La - Lb| / max(La, Lb) of a training pair
    margin: float = 1.0  # pars: MarginRankingLoss margin
    list_size: int = 32  # listmle
    hidden: int = 256  # head width
    dropout: float = 0.1
    finetune: bool = False
    max_tokens: int = 256
    holdout: float = 0.1  # share of training prompts held out for early stopping
    patience: int = 8  # epochs without a better held-out tau before stopping
    seed: int = 0

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                             f"got {self.objective!r}")
        for name in ("epochs", "batch_size", "partners", "list_size", "hidden", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_gap < 1:
            raise ValueError(f"min_gap must be in (0, 1), got {self.min_gap}")
        if not 0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")


def make_head(hidden: int, dropout: float):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(DIM, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


class NeuralPredictor:
    """Scores prompts: higher means a longer expected answer."""

    def __init__(self, kind: str, head, encoder: TextEncoder | None, config: NeuralConfig,
                 cache: EmbeddingCache | None = None):
        self.kind, self.head, self.config = kind, head.eval(), config
        self._encoder, self.cache = encoder, cache

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(self.config.max_tokens)
        return self._encoder

    def score(self, texts, prompt_tokens=None,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        import torch

        # A fine-tuned encoder's embeddings are its own: the shared cache is for the stock one.
        cache = None if self.config.finetune else self.cache
        emb = embed_texts(self.encoder, list(texts), cache, progress)
        with torch.inference_mode():
            return self.head(torch.from_numpy(emb)).squeeze(-1).double().numpy()

    def tensors(self) -> dict[str, dict]:
        """Weights to save: the head, and the encoder when it was fine-tuned."""
        out = {"head": {k: v.contiguous() for k, v in self.head.state_dict().items()}}
        if self.config.finetune:
            out["encoder"] = {k: v.contiguous()
                              for k, v in self.encoder.model.state_dict().items()}
        return out


def train_neural(train: RankData, config: NeuralConfig, cache: EmbeddingCache | None,
                 progress: Callable[[str, int, int], None] | None = None,
                 encoder: TextEncoder | None = None) -> tuple[NeuralPredictor, dict]:
    """A trained predictor and its training record (epochs run, held-out tau by epoch)."""
    import torch
    from scipy import stats

    config.check()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    fit, held = holdout(len(train), config.holdout, rng)
    if config.objective == "listmle" and len(fit) < config.list_size:
        raise ValueError(f"listmle needs at least list_size={config.list_size} training "
                         f"prompts, got {len(fit)}")
    encoder = encoder or TextEncoder(config.max_tokens)
    texts = list(train.text)
    length = train.mean_length

    if config.finetune:
        encoder.model.train()
        embed = None
    else:
        embed = torch.from_numpy(embed_texts(encoder, texts, cache,
                                             _tick(progress, "embedding", len(set(texts)))))
    head = make_head(config.hidden, config.dropout)
    params = [{"params": head.parameters(), "lr": config.lr}]
    if config.finetune:
        params.append({"params": encoder.model.parameters(), "lr": config.encoder_lr})
    opt = torch.optim.AdamW(params, weight_decay=config.weight_decay)

    def scores(rows: np.ndarray):
        x = encoder.forward([texts[i] for i in rows]) if embed is None else embed[rows]
        return head(x).squeeze(-1)

    target, _, _ = pointwise_target(length)
    target_t = torch.from_numpy(target).float()
    length_t = torch.from_numpy(length).float()
    held_len = length[held]
    best = (-np.inf, None, None, 0)
    history = []
    for epoch in range(config.epochs):
        head.train()
        for rows, loss_of in _batches(config, fit, length, rng):
            opt.zero_grad()
            uniq, inv = np.unique(rows, return_inverse=True)
            s = scores(uniq)[torch.from_numpy(inv.reshape(rows.shape))]
            loss = loss_of(s, rows, target_t, length_t)
            loss.backward()
            opt.step()
        head.eval()
        with torch.inference_mode():
            held_scores = torch.cat([scores(held[lo:lo + 256])
                                     for lo in range(0, len(held), 256)]).double().numpy()
        tau = float(stats.kendalltau(held_scores, held_len).statistic)
        history.append(round(tau, 4))
        if progress:
            progress(f"epoch {epoch + 1}: held-out tau {tau:.3f}", epoch + 1, config.epochs)
        if tau > best[0]:
            best = (tau, _state(head), _state(encoder.model) if config.finetune else None,
                    epoch + 1)
        elif epoch + 1 - best[3] >= config.patience:
            break
    head.load_state_dict(best[1])
    if best[2] is not None:
        encoder.model.load_state_dict(best[2])
    encoder.model.eval()
    record = {"epochs_run": len(history), "best_epoch": best[3],
              "heldout_tau_by_epoch": history, "heldout_prompts": int(len(held)),
              "fit_prompts": int(len(fit))}
    return NeuralPredictor(config.objective, head, encoder, config, cache), record


def _batches(config: NeuralConfig, fit: np.ndarray, length: np.ndarray,
             rng: np.random.Generator):
    """(rows, loss function) per optimiser step of one epoch; rows index the training set."""
    bs = config.batch_size
    if config.objective == "pars":
        a, b = sample_pairs(length[fit], config.partners, config.min_gap, rng)
        pairs = fit[np.stack([a, b], axis=1)]
        pairs = pairs[rng.permutation(len(pairs))]

        def loss(s, rows, target, length):
            return pairwise_loss(s[:, 0], s[:, 1], config.margin)

        for lo in range(0, len(pairs), bs):
            yield pairs[lo:lo + bs], loss
    elif config.objective == "pointwise":
        def loss(s, rows, target, length):
            return ((s - target[torch_rows(rows)]) ** 2).mean()

        perm = fit[rng.permutation(len(fit))]
        for lo in range(0, len(perm), bs):
            yield perm[lo:lo + bs], loss
    else:
        lists = [fit[li] for li in sample_lists(len(fit), config.list_size, rng)]
        per_step = max(1, bs // config.list_size)

        def loss(s, rows, target, length):
            import torch

            return torch.stack([listmle_loss(s[k], length[torch_rows(rows[k])])
                                for k in range(len(rows))]).mean()

        full = [li for li in lists if len(li) == config.list_size]  # equal lists stack
        for lo in range(0, len(full), per_step):
            yield np.stack(full[lo:lo + per_step]), loss


def torch_rows(rows: np.ndarray):
    import torch

    return torch.from_numpy(np.asarray(rows, dtype=np.int64))


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _tick(progress, what: str, total: int):
    if progress is None:
        return None
    done = [0]

    def step(k: int) -> None:
        done[0] += k
        progress(what, done[0], total)

    return step


def load_neural(folder: Path, card: dict, cache: EmbeddingCache | None) -> NeuralPredictor:
    from safetensors.torch import load_file

    config = NeuralConfig(**card["config"])
    config.check()
    head = make_head(config.hidden, config.dropout)
    head.load_state_dict(load_file(folder / "head.safetensors"))
    encoder = None
    if config.finetune:
        encoder = TextEncoder(config.max_tokens)
        encoder.model.load_state_dict(load_file(folder / "encoder.safetensors"))
        encoder.model.eval()
    return NeuralPredictor(card["kind"], head, encoder, config, cache)
