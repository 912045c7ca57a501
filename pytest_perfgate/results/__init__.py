"""Results and reports: the result type and its writers.
"""
