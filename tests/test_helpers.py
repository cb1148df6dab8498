"""Helper processes: calls by function reference, a native crash that ends one call, the check's deadline.

Here, outside any worker, helpers are fresh interpreters; tests/test_runner.py has those the zygote forks."""
import ctypes
import os
import subprocess
import time

import pytest

from tfaudit.api import HelperCrashed, HelperTimeout, helper_process
from tfaudit.engine.helpers import target_name


def test_a_native_crash_in_a_helper_is_caught_and_the_next_call_restarts_it():
    helper = helper_process()
    try:
        first = helper.call("asking its pid", os.getpid)
        with pytest.raises(HelperCrashed) as crash:
            helper.call("reading address 0", ctypes.string_at, ptr=0)
        assert crash.value.signal == "SIGSEGV" and "reading address 0" in str(crash.value)
        second = helper.call("asking its pid", os.getpid)
        assert second != first and helper.starts == 2
        assert helper.call("failing", os.getcwd, nope=1)["error"]  # an exception is an answer, not a crash
        helper.deadline = time.monotonic() + 0.5
        started = time.monotonic()
        with pytest.raises(HelperTimeout, match="sleeping"):
            helper.call("sleeping", subprocess.run, args=["sleep", "3"])
        assert time.monotonic() - started < 2.5 and helper.pid is None  # stopped, not waited for
        with pytest.raises(HelperTimeout, match="not started"):
            helper.call("asking its pid", os.getpid)
    finally:
        helper.close()


def test_only_module_level_functions_travel_by_reference():
    assert target_name(subprocess.run) == "subprocess:run"

    def local():
        return 1

    with pytest.raises(ValueError, match="module-level functions only"):
        target_name(local)
