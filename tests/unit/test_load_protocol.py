"""The spec and messages between the Locust driver and its child, typed once in one module."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_perfgate.config import load_thresholds
from pytest_perfgate.core.model import LoadShape, Scenario, Task
from pytest_perfgate.core.stats import Sample
from pytest_perfgate.errors import ConfigError
from pytest_perfgate.load.locust_driver import child_spec
from pytest_perfgate.load.protocol import (
    ROW_FIELDS,
    ChildSpec,
    ScenarioSpec,
    TaskSpec,
    decode_row,
    encode_row,
    parse_stop,
    stop_line,
)


def test_a_row_carries_the_fields_of_a_sample_in_their_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(Sample)) == ROW_FIELDS


def test_a_row_survives_json_as_the_sample_it_was() -> None:
    sample = Sample(1.25, "POST /predict", 12.345678, False, 500, "HTTPError: 500")
    row = json.loads(json.dumps(encode_row(*dataclasses.astuple(sample))))
    assert decode_row(row) == sample
    assert len(row) == 6  # a plain request of a run without pairs: six fields


def test_a_duet_request_s_row_carries_its_pair_after_an_empty_stream() -> None:
    sample = Sample(2.5, "POST /predict @baseline", 8.0, True, 200, "", None, (3 << 40) + 17)
    row = json.loads(json.dumps(encode_row(*dataclasses.astuple(sample))))
    assert row[6:] == [None, (3 << 40) + 17]
    assert decode_row(row) == sample


def test_a_stop_line_gives_back_its_reason() -> None:
    assert parse_stop(stop_line("stop: every blocking budget decided")) == (
        "stop: every blocking budget decided"
    )
    assert parse_stop("stop\n") == "stop requested"
    assert parse_stop("stopped") is None


def test_the_spec_the_driver_writes_has_exactly_the_typed_keys(tmp_path: Path) -> None:
    scenario = Scenario(
        "light", users=2, spawn_rate=2.0, duration_s=5.0, wait_min_s=0.1, wait_max_s=0.2,
        tasks=(Task("GET", "/fast", "GET /fast", headers={"X-Key": "${KEY}"}),),
        shape=LoadShape("steps", ((1.0, 1, 1.0), (2.0, 2, 1.0))),
    )  # fmt: skip
    spec = json.loads(json.dumps(child_spec(scenario, "http://h/", tmp_path / "p", tmp_path)))
    assert set(spec) == set(ChildSpec.__annotations__)
    assert set(spec["scenario"]) == set(ScenarioSpec.__annotations__) - {"arrival_workers"}
    # a plain task: the streaming keys (``load.sse``) are TaskSpec's NotRequired ones
    assert set(spec["scenario"]["tasks"][0]) == set(TaskSpec.__required_keys__)
    assert spec["scenario"]["wait_s"] == [0.1, 0.2]
    assert spec["scenario"]["stages"] == [[1.0, 1, 1.0], [2.0, 2, 1.0]]
    assert spec["host"] == "http://h" and spec["distributed"] is None


def test_the_protocol_module_imports_no_locust_gevent_or_httpx() -> None:
    code = (
        "import sys, pytest_perfgate.load.protocol, pytest_perfgate.load.fake; "
        "print(sorted({'locust', 'gevent', 'httpx'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_tags_in_thresholds_yaml_reach_the_childs_spec(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(
        "scenarios:\n  tagged:\n    locustfile: lf.py\n"
        "    tags: [checkout, search]\n    exclude_tags: [slow]\n",
        encoding="utf-8",
    )
    scenario = load_thresholds(path).scenarios["tagged"]
    spec = child_spec(scenario, "http://h", tmp_path / "p", tmp_path)
    assert spec["scenario"]["tags"] == ["checkout", "search"]
    assert spec["scenario"]["exclude_tags"] == ["slow"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("    tasks: [{method: GET, path: /}]\n    tags: [a]\n", "set locustfile"),
        ("    locustfile: lf.py\n    exclude_tags: slow\n", "expected a list of tag names"),
    ],
)
def test_tags_need_a_locustfile_and_a_list_of_names(
    tmp_path: Path, lines: str, message: str
) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(f"scenarios:\n  tagged:\n{lines}", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as caught:
        load_thresholds(path)
    assert "scenarios.tagged." in str(caught.value)
