"""Benchmarks of syncwd-fast: the write side and the drain, each against its
limit and against the original syncwd's pattern, on the same generated data.

Run ``python -m bench --help`` (or ``./run bench --help``); see bench/README.md.
"""
