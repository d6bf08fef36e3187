"""The other contenders of benchmarks/run.py."""
