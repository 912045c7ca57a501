"""The prompt cache: a repeated prompt skips its prefill and generates the same text."""

from __future__ import annotations

import asyncio

import pytest
import torch

from service.llm.engine import Engine
from service.llm.model import KvCache, TinyGpt, build_tiny_gpt
from service.llm.prompts import PromptCache
from service.llm.sampling import SamplingParams
from service.llm.tokenizer import encode

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model() -> TinyGpt:
    return build_tiny_gpt(CPU, torch.float32)


def generate(model: TinyGpt, prompt_cache_tokens: int, rounds: int) -> tuple[list[str], int]:
    """The texts of two seeded and one greedy request, ``rounds`` times; and the cache hits."""
    prompts = [encode("Once upon a time"), encode("hello there"), encode("Once upon a time")]
    params = [
        SamplingParams(max_tokens=12, temperature=0.8, seed=7, ignore_eos=True),
        SamplingParams(max_tokens=9, temperature=0.0, ignore_eos=True),
        SamplingParams(max_tokens=10, temperature=1.2, top_p=0.9, seed=3, ignore_eos=True),
    ]

    async def main() -> tuple[list[str], int]:
        engine = Engine(
            model,
            CPU,
            torch.float32,
            max_running=4,
            max_waiting=4,
            prompt_cache_tokens=prompt_cache_tokens,
        )
        engine.start()
        try:
            texts = []
            for _ in range(rounds):
                for prompt, p in zip(prompts, params, strict=True):
                    texts.append((await engine.submit(prompt, p).collect())[0])
            return texts, engine.prompts.hits
        finally:
            engine.close()

    return asyncio.run(main())


def test_a_cached_prompt_generates_what_a_fresh_prefill_does(model: TinyGpt) -> None:
    uncached, no_hits = generate(model, prompt_cache_tokens=0, rounds=2)
    cached, hits = generate(model, prompt_cache_tokens=1024, rounds=2)
    assert no_hits == 0
    assert hits == 4  # the first "Once upon a time" and "hello there" are prefilled, no more
    assert cached == uncached
    assert cached[:3] == cached[3:]  # seeded and greedy requests repeat themselves


def test_the_cache_keeps_the_most_recent_prompts_within_its_token_bound() -> None:
    kv = KvCache(1, device=CPU, dtype=torch.float32, context=16)
    cache = PromptCache(max_tokens=10)
    logits = torch.zeros(1, 4)
    for prompt in ([1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]):
        cache.store(prompt, kv, 0, logits)
    assert cache.get([1, 2, 3, 4]) is None  # evicted: 12 tokens > 10
    assert cache.get([5, 6, 7, 8]) is not None
    assert cache.get([5, 6, 7]) is None  # whole prompts only
    cache.store([13, 14, 15], kv, 0, logits)  # 11 tokens: the least recently used goes
    assert cache.get([9, 10, 11, 12]) is None
    assert cache.get([5, 6, 7, 8]) is not None
    cached = cache.get([13, 14, 15])
    assert cached is not None and cached.keys.shape[2] == 3
