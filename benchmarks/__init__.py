"""Benchmarks: the bare model, the service under load, training throughput.

Each script measures everything it compares within one run, so that ratios
hold on a shared, noisy machine; see docs/performance.md.
"""
