"""The verdict engine before issue 13 (commit 16b0605), kept to compare side by side.

``stats``, ``sequential`` and ``verdict`` as they were: lag-1 inflation, fixed-sample
intervals after an early stop, no multiplicity correction, the ``auto`` INCONCLUSIVE
policy. Only their imports of each other point here; used by ``verdict_quality.py`` only.
"""
