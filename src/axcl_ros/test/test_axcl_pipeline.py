"""Copy/compute overlap: extra IO sets, streams and the asynchronous AXCL API against the stub (the speed-up itself is
measured by bench/bench_pipeline.py on the stub's link model, not here)."""

import os

import numpy as np
import pytest

from axcl_ros.runtime.axcl import get_runtime
from axcl_ros.runtime.axcl_abi import AxclError
from axcl_ros.runtime.axcl_backend import AxclBackend
from axcl_ros.runtime.base import InputMismatchError
from axcl_ros_testing import stub_models as sm


def _frames(n, shape=(16,), seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.integers(0, 255, shape, dtype=np.uint8)} for _ in range(n)]


def _leaks(stub):
    c = stub.counters()
    return {k: c[k] for k in ("outstanding_allocs", "outstanding_ios", "outstanding_ioinfos", "loaded_models",
                              "outstanding_streams")}


def test_pipelined_outputs_match_serial_in_order(stub, tmp_path):
    path = sm.copy_stub(tmp_path / "m.axmodel", [("x", (16,), np.uint8)])
    s = AxclBackend().load(str(path))
    try:
        frames = _frames(9)
        serial = [s.run(f)["out_x"].copy() for f in frames]
        for depth in (1, 2, 3):
            got = [out["out_x"].copy() for out in s.run_pipelined(frames, depth=depth)]
            assert len(got) == len(frames)
            for a, b in zip(got, serial):
                np.testing.assert_array_equal(a, b)
        assert s.io_sets == 3
        c = stub.counters()
        assert c["outstanding_streams"] == 3 and stub.calls("axclrtEngineExecuteAsync") == 27
        assert stub.calls("axclrtEngineSetDynamicBatchSize") == stub.calls("axclrtEngineCreateIO") == 4
    finally:
        s.release()
    assert _leaks(stub) == dict.fromkeys(_leaks(stub), 0)


def test_launch_collect_discipline(stub, tmp_path):
    path = sm.copy_stub(tmp_path / "m.axmodel", [("x", (16,), np.uint8)])
    s = AxclBackend().load(str(path))
    try:
        frames = _frames(3)
        t0, t1 = s.launch(frames[0]), s.launch(frames[1])
        with pytest.raises(InputMismatchError, match="collect"):
            s.launch(frames[2])
        np.testing.assert_array_equal(s.collect(t1)["out_x"], frames[1]["x"])  # any order
        np.testing.assert_array_equal(s.collect(t0)["out_x"], frames[0]["x"])
        with pytest.raises(InputMismatchError, match="no run to collect"):
            s.collect(t0)
        with pytest.raises(InputMismatchError):
            s.launch({})  # every input must be fed on the pipelined path
    finally:
        s.release()


def test_hundred_configure_cleanup_cycles_with_io_sets_leave_nothing(stub, tmp_path):
    path = sm.yolo11_stub(tmp_path / "y.axmodel", size=64)
    backend = AxclBackend()
    frame = {"images": np.full((1, 64, 64, 3), 7, np.uint8)}
    for _ in range(100):
        s = backend.load(str(path))
        for _ in s.run_pipelined([frame] * 3, depth=2):
            pass
        s.release()
    assert _leaks(stub) == dict.fromkeys(_leaks(stub), 0)
    assert stub.counters()["reclaimed_at_teardown"] == 0


def test_execute_failure_in_flight_recovers(stub, tmp_path, monkeypatch):
    path = sm.copy_stub(tmp_path / "m.axmodel", [("x", (16,), np.uint8)])
    backend = AxclBackend()
    s = backend.load(str(path))
    monkeypatch.setenv("AXCL_STUB_FAIL_EXECUTE_AFTER", "2")
    with pytest.raises(AxclError, match="axclrtEngineExecuteAsync"):
        list(s.run_pipelined(_frames(5), depth=2))
    s.release()
    assert _leaks(stub) == dict.fromkeys(_leaks(stub), 0)
    monkeypatch.delenv("AXCL_STUB_FAIL_EXECUTE_AFTER")
    s = backend.load(str(path))
    assert len(list(s.run_pipelined(_frames(4), depth=2))) == 4
    s.release()


def test_device_lost_in_flight_recovers_after_restart(stub, tmp_path):
    path = sm.copy_stub(tmp_path / "m.axmodel", [("x", (16,), np.uint8)])
    backend = AxclBackend()
    s = backend.load(str(path))
    list(s.run_pipelined(_frames(2), depth=2))
    os.environ["AXCL_STUB_DEVICE_LOST_AFTER"] = "0"
    try:
        with pytest.raises(AxclError):
            list(s.run_pipelined(_frames(4), depth=2))
    finally:
        os.environ.pop("AXCL_STUB_DEVICE_LOST_AFTER")
    s.release()  # errors are logged, handles dropped
    rt = get_runtime()
    s = backend.load(str(path))  # the runtime probes the device, restarts, loads again
    assert rt.restarts >= 1
    frames = _frames(3, seed=5)
    got = [o["out_x"].copy() for o in s.run_pipelined(frames, depth=2)]
    np.testing.assert_array_equal(got[2], frames[2]["x"])
    s.release()
    assert _leaks(stub) == dict.fromkeys(_leaks(stub), 0)


def test_executor_pipelines_pending_streams_of_one_model(stub, tmp_path):
    """Two cameras pending on one model: the worker launches both on the session's IO sets, then collects them."""
    from axcl_ros.runtime.executor import InferenceExecutor

    det = sm.copy_stub(tmp_path / "det.axmodel", [("x", (16,), np.uint8)])
    slow = sm.copy_stub(tmp_path / "slow.axmodel", [("x", (4,), np.uint8)], delay_us=300_000)
    ex = InferenceExecutor("t-pipeline")
    try:
        h_det = ex.load(str(det), backend="axcl")
        h_slow = ex.load(str(slow), backend="axcl")
        busy = ex.submit(h_slow, {"x": np.zeros(4, np.uint8)})  # keeps the worker busy while frames queue up
        frames = _frames(2, seed=3)
        futs = [ex.submit(h_det, f, stream=name) for f, name in zip(frames, ("cam_a", "cam_b"))]
        busy.result(10)
        for fut, f in zip(futs, frames):
            np.testing.assert_array_equal(fut.result(10).outputs["out_x"], f["x"])
        assert stub.calls("axclrtEngineExecuteAsync") == 2
        alone = ex.submit(h_det, frames[0], stream="cam_a").result(10)  # nothing else pending: serial path
        np.testing.assert_array_equal(alone.outputs["out_x"], frames[0]["x"])
        assert stub.calls("axclrtEngineExecuteAsync") == 2
        assert ex.stats()["models"]["det"]["count"] == 3
    finally:
        assert ex.shutdown(10)
    assert _leaks(stub) == dict.fromkeys(_leaks(stub), 0)


def test_executor_falls_back_to_serial_when_the_async_path_fails(stub, tmp_path):
    """A library that refuses the asynchronous path (unknown on the card: async copies from pageable memory) must
    not cost frames: the batch runs serially and the model stays serial."""
    from axcl_ros.runtime.base import DeviceError
    from axcl_ros.runtime.executor import InferenceExecutor

    det = sm.copy_stub(tmp_path / "det.axmodel", [("x", (16,), np.uint8)])
    slow = sm.copy_stub(tmp_path / "slow.axmodel", [("x", (4,), np.uint8)], delay_us=300_000)
    ex = InferenceExecutor("t-pipeline-fallback")
    try:
        h_det = ex.load(str(det), backend="axcl")
        h_slow = ex.load(str(slow), backend="axcl")

        def refuse(*args, **kwargs):
            raise DeviceError("axclrtMemcpyAsync refused (test)")

        h_det.session.launch = refuse
        for _ in range(2):
            busy = ex.submit(h_slow, {"x": np.zeros(4, np.uint8)})
            frames = _frames(2, seed=4)
            futs = [ex.submit(h_det, f, stream=name) for f, name in zip(frames, ("cam_a", "cam_b"))]
            busy.result(10)
            for fut, f in zip(futs, frames):
                np.testing.assert_array_equal(fut.result(10).outputs["out_x"], f["x"])
        assert ex.stats()["models"]["det"]["errors"] == 0
    finally:
        assert ex.shutdown(10)
