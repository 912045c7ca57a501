"""Credentials reach Locust users from the environment and never land in a written file.

The reference service runs with an API key required for inference too; the scenario's
header names the key as ``${PERFGATE_TEST_API_KEY}``.
"""

from __future__ import annotations

import hashlib
import secrets
import textwrap
from pathlib import Path

import pytest
from test_plugin_e2e import run

pytestmark = pytest.mark.e2e


def thresholds(key_digest: str) -> str:
    return textwrap.dedent(
        f"""
        service:
          command: "{{python}} -m service --port {{port}} --models mlp --auth-inference"
          env: {{SERVICE_API_KEYS_SHA256: "{key_digest}"}}
          ready_path: /ready
        scenarios:
          light:
            users: 3
            duration: 4s
            wait_time: [0.02, 0.05]
            min_samples: 20
            tasks:
              - method: POST
                path: /predict
                json_factory: "service.payloads:mlp_request"
                headers: {{X-API-Key: "${{PERFGATE_TEST_API_KEY}}"}}
            budgets: {{error_rate: 0}}  # judged on the count: not one request refused
        """
    )


def test_a_key_from_the_environment_authenticates_and_is_written_nowhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "pg-" + secrets.token_hex(16)
    monkeypatch.setenv("PERFGATE_TEST_API_KEY", key)
    pytester.makefile(".yaml", thresholds=thresholds(hashlib.sha256(key.encode()).hexdigest()))
    result = run(pytester, "-m", "load_light", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)  # no 401: the key reached every request
    written = [p for p in Path(pytester.path).rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written) and any(p.suffix == ".log" for p in written)
    leaks = [p for p in written if key.encode() in p.read_bytes()]
    assert leaks == []
    assert key not in result.stdout.str() + result.stderr.str()


def test_a_missing_credential_variable_is_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERFGATE_TEST_API_KEY", raising=False)
    pytester.makefile(".yaml", thresholds=thresholds("00" * 32))
    result = run(pytester, "-m", "load_light")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*POST /predict: header X-API-Key: environment variable PERFGATE_TEST_API_KEY is not set*"]
    )
