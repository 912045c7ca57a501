"""The target: starting, probing and scraping the service under test.

``process`` starts and stops a service from ``service.command`` (``ManagedService``);
``probe`` looks at a running one over HTTP (``Target``, ``ExternalService``, ``Probe``);
``telemetry`` samples its GPU. The only layer that talks HTTP to the service (httpx).
"""
