"""Benchmarks import the repository's bench package and the installed constellation."""
