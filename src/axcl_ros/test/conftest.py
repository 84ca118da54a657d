"""Shared fixtures: the compiled AXCL stub runtime (a test double of the documented AXCL API, not the card)."""

import os

import pytest

FAULT_ENV = ("AXCL_STUB_FAIL_LOAD", "AXCL_STUB_FAIL_EXECUTE_AFTER", "AXCL_STUB_DEVICE_LOST_AFTER",
             "AXCL_STUB_DEVICE_IDS", "AXCL_VNPU", "AXCL_CONFIG")


@pytest.fixture(scope="session")
def stub_lib():
    """Path of the stub ``libaxcl_rt.so``, compiled once per source version with the system compiler."""
    from axcl_ros_testing.axcl_stub_build import build_stub

    return build_stub()


@pytest.fixture
def stub(stub_lib, monkeypatch):
    """The AXCL runtime loaded from the stub, with no fault injected; on teardown every executor and the runtime
    are shut down and the stub must hold no device object any more (no leak)."""
    from axcl_ros.runtime.axcl import shutdown_runtime
    from axcl_ros.runtime.executors import shutdown_all
    from axcl_ros_testing.axcl_stub_build import StubControl

    monkeypatch.setenv("AXCL_LIB_PATH", str(stub_lib))
    for key in FAULT_ENV:
        monkeypatch.delenv(key, raising=False)
    shutdown_all()
    shutdown_runtime()
    ctl = StubControl(stub_lib)
    ctl.reset()
    yield ctl
    shutdown_all()
    shutdown_runtime()
    c = ctl.counters()
    assert c["initialized"] == 0 and c["outstanding_allocs"] == 0 and c["loaded_models"] == 0
    assert c["outstanding_ioinfos"] == 0 and c["outstanding_ios"] == 0


@pytest.fixture
def stub_env(stub_lib, monkeypatch):
    """The stub as libaxcl_rt.so with two cards (ids 129, 130) in ``os.environ`` (child processes inherit it), no
    fault injected; a fresh AXCL runtime before and after the test. Yields the library path as a string."""
    from axcl_ros.runtime.axcl import shutdown_runtime

    shutdown_runtime()
    for key in FAULT_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AXCL_LIB_PATH", str(stub_lib))
    monkeypatch.setenv("AXCL_STUB_DEVICE_IDS", "129,130")
    yield str(stub_lib)
    shutdown_runtime()
    for key in FAULT_ENV:  # tests may set faults in os.environ directly; monkeypatch then restores prior values
        os.environ.pop(key, None)
