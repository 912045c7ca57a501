"""The load layer: a LoadDriver protocol, the Locust driver and its child process.

``driver`` (the ``LoadDriver`` protocol and the values it returns), ``locust_driver``
(``LocustDriver``: Locust in a child process), ``protocol`` (the spec and messages between
that driver and its child, typed once), ``child`` (the child: the only module that imports
locust/gevent, run as ``python -m``, never imported), ``fake`` (``FakeDriver`` for tests).
"""
