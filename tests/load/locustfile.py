"""Locust users for the reference inference service (``service/``).

Works on its own with the web UI::

    locust -f tests/load/locustfile.py --host http://127.0.0.1:8000

and scenarios in thresholds.yaml can name its classes (``locustfile:
tests/load/locustfile.py``, ``user_classes: [PredictUser]``). Request bodies come from
``service.payloads``, which imports only the standard library: this file must never
import torch (it runs inside the gevent-patched load generator).

Each request is named like a thresholds.yaml task, so a sample's endpoint key
(method + name) reads ``POST /predict mlp`` whichever way the load was started.
"""

from __future__ import annotations

import sys
from pathlib import Path

from locust import FastHttpUser, between, task

# `locust -f` puts only the current directory on sys.path; the payloads live at the root
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from service.payloads import encoder_request, mlp_request  # noqa: E402

#: seconds a request may take before it counts as failed (a timeout, status 0)
REQUEST_TIMEOUT_S = 10.0


class _ServiceUser(FastHttpUser):
    abstract = True
    network_timeout = REQUEST_TIMEOUT_S
    connection_timeout = REQUEST_TIMEOUT_S


class PredictUser(_ServiceUser):
    """Inference traffic: three small MLP requests for every encoder request."""

    wait_time = between(0.5, 2)

    @task(3)
    def predict_mlp(self) -> None:
        self.client.post("/predict", json=mlp_request(), name="/predict mlp")

    @task(1)
    def predict_encoder(self) -> None:
        self.client.post("/predict", json=encoder_request(), name="/predict encoder")


class HealthUser(_ServiceUser):
    """Liveness and metrics scraping, as a load balancer and Prometheus would do."""

    wait_time = between(0.1, 0.5)

    @task(5)
    def health(self) -> None:
        self.client.get("/health")

    @task(1)
    def metrics(self) -> None:
        self.client.get("/metrics")


class ModelsUser(_ServiceUser):
    """Model management: list the registry, now and then (re)load the MLP."""

    wait_time = between(0.5, 1)

    @task(3)
    def list_models(self) -> None:
        self.client.get("/models")

    @task(1)
    def load_mlp(self) -> None:
        self.client.post("/models/load", json={"name": "mlp"})
