"""A reference generative model for the service: ``tiny-gpt`` behind OpenAI-compatible routes.

Modules, one role each: ``tokenizer`` (bytes <-> token ids, the chat template), ``model``
(the decoder-only transformer and its KV cache), ``sampling`` (token choice, stop
sequences), ``engine`` (continuous batching in a thread of its own), ``protocol``
(OpenAI's request bodies and error body) and ``api`` (the ``/v1`` routes, OpenAI's JSON
and SSE answers).

This package's import stays light (no torch, no fastapi), so that the launcher can check
``--models`` names against it before it decides to import torch.
"""

from __future__ import annotations

__all__ = ["CONTEXT_LENGTH", "MODEL_ID", "MODEL_IDS"]

MODEL_ID = "tiny-gpt"
MODEL_IDS = (MODEL_ID,)  # the generative models ``--models`` accepts besides the registry
CONTEXT_LENGTH = 1024  # tokens: the prompt and the completion together
