"""``make bench``: speed and memory goals, measured as ratios within one run (``python -m tests.bench``)."""
