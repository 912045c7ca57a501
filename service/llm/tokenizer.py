"""Byte-level tokens: one token per UTF-8 byte (ids 0-255) and three special tokens.

The chat template is ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n`` per message, then
``<|im_start|>assistant\\n``), its markers single special tokens. Generation is restricted
to printable ASCII, newline, tab and end-of-text (``allowed_ids``), so that every generated
token is one character and any prefix of a completion decodes as UTF-8.

Plain Python: no torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "END_OF_TEXT",
    "IM_END",
    "IM_START",
    "VOCAB_SIZE",
    "allowed_ids",
    "chat_prompt",
    "decode",
    "encode",
]

END_OF_TEXT = 256  # ends a completion; also the prompt of an empty completion prompt
IM_START = 257
IM_END = 258
VOCAB_SIZE = 259
_PRINTABLE = range(0x20, 0x7F)
_WHITESPACE = (0x09, 0x0A)


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def decode(ids: Sequence[int]) -> str:
    """The text of byte tokens; special tokens are dropped, broken UTF-8 replaced."""
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def chat_prompt(messages: Sequence[tuple[str, str]]) -> list[int]:
    """Token ids of ``(role, content)`` messages in the chat template, ready to generate."""
    ids: list[int] = []
    for role, content in messages:
        ids += [IM_START, *encode(f"{role}\n{content}"), IM_END, *encode("\n")]
    return [*ids, IM_START, *encode("assistant\n")]


def allowed_ids(*, end_of_text: bool) -> list[int]:
    """The token ids generation may choose from."""
    ids = [*_WHITESPACE, *_PRINTABLE]
    return [*ids, END_OF_TEXT] if end_of_text else ids
