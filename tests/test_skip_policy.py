"""The suite's skip policy (tests/conftest.py): a skip fails the run unless an outside server is absent."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


# one xdist worker is enough: its reports reach the controller as any worker's do (a second cost ~3 CPU s)
@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["one process", "xdist worker"])
def test_only_a_server_absent_skip_passes(pytester, workers):
    pytester.makeconftest("from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa")
    pytester.makepyfile(test_needs_a_module="""
        import pytest
        pytest.importorskip("no_such_module_anywhere")
    """)
    pytester.makepyfile(test_cases="""
        import pytest
        from tests.conftest import skip_server_absent

        def test_data_missing():
            pytest.skip("candles not found")

        @pytest.mark.skipif(True, reason="not on this platform")
        def test_marked():
            pass

        def test_no_server():
            skip_server_absent("PostgreSQL not reachable")

        @pytest.mark.xfail(reason="known")
        def test_expected_failure():
            assert False
    """)
    result = pytester.runpytest("-rA", "-p", "no:asyncio", "--continue-on-collection-errors", *workers)
    # a skip at setup or collection fails as an error
    result.assert_outcomes(failed=1, errors=2, skipped=1, xfailed=1)
    if workers:  # the reports above came from the workers, through the controller
        result.stdout.fnmatch_lines(["created: 1/1 worker"])
    result.stdout.fnmatch_lines(["*only 'server absent:' skips are allowed: could not import 'no_such_module_anywhere'*",
                                 "*only 'server absent:' skips are allowed: not on this platform",
                                 "*only 'server absent:' skips are allowed: candles not found"])
