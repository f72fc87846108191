"""Counts of the cases hypothesis generated, per test; conftest prints them at the end of the run."""
import collections

CASES = collections.Counter()


def count(name):
    """Call once per generated case (first line of a ``@given`` test body)."""
    CASES[name] += 1
