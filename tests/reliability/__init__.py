"""The reliability suite (``make reliability``): fuzzing stdin and our config, fault injection,
cache faults, a soak, hostile hosts and secret scanning, each part with a figure to quote.

Every part is a module with ``run(...) -> Tally`` taking its case count, so ``python -m
tests.reliability`` runs the full counts and ``tests/test_reliability.py`` a fast slice of each.
"""
