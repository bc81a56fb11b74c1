"""The comparison of training strategies: ``metrics/compare.json``, its figures and ``docs/results.md``.

The comparison pipeline (``compare/dvc.yaml``) trains and evaluates every strategy on the same
data and increment plan; ``mclfir compare report`` gathers its per-increment results here.
"""
