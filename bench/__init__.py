"""Benchmarks (a person reruns them; numbers are not asserted by the test suite)."""
