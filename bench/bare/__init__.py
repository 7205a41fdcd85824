"""Bare functions-framework functions: the baselines of the platform benchmarks."""
