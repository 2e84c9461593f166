"""The pieces of a Llama-style decoder layer with random weights, as torch callables.

Shapes follow tensor parallelism the way vLLM shards them: QKV and gate/up split by output
columns, O and down by input rows, heads divided among GPUs (at least one KV head each),
the vocabulary split for the LM head. Nothing is downloaded: weights are random tensors of
the right shapes, which is all a kernel's time depends on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from .shapes import ModelShape

DTYPES = {2: torch.bfloat16, 4: torch.float32}


class LayerKernels:
    def __init__(self, shape: ModelShape, tp: int, device: torch.device,
                 dtype: torch.dtype | None = None, seed: int = 0) -> None:
        self.shape, self.tp, self.device = shape, tp, device
        self.dtype = dtype or DTYPES[shape.dtype_bytes]
        gen = torch.Generator(device="cpu").manual_seed(seed)
        s = shape
        self.heads = max(1, s.num_heads // tp)
        self.kv_heads = s.kv_heads_per_gpu(tp)
        d = s.head_dim
        inter = s.intermediate_size // tp

        def weight(rows, cols):
            w = torch.randn(rows, cols, generator=gen, dtype=torch.float32) * 0.02
            return w.to(device=device, dtype=self.dtype)

        self.w_qkv = weight((self.heads + 2 * self.kv_heads) * d, s.hidden_size)
        self.w_o = weight(s.hidden_size, self.heads * d)
        self.w_gate_up = weight(2 * inter, s.hidden_size)
        self.w_down = weight(s.hidden_size, inter)
        self.w_head = weight(s.vocab_size // tp, s.hidden_size)
        self.norm = torch.ones(s.hidden_size, device=device, dtype=self.dtype)
        self.inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, device=device).float() / d))

    def tokens(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.shape.hidden_size, device=self.device, dtype=self.dtype)

    def kv(self, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = (batch, self.kv_heads, length, self.shape.head_dim)
        return (torch.randn(size, device=self.device, dtype=self.dtype),
                torch.randn(size, device=self.device, dtype=self.dtype))

    # -- per-token work of one layer: norms, projections, rotary, activation -----------

    def rms_norm(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + 1e-6)).to(x.dtype) * self.norm

    def rotary(self, q: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        cos, sin = freqs.cos().to(q.dtype), freqs.sin().to(q.dtype)
        q1, q2 = q[..., 0::2], q[..., 1::2]
        return torch.stack((q1 * cos[:, None] - q2 * sin[:, None],
                            q1 * sin[:, None] + q2 * cos[:, None]), dim=-1).flatten(-2)

    def pre_attention(self, x: torch.Tensor, positions: torch.Tensor):
        """Norm, QKV projection and rotary: returns q, k, v as [tokens, heads, head_dim]."""
        d = self.shape.head_dim
        qkv = F.linear(self.rms_norm(x), self.w_qkv)
        q, k, v = qkv.split([self.heads * d, self.kv_heads * d, self.kv_heads * d], dim=-1)
        q = self.rotary(q.view(-1, self.heads, d), positions)
        k = self.rotary(k.view(-1, self.kv_heads, d), positions)
        return q, k, v.view(-1, self.kv_heads, d)

    def post_attention(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """O projection, residual, norm, SwiGLU MLP, residual."""
        h = x + F.linear(attn.reshape(x.shape[0], -1), self.w_o)
        gate, up = F.linear(self.rms_norm(h), self.w_gate_up).chunk(2, dim=-1)
        return h + F.linear(F.silu(gate) * up, self.w_down)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """All per-token work of one layer with attention replaced by its input: what the
        linear table measures (attention is timed on its own)."""
        positions = torch.arange(x.shape[0], device=self.device)
        q, _, _ = self.pre_attention(x, positions)
        return self.post_attention(x, q)

    # -- attention ---------------------------------------------------------------------

    def prefill_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """q: [1, heads, chunk, d]; k, v: [1, kv_heads, cached + chunk, d]; causal from the
        bottom right, as chunked prefill needs."""
        mask = causal_lower_right(q.shape[2], k.shape[2])
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    def decode_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """q: [batch, heads, 1, d]; k, v: [batch, kv_heads, context, d]."""
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    # -- the LM head and sampling --------------------------------------------------------

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(self.rms_norm(x), self.w_head).float()
        return torch.argmax(torch.softmax(logits, dim=-1), dim=-1)
