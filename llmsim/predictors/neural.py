"""Neural predictors: the MiniLM encoder and a small head, trained by one objective.

What the head learns (`target`): by default a prompt's *expected cost* over its sampled
generations (`cost`: prompt x output + output^2 / 2, lengths capped at `cap` when given),
not its mean length: a scheduler gains by sending the costly requests to the back, and
those are the few long generations that a mean-length ranking weighs like any other
(`target="mean_length"` is the original PARS label). The head reads the prompt's
embedding (MiniLM with its first `layers` transformer layers; 0: the token embeddings
alone, scored in NumPy by `static` in about a millisecond), with `prompt_feature` its
token count, with `shape_features` LightGBM's cheap shape features; with `tail_threshold`
it has a second output, the log-odds that a generation reaches that many tokens, trained on the
share of the prompt's samples that do. The score is

    rank output + tail_mix * tail log-odds      (averaged over the ensemble's members)

with `tail_mix` chosen on validation prompts when "auto".

Model selection never looks at test prompts: with `folds` = K > 1 the training prompts
are split into K folds and member k trains on the others, early-stopped on fold k; the
members' scores are averaged (a cross-fitted seed ensemble), and `tail_mix` is chosen on
the pooled out-of-fold scores, so every training prompt validates once. `select` is the
figure early stopping and the mix maximise (see `labels`): `batch_gap` (the share of the
FCFS -> SJF gap a one-server batch of these requests would see closed), `cost_share`
(the share of the cost the top 1, 2 and 5% of the ranking hold) or `tau` (Kendall tau
with the mean length, the original criterion).

`extra` lengths of other LLMs on the same training prompts (multi-model training) add
rows whose pairs are formed within each LLM, and the LLM is an input of the head (one-hot;
the scored LLM is the first).

Head-only training (the default) runs on cached prompt embeddings; `finetune=True` trains
the encoder too (a smaller learning rate for it), re-encoding the prompts of every batch;
the full encoder wants a GPU for real data, the token embeddings alone (`layers=0`) train
on a CPU in minutes (one member: `folds` must be 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .data import RankData, holdout
from .encoder import DIM, EmbeddingCache, TextEncoder, embed_texts
from .features import SHAPE, prompt_features
from .labels import SELECT, TARGETS, Rows, label, validation_figure
from .objectives import (
    OBJECTIVES,
    listmle_loss,
    pairwise_loss,
    pointwise_target,
    sample_lists,
    sample_pairs,
)

MIX_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# What a folder written before these fields existed was trained with.
LEGACY = {"layers": 6, "shape_features": False, "target": "mean_length", "cap": 0,
          "tail_threshold": 0, "tail_weight": 0.0, "tail_mix": 0.0, "prompt_feature": False,
          "select": "tau", "folds": 1, "models": ""}


@dataclass(frozen=True, slots=True)
class NeuralConfig:
    objective: str = "pars"  # pars | pointwise | listmle
    target: str = "cost"  # cost | mean_length: the per-prompt label the objective orders
    cap: int = 0  # max_tokens applied to the training lengths; 0: uncapped
    tail_threshold: int = 2000  # tail head: P(generation >= this many tokens); 0: none
    tail_weight: float = 1.0  # weight of the tail head's cross-entropy in the loss
    tail_mix: float | str = "auto"  # score = rank + tail_mix * tail log-odds; "auto": chosen
    prompt_feature: bool = True  # the prompt's token count (log, standardised) as an input
    shape_features: bool = False  # and LightGBM's cheap shape features (chars, lines, ...)
    select: str = "batch_gap"  # batch_gap | cost_share | tau: early stopping, tail_mix
    folds: int = 5  # cross-fitted ensemble of this many members; 1: one, `holdout` held out
    models: str = ""  # other LLMs whose lengths were trained on too (comma-separated)
    epochs: int = 40
    lr: float = 1e-3  # head
    encoder_lr: float = 2e-5  # encoder, when fine-tuned
    weight_decay: float = 1e-4
    batch_size: int = 256  # pairs, rows or (listmle) lists x list_size rows, per step
    partners: int = 8  # pars: partners per prompt per epoch
    min_gap: float = 0.2  # pars: |a - b| / max(a, b) of the targets of a training pair
    margin: float = 1.0  # pars: MarginRankingLoss margin
    list_size: int = 32  # listmle
    hidden: int = 256  # head width
    dropout: float = 0.1
    finetune: bool = False
    max_tokens: int = 256
    layers: int = 6  # MiniLM transformer layers kept (0: token embeddings only; cheaper)
    holdout: float = 0.1  # folds=1: share of training prompts held out for early stopping
    patience: int = 8  # epochs without a better held-out figure before stopping
    seed: int = 0

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, "
                             f"got {self.objective!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}, got {self.select!r}")
        for name in ("epochs", "batch_size", "partners", "list_size", "hidden", "patience",
                     "folds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("cap", "tail_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: none), got {getattr(self, name)}")
        if not 0 < self.min_gap < 1:
            raise ValueError(f"min_gap must be in (0, 1), got {self.min_gap}")
        if not 0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        if self.tail_mix != "auto" and not (isinstance(self.tail_mix, (int, float))
                                            and self.tail_mix >= 0):
            raise ValueError(f"tail_mix must be 'auto' or a number >= 0, got {self.tail_mix!r}")
        if not 0 <= self.layers <= 6:
            raise ValueError(f"layers must be within 0..6, got {self.layers}")
        if self.finetune and self.folds != 1:
            raise ValueError("finetune trains one encoder: set folds=1")

    @property
    def inputs(self) -> int:
        return (DIM + int(self.prompt_feature) + (len(SHAPE) - 2) * int(self.shape_features)
                + (len(self.model_list) if self.models else 0))

    @property
    def model_list(self) -> list[str]:
        """[scored LLM, *others] when trained on several LLMs' lengths, else []."""
        return [m for m in self.models.split(",") if m] if self.models else []


def make_head(inputs: int, hidden: int, dropout: float, outputs: int = 1):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, outputs))


class NeuralPredictor:
    """Scores prompts: higher means a costlier (longer) expected answer."""

    def __init__(self, kind: str, heads: list, encoder: TextEncoder | None,
                 config: NeuralConfig, norm: np.ndarray | None = None,
                 cache: EmbeddingCache | None = None):
        self.kind, self.heads, self.config, self.norm = kind, heads, config, norm
        for h in heads:
            h.eval()
        self._encoder, self.cache = encoder, cache
        self._stack = None  # the heads as NumPy arrays, made at the first score

    @property
    def head(self):  # the first member (the only one unless cross-fitted)
        return self.heads[0]

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            if self.config.layers == 0 and not self.config.finetune:
                from .static import StaticEncoder  # the same function, a fraction of the cost

                self._encoder = StaticEncoder(self.config.max_tokens)
            else:
                self._encoder = TextEncoder(self.config.max_tokens, layers=self.config.layers)
        return self._encoder

    def score(self, texts, prompt_tokens=None,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
        # A fine-tuned encoder's embeddings are its own: the shared cache is for the stock one.
        cache = None if self.config.finetune or self.cache is None else \
            self.cache.like(self.config.max_tokens, self.config.layers)
        emb = embed_texts(self.encoder, list(texts), cache, progress)
        x = head_inputs(emb, numeric_features(texts, prompt_tokens, self.config), self.config,
                        self.norm)
        if self._stack is None:
            from .static import HeadStack

            self._stack = HeadStack(self.heads)
        return np.mean([combine(out, self.config) for out in self._stack(x)], axis=0)

    def tensors(self) -> dict[str, dict]:
        """Weights to save: the heads (and input scaling), the encoder when fine-tuned."""
        import torch

        head = {f"m{k}.{name}": v.contiguous() for k, h in enumerate(self.heads)
                for name, v in h.state_dict().items()}
        if self.norm is not None:
            head["norm"] = torch.from_numpy(np.ascontiguousarray(self.norm))
        out = {"head": head}
        if self.config.finetune:
            out["encoder"] = {k: v.contiguous()
                              for k, v in self.encoder.model.state_dict().items()}
        return out


def numeric_features(texts, prompt_tokens, config: NeuralConfig) -> np.ndarray:
    """The head's inputs besides the embedding, unscaled: log prompt tokens (with
    `prompt_feature`), then LightGBM's shape features (with `shape_features`: counts as
    log(1 + n), shares as they are)."""
    n = len(texts)
    cols = []
    if config.prompt_feature:
        if prompt_tokens is None:
            raise ValueError("this predictor reads the prompt's token count; none was given")
        cols.append(np.log1p(np.asarray(prompt_tokens, dtype=np.float64))[:, None])
    if config.shape_features:
        tokens = np.zeros(n) if prompt_tokens is None else np.asarray(prompt_tokens)
        shape = prompt_features(list(texts), tokens)[:, 1:len(SHAPE) - 1].astype(np.float64)
        shares = [SHAPE.index(k) - 1 for k in ("digit_share", "upper_share")]
        counts = [k for k in range(shape.shape[1]) if k not in shares]
        shape[:, counts] = np.log1p(shape[:, counts])
        cols.append(shape)
    return np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))


def head_inputs(emb: np.ndarray, numeric: np.ndarray, config: NeuralConfig,
                norm: np.ndarray | None, model_index: np.ndarray | None = None) -> np.ndarray:
    """The head's input rows: embedding, the standardised numeric features (`norm`: their
    training mean and standard deviation), then the LLM one-hot (index 0, the scored LLM,
    unless `model_index` says otherwise)."""
    parts = [np.asarray(emb, dtype=np.float32)]
    if numeric.shape[1]:
        parts.append(((numeric - norm[0]) / norm[1]).astype(np.float32))
    if config.models:
        hot = np.zeros((len(emb), len(config.model_list)), dtype=np.float32)
        hot[np.arange(len(emb)), 0 if model_index is None else model_index] = 1.0
        parts.append(hot)
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def combine(out, config: NeuralConfig, mix: float | None = None) -> np.ndarray:
    """The score of head outputs: rank, plus the mixed-in tail log-odds."""
    out = out.double().numpy() if hasattr(out, "double") else np.asarray(out, np.float64)
    if out.shape[-1] == 1:
        return out[:, 0]
    return out[:, 0] + (config.tail_mix if mix is None else mix) * out[:, 1]


def train_neural(train: RankData, config: NeuralConfig, cache: EmbeddingCache | None,
                 progress: Callable[[str, int, int], None] | None = None,
                 encoder: TextEncoder | None = None, extra: Sequence[RankData] = ()
                 ) -> tuple[NeuralPredictor, dict]:
    """A trained predictor and its training record. The predictor's `validation` holds the
    out-of-fold scores of the training prompts, {prompt_id: score}, for validation runs."""
    import torch

    config.check()
    if config.models and not extra:
        raise ValueError(f"models={config.models!r}: pass the other LLMs' lengths as `extra`")
    if extra:
        config = replace(config, models=",".join([train.model, *(e.model for e in extra)]))
    rows = Rows.of(train, extra, config.cap)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    folds = _folds(rows, config, rng)
    target = label(rows, config.target)
    tail_p = ((rows.lengths >= config.tail_threshold).mean(axis=1)
              if config.tail_threshold else None)
    encoder = encoder or TextEncoder(config.max_tokens, layers=config.layers)
    if cache is not None:
        cache = cache.like(config.max_tokens, config.layers)
    numeric = numeric_features(rows.texts, rows.prompt_tokens, config)
    sd = numeric.std(axis=0)
    norm = np.stack([numeric.mean(axis=0), np.where(sd > 0, sd, 1.0)])
    if config.finetune:
        encoder.model.train()
        emb = None
    else:
        emb = embed_texts(encoder, rows.texts, cache,
                          _tick(progress, "embedding", len(set(rows.texts))))
    extra_x = torch.from_numpy(head_inputs(np.zeros((len(rows.texts), 0), np.float32),
                                           numeric, config, norm, rows.model))
    x = None if emb is None else torch.cat([torch.from_numpy(emb), extra_x], dim=1)

    heads, records = [], []
    oof_rows, oof_out = [], []
    for k, (fit, held) in enumerate(folds):
        what = f"member {k + 1}/{len(folds)}: " if len(folds) > 1 else ""
        head, record, out = _train_member(config, rows, fit, held, target, tail_p, x, extra_x,
                                          encoder, rng, progress, what)
        heads.append(head)
        records.append(record)
        oof_rows.append(held)
        oof_out.append(out)
    held_all = np.concatenate(oof_rows)
    out_all = np.concatenate(oof_out)
    mix_figures = {}
    if config.tail_threshold and config.tail_mix == "auto":
        for mix in MIX_GRID:
            mix_figures[mix] = validation_figure(combine(out_all, config, mix), rows, held_all,
                                                 config.select)
        config = replace(config, tail_mix=max(mix_figures, key=mix_figures.get))
    elif config.tail_mix == "auto":
        config = replace(config, tail_mix=0.0)
    oof = combine(out_all, config)
    record = {"members": records, "validation_prompts": int(len(held_all)),
              "validation": {"select": config.select,
                             "figure": round(validation_figure(oof, rows, held_all,
                                                               config.select), 4)},
              "tail_mix": config.tail_mix,
              "tail_mix_figures": {str(m): round(v, 4) for m, v in mix_figures.items()}}
    if len(folds) == 1:  # the original record's fields
        record.update({k: records[0][k] for k in ("epochs_run", "best_epoch",
                                                  "heldout_prompts", "fit_prompts")})
    encoder.model.eval()
    if config.layers == 0:  # scores through `static`: the same function in NumPy
        from .static import StaticEncoder

        encoder = StaticEncoder(torch_encoder=encoder) if config.finetune else None
    predictor = NeuralPredictor(config.objective, heads, encoder, config, norm, cache)
    predictor.validation = dict(zip(train.prompt_id[held_all], oof.tolist(), strict=True))
    return predictor, record


def _folds(rows: Rows, config: NeuralConfig, rng: np.random.Generator):
    """(fit rows, held-out rows of the scored LLM) per member; folds split prompts, so a
    held-out prompt is unseen under every LLM."""
    prompts = np.unique(rows.keys[rows.model == 0])
    if config.folds == 1:
        _, held_idx = holdout(len(prompts), config.holdout, rng)
        groups = [prompts[held_idx]]
    else:
        if len(prompts) < config.folds:
            raise ValueError(f"folds={config.folds} needs at least that many training "
                             f"prompts, got {len(prompts)}")
        groups = np.array_split(prompts[rng.permutation(len(prompts))], config.folds)
    out = []
    for g in groups:
        out_fold = np.isin(rows.keys, g)
        out.append((np.flatnonzero(~out_fold), np.flatnonzero(out_fold & (rows.model == 0))))
    if config.objective == "listmle" and min(len(f) for f, _ in out) < config.list_size:
        raise ValueError(f"listmle needs at least list_size={config.list_size} training "
                         f"prompts per member, got {min(len(f) for f, _ in out)}")
    return out


def _train_member(config, rows, fit, held, target, tail_p, x, extra_x, encoder, rng,
                  progress, what):
    """One head trained on `fit`, early-stopped on `held`; (head, record, held outputs)."""
    import torch

    head = make_head(config.inputs, config.hidden, config.dropout,
                     2 if config.tail_threshold else 1)
    params = [{"params": head.parameters(), "lr": config.lr}]
    if config.finetune:
        params.append({"params": encoder.model.parameters(), "lr": config.encoder_lr})
    opt = torch.optim.AdamW(params, weight_decay=config.weight_decay)

    def outputs(idx: np.ndarray):
        if x is None:
            enc = encoder.forward([rows.texts[i] for i in idx])
            return head(torch.cat([enc, extra_x[torch_rows(idx)]], dim=1))
        return head(x[torch_rows(idx)])

    target_t = torch.from_numpy(pointwise_target(target)[0]).float()
    value_t = torch.from_numpy(target).float()
    tail_t = None if tail_p is None else torch.from_numpy(tail_p).float()
    best = (-np.inf, None, None, 0, None)
    history = []
    for epoch in range(config.epochs):
        head.train()
        for idx, loss_of in _batches(config, fit, target, rows.model, rng):
            opt.zero_grad()
            uniq, inv = np.unique(idx, return_inverse=True)
            out = outputs(uniq)
            s = out[:, 0][torch.from_numpy(inv.reshape(idx.shape))]
            loss = loss_of(s, idx, target_t, value_t)
            if tail_t is not None:
                loss = loss + config.tail_weight * torch.nn.functional \
                    .binary_cross_entropy_with_logits(out[:, 1], tail_t[torch_rows(uniq)])
            loss.backward()
            opt.step()
        head.eval()
        encoder.model.eval()
        with torch.inference_mode():
            held_out = torch.cat([outputs(held[lo:lo + 256])
                                  for lo in range(0, len(held), 256)]).double().numpy()
        encoder.model.train(config.finetune)
        if config.tail_threshold and config.tail_mix == "auto":
            figure = max(validation_figure(combine(held_out, config, m), rows, held,
                                           config.select) for m in MIX_GRID)
        else:
            figure = validation_figure(combine(held_out, config, _fixed_mix(config)), rows,
                                       held, config.select)
        history.append(round(figure, 4))
        if progress:
            progress(f"{what}epoch {epoch + 1}: held-out {config.select} {figure:.3f}",
                     epoch + 1, config.epochs)
        if figure > best[0]:
            best = (figure, _state(head), _state(encoder.model) if config.finetune else None,
                    epoch + 1, held_out)
        elif epoch + 1 - best[3] >= config.patience:
            break
    head.load_state_dict(best[1])
    if best[2] is not None:
        encoder.model.load_state_dict(best[2])
    head.eval()
    record = {"epochs_run": len(history), "best_epoch": best[3],
              f"heldout_{config.select}_by_epoch": history, "heldout_prompts": int(len(held)),
              "fit_prompts": int(len(fit))}
    return head, record, best[4]


def _fixed_mix(config: NeuralConfig) -> float:
    return 0.0 if config.tail_mix == "auto" else float(config.tail_mix)


def _batches(config: NeuralConfig, fit: np.ndarray, value: np.ndarray, model: np.ndarray,
             rng: np.random.Generator):
    """(rows, loss function) per optimiser step of one epoch; rows index the training rows.
    Pairs and lists are formed within one LLM's rows."""
    bs = config.batch_size
    groups = [fit[model[fit] == m] for m in np.unique(model[fit])]
    if config.objective == "pars":
        pairs = []
        for g in groups:
            a, b = sample_pairs(value[g], config.partners, config.min_gap, rng)
            pairs.append(g[np.stack([a, b], axis=1)])
        pairs = np.concatenate(pairs)
        pairs = pairs[rng.permutation(len(pairs))]

        def loss(s, rows, target, value):
            return pairwise_loss(s[:, 0], s[:, 1], config.margin)

        for lo in range(0, len(pairs), bs):
            yield pairs[lo:lo + bs], loss
    elif config.objective == "pointwise":
        def loss(s, rows, target, value):
            return ((s - target[torch_rows(rows)]) ** 2).mean()

        perm = fit[rng.permutation(len(fit))]
        for lo in range(0, len(perm), bs):
            yield perm[lo:lo + bs], loss
    else:
        full = [g[li] for g in groups for li in sample_lists(len(g), config.list_size, rng)
                if len(li) == config.list_size]  # equal lists stack
        full = [full[i] for i in rng.permutation(len(full))]
        per_step = max(1, bs // config.list_size)

        def loss(s, rows, target, value):
            import torch

            return torch.stack([listmle_loss(s[k], value[torch_rows(rows[k])])
                                for k in range(len(rows))]).mean()

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

    config = NeuralConfig(**{**LEGACY, **card["config"]})
    config.check()
    tensors = load_file(folder / "head.safetensors")
    norm = tensors.pop("norm", None)
    if norm is not None:  # (2, features); a single feature's was saved as (2,)
        norm = norm.double().numpy().reshape(2, -1)
    outputs = 2 if config.tail_threshold else 1
    if any(k.startswith("m0.") for k in tensors):
        members = sorted({int(k.split(".")[0][1:]) for k in tensors})
        states = [{k.split(".", 1)[1]: v for k, v in tensors.items()
                   if k.startswith(f"m{m}.")} for m in members]
    else:  # a folder from before ensembles: the head's own keys
        states = [tensors]
    heads = []
    for state in states:
        head = make_head(config.inputs, config.hidden, config.dropout, outputs)
        head.load_state_dict(state)
        heads.append(head)
    encoder = None
    if config.finetune:
        encoder = TextEncoder(config.max_tokens, layers=config.layers)
        encoder.model.load_state_dict(load_file(folder / "encoder.safetensors"))
        encoder.model.eval()
        if config.layers == 0:
            from .static import StaticEncoder

            encoder = StaticEncoder(torch_encoder=encoder)
    return NeuralPredictor(card["kind"], heads, encoder, config, norm, cache)
