"""Benchmarks that drive the real stack (`realchat bench ...`), never part of the test suite."""
