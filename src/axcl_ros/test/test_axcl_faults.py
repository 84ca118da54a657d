"""Injected AXCL faults (stub runtime): each gives a clear AxclError and the runtime recovers after release + reload."""

import numpy as np
import pytest

from axcl_ros.runtime.axcl import get_runtime
from axcl_ros.runtime.axcl_abi import AxclError, AxclLoadError
from axcl_ros.runtime.axcl_backend import AxclBackend
from axcl_ros.runtime.base import DeviceError, ModelLoadError
from axcl_ros_testing import stub_models as sm


@pytest.fixture
def model(tmp_path):
    return str(sm.affine_stub(tmp_path / "affine.axmodel", (4,), a=3.0, b=-1.0))


X = np.arange(4, dtype=np.float32)


def check_works(model: str) -> None:
    s = AxclBackend().load(model)
    np.testing.assert_allclose(s.run({"x": X})["y"], 3 * X - 1)
    s.release()


def test_fail_load(stub, model, monkeypatch):
    monkeypatch.setenv("AXCL_STUB_FAIL_LOAD", "1")
    with pytest.raises(AxclLoadError) as info:
        AxclBackend().load(model)
    err = info.value
    assert isinstance(err, ModelLoadError) and isinstance(err, AxclError) and isinstance(err, DeviceError)
    assert err.function == "axclrtEngineLoadFromFile" and err.info.submodule_name == "engine"
    assert "affine.axmodel" in str(err) and "device id 129" in str(err)
    assert stub.counters()["outstanding_allocs"] == 0
    monkeypatch.delenv("AXCL_STUB_FAIL_LOAD")
    check_works(model)
    assert get_runtime().restarts == 0  # the probe found the device healthy


def test_fail_execute_after(stub, model, monkeypatch):
    s = AxclBackend().load(model)
    monkeypatch.setenv("AXCL_STUB_FAIL_EXECUTE_AFTER", "2")
    s.run({"x": X})
    s.run({"x": X})
    with pytest.raises(AxclError, match="axclrtEngineExecute failed with 0x8030070C \\(runtime/engine: execute failed"):
        s.run({"x": X})
    s.release()
    monkeypatch.delenv("AXCL_STUB_FAIL_EXECUTE_AFTER")
    check_works(model)
    assert get_runtime().restarts == 0


def test_device_lost_then_recovery(stub, model, monkeypatch):
    backend = AxclBackend()
    s = backend.load(model)
    other = backend.load(model)
    s.run({"x": X})
    monkeypatch.setenv("AXCL_STUB_DEVICE_LOST_AFTER", str(stub.counters()["calls_since_init"] + 1))
    with pytest.raises(AxclError) as info:
        s.run({"x": X})  # the H2D copy is the last call that works, execute fails
    assert info.value.info.submodule_name == "device" and info.value.info.errid_name == "unexpected response"
    with pytest.raises(AxclError):
        s.run({"x": X})  # every call fails from now on
    assert stub.counters()["device_lost"] == 1
    s.release()  # does not raise; the failures are logged
    monkeypatch.delenv("AXCL_STUB_DEVICE_LOST_AFTER")
    rt = get_runtime()
    check_works(model)  # probe fails → runtime restart (axclFinalize + axclInit) → load works
    assert rt.restarts == 1 and stub.counters()["device_lost"] == 0
    # a session of the lost generation cannot run, but can be released
    with pytest.raises(DeviceError, match="invalidated by an AXCL runtime restart"):
        other.run({"x": X})
    other.release()
    assert stub.calls("axclInit") >= 2


def test_device_lost_while_loading_still_recovers(stub, model, monkeypatch):
    get_runtime().open_device(0)
    monkeypatch.setenv("AXCL_STUB_DEVICE_LOST_AFTER", str(stub.counters()["calls_since_init"] + 3))
    with pytest.raises(AxclError):
        AxclBackend().load(model)
    assert stub.counters()["device_lost"] == 1
    monkeypatch.delenv("AXCL_STUB_DEVICE_LOST_AFTER")
    check_works(model)
    assert get_runtime().restarts == 1


def test_device_still_lost_after_restart_is_reported(stub, model, monkeypatch):
    get_runtime().open_device(0)
    monkeypatch.setenv("AXCL_STUB_DEVICE_LOST_AFTER", str(stub.counters()["calls_since_init"]))
    with pytest.raises(AxclError):
        AxclBackend().load(model)
    monkeypatch.setenv("AXCL_STUB_DEVICE_LOST_AFTER", "4")  # fails again soon after the re-init
    with pytest.raises(AxclError, match="still failing after a runtime restart"):
        AxclBackend().load(model)
    monkeypatch.delenv("AXCL_STUB_DEVICE_LOST_AFTER")
    check_works(model)
