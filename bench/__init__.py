"""Benchmarks: side-by-side comparisons whose figures and commands go into BENCHMARKS.md."""
