"""How a token is chosen, and where generated text ends.

``sample`` takes a batch of logits and, per sequence, its ``SamplingParams`` and its own
``random.Random``: greedy at temperature 0, else a draw from the softmax at that
temperature (nucleus sampling under ``top_p``) by inverse CDF on the CPU in float64, so
that a seeded request gives the same text whatever else shares its batch. Only printable
ASCII, newline, tab and end-of-text can be chosen (``tokenizer.allowed_ids``), end-of-text
with a bias, or never with ``ignore_eos``. ``StopMatcher`` cuts the text at a stop
sequence and holds back what could still become one.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from service.llm.tokenizer import END_OF_TEXT, VOCAB_SIZE, allowed_ids

__all__ = ["EOS_LOGIT_BIAS", "SamplingParams", "StopMatcher", "sample"]

#: added to the end-of-text logit: random weights would otherwise end ~1 % of tokens
EOS_LOGIT_BIAS = -2.0


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


class StopMatcher:
    """Cuts generated text at the first stop sequence, holding back a possible start of one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [stop for stop in stops if stop]
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that can be released now, and whether a stop sequence was reached."""
        if not self._stops:  # nothing to look for: the hot path of most requests
            return text, False
        buffer = self._held + text
        found = [index for stop in self._stops if (index := buffer.find(stop)) >= 0]
        if found:
            self._held = ""
            return buffer[: min(found)], True
        keep = max(
            (k for stop in self._stops for k in range(1, len(stop)) if buffer.endswith(stop[:k])),
            default=0,
        )
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def sample(
    logits: torch.Tensor, params: Sequence[SamplingParams], rngs: Sequence[random.Random]
) -> list[int]:
    """One token per row of ``logits`` ([batch, vocab]), under that row's parameters."""
    rows = logits.to(device="cpu", dtype=torch.float64, copy=True)  # the cache keeps logits
    eos = torch.tensor([-math.inf if p.ignore_eos else EOS_LOGIT_BIAS for p in params])
    eos += rows[:, END_OF_TEXT]
    rows += _MASK
    rows[:, END_OF_TEXT] = eos
    tokens: list[int] = rows.argmax(dim=-1).tolist()  # greedy; the others replaced below
    drawn = [i for i, p in enumerate(params) if p.temperature != 0.0 and p.top_p >= 1.0]
    if drawn:  # inverse CDF for the whole batch at once: a token of probability 0 spans no interval
        index = torch.tensor(drawn)
        temperatures = torch.tensor([params[i].temperature for i in drawn], dtype=torch.float64)
        cumulative = torch.softmax(rows[index] / temperatures.unsqueeze(1), dim=-1).cumsum(dim=-1)
        draws = torch.tensor([rngs[i].random() for i in drawn], dtype=torch.float64)
        targets = (draws * cumulative[:, -1]).unsqueeze(1)
        chosen = torch.searchsorted(cumulative, targets, right=True).squeeze(1)
        for i, token in zip(drawn, chosen.clamp_(max=rows.shape[1] - 1).tolist(), strict=True):
            tokens[i] = token
    for i, (p, rng) in enumerate(zip(params, rngs, strict=True)):
        if p.temperature != 0.0 and p.top_p < 1.0:
            tokens[i] = _draw(rows[i], p.temperature, p.top_p, rng)
    return tokens


def _logit_mask() -> torch.Tensor:
    """0 where generation may choose a token (end-of-text is set per sequence), else -inf."""
    mask = torch.full((VOCAB_SIZE,), -math.inf, dtype=torch.float64)
    mask[allowed_ids(end_of_text=False)] = 0.0
    return mask


_MASK = _logit_mask()


def _draw(row: torch.Tensor, temperature: float, top_p: float, rng: random.Random) -> int:
    """A token drawn from the softmax of ``row / temperature`` (nucleus ``top_p``)."""
    probabilities = torch.softmax(row / temperature, dim=-1)
    order = torch.argsort(probabilities, descending=True, stable=True)
    ranked = probabilities[order]
    if top_p < 1.0:
        cumulative = torch.cumsum(ranked, dim=-1)
        keep = int(torch.searchsorted(cumulative, torch.tensor(top_p, dtype=torch.float64))) + 1
        ranked = ranked[:keep]
    draw = rng.random() * float(ranked.sum())
    tokens = order.tolist()[: len(ranked)]
    for token, probability in zip(tokens, itertools.accumulate(ranked.tolist()), strict=True):
        if draw < probability:
            return int(token)
    return int(order[len(ranked) - 1])
