"""Benchmarks: run them from the repository root as modules (``python -m bench.run ...``); each keeps its raw
result under bench/results/."""
