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
    sliding_window: int = 0  # tokens a sliding-window layer attends to (0: no such layers)
    sliding_layers: int = 0  # how many of the layers attend only within the window
    num_experts: int = 0  # routed experts per MoE layer (0: a dense SwiGLU MLP)
    experts_per_token: int = 0  # experts each token is routed to
    moe_intermediate_size: int = 0  # SwiGLU width of one expert
    norms_per_layer: int = 2  # RMSNorms on the residual stream per layer (Gemma 3: 4)

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
        if self.sliding_layers and not 0 < self.sliding_layers <= self.num_layers:
            raise ValueError(f"{self.name}: sliding_layers must be in 1..num_layers")
        if self.sliding_layers and self.sliding_window < 1:
            raise ValueError(f"{self.name}: sliding layers need a sliding_window >= 1")
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise ValueError(f"{self.name}: experts_per_token must be in 1..num_experts")
        if self.num_experts and self.moe_intermediate_size < 1:
            raise ValueError(f"{self.name}: an MoE model needs moe_intermediate_size >= 1")

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

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def full_attention_layers(self) -> int:
        return self.num_layers - self.sliding_layers

    def kv_heads_per_gpu(self, tp: int) -> int:
        # vLLM replicates KV heads when TP exceeds their number: at least one per GPU.
        return max(1, self.num_kv_heads // tp)

    def attention_params_per_layer(self, tp: int = 1) -> int:
        q = self.hidden_size * self.num_heads * self.head_dim // tp
        kv = 2 * self.hidden_size * self.kv_heads_per_gpu(tp) * self.head_dim
        o = self.num_heads * self.head_dim * self.hidden_size // tp
        return q + kv + o

    def mlp_params_per_layer(self, tp: int = 1) -> int:
        """Weights of one layer's MLP held by one GPU: every expert of an MoE layer (experts
        sharded over the TP group) plus its router, which each GPU keeps whole."""
        if self.is_moe:
            experts = 3 * self.hidden_size * self.moe_intermediate_size * self.num_experts
            return experts // tp + self.hidden_size * self.num_experts
        return 3 * self.hidden_size * self.intermediate_size // tp

    def expert_params(self, tp: int = 1) -> int:
        """Weights of one expert of one layer on one GPU (0 for a dense model)."""
        return 3 * self.hidden_size * self.moe_intermediate_size // tp if self.is_moe else 0

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
            dtype = cfg.get("torch_dtype", cfg.get("dtype", "bfloat16"))
            tied = cfg.get("tie_word_embeddings")
            if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers (e.g. Gemma 3)
                cfg = {**cfg, **cfg["text_config"]}
            heads = need("num_attention_heads")
            hidden = need("hidden_size")
            if not cfg.get("head_dim") and hidden % heads:
                raise ValueError(f"hidden_size {hidden} is not a multiple of "
                                 f"num_attention_heads {heads}, and there is no head_dim")
            if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
                raise ValueError(f"unsupported torch_dtype {dtype!r}")
            layers = need("num_hidden_layers")
            window, sliding = _sliding_layers(cfg, layers)
            experts = int(cfg.get("num_experts") or cfg.get("num_local_experts") or 0)
            if tied is None:
                gemma = str(cfg.get("model_type", "")).startswith("gemma")
                tied = cfg.get("tie_word_embeddings", gemma)
            return cls(
                name=str(name or cfg.get("_name_or_path") or path.parent.name),
                num_layers=layers,
                hidden_size=hidden,
                num_heads=heads,
                num_kv_heads=need("num_key_value_heads", heads),
                head_dim=need("head_dim") if cfg.get("head_dim") else hidden // heads,
                intermediate_size=need("intermediate_size"),
                vocab_size=need("vocab_size"),
                dtype_bytes=DTYPE_BYTES[dtype],
                tie_word_embeddings=bool(tied),
                sliding_window=window,
                sliding_layers=sliding,
                num_experts=experts,
                experts_per_token=int(cfg.get("num_experts_per_tok") or 0) if experts else 0,
                moe_intermediate_size=int(cfg.get("moe_intermediate_size")
                                          or cfg.get("intermediate_size")) if experts else 0,
                # Gemma 2/3 norm before and after both attention and MLP.
                norms_per_layer=4 if str(cfg.get("model_type", "")).startswith(
                    ("gemma2", "gemma3")) else 2,
            )
        except (TypeError, ValueError) as e:  # TypeError: a list or object where a count goes
            raise ValueError(f"{path}: {e}") from None


def _sliding_layers(cfg: dict, layers: int) -> tuple[int, int]:
    """(window, number of sliding-window layers) from a config: `layer_types`, or Gemma 3's
    `sliding_window_pattern` (every Nth layer global, default 6), or `use_sliding_window`."""
    window = int(cfg.get("sliding_window") or 0)
    if not window:
        return 0, 0
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        sliding = sum(1 for t in types if t == "sliding_attention")
        return (window, sliding) if sliding else (0, 0)
    if str(cfg.get("model_type", "")).startswith("gemma3"):
        pattern = int(cfg.get("sliding_window_pattern") or 6)
        return window, layers - layers // pattern
    if cfg.get("use_sliding_window"):
        return window, min(layers, int(cfg.get("max_window_layers") or layers))
    return 0, 0


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
        ModelShape("qwen3-14b", 40, 5120, 40, 8, 128, 17408, 151936),  # Qwen/Qwen3-14B
        ModelShape("qwen3-32b", 64, 5120, 64, 8, 128, 25600, 151936),  # Qwen/Qwen3-32B
        # Qwen/Qwen3-30B-A3B(-Instruct-2507): 48 MoE layers, 128 experts, 8 per token.
        ModelShape("qwen3-30b-a3b", 48, 2048, 32, 4, 128, 6144, 151936, num_experts=128,
                   experts_per_token=8, moe_intermediate_size=768),
        # google/gemma-3-{12b,27b}-it text_config: 5 sliding-window (1024) layers per global
        # one; embeddings tied.
        ModelShape("gemma-3-12b", 48, 3840, 16, 8, 256, 15360, 262208, tie_word_embeddings=True,
                   sliding_window=1024, sliding_layers=40, norms_per_layer=4),
        ModelShape("gemma-3-27b", 62, 5376, 32, 16, 128, 21504, 262208,
                   tie_word_embeddings=True, sliding_window=1024, sliding_layers=52,
                   norms_per_layer=4),
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
