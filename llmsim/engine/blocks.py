"""Paged KV cache: a pool of fixed-size blocks handed to requests as their context grows.

Without prefix caching the identity of a block never matters, only how many each request
holds, so the pool keeps counts. A request holds ceil(tokens / block_size) blocks for the
tokens whose KV it has computed or is about to compute in this iteration.
"""

from __future__ import annotations

from .request import Request

try:  # where this module is compiled (setup.py), prefix_cache's pool still subclasses it
    from mypy_extensions import mypyc_attr
except ImportError:  # pure Python: nothing to say
    def mypyc_attr(*args, **kwargs):  # type: ignore[misc]
        return lambda cls: cls


@mypyc_attr(allow_interpreted_subclasses=True)
class BlockPool:
    def __init__(self, num_blocks: int, block_size: int = 16) -> None:
        self.caching = False  # prefix caching: prefix_cache.CachingBlockPool
        self.anonymous = True  # blocks have no identity, only counts (as prefix_cache's
        # until a key)
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.free_blocks = num_blocks
        self._held: dict[int, int] = {}  # request id -> blocks it holds
        self._max_tokens = num_blocks * block_size

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - self.free_blocks

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def held(self, req: Request) -> int:
        return self._held.get(req.id, 0)

    def fits_ever(self, req: Request) -> bool:
        """Whether the request could run to completion alone in an empty pool (its
        max_kv_tokens in whole blocks, written out: this runs once per request)."""
        return req.prompt_tokens + req.output_tokens - 1 <= self._max_tokens

    def missing(self, req: Request, num_new_tokens: int) -> int:
        """Blocks the request lacks to compute `num_new_tokens` more tokens (blocks_for and
        held written out: this is the scheduler's innermost question)."""
        need = -(-(req.computed + num_new_tokens) // self.block_size) - self._held.get(req.id, 0)
        return need if need > 0 else 0

    def peek(self, req: Request) -> int:
        """Tokens of `req` a router would find cached here: none without prefix caching."""
        return 0

    def hit(self, req: Request) -> int:
        """Tokens of `req` found in the cache: none without prefix caching."""
        return 0

    def can_allocate(self, req: Request, num_new_tokens: int) -> bool:
        """Room for a request entering the running set with its first `num_new_tokens`. As
        vLLM V1's admission gate (`scheduler_reserve_full_isl`, on by default), the free pool
        must hold all the tokens it has (prompt, plus those emitted before a preemption),
        though `allocate` takes only the first chunk's blocks."""
        assert req.id not in self._held, f"request {req.id} already holds blocks"
        whole = max(req.prompt_tokens + req.emitted, req.computed + num_new_tokens)
        return -(-whole // self.block_size) <= self.free_blocks

    def allocate(self, req: Request, num_new_tokens: int) -> None:
        need = self.missing(req, num_new_tokens)
        assert req.id not in self._held and need <= self.free_blocks
        self._held[req.id] = need
        self.free_blocks -= need

    def can_append(self, req: Request, num_new_tokens: int) -> bool:
        """Room for a running request to compute `num_new_tokens` more tokens."""
        assert req.id in self._held, f"request {req.id} holds no blocks"
        return self.missing(req, num_new_tokens) <= self.free_blocks

    def append(self, req: Request, num_new_tokens: int) -> None:
        need = self.missing(req, num_new_tokens)
        assert req.id in self._held and need <= self.free_blocks
        self._held[req.id] += need
        self.free_blocks -= need

    def free(self, req: Request) -> None:
        self.free_blocks += self._held.pop(req.id)
        assert self.free_blocks <= self.num_blocks

    # The fast engine keeps lockstep decoders as an aggregate: their blocks stay in use but
    # are not attributed per request until they are settled again.

    def take(self, n: int) -> None:
        """Hand `n` blocks to aggregated requests."""
        assert 0 <= n <= self.free_blocks
        self.free_blocks -= n

    def unsettle(self, req: Request) -> None:
        """Stop attributing blocks to `req`; they stay in use."""
        held = self._held.pop(req.id)
        assert held == -(-req.computed // self.block_size)  # blocks_for(computed)

    def settle(self, req: Request) -> None:
        """Attribute to `req` again the blocks its computed tokens occupy."""
        assert req.id not in self._held
        self._held[req.id] = -(-req.computed // self.block_size)  # blocks_for, written out
