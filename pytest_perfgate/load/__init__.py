"""The load layer: a LoadDriver protocol, the Locust driver and its child process.

Only ``load.child`` imports locust/gevent, and it runs in a child process.
"""
