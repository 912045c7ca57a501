"""The pure core: metrics, statistics, verdicts, stopping rules, regressions, findings.

No pytest, no httpx, no locust, no file or network I/O (tests/unit/test_layers.py).
"""
