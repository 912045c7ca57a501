"""Results and reports: the result type, its files and the views of it.

``result`` (``ScenarioResult`` and its JSON form, both ways), ``files`` (writes the result
JSON and HTML, never overwriting), the views ``terminal``, ``markdown``, ``html`` and
``github``, ``cells`` (how a check reads in any table), ``jsonsafe`` (the NaN-safe JSON
writer), ``baselines`` and ``locust_csv`` (files read back). Results read the core and
load's value types (``load.driver``); never the gate, a driver, the target or the pytest
surface.
"""
