"""Helpers for the tests (importable as ``support`` in subprocesses via PYTHONPATH=tests)."""
