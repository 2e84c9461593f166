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
from .cost import RequestCost
from .cost_metrics import FRACTIONS, TAILS, share_name, tail_name
from .data import RankData, other_llms_training, rank_data, rank_data_file, training_and_test
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
        options.setdefault("folds", 1)  # one encoder is fine-tuned: one member
    for key, value in named.items():
        if value is not None:
            if kind not in ("pars", "pointwise", "listmle") or (key == "partners"
                                                                and kind != "pars"):
                raise ValueError(f"--{key.replace('_', '-')} does not apply to {kind}")
            options[key] = value
    if kind != "length":
        options.setdefault("seed", seed)
    train_set, test = training_and_test(data, model)
    extra = []
    if options.get("models"):  # multi-model: other LLMs' lengths on the training prompts
        if kind not in ("pars", "pointwise", "listmle"):
            raise ValueError(f"--set models= (multi-model training) does not apply to {kind}")
        extra = other_llms_training(data, train_set.model, str(options.pop("models")), test)
    out = out or Path("llmsim-out") / "predictors" / f"{kind}-{_short(train_set.model)}"
    check_folder(out, force)
    if limit is not None and limit < len(train_set):
        rows = np.sort(np.random.default_rng(seed).choice(len(train_set), limit, replace=False))
        train_set = train_set.select(rows)
    cache = None if no_cache else EmbeddingCache(cache_dir or default_cache_dir(),
                                                 options.get("max_tokens", 256))
    err.print(f"training {kind} on {len(train_set)} prompts ({train_set.source})"
              + (f" and {len(extra)} other LLMs' lengths" if extra else ""))
    with progress("<34") as bar:
        task = bar.add_task(kind, total=None)

        def report(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        predictor, card = train_predictor(kind, train_set, cache=cache, progress=report,
                                          extra=extra, **options)
        bar.update(task, description="scoring test prompts", completed=0, total=len(test))
        started = time.perf_counter()
        cap = int(options.get("cap") or 0) or None  # judged as it was trained: capped or not
        result = evaluate_predictor(predictor, test, lambda k: bar.update(task, advance=k),
                                    cap=cap)
        top = ceiling(test, cap=cap)
        score_s = time.perf_counter() - started
    card.update({
        "test": {"source": test.source, **result},
        "noise_ceiling": top,
        "llmsim_version": __version__,
        "command": " ".join(["llmsim", *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    save_predictor(predictor, out, card, force)
    _print_table([(kind, test.model, result)], top, test)
    console.print(f"trained in {card['training']['seconds']:.0f} s; scored "
                  f"{len(test)} test prompts in {score_s:.1f} s; predictor in [bold]{out}[/]")


@user_errors
def evaluate_ranker(
    predictors: Annotated[list[str], typer.Argument(
        help="Predictor folders (from `llmsim train`), or 'length' for prompt length.")],
    data: Annotated[Path, typer.Option(
        help="CASTILLO folder (with --model), or any {prompt, output_len} JSONL/CSV file "
             "(rows with the same prompt are its samples).")],
    model: Annotated[str | None, typer.Option(
        "--model", help="CASTILLO: whose output lengths, e.g. Llama-3.1-8B-Instruct.")] = None,
    split: Annotated[str, typer.Option(help="CASTILLO split: test, validate or train.")]
    = "test",
    cap: Annotated[int | None, typer.Option(
        help="Cap output lengths at this max_tokens, as a server would.", min=1)] = None,
    cost_of: Annotated[str | None, typer.Option(
        help="Price requests with this deployment's cost model (a model preset, e.g. "
             "llama-3.1-8b, on --gpu); default: prompt x output + output^2/2.")] = None,
    gpu: Annotated[str, typer.Option(help="GPU of --cost-of.")] = "h100",
    bootstrap: Annotated[int, typer.Option(
        help="Bootstrap resamples of the prompts for 95% intervals (0: none).", min=0)] = 100,
    by_dataset: Annotated[bool, typer.Option(help="Also Kendall tau per source dataset.")]
    = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures "
                                                                 "as JSON.")] = None,
    cache_dir: CacheDir = None, no_cache: NoCache = False,
    force: Annotated[bool, typer.Option(help="Replace the --json file if it exists.")] = False,
) -> None:
    """How well predictors rank prompts, and what that ranking is worth to a scheduler.

    Against single generations: Kendall tau, Spearman rho and impactful-pair accuracy; the
    share of all cost that the top 1/2/5% of the ranking hold (what shortest-job-first
    sends to the back; cost = prompt x output + output^2/2 unless --cost-of); AUC for
    generations of >= 2k and >= 8k tokens. Next to them the noise ceiling (each sample
    scored by its prompt's other samples) and the perfect ranking's cost shares; 95%
    bootstrap intervals over prompts."""
    if json_out is not None:
        check_file(json_out, force)
    _evaluate(predictors, data, model, split, cap, cost_of, gpu, bootstrap, by_dataset,
              json_out, cache_dir, no_cache)


def _evaluate(names, data, model, split, cap, cost_of, gpu, bootstrap, by_dataset, json_out,
              cache_dir, no_cache) -> None:
    test = _evaluation_data(data, model, split)
    cost = RequestCost()
    if cost_of is not None:
        from ..simulate import Deployment

        cost = RequestCost.from_cost_model(Deployment(model=cost_of, gpu=gpu).cost_model())
    loaded = []
    for name in names:  # load all before scoring any: a bad folder fails fast
        if name == "length":
            loaded.append(("length", PromptLengthPredictor()))
        else:
            p = load_predictor(name, None)
            if hasattr(p, "cache") and not no_cache:  # neural: embeddings by prompt hash
                p.cache = EmbeddingCache(cache_dir or default_cache_dir(), p.config.max_tokens)
            loaded.append((name, p))
    options = {"cost": cost, "cap": cap, "bootstrap": bootstrap}
    rows = []
    with progress("<34") as bar:
        for name, p in loaded:
            task = bar.add_task(Path(name).name, total=len(test))
            result = evaluate_predictor(p, test, lambda k, task=task: bar.update(task, advance=k),
                                        **options)
            learned = getattr(p, "card", {}).get("learned_lengths_of", "-")
            rows.append((name, learned, result))
        bar.add_task("noise ceiling", total=None)
        top = ceiling(test, **options)
    _print_table(rows, top, test, by_dataset)
    if json_out is not None:
        from ..files import write_json

        doc = {"data": test.source, "split": split, "lengths_of": test.model, "cap": cap,
               "cost": cost.to_dict(), "bootstrap": bootstrap, "noise_ceiling": top,
               "predictors": [{"predictor": n, "learned_lengths_of": lo, **r}
                              for n, lo, r in rows]}
        write_json(json_out, doc)
        console.print(f"figures in [bold]{json_out}[/]")


def _evaluation_data(data: Path, model: str | None, split: str) -> RankData:
    if data.is_file() and data.suffix.lower() in (".jsonl", ".json", ".csv", ".tsv") \
            and not data.name.startswith("castillo_"):
        return rank_data_file(data)
    if model is None:
        raise ValueError(f"{data}: a CASTILLO folder needs --model (whose lengths)")
    return rank_data(data, model, (split,))


def _print_table(rows, top: dict | None, test: RankData, by_dataset: bool = False) -> None:
    samples = test.lengths.shape[1]
    title = (f"ranking {len(test)} prompts by {_short(test.model)}'s lengths "
             f"({samples} sample{'s' if samples > 1 else ''} each)")
    table = Table(title=title, title_style="bold")
    # Numbers never shrink; names wrap when the terminal is narrow.
    table.add_column("predictor", style="bold", overflow="fold")
    table.add_column("learned on", overflow="fold")
    keys = ["kendall_tau", "spearman", "pair_accuracy", *(share_name(f) for f in FRACTIONS),
            *(tail_name(t) for t in TAILS)]
    heads = ["tau", "rho", "pair acc.", *(f"cost top {f:.0%}" for f in FRACTIONS),
             *(f"AUC >={t // 1000}k" for t in TAILS)]
    for head in heads:
        table.add_column(head, justify="right", no_wrap=True, min_width=max(5, len(head)))
    labelled = [(Path(n).name, _short(lo), r) for n, lo, r in rows]
    if top is not None:
        labelled.append(("noise ceiling", f"other {samples - 1} samples", top))
    for name, learned, r in labelled:
        m = r["all"]
        table.add_row(name, learned, *(_cell(m, k) for k in keys),
                      style="dim" if r is top else None)
    if top is not None:
        table.add_row("perfect ranking", "each sample's own cost", "", "", "",
                      *(f"{top['perfect'][share_name(f)]:.3f}" for f in FRACTIONS), "", "",
                      style="dim")
    console.print(table)
    if any("ci" in r["all"] for _, _, r in labelled):
        console.print("[dim]in brackets: 95% bootstrap interval over prompts[/]")
    if not by_dataset:
        return
    datasets = _datasets(labelled)
    per = Table(title="Kendall tau by source dataset", title_style="bold")
    per.add_column("predictor", style="bold", overflow="fold")
    first = labelled[0][2]["by_dataset"]
    for d in datasets:
        per.add_column(f"{d[:9]}\n({first[d]['prompts']})", justify="right",
                       no_wrap=True, min_width=5)
    for name, _, r in labelled:
        per.add_row(name, *(f"{r['by_dataset'][d]['kendall_tau']:.2f}"
                            if d in r["by_dataset"] else "-" for d in datasets),
                    style="dim" if r is top else None)
    console.print(per)


def _datasets(labelled) -> list[str]:
    return list(labelled[0][2]["by_dataset"]) if labelled else []


def _cell(m: dict, key: str) -> str:
    value = m.get(key, float("nan"))
    if "ci" not in m or key not in m["ci"]:
        return f"{value:.3f}"
    lo, hi = m["ci"][key]
    return f"{value:.3f} ({lo:.2f}-{hi:.2f})"


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
