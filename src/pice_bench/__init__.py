"""``pice bench``: the end-to-end testbed and benchmarks.

PICE vs cloud-only vs Skeleton-of-Thought on one cloud and one set of questions.

The pure parts (question files, statistics, arrival schedules, win-rate arithmetic, report
rendering) have no I/O and are unit-tested directly; the runners drive real servers over HTTP.
"""
