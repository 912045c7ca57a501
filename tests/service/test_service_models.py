"""The registered architectures: seeded, reproducible, batch-invariant, validated."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from service.models import (
    REGISTRY,
    InvalidInputError,
    Placement,
    UnknownModelError,
    WeightsError,
    build_model,
    get_spec,
    run_batch,
)
from service.payloads import EMBEDDING_DIM, MLP_CLASSES, MLP_FEATURES
from service.runtime import warmup_batch_sizes

CPU = Placement(torch.device("cpu"))
ENCODER = get_spec("encoder")
MLP = get_spec("mlp")


@pytest.fixture(scope="module")
def encoder() -> torch.nn.Module:
    return build_model(ENCODER, CPU)


def test_the_registry_holds_mlp_and_encoder() -> None:
    assert list(REGISTRY) == ["mlp", "encoder"]


def test_an_unknown_model_is_reported_with_the_registered_names() -> None:
    with pytest.raises(UnknownModelError) as caught:
        get_spec("../etc/passwd")
    assert str(caught.value) == ("unknown model '../etc/passwd'; registered models: mlp, encoder")


def test_models_are_reproducible_from_the_fixed_seed(encoder: torch.nn.Module) -> None:
    torch.manual_seed(999)  # the caller's random state must not matter, nor change
    state = torch.random.get_rng_state()
    again = build_model(ENCODER, CPU)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, first), (_, second) in zip(
        encoder.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(first, second), name


def test_the_encoder_layers_do_not_start_as_copies(encoder: torch.nn.Module) -> None:
    layers = encoder.encoder.layers  # type: ignore[union-attr]
    assert not torch.equal(layers[0].linear1.weight, layers[1].linear1.weight)


def test_mlp_outputs_class_probabilities() -> None:
    mlp = build_model(MLP, CPU)
    rows = run_batch(MLP, mlp, CPU, [[0.5] * MLP_FEATURES, [-1.0] * MLP_FEATURES])
    probabilities = torch.tensor(rows)
    assert probabilities.shape == (2, MLP_CLASSES)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))


def test_batched_encoder_outputs_equal_unbatched_outputs(encoder: torch.nn.Module) -> None:
    generator = random.Random(7)
    sequences = [
        [generator.randrange(30522) for _ in range(length)] for length in (1, 5, 17, 64, 128)
    ]
    batched = torch.tensor(run_batch(ENCODER, encoder, CPU, sequences))
    alone = torch.tensor([run_batch(ENCODER, encoder, CPU, [s])[0] for s in sequences])
    assert batched.shape == (len(sequences), EMBEDDING_DIM)
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def test_bfloat16_models_stay_close_to_float32(encoder: torch.nn.Module) -> None:
    half = Placement(torch.device("cpu"), torch.bfloat16)
    sequences = [[5, 6, 7], list(range(1, 30))]
    exact = torch.tensor(run_batch(ENCODER, encoder, CPU, sequences))
    batched = torch.tensor(run_batch(ENCODER, build_model(ENCODER, half), half, sequences))
    torch.testing.assert_close(batched, exact, atol=0.1, rtol=0.1)
    probabilities = run_batch(MLP, build_model(MLP, half), half, [[0.5] * MLP_FEATURES])
    assert abs(sum(probabilities[0]) - 1.0) < 0.02


def test_example_checks_name_the_field_and_the_value() -> None:
    with pytest.raises(InvalidInputError, match=r"^x\[3\]: expected a number, got None$"):
        MLP.check_example([0.0, 0.0, 0.0, None, *[0.0] * 60], "x")
    with pytest.raises(InvalidInputError, match=r"^x: expected a list of token ids, got 'abc'$"):
        ENCODER.check_example("abc", "x")


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(InvalidInputError) as caught:
        ENCODER.check_example(["a" * 500], "x")
    assert str(caught.value) == f"x[0]: expected an integer token id, got '{'a' * 36}..."


def test_weights_load_from_a_local_state_dict(tmp_path: Path) -> None:
    state = build_model(MLP, CPU).state_dict()
    state = {name: tensor + 1.0 for name, tensor in state.items()}
    path = tmp_path / "mlp.pt"
    torch.save(state, path)
    loaded = build_model(MLP, CPU, path)
    torch.testing.assert_close(loaded.state_dict(), state)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt"
    torch.save({"layers.0.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(WeightsError, match=r"mlp\.pt: does not fit architecture 'mlp'"):
        build_model(MLP, CPU, path)


@dataclass
class Payload:
    """Anything but tensors: torch.load(weights_only=True) must not unpickle it."""

    command: str


def test_weights_files_holding_arbitrary_objects_are_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"layers.0.weight": Payload("rm -rf /")}, path)
    with pytest.raises(WeightsError, match=r"evil\.pt: not a readable state dict"):
        build_model(MLP, CPU, path)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match=r"list\.pt: expected a state dict"):
        build_model(MLP, CPU, path)


@pytest.mark.parametrize(
    ("largest", "sizes"),
    [(32, [1, 2, 4, 8, 16, 32]), (24, [1, 2, 4, 8, 16, 24]), (1, [1]), (2, [1, 2])],
)
def test_warm_up_covers_the_batch_sizes_the_batcher_forms(largest: int, sizes: list[int]) -> None:
    assert warmup_batch_sizes(largest) == sizes
