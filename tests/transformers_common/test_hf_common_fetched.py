"""transformers' common tests must be there: CI fetches them (scripts/setup.sh); a missing folder fails here, and
each tester module of this folder skips with the same message."""

from upstream_tests import FETCH, FETCHED


def test_transformers_common_tests_are_fetched():
    assert FETCHED, FETCH
