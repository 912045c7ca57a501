"""The registry of servable architectures, and how one batch goes through a model.

Models are built in code from a fixed seed, so every process (and every worker) serves the
same weights and the same outputs, and nothing is downloaded. A registered architecture may
take a local state dict (``--weights name=path``) read with ``weights_only=True``: a model is
only ever chosen by its registered name, never by a path a request names.

Validation here is plain Python over the parsed JSON, so that a bad value is reported with
its field and value before any tensor is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.payloads import (
    EMBEDDING_DIM,
    ENCODER_MAX_TOKENS,
    MLP_CLASSES,
    MLP_FEATURES,
    VOCAB_SIZE,
)

__all__ = [
    "REGISTRY",
    "SEED",
    "InvalidInputError",
    "ModelSpec",
    "Placement",
    "TensorSpec",
    "UnknownModelError",
    "WeightsError",
    "build_model",
    "get_spec",
    "run_batch",
    "show",
]

SEED = 1234
_FLOAT32_MAX = 3.4028234663852886e38
_ENCODER_HEADS = 6
_ENCODER_LAYERS = 6
_ENCODER_FFN = 1536  # MiniLM's intermediate size
_MLP_HIDDEN = 256


class UnknownModelError(LookupError):
    """A model name that is not registered."""

    def __init__(self, name: str) -> None:
        # show(): the name comes from a request and may be a megabyte long.
        super().__init__(f"unknown model {show(name)}; registered models: {', '.join(REGISTRY)}")
        self.name = name

    def __str__(self) -> str:
        # LookupError's str() would quote the message like a dict key.
        return str(self.args[0])


class InvalidInputError(ValueError):
    """A request value that does not fit a model's input; the message names field and value."""


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit its architecture."""


def show(value: object) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Placement:
    """Where a model runs: its device and the dtype of its weights and float inputs."""

    device: torch.device
    dtype: torch.dtype = torch.float32


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the Open Inference Protocol describes it."""

    name: str
    datatype: str  # "FP32" or "INT64"
    shape: tuple[int, ...]  # -1 marks a variable dimension; the first is the batch

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: how to build it, check an example, and batch examples."""

    name: str
    description: str
    input: TensorSpec
    output: TensorSpec
    min_length: int  # of one example
    max_length: int
    element: str  # what one element of an example is, for error messages
    check_values: Callable[[Sequence[Any], str], list[Any]]
    value_schema: Mapping[str, Any]  # JSON Schema of one element: what check_values accepts
    build: Callable[[], nn.Module]
    collate: Callable[[Sequence[Sequence[Any]], Placement], tuple[torch.Tensor, ...]]
    warmup_length: int  # of the examples warm-up batches are made of

    def check_example(self, example: object, where: str) -> list[Any]:
        """The example as a list of checked values, or InvalidInputError naming ``where``."""
        if not isinstance(example, list):
            raise InvalidInputError(
                f"{where}: expected a list of {self.element}s, got {show(example)}"
            )
        self.check_length(len(example), where)
        return self.check_values(example, where)

    def example_schema(self) -> dict[str, Any]:
        """JSON Schema of one example, for ``/openapi.json``: what ``check_example`` accepts."""
        return {
            "type": "array",
            "minItems": self.min_length,
            "maxItems": self.max_length,
            "items": dict(self.value_schema),
        }

    def check_length(self, length: int, where: str) -> None:
        if self.min_length <= length <= self.max_length:
            return
        if self.min_length == self.max_length:
            expected = f"{self.max_length} {self.element}s"
        else:
            expected = f"{self.min_length} to {self.max_length} {self.element}s"
        raise InvalidInputError(f"{where}: expected {expected}, got {length}")

    def warmup_example(self) -> list[Any]:
        if self.input.datatype == "INT64":
            return [1 + j for j in range(self.warmup_length)]
        return [0.0] * self.warmup_length


def _check_features(values: Sequence[Any], where: str) -> list[Any]:
    for j, value in enumerate(values):
        # type() rather than isinstance(): JSON true/false must not pass as 1.0/0.0.
        if type(value) is not float and type(value) is not int:
            raise InvalidInputError(f"{where}[{j}]: expected a number, got {show(value)}")
        # NaN fails both comparisons; JSON's 1e999 parses to inf; float32 overflows above MAX.
        if not -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
            raise InvalidInputError(
                f"{where}[{j}]: expected a finite float32 number, got {show(value)}"
            )
    return list(values)


def _check_token_ids(values: Sequence[Any], where: str) -> list[Any]:
    ids = []
    for j, value in enumerate(values):
        # JSON has one number type: 5.0 and 5e0 are the integer 5, as JSON Schema says.
        if type(value) is float and value.is_integer():
            value = int(value)
        if type(value) is not int:
            raise InvalidInputError(
                f"{where}[{j}]: expected an integer token id, got {show(value)}"
            )
        if not 0 <= value < VOCAB_SIZE:
            raise InvalidInputError(
                f"{where}[{j}]: token id {value} is out of range 0..{VOCAB_SIZE - 1}"
            )
        ids.append(value)
    return ids


class MlpClassifier(nn.Module):
    """64 features -> 256 -> 10 class probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(MLP_FEATURES, _MLP_HIDDEN), nn.ReLU(), nn.Linear(_MLP_HIDDEN, MLP_CLASSES)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layers(features), dim=-1)


class TextEncoder(nn.Module):
    """A MiniLM-sized encoder: token ids -> mean-pooled 384-d embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB_SIZE, EMBEDDING_DIM)
        self.positions = nn.Embedding(ENCODER_MAX_TOKENS, EMBEDDING_DIM)
        self.norm = nn.LayerNorm(EMBEDDING_DIM)
        layer = nn.TransformerEncoderLayer(
            EMBEDDING_DIM,
            _ENCODER_HEADS,
            dim_feedforward=_ENCODER_FFN,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
        )
        # Nested tensors would skip padding, but measured no faster on CPU here and warn
        # ("prototype stage") on first use, which strict test settings turn into errors.
        self.encoder = nn.TransformerEncoder(layer, _ENCODER_LAYERS, enable_nested_tensor=False)
        self._initialise()

    def _initialise(self) -> None:
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        # TransformerEncoder deep-copies one layer: without this all six would be equal.
        for layer in self.encoder.layers:
            nn.init.xavier_uniform_(layer.self_attn.in_proj_weight)
            for module in layer.modules():
                if isinstance(module, nn.Linear):
                    module.reset_parameters()

    def forward(self, token_ids: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        hidden = self.norm(self.tokens(token_ids) + self.positions(positions))
        hidden = self.encoder(hidden, src_key_padding_mask=padding_mask)
        keep = (~padding_mask).unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * keep).sum(dim=1) / keep.sum(dim=1)
        return pooled


def _collate_features(
    examples: Sequence[Sequence[Any]], placement: Placement
) -> tuple[torch.Tensor, ...]:
    return (torch.tensor(examples, dtype=placement.dtype, device=placement.device),)


def _collate_token_ids(
    examples: Sequence[Sequence[Any]], placement: Placement
) -> tuple[torch.Tensor, ...]:
    """Pad to the longest sequence of the batch; the mask is True on padding."""
    longest = max(len(example) for example in examples)
    padded = [[*example, *([0] * (longest - len(example)))] for example in examples]
    lengths = torch.tensor([len(example) for example in examples])
    token_ids = torch.tensor(padded, dtype=torch.int64)
    padding_mask = torch.arange(longest).unsqueeze(0) >= lengths.unsqueeze(1)
    return token_ids.to(placement.device), padding_mask.to(placement.device)


MLP = ModelSpec(
    name="mlp",
    description="MLP classifier: 64 floats -> 256 -> 10 class probabilities",
    input=TensorSpec("input", "FP32", (-1, MLP_FEATURES)),
    output=TensorSpec("output", "FP32", (-1, MLP_CLASSES)),
    min_length=MLP_FEATURES,
    max_length=MLP_FEATURES,
    element="number",
    check_values=_check_features,
    value_schema={"type": "number", "minimum": -_FLOAT32_MAX, "maximum": _FLOAT32_MAX},
    build=MlpClassifier,
    collate=_collate_features,
    warmup_length=MLP_FEATURES,
)

ENCODER = ModelSpec(
    name="encoder",
    description=(
        f"MiniLM-sized text encoder: up to {ENCODER_MAX_TOKENS} token ids -> "
        f"mean-pooled {EMBEDDING_DIM}-d embedding"
    ),
    input=TensorSpec("input", "INT64", (-1, -1)),
    output=TensorSpec("output", "FP32", (-1, EMBEDDING_DIM)),
    min_length=1,
    max_length=ENCODER_MAX_TOKENS,
    element="token id",
    check_values=_check_token_ids,
    value_schema={"type": "integer", "minimum": 0, "maximum": VOCAB_SIZE - 1},
    build=TextEncoder,
    collate=_collate_token_ids,
    # Short sequences are what load tests send; warming longer ones costs start-up time.
    warmup_length=32,
)

REGISTRY: Mapping[str, ModelSpec] = {spec.name: spec for spec in (MLP, ENCODER)}


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownModelError(name) from None


def build_model(spec: ModelSpec, placement: Placement, weights: Path | None = None) -> nn.Module:
    """The architecture with seeded (or loaded) weights, in eval mode where ``placement`` says."""
    # fork_rng keeps the seeding from leaking into the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        module = spec.build()
    if weights is not None:
        _load_weights(spec, module, weights)
    return module.eval().requires_grad_(False).to(placement.device, placement.dtype)


def _load_weights(spec: ModelSpec, module: nn.Module, path: Path) -> None:
    state = _read_state_dict(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: does not fit architecture {spec.name!r}: {exc}") from None


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise WeightsError(
                f"{path}: reading .safetensors needs the 'safetensors' package; install it "
                "or save the state dict with torch.save"
            ) from None
        tensors: Mapping[str, torch.Tensor] = load_file(str(path))
        return tensors
    try:
        # weights_only refuses anything but tensors and plain containers: no code runs.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable state dict: {exc}") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise WeightsError(f"{path}: expected a state dict (names -> tensors)")
    return state


def run_batch(
    spec: ModelSpec, module: nn.Module, placement: Placement, examples: Sequence[Sequence[Any]]
) -> list[list[float]]:
    """One forward pass over checked examples; one output row per example."""
    with torch.inference_mode():
        outputs = module(*spec.collate(examples, placement))
        rows: list[list[float]] = outputs.float().cpu().tolist()
    return rows
