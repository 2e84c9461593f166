"""A trained predictor on disk: a folder, never a pickle.

    FOLDER/card.json          kind, format, whose lengths were learned, training data,
                              configuration, training record, test metrics, versions
    FOLDER/head.safetensors   neural predictors: the scalar head
    FOLDER/encoder.safetensors   ... and the encoder, when it was fine-tuned
    FOLDER/model.txt          lgbm: LightGBM's text model

Loading reads JSON, safetensors and LightGBM text: a folder someone sent cannot run code.
The folder is written under a temporary name and renamed, so it is whole or absent.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import check_folder, read_json_object, write_folder_atomic
from .encoder import EmbeddingCache
from .length import PromptLengthPredictor

FORMAT = "llmsim-predictor/1"
NEURAL = ("pars", "pointwise", "listmle")
KINDS = (*NEURAL, "lgbm", "length")


class ArtifactError(ValueError):
    """A folder that is not a predictor llmsim can load; says which file and why."""


def save_predictor(predictor, folder: str | Path, card: dict, force: bool = False) -> Path:
    folder = Path(folder)
    check_folder(folder, force)
    card = {"format": FORMAT, "kind": predictor.kind, **card}

    def fill(tmp: Path) -> None:
        (tmp / "card.json").write_text(json.dumps(card, indent=2, default=_plain) + "\n")
        if predictor.kind in NEURAL:
            from safetensors.torch import save_file

            for name, tensors in predictor.tensors().items():
                save_file(tensors, str(tmp / f"{name}.safetensors"))
        elif predictor.kind == "lgbm":
            predictor.booster.save_model(str(tmp / "model.txt"))

    write_folder_atomic(folder, fill)
    return folder


def read_card(folder: str | Path) -> dict:
    path = Path(folder) / "card.json"
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such predictor folder")
    try:
        card = read_json_object(path, ArtifactError, "predictor card")
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: not a predictor (no card.json)") from None
    if card.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {card.get('format')!r} is not {FORMAT!r}")
    if card.get("kind") not in KINDS:
        raise ArtifactError(f"{path}: unknown predictor kind {card.get('kind')!r}; "
                            f"known: {', '.join(KINDS)}")
    return card


def load_predictor(folder: str | Path, cache: EmbeddingCache | None = None):
    """The predictor in `folder`, with its card as `.card`."""
    folder = Path(folder)
    card = read_card(folder)
    kind = card["kind"]
    try:
        if kind in NEURAL:
            from .neural import load_neural

            predictor = load_neural(folder, card, cache)
        elif kind == "lgbm":
            from .lgbm import load_lgbm

            predictor = load_lgbm(folder, card)
        else:
            predictor = PromptLengthPredictor()
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{folder}/card.json: missing or bad field ({e})") from None
    except (ImportError, ArtifactError, ValueError):
        raise
    except Exception as e:  # safetensors, torch and LightGBM each raise their own kinds
        raise ArtifactError(f"{folder}: weights do not load ({type(e).__name__}: {e})") \
            from None
    predictor.card = card
    return predictor


def _plain(x):
    """JSON for numpy scalars in cards."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON: {type(x).__name__}")
