"""Model shapes: the numbers of a transformer that decide its cost and its KV footprint.

Presets carry the public `config.json` values of each model (Hugging Face model cards);
`ModelShape.from_hf_config` reads any such file. No weights are ever downloaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UnknownNameError
from ..files import read_json_object

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "bf16": 2, "fp16": 2, "float32": 4, "fp32": 4}


@dataclass(frozen=True, slots=True)
class ModelShape:
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # SwiGLU: gate and up project to this, down projects back
    vocab_size: int
    dtype_bytes: int = 2
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                     "intermediate_size", "vocab_size", "dtype_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model {self.name}: {name} must be a whole number >= 1, "
                                 f"got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"model {self.name}: {self.num_heads} attention heads are not a "
                             f"multiple of its {self.num_kv_heads} KV heads")

    def to_dict(self) -> dict:
        return asdict(self)

    def check_tp(self, tp: int) -> None:
        """vLLM's rule: TP divides the attention heads, and the KV heads are split evenly
        across GPUs (TP divides them) or replicated evenly (they divide TP)."""
        if self.num_heads % tp:
            raise ValueError(f"--tp {tp} does not divide {self.name}'s {self.num_heads} "
                             "attention heads")
        kv = self.num_kv_heads
        if (kv % tp) if tp <= kv else (tp % kv):
            raise ValueError(f"--tp {tp} cannot split or replicate {self.name}'s {kv} KV heads "
                             f"evenly: use a TP that divides {kv} or a multiple of it")

    def kv_heads_per_gpu(self, tp: int) -> int:
        # vLLM replicates KV heads when TP exceeds their number: at least one per GPU.
        return max(1, self.num_kv_heads // tp)

    def attention_params_per_layer(self, tp: int = 1) -> int:
        q = self.hidden_size * self.num_heads * self.head_dim // tp
        kv = 2 * self.hidden_size * self.kv_heads_per_gpu(tp) * self.head_dim
        o = self.num_heads * self.head_dim * self.hidden_size // tp
        return q + kv + o

    def mlp_params_per_layer(self, tp: int = 1) -> int:
        return 3 * self.hidden_size * self.intermediate_size // tp

    def linear_params(self, tp: int = 1) -> int:
        """Weights of the per-layer linear layers on one GPU (what each token multiplies)."""
        per_layer = self.attention_params_per_layer(tp) + self.mlp_params_per_layer(tp)
        return self.num_layers * per_layer

    def lm_head_params(self, tp: int = 1) -> int:
        return self.vocab_size * self.hidden_size // tp  # vocab-parallel

    def total_params(self) -> int:
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embed
        norms = (2 * self.num_layers + 1) * self.hidden_size
        return self.linear_params() + embed + head + norms

    def weight_bytes(self, tp: int = 1) -> int:
        """Weights held by one GPU: linear layers, embeddings and LM head sharded by TP."""
        embed = self.vocab_size * self.hidden_size // tp
        head = 0 if self.tie_word_embeddings else self.lm_head_params(tp)
        norms = (2 * self.num_layers + 1) * self.hidden_size
        return (self.linear_params(tp) + embed + head + norms) * self.dtype_bytes

    def kv_bytes_per_token(self, tp: int = 1) -> int:
        """K and V of one token, all layers, on one GPU."""
        return 2 * self.num_layers * self.kv_heads_per_gpu(tp) * self.head_dim * self.dtype_bytes

    @classmethod
    def from_hf_config(cls, path: str | Path, name: str | None = None) -> ModelShape:
        path = Path(path)
        cfg = read_json_object(path, ValueError, "model config")

        def need(key, default=None):
            value = cfg.get(key, default)
            if value is None:
                raise ValueError(f"config has no field {key!r}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a whole number >= 1, got {value!r}")
            return value

        try:
            heads = need("num_attention_heads")
            hidden = need("hidden_size")
            if not cfg.get("head_dim") and hidden % heads:
                raise ValueError(f"hidden_size {hidden} is not a multiple of "
                                 f"num_attention_heads {heads}, and there is no head_dim")
            dtype = cfg.get("torch_dtype", cfg.get("dtype", "bfloat16"))
            if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
                raise ValueError(f"unsupported torch_dtype {dtype!r}")
            return cls(
                name=str(name or cfg.get("_name_or_path") or path.parent.name),
                num_layers=need("num_hidden_layers"),
                hidden_size=hidden,
                num_heads=heads,
                num_kv_heads=need("num_key_value_heads", heads),
                head_dim=need("head_dim") if cfg.get("head_dim") else hidden // heads,
                intermediate_size=need("intermediate_size"),
                vocab_size=need("vocab_size"),
                dtype_bytes=DTYPE_BYTES[dtype],
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            )
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _llama3_8b(name: str) -> ModelShape:  # meta-llama/Meta-Llama-3-8B(-Instruct), Llama-3.1-8B
    return ModelShape(name, 32, 4096, 32, 8, 128, 14336, 128256)


def _llama3_70b(name: str) -> ModelShape:  # meta-llama/Meta-Llama-3-70B, Llama-3.1/3.3-70B
    return ModelShape(name, 80, 8192, 64, 8, 128, 28672, 128256)


MODELS: dict[str, ModelShape] = {
    m.name: m for m in (
        _llama3_8b("llama-3-8b"),
        _llama3_8b("llama-3.1-8b"),
        _llama3_70b("llama-3-70b"),
        _llama3_70b("llama-3.1-70b"),
        ModelShape("qwen2.5-7b", 28, 3584, 28, 4, 128, 18944, 152064),  # Qwen/Qwen2.5-7B-Instruct
        ModelShape("qwen3-8b", 36, 4096, 32, 8, 128, 12288, 151936),  # Qwen/Qwen3-8B
        ModelShape("mistral-7b", 32, 4096, 32, 8, 128, 14336, 32768),  # Mistral-7B-v0.3
        # Not a real model: small enough to calibrate on a CPU in seconds, for tests.
        ModelShape("tiny", 2, 64, 4, 2, 16, 128, 256, dtype_bytes=4),
    )
}


class UnknownModelError(UnknownNameError):
    pass


def get_model(name: str) -> ModelShape:
    """A preset by name (case-insensitive), or a shape read from a config.json path."""
    if name.endswith(".json") or Path(name).is_dir():
        path = Path(name)
        return ModelShape.from_hf_config(path / "config.json" if path.is_dir() else path)
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(MODELS)} "
            "(or the path of a Hugging Face config.json)") from None
