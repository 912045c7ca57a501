"""``tiny-gpt``: a decoder-only transformer built in code from a fixed seed, and its KV cache.

Byte-level vocabulary (``tokenizer``), d=384, 4 layers, 6 heads, learned positions, a
context of 1 024 tokens, pre-norm blocks. The weights
are random (seeded): the model produces bytes, not sense, at the cost of a real one.

Why d=384 and not 256: a decode step of one sequence should cost what it costs a real
model, reading every weight for one token, so that batching pays as it does in serving.
At d=256 (3 M parameters, 13 MB) the weights sit in a CPU's cache and a step of one is
mostly per-operator overhead; on this project's 2-core runner a decode step of 16 then
cost 4.8x one sequence's per token, and the whole service reached 3.4x. At d=384 (7 M
parameters, 28 MB) a step of one is 2.1 ms and of 16 is 4.5 ms (7.6x a token), and the
service 5.1x (``benchmarks/llm_serving.py``).

The KV cache holds one slot per running sequence: ``keys``/``values`` of shape
``[layers, slots, heads, context, head_dim]``. ``forward`` takes, per sequence of the
batch, its slot and the positions of its new tokens: a prefill writes a whole prompt into
one slot, a decode step one token into each running slot. The engine keeps the running
sequences in slots ``0..n-1`` (``KvCache.move`` fills a freed slot), so that a decode step
reads the cache through a view, without gathering it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from service.llm import CONTEXT_LENGTH
from service.llm.tokenizer import VOCAB_SIZE

__all__ = ["D_MODEL", "HEADS", "LAYERS", "SEED", "KvCache", "TinyGpt", "build_tiny_gpt"]

SEED = 1234
D_MODEL = 384
LAYERS = 4
HEADS = 6
_FFN = 4 * D_MODEL
_HEAD_DIM = D_MODEL // HEADS
_SCALE = 1.0 / math.sqrt(_HEAD_DIM)


class KvCache:
    """Keys and values of ``slots`` sequences of up to ``context`` tokens each."""

    def __init__(
        self, slots: int, *, device: torch.device, dtype: torch.dtype, context: int = CONTEXT_LENGTH
    ) -> None:
        shape = (LAYERS, slots, HEADS, context, _HEAD_DIM)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.slots = slots
        self.context = context

    def read(self, slot: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of slot ``slot``'s first ``length`` keys and values."""
        return (
            self.keys[:, slot, :, :length].clone(),
            self.values[:, slot, :, :length].clone(),
        )

    def write(self, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Put keys and values from ``read`` at the start of slot ``slot``."""
        length = keys.shape[2]
        self.keys[:, slot, :, :length] = keys
        self.values[:, slot, :, :length] = values

    def move(self, source: int, target: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``source`` into slot ``target``."""
        self.keys[:, target, :, :length] = self.keys[:, source, :, :length]
        self.values[:, target, :, :length] = self.values[:, source, :, :length]


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.out = nn.Linear(D_MODEL, D_MODEL)
        self.norm2 = nn.LayerNorm(D_MODEL)
        self.ffn = nn.Sequential(nn.Linear(D_MODEL, _FFN), nn.GELU(), nn.Linear(_FFN, D_MODEL))

    def forward(
        self,
        hidden: torch.Tensor,  # [batch, tokens, d]
        cache: KvCache,
        layer: int,
        slots: torch.Tensor,  # [batch, 1]
        positions: torch.Tensor,  # [batch, tokens]
        visible: torch.Tensor,  # [batch, 1, tokens, keys]: True where a query sees a key
        first_slot: int | None,  # the slots are first_slot.. first_slot+batch-1, or None
    ) -> torch.Tensor:
        batch, tokens, _ = hidden.shape
        q, k, v = self.qkv(self.norm1(hidden)).split(D_MODEL, dim=-1)
        q = q.view(batch, tokens, HEADS, _HEAD_DIM).transpose(1, 2)
        # Indexed by [slot, :, position]: the advanced indices come first, [batch, tokens].
        cache.keys[layer][slots, :, positions] = k.view(batch, tokens, HEADS, _HEAD_DIM)
        cache.values[layer][slots, :, positions] = v.view(batch, tokens, HEADS, _HEAD_DIM)
        length = visible.shape[-1]
        if first_slot is not None:  # consecutive slots: a view, no copy
            keys = cache.keys[layer, first_slot : first_slot + batch, :, :length]
            values = cache.values[layer, first_slot : first_slot + batch, :, :length]
        else:
            keys = cache.keys[layer][slots[:, 0], :, :length]
            values = cache.values[layer][slots[:, 0], :, :length]
        if tokens == 1:  # a decode step: SDPA's CPU kernel costs ~10x this for one query
            scores = torch.matmul(q, keys.transpose(-1, -2)) * _SCALE
            weights = torch.softmax(scores.masked_fill(~visible, -math.inf), dim=-1)
            attended = torch.matmul(weights, values)
        else:
            attended = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible)
        hidden = hidden + self.out(attended.transpose(1, 2).reshape(batch, tokens, D_MODEL))
        result: torch.Tensor = hidden + self.ffn(self.norm2(hidden))
        return result


class TinyGpt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB_SIZE, D_MODEL)
        self.positions = nn.Embedding(CONTEXT_LENGTH, D_MODEL)
        self.blocks = nn.ModuleList(_Block() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(D_MODEL)
        # Not tied to the input embedding: with random weights, tied ones echo the input.
        self.head = nn.Linear(D_MODEL, VOCAB_SIZE, bias=False)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(
        self,
        token_ids: torch.Tensor,  # [batch, tokens]
        positions: torch.Tensor,  # [batch, tokens]
        slots: Sequence[int],  # one per sequence
        length: int,  # keys to attend to: the longest sequence's positions after this call
        cache: KvCache,
    ) -> torch.Tensor:
        """Logits of the last position of each sequence, [batch, vocab]; fills the cache."""
        device = token_ids.device
        keys = torch.arange(length, device=device)
        visible = (keys <= positions.unsqueeze(-1)).unsqueeze(1)
        consecutive = list(slots) == list(range(slots[0], slots[0] + len(slots)))
        first_slot = slots[0] if consecutive else None
        slot_ids = torch.tensor(slots, device=device).unsqueeze(1)
        hidden = self.tokens(token_ids) + self.positions(positions)
        for layer, block in enumerate(self.blocks):
            hidden = block(hidden, cache, layer, slot_ids, positions, visible, first_slot)
        last = self.norm(hidden[:, -1])
        logits: torch.Tensor = self.head(last)
        return logits


def build_tiny_gpt(device: torch.device, dtype: torch.dtype) -> TinyGpt:
    """The model with its seeded weights, in eval mode on ``device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = TinyGpt()
    return model.eval().requires_grad_(False).to(device, dtype)
