"""Prompt caching: the KV cache and last logits of recent prompts, reused by later requests.

A prompt that was prefilled before (the same token ids: a shared system prompt, a
template, a client that retries) needs no forward pass: its keys and values are copied
into the new sequence's slot and its first token is sampled from the stored logits, which
are those the forward pass gave (a seeded request draws the same text either way). As
vLLM's automatic prefix caching, but for whole prompts only: a prompt that merely starts
with a cached one is prefilled in full, since a forward pass over its remainder alone
could round differently and change a seeded request's text.

Bounded by ``max_tokens`` cached positions in all (least recently used out first); 0 turns
it off. The hard constraint: an entry is only ever what the model computed for exactly
those token ids, so a hit never changes what a request generates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.llm.model import KvCache

__all__ = ["CachedPrompt", "PromptCache"]

_MIN_TOKENS = 2  # shorter prompts are not worth an entry


@dataclass(frozen=True)
class CachedPrompt:
    """One prompt's keys and values ``[layers, heads, length, head_dim]`` and last logits."""

    length: int
    keys: torch.Tensor
    values: torch.Tensor
    logits: torch.Tensor  # [1, vocab]


class PromptCache:
    """The most recently prefilled prompts, up to ``max_tokens`` positions in all."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[int, ...], CachedPrompt] = OrderedDict()
        self._tokens = 0
        self.hits = 0  # prompts found whole or in part

    def get(self, prompt: Sequence[int]) -> CachedPrompt | None:
        """The entry of exactly these token ids, if kept."""
        key = tuple(prompt)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return entry

    def store(self, prompt: Sequence[int], cache: KvCache, slot: int, logits: torch.Tensor) -> None:
        """Keep ``prompt``'s keys and values (slot ``slot`` of ``cache``) and its logits."""
        length = len(prompt)
        key = tuple(prompt)
        if length < _MIN_TOKENS or length > self.max_tokens or key in self._entries:
            return
        keys, values = cache.read(slot, length)
        self._entries[key] = CachedPrompt(length, keys, values, logits.clone())
        self._tokens += length
        while self._tokens > self.max_tokens:
            _, evicted = self._entries.popitem(last=False)
            self._tokens -= evicted.length
