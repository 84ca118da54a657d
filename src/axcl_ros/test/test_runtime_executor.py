"""InferenceExecutor: one worker thread, latest-only stream slots with exact drops, round-robin, completion thread,
errors, unload and clean shutdown. Timing-sensitive tests block the worker on an Event instead of sleeping."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, wait

import numpy as np
import pytest

from axcl_ros.runtime import executor as executor_mod
from axcl_ros.runtime.base import (
    Backend,
    BackendUnavailableError,
    DeviceError,
    InputMismatchError,
    ModelLoadError,
    Session,
    TensorSpec,
    check_feeds,
)
from axcl_ros.runtime.executor import InferenceExecutor
from axcl_ros.runtime.executors import get_executor, shutdown_all
from axcl_ros.runtime.model_handle import ExecutorShutdownError, ModelReleasedError, RunResult
from axcl_ros_testing import onnx_builders as ob

T = 5.0  # generous timeout for waits that normally take milliseconds


class FakeSession(Session):
    """``y = x + 1`` on float32 ``x[n]``; records what ran, on which thread; can block, sleep or fail."""

    backend_name = "fake"

    def __init__(self, delay: float = 0.0, fail_value: float = None, reuse_buffer: bool = False) -> None:
        self.path = "fake.model"
        self.device = "fake:0"
        self.delay = delay
        self.fail_value = fail_value
        self.reuse_buffer = reuse_buffer
        self._buffer = None
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.log = []
        self.threads = set()
        self.release_threads = []
        self.lock = threading.Lock()

    @property
    def inputs(self):
        return [TensorSpec("x", (None,), np.dtype(np.float32))]

    @property
    def outputs(self):
        return [TensorSpec("y", (None,), np.dtype(np.float32))]

    def block(self) -> None:
        self.gate.clear()

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=T), "the worker never started the run"

    def run(self, feeds, output_names=None):
        check_feeds(self.inputs, feeds)
        self.threads.add(threading.get_ident())
        self.entered.release()
        assert self.gate.wait(T)
        if self.delay:
            time.sleep(self.delay)
        x = feeds["x"]
        with self.lock:
            self.log.append(float(x[0]))
        if self.fail_value is not None and x[0] == self.fail_value:
            raise DeviceError(f"fake device failed on {x[0]}")
        if self.reuse_buffer:
            if self._buffer is None or self._buffer.shape != x.shape:
                self._buffer = np.empty_like(x)
            np.add(x, 1, out=self._buffer)
            return {"y": self._buffer}
        return {"y": x + 1}

    def release(self):
        self.release_threads.append(threading.get_ident())


def x(value: float, n: int = 2) -> dict:
    return {"x": np.full(n, value, np.float32)}


def executor_threads(ex: InferenceExecutor):
    return [t for t in threading.enumerate() if t.name.startswith(f"axcl-exec-{ex.key}-")]


@pytest.fixture
def ex(request):
    executor = InferenceExecutor(f"t-{request.node.name[:40]}")
    yield executor
    assert executor.shutdown(T)
    assert executor_threads(executor) == []


def load_fake(ex, name="fake", **kwargs):
    session = FakeSession(**kwargs)
    return ex.load_session(lambda: session, name=name), session


def test_concurrent_submissions_real_onnx(ex, tmp_path):
    handle = ex.load(ob.add_model(tmp_path / "add.onnx", (None, 3)), intra_op_num_threads=1)
    assert handle.name == "add" and handle.backend == "onnxruntime"
    assert [s.name for s in handle.inputs] == ["a", "b"] and handle.session.outputs[0].name == "y"
    n_threads, per_thread = 8, 40
    errors = []

    def client(tid):
        futures = []
        for i in range(per_thread):
            a = np.full((1, 3), tid, np.float32)
            b = np.full((1, 3), i, np.float32)
            futures.append((tid + i, ex.submit(handle, {"a": a, "b": b})))
        for expected, future in futures:
            result = future.result(T)
            if not np.array_equal(result.outputs["y"], np.full((1, 3), expected, np.float32)):
                errors.append((tid, expected, result.outputs["y"]))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    stats = ex.stats()["models"]["add"]
    assert stats["count"] == stats["submitted"] == n_threads * per_thread
    assert stats["errors"] == stats["drops"] == 0
    assert stats["run_ms_max"] >= stats["run_ms_mean"] > 0


def test_every_run_on_one_worker_thread(ex):
    handle, session = load_fake(ex)
    futures = []
    threads = [threading.Thread(target=lambda k=k: futures.extend(ex.submit(handle, x(k)) for _ in range(20)))
               for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    done, not_done = wait(futures, T)
    assert not not_done and len(done) == 120
    assert session.threads == {ex.worker_thread.ident}
    sequences = [f.result().sequence for f in futures]
    assert len(set(sequences)) == 120


def test_latest_slot_drops_exact(ex):
    handle, session = load_fake(ex)
    session.block()
    blocker = ex.submit(handle, x(-1))  # FIFO job that holds the worker
    session.wait_entered()
    cancelled_cb = []
    frames = []
    for i in range(10):
        future = ex.submit(handle, x(i), stream="cam")
        future.add_done_callback(lambda f, i=i: cancelled_cb.append((i, f.cancelled())))
        frames.append(future)
    assert ex.pending() == 1
    for future in frames[:-1]:
        assert future.cancelled()
        with pytest.raises(CancelledError):
            future.result(0)
    assert sorted(cancelled_cb) == [(i, True) for i in range(9)]
    done, not_done = wait(frames[:-1], timeout=0)  # dropped futures count as done for wait()/as_completed()
    assert len(done) == 9 and not not_done
    session.gate.set()
    last = frames[-1].result(T)
    assert blocker.result(T).outputs["y"][0] == 0
    np.testing.assert_array_equal(last.outputs["y"], [10, 10])
    assert last.stream == "cam" and last.model == "fake"
    assert session.log == [-1, 9]
    stats = ex.stats()
    assert stats["models"]["fake"]["drops"] == 9 and stats["models"]["fake"]["count"] == 2
    assert stats["streams"]["cam"] == {"submitted": 10, "count": 1, "errors": 0, "drops": 9}
    assert last.sequence == max(f.result().sequence for f in (blocker, frames[-1]))


def test_started_stream_job_is_not_replaced(ex):
    handle, session = load_fake(ex)
    session.block()
    first = ex.submit(handle, x(1), stream="cam")
    session.wait_entered()
    second = ex.submit(handle, x(2), stream="cam")
    third = ex.submit(handle, x(3), stream="cam")
    assert not first.cancelled() and first.running()
    assert second.cancelled() and not third.done()
    session.gate.set()
    assert first.result(T).outputs["y"][0] == 2 and third.result(T).outputs["y"][0] == 4
    assert ex.stats()["streams"]["cam"]["drops"] == 1


def test_slots_are_per_stream_and_model(ex):
    det, det_session = load_fake(ex, "det")
    seg, seg_session = load_fake(ex, "seg")
    det_session.block()
    ex.submit(det, x(0))
    det_session.wait_entered()
    a = ex.submit(det, x(1), stream="cam")
    b = ex.submit(seg, x(2), stream="cam")  # same stream, other model: no replacement
    c = ex.submit(det, x(3), stream="cam2")
    det_session.gate.set()
    assert [f.result(T).outputs["y"][0] for f in (a, b, c)] == [2, 3, 4]
    stats = ex.stats()
    assert stats["models"]["det"]["drops"] == stats["models"]["seg"]["drops"] == 0


def test_round_robin_policy_between_fifo_and_streams():
    ex = InferenceExecutor("t-round-robin", policy="round_robin")
    try:
        handle, session = load_fake(ex)
        session.block()
        ex.submit(handle, x(-1))
        session.wait_entered()
        fifo = [ex.submit(handle, x(i)) for i in range(5)]
        cam_a = ex.submit(handle, x(100), stream="a")
        cam_b = ex.submit(handle, x(200), stream="b")
        session.gate.set()
        wait(fifo + [cam_a, cam_b], T)
        assert session.log == [-1, 0, 100, 200, 1, 2, 3, 4]
    finally:
        assert ex.shutdown(T)


def test_streams_first_each_stream_runs_once_ahead_of_the_fifo_head(ex):
    assert ex.policy == "streams_first"
    handle, session = load_fake(ex)
    session.block()
    ex.submit(handle, x(-1))
    session.wait_entered()
    fifo = [ex.submit(handle, x(i)) for i in range(3)]
    cam_a = ex.submit(handle, x(100), stream="a")
    cam_b = ex.submit(handle, x(200), stream="b")
    session.gate.set()
    wait(fifo + [cam_a, cam_b], T)
    assert session.log == [-1, 100, 200, 0, 1, 2]


def test_streams_first_fifo_not_starved_by_flooding_streams(ex):
    """Two cameras always have a frame pending: a sequential FIFO client (a decoder) still gets every third run."""
    handle, session = load_fake(ex, delay=0.002)
    stop = threading.Event()
    subs = []

    def flood(stream):
        while not stop.is_set():
            subs.append(ex.submit(handle, x(1000.0), stream=stream))
            time.sleep(0.0002)

    threads = [threading.Thread(target=flood, args=(s,)) for s in "ab"]
    for t in threads:
        t.start()
    started_before = []
    t_end = time.monotonic() + 0.6
    while time.monotonic() < t_end:
        started_before.append(len(session.log))
        ex.submit(handle, x(float(len(started_before) - 1))).result(T)
    stop.set()
    for t in threads:
        t.join(T)
    wait(subs, T)
    log = session.log
    assert len(started_before) >= 20
    # runs logged (at their end) between a step's submission and its own run: the one in progress + one per stream
    ahead = [log.index(float(k)) - n for k, n in enumerate(started_before)]
    assert max(ahead) <= 3, ahead


def test_fairness_two_flooding_streams(ex):
    handle, session = load_fake(ex, delay=0.002)
    stop = threading.Event()
    futures = {"a": [], "b": []}

    def flood(stream):
        value = 1000.0 if stream == "a" else 2000.0
        while not stop.is_set():
            futures[stream].append(ex.submit(handle, x(value), stream=stream))
            time.sleep(0.0002)

    threads = [threading.Thread(target=flood, args=(s,)) for s in futures]
    for t in threads:
        t.start()
    time.sleep(0.6)
    stop.set()
    for t in threads:
        t.join(T)
    wait(futures["a"] + futures["b"], T)
    served_a = session.log.count(1000.0)
    served_b = session.log.count(2000.0)
    assert served_a >= 20 and served_b >= 20
    assert min(served_a, served_b) >= 0.4 * (served_a + served_b)  # round-robin: neither starves
    streams = ex.stats()["streams"]
    for name in ("a", "b"):
        s = streams[name]
        n_cancelled = sum(f.cancelled() for f in futures[name])
        n_ok = sum(not f.cancelled() and f.exception() is None for f in futures[name])
        assert s["submitted"] == len(futures[name]) == s["count"] + s["drops"]
        assert s["drops"] == n_cancelled and s["count"] == n_ok


def test_callbacks_on_completion_thread_in_order_and_do_not_block_worker(ex):
    handle, session = load_fake(ex)
    all_ran = threading.Event()
    seen = []

    def callback(future):
        seen.append((threading.current_thread().name, future.result().sequence))
        if len(seen) == 1:
            # blocks the completion thread until the worker has run every job: would deadlock if callbacks
            # ran on the worker
            assert all_ran.wait(T)

    futures = []
    for i in range(20):
        future = ex.submit(handle, x(i))
        future.add_done_callback(callback)
        futures.append(future)
    deadline = time.monotonic() + T
    while len(session.log) < 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(session.log) == 20
    all_ran.set()
    wait(futures, T)
    deadline = time.monotonic() + T
    while len(seen) < 20 and time.monotonic() < deadline:
        time.sleep(0.001)
    names = {name for name, _ in seen}
    assert names == {ex._completer.name} and ex.worker_thread.name not in names
    assert [seq for _, seq in seen] == sorted(seq for _, seq in seen)


def test_errors_are_set_counted_and_executor_keeps_serving(ex):
    handle, _ = load_fake(ex, fail_value=7.0)
    bad_dtype = ex.submit(handle, {"x": np.zeros(2, np.float64)}, stream="cam")
    with pytest.raises(InputMismatchError, match="'x'"):
        bad_dtype.result(T)
    with pytest.raises(InputMismatchError, match="missing"):
        ex.submit(handle, {}).result(T)
    with pytest.raises(InputMismatchError, match="unknown output"):
        ex.submit(handle, x(1), output_names=["z"]).result(T)
    with pytest.raises(DeviceError, match="fake device failed"):
        ex.submit(handle, x(7)).result(T)
    assert ex.submit(handle, x(8)).result(T).outputs["y"][0] == 9
    stats = ex.stats()["models"]["fake"]
    assert stats["errors"] == 4 and stats["count"] == 1 and stats["submitted"] == 5
    assert "DeviceError" in stats["last_error"]
    assert ex.stats()["streams"]["cam"]["errors"] == 1


def test_user_cancel_is_not_a_drop(ex):
    handle, session = load_fake(ex)
    session.block()
    ex.submit(handle, x(0))
    session.wait_entered()
    mine = ex.submit(handle, x(1), stream="cam")
    fifo = ex.submit(handle, x(2))
    assert mine.cancel() and fifo.cancel()
    newer = ex.submit(handle, x(3), stream="cam")
    session.gate.set()
    assert newer.result(T).outputs["y"][0] == 4
    ex.submit(handle, x(4)).result(T)
    stats = ex.stats()["models"]["fake"]
    assert stats["drops"] == 0 and stats["cancelled"] == 2
    assert session.log == [0, 3, 4]


def test_outputs_copied_when_session_reuses_buffers(ex):
    handle, session = load_fake(ex, reuse_buffer=True)
    session.block()
    ex.submit(handle, x(0))
    session.wait_entered()
    futures = [ex.submit(handle, x(i)) for i in range(1, 4)]
    session.gate.set()
    assert [f.result(T).outputs["y"][0] for f in futures] == [2, 3, 4]


def test_load_and_prepare_thread_on_worker(ex, monkeypatch, tmp_path):
    calls = []

    class FakeBackend(Backend):
        name = "fakebackend"

        def available(self):
            return True, ""

        def prepare_thread(self, device=""):
            calls.append(("prepare", device, threading.get_ident()))

        def load(self, path, device=""):
            calls.append(("load", device, threading.get_ident()))
            session = FakeSession()
            session.path = path
            return session

    backend = FakeBackend()
    monkeypatch.setattr(executor_mod, "resolve_backend", lambda name, path, **options: backend)
    h1 = ex.load(tmp_path / "one.axmodel", device="0")
    h2 = ex.load(tmp_path / "one.axmodel", device="0")
    h3 = ex.load(tmp_path / "two.axmodel", device="1", name="custom")
    assert (h1.name, h2.name, h3.name) == ("one", "one#2", "custom")
    worker = ex.worker_thread.ident
    assert calls == [("prepare", "0", worker), ("load", "0", worker), ("load", "0", worker),
                     ("prepare", "1", worker), ("load", "1", worker)]
    assert h1.path == str(tmp_path / "one.axmodel")


def test_load_errors_raise_in_caller_and_executor_survives(ex, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        ex.load(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError):
        ex.load(bad)
    good = ob.add_model(tmp_path / "add.onnx", (1, 2))
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(BackendUnavailableError):
            ex.load(good, device="cuda")
    handle = ex.load(good)
    ones = np.ones((1, 2), np.float32)
    assert ex.run(handle, {"a": ones, "b": ones}).outputs["y"].tolist() == [[2, 2]]
    assert [h.name for h in ex.models()] == ["add"]


def test_unload(ex):
    handle, session = load_fake(ex, "a")
    other, _ = load_fake(ex, "b")
    session.block()
    running = ex.submit(handle, x(0))
    session.wait_entered()
    pending = [ex.submit(handle, x(1)), ex.submit(handle, x(2), stream="cam")]
    unloader = threading.Thread(target=handle.release)
    unloader.start()
    done, _ = wait(pending, T)
    assert len(done) == 2
    for future in pending:
        with pytest.raises(ModelReleasedError):
            future.result()
    session.gate.set()
    unloader.join(T)
    assert running.result(T).outputs["y"][0] == 1
    assert session.release_threads == [ex.worker_thread.ident]
    assert handle.released and [h.name for h in ex.models()] == ["b"]
    with pytest.raises(ModelReleasedError):
        ex.submit(handle, x(3))
    with pytest.raises(ModelReleasedError):
        handle.session  # noqa: B018
    handle.release()  # idempotent
    assert ex.run(other, x(5)).outputs["y"][0] == 6
    assert "a" not in ex.stats()["models"]


def test_foreign_handle_rejected(ex):
    other = InferenceExecutor("t-foreign")
    try:
        handle, _ = load_fake(other)
        with pytest.raises(ValueError, match="not a model handle"):
            ex.submit(handle, x(1))
    finally:
        assert other.shutdown(T)


def test_run_from_callback_is_refused(ex):
    handle, _ = load_fake(ex)
    errors = []

    def callback(future):
        try:
            ex.run(handle, x(2))
        except RuntimeError as exc:
            errors.append(str(exc))

    future = ex.submit(handle, x(1))
    future.add_done_callback(callback)
    future.result(T)
    deadline = time.monotonic() + T
    while not errors and time.monotonic() < deadline:
        time.sleep(0.001)
    assert errors and "deadlock" in errors[0]


def test_shutdown_fails_pending_releases_and_joins():
    ex = InferenceExecutor("t-shutdown")
    assert len(executor_threads(ex)) == 2
    handle, session = load_fake(ex)
    session.block()
    running = ex.submit(handle, x(0))
    session.wait_entered()
    pending = [ex.submit(handle, x(1)), ex.submit(handle, x(2)), ex.submit(handle, x(3), stream="cam")]
    result = []
    stopper = threading.Thread(target=lambda: result.append(ex.shutdown(T)))
    stopper.start()
    done, _ = wait(pending, T)
    assert len(done) == 3
    for future in pending:
        with pytest.raises(ExecutorShutdownError, match="shut down"):
            future.result()
    with pytest.raises(ExecutorShutdownError):
        ex.submit(handle, x(9))
    session.gate.set()
    stopper.join(T)
    assert result == [True]
    assert running.result(T).outputs["y"][0] == 1  # the run in progress completes
    assert session.release_threads == [ex.worker_thread.ident]
    assert executor_threads(ex) == []
    assert ex.shutdown(T)  # idempotent
    with pytest.raises(ExecutorShutdownError):
        ex.load_session(FakeSession)
    assert ex.stats()["shutdown"] and ex.stats()["models"] == {}


def test_on_thread_start(tmp_path):
    seen = []
    ex = InferenceExecutor("t-hook", on_thread_start=lambda: seen.append(threading.get_ident()))
    try:
        handle, _ = load_fake(ex)
        assert ex.run(handle, x(1)).outputs["y"][0] == 2
        assert seen == [ex.worker_thread.ident]
    finally:
        assert ex.shutdown(T)

    def broken():
        raise OSError("no device context")

    ex = InferenceExecutor("t-hook-broken", on_thread_start=broken)
    try:
        with pytest.raises(Exception, match="no device context"):
            load_fake(ex)
    finally:
        assert ex.shutdown(T)


def test_get_executor_shared_thread_safe():
    got = []
    barrier = threading.Barrier(8)

    def grab():
        barrier.wait()
        got.append(get_executor("t-shared"))

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    try:
        assert len(got) == 8 and all(e is got[0] for e in got)
        assert get_executor("t-shared-2") is not got[0]
        with pytest.raises(ValueError):
            get_executor("t-shared", on_thread_start=lambda: None)
    finally:
        assert shutdown_all(T)
    assert got[0].is_shutdown
    fresh = get_executor("t-shared")
    assert fresh is not got[0] and not fresh.is_shutdown
    assert shutdown_all(T)
    assert [t for t in threading.enumerate() if t.name.startswith("axcl-exec-t-shared")] == []


def test_run_result_fields(ex, tmp_path):
    handle = ex.load(ob.two_output_model(tmp_path / "two.onnx", (1, 2)), name="two")
    result = ex.submit(handle, {"x": np.array([[1, 2]], np.float32)}, output_names=["times_two"]).result(T)
    assert isinstance(result, RunResult)
    assert list(result.outputs) == ["times_two"] and result.outputs["times_two"].tolist() == [[2, 4]]
    assert result.queue_wait_ms >= 0 and result.run_ms > 0 and result.stream is None and result.model == "two"
