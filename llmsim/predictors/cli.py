"""`llmsim train` and `llmsim evaluate-ranker`: the predictor commands, mounted by
`llmsim.cli`. Errors a user can cause exit with code 2 and write nothing."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import __version__
from ..cli_kit import console, err, progress, user_errors
from ..files import check_file, check_folder
from .artifact import KINDS, load_predictor, save_predictor
from .data import RankData, rank_data, training_and_test
from .encoder import EmbeddingCache
from .evaluate import ceiling, evaluate_predictor
from .length import PromptLengthPredictor
from .train import default_cache_dir, train_predictor

Data = Annotated[Path, typer.Option(
    help="CASTILLO folder (castillo_prompts.jsonl + castillo_output_lengths.jsonl).")]
Llm = Annotated[str, typer.Option(
    "--model", help="Whose output lengths: a CASTILLO model, e.g. Llama-3.1-8B-Instruct, "
                    "Qwen2.5-7B-Instruct-1M (the part after '--' is enough).")]
CacheDir = Annotated[Path | None, typer.Option(
    help="Prompt-embedding cache (default $XDG_CACHE_HOME/llmsim/embeddings).")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the "
                                                          "embedding cache.")]


@user_errors
def train(
    data: Data, model: Llm,
    predictor: Annotated[str, typer.Option(help=f"One of {', '.join(KINDS)}.")] = "pars",
    out: Annotated[Path | None, typer.Option(
        help="Predictor folder (default llmsim-out/predictors/<predictor>-<model>).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Neural: most epochs.", min=1)] = None,
    finetune: Annotated[bool, typer.Option(
        help="Neural: train the encoder too (slow on a CPU; default: the head only, on "
             "cached embeddings).")] = False,
    max_tokens: Annotated[int | None, typer.Option(
        help="Neural: truncate prompts to this many encoder tokens (default 256).")] = None,
    partners: Annotated[int | None, typer.Option(
        help="pars: partners per prompt per epoch (default 8).", min=1)] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other config field, KEY=VALUE (e.g. --set lr=3e-4); see "
                      "NeuralConfig and LightGBMConfig.")] = None,
    limit: Annotated[int | None, typer.Option(
        help="Train on a random N of the training prompts (quick tries).", min=2)] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    cache_dir: CacheDir = None, no_cache: NoCache = False,
    force: Annotated[bool, typer.Option(help="Replace the folder if it exists.")] = False,
) -> None:
    """Train a length predictor on one model's CASTILLO lengths.

    It is evaluated on the held-out test split and saved as a folder: a JSON card plus
    safetensors weights or LightGBM's text model (never pickle)."""
    _train(data, model, predictor, out, epochs, finetune, max_tokens, partners,
           option or [], limit, seed, cache_dir, no_cache, force)


def _train(data, model, kind, out, epochs, finetune, max_tokens, partners, sets, limit, seed,
           cache_dir, no_cache, force) -> None:
    import numpy as np

    if kind not in KINDS:
        raise ValueError(f"--predictor must be one of {', '.join(KINDS)}, got {kind!r}")
    options = dict(_parse_set(s) for s in sets)
    named = {"epochs": epochs, "max_tokens": max_tokens, "partners": partners}
    if finetune:
        named["finetune"] = True
    for key, value in named.items():
        if value is not None:
            if kind not in ("pars", "pointwise", "listmle") or (key == "partners"
                                                                and kind != "pars"):
                raise ValueError(f"--{key.replace('_', '-')} does not apply to {kind}")
            options[key] = value
    if kind != "length":
        options.setdefault("seed", seed)
    train_set, test = training_and_test(data, model)
    out = out or Path("llmsim-out") / "predictors" / f"{kind}-{_short(train_set.model)}"
    check_folder(out, force)
    if limit is not None and limit < len(train_set):
        rows = np.sort(np.random.default_rng(seed).choice(len(train_set), limit, replace=False))
        train_set = train_set.select(rows)
    cache = None if no_cache else EmbeddingCache(cache_dir or default_cache_dir(),
                                                 options.get("max_tokens", 256))
    err.print(f"training {kind} on {len(train_set)} prompts ({train_set.source})")
    with progress("<34") as bar:
        task = bar.add_task(kind, total=None)

        def report(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        predictor, card = train_predictor(kind, train_set, cache=cache, progress=report,
                                          **options)
        bar.update(task, description="scoring test prompts", completed=0, total=len(test))
        started = time.perf_counter()
        result = evaluate_predictor(predictor, test,
                                    lambda k: bar.update(task, advance=k))
        score_s = time.perf_counter() - started
    card.update({
        "test": {"source": test.source, **result},
        "noise_ceiling": ceiling(test),
        "llmsim_version": __version__,
        "command": " ".join(["llmsim", *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    save_predictor(predictor, out, card, force)
    _print_table([(kind, test.model, result)], ceiling(test), test)
    console.print(f"trained in {card['training']['seconds']:.0f} s; scored "
                  f"{len(test)} test prompts in {score_s:.1f} s; predictor in [bold]{out}[/]")


@user_errors
def evaluate_ranker(
    predictors: Annotated[list[str], typer.Argument(
        help="Predictor folders (from `llmsim train`), or 'length' for prompt length.")],
    data: Data, model: Llm,
    split: Annotated[str, typer.Option(help="CASTILLO split: test, validate or train.")]
    = "test",
    by_dataset: Annotated[bool, typer.Option(help="Also Kendall tau per source dataset.")]
    = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures "
                                                                 "as JSON.")] = None,
    cache_dir: CacheDir = None, no_cache: NoCache = False,
    force: Annotated[bool, typer.Option(help="Replace the --json file if it exists.")] = False,
) -> None:
    """Rank-correlation of predictors with one model's lengths, next to the noise ceiling.

    Kendall tau, Spearman rho and impactful-pair accuracy against single generations,
    and the same for the mean of the other samples of each prompt (the noise ceiling)."""
    if json_out is not None:
        check_file(json_out, force)
    _evaluate(predictors, data, model, split, by_dataset, json_out, cache_dir, no_cache)


def _evaluate(names, data, model, split, by_dataset, json_out, cache_dir, no_cache) -> None:
    test = rank_data(data, model, (split,))
    loaded = []
    for name in names:  # load all before scoring any: a bad folder fails fast
        if name == "length":
            loaded.append(("length", PromptLengthPredictor()))
        else:
            p = load_predictor(name, None)
            if hasattr(p, "cache") and not no_cache:  # neural: embeddings by prompt hash
                p.cache = EmbeddingCache(cache_dir or default_cache_dir(), p.config.max_tokens)
            loaded.append((name, p))
    rows = []
    with progress("<34") as bar:
        for name, p in loaded:
            task = bar.add_task(Path(name).name, total=len(test))
            result = evaluate_predictor(p, test, lambda k, task=task: bar.update(task, advance=k))
            learned = getattr(p, "card", {}).get("learned_lengths_of", "-")
            rows.append((name, learned, result))
    top = ceiling(test)
    _print_table(rows, top, test, by_dataset)
    if json_out is not None:
        from ..files import write_json

        doc = {"data": test.source, "split": split, "lengths_of": test.model,
               "noise_ceiling": top,
               "predictors": [{"predictor": n, "learned_lengths_of": lo, **r}
                              for n, lo, r in rows]}
        write_json(json_out, doc)
        console.print(f"figures in [bold]{json_out}[/]")


def _print_table(rows, top: dict, test: RankData, by_dataset: bool = False) -> None:
    title = (f"ranking {len(test)} prompts by {_short(test.model)}'s lengths "
             f"({test.lengths.shape[1]} samples each)")
    table = Table(title=title, title_style="bold")
    # Numbers never shrink; names wrap when the terminal is narrow.
    table.add_column("predictor", style="bold", overflow="fold")
    table.add_column("learned on", overflow="fold")
    for head in ("tau", "of ceiling", "rho", "pair acc."):
        table.add_column(head, justify="right", no_wrap=True, min_width=max(5, len(head)))
    tau_top = top["all"]["kendall_tau"]
    labelled = [(Path(n).name, _short(lo), r) for n, lo, r in rows]
    labelled.append(("noise ceiling", f"other {test.lengths.shape[1] - 1} samples", top))
    for name, learned, r in labelled:
        m = r["all"]
        table.add_row(name, learned, f"{m['kendall_tau']:.3f}", f"{m['kendall_tau'] / tau_top:.0%}",
                      f"{m['spearman']:.3f}", f"{m['pair_accuracy']:.3f}",
                      style="dim" if r is top else None)
    console.print(table)
    if not by_dataset:
        return
    datasets = list(top["by_dataset"])
    per = Table(title="Kendall tau by source dataset", title_style="bold")
    per.add_column("predictor", style="bold", overflow="fold")
    for d in datasets:
        per.add_column(f"{d[:9]}\n({top['by_dataset'][d]['prompts']})", justify="right",
                       no_wrap=True, min_width=5)
    for name, _, r in labelled:
        per.add_row(name, *(f"{r['by_dataset'][d]['kendall_tau']:.2f}"
                            if d in r["by_dataset"] else "-" for d in datasets),
                    style="dim" if r is top else None)
    console.print(per)


def _parse_set(text: str) -> tuple[str, object]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise ValueError(f"--set wants KEY=VALUE, got {text!r}")
    value = value.strip()
    for cast in (int, float):
        try:
            return key.strip(), cast(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return key.strip(), value.lower() == "true"
    return key.strip(), value


def _short(model: str) -> str:
    return model.split("--")[-1]

