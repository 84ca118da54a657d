"""One inference executor per process and device: a single worker thread runs every model serially.

Why: the AX650N card runs one job at a time per NPU partition, and AXCL calls must come from a thread that holds the
device context. So every node of a process shares one :class:`InferenceExecutor` per device
(:func:`~axcl_ros.runtime.executors.get_executor`):

* models are loaded, run and released on the executor's **worker thread** (``Backend.prepare_thread`` is called
  there once per backend and device before the first load);
* :meth:`InferenceExecutor.submit` returns a :class:`concurrent.futures.Future` of a :class:`RunResult`;
* submissions with a ``stream`` (a camera topic, a microphone) go to a **latest-only slot** per (stream, model):
  a newer submission replaces one that has not started yet, the replaced future is cancelled
  (``future.result()`` raises :class:`concurrent.futures.CancelledError`) and the drop is counted exactly;
  submissions without a stream (one-shot service calls) go to a FIFO queue;
* stream lanes are served **round-robin** among themselves, so one busy camera cannot starve another; model
  load/unload requests go first. Between stream lanes and the FIFO queue the default policy ``streams_first``
  lets each stream lane run at most once ahead of the FIFO job at the head of the queue, then runs that job. Why: stream
  submissions are real-time sensor frames that a newer frame replaces (a wait longer than the frame period is a
  drop), while FIFO submissions are sequential work whose caller waits anyway (a Whisper decode is hundreds of short
  steps, each submitted when the previous one returned); the FIFO head still never waits more than one run per
  pending stream, so speech cannot starve either. A camera frame then waits at most for the run in progress (one
  decoder step) plus one run of each other pending camera. ``policy="round_robin"`` treats the FIFO queue as one
  more lane (the behaviour before 2026-12, kept as the benchmark's baseline);
* copy/compute overlap: when the worker takes a stream submission of a model whose session can pipeline
  (:attr:`AxclSession.supports_pipelining`) and other stream lanes of the same model are pending (several cameras
  on one detector), it launches up to ``pipeline_depth`` of them on the session's IO sets (upload, execute and
  download of one overlap those of the next) and then collects them in order; ``pipeline_depth=1`` turns this off;
* futures are resolved, in completion order, on a separate **completion thread**, so done-callbacks (host
  post-processing, publishing) never delay the device. Exceptions: a replaced (dropped) future is cancelled in the
  thread that submitted its replacement, a future whose feeds fail validation is failed in the submitting thread,
  and futures still pending at shutdown/unload are failed in the thread that calls shutdown/unload;
* at :meth:`InferenceExecutor.shutdown`, futures still pending are failed with :class:`ExecutorShutdownError`
  (an exception, not a cancellation, so callers see why), every model is released on the worker thread and both
  threads are joined.

Errors of a run (bad input, device failure) are set on that run's future and counted; the executor keeps serving.
Arrays passed as feeds must not be modified until the future is done.

Handles, results, errors and statistics live in :mod:`.model_handle`, the order runs are taken in in
:mod:`.run_queue`. Over 400 lines on purpose: what stays (the API, the worker and completion threads, the run loop)
shares one lock and one state, and reads best in one place.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Callable, Deque, Dict, Hashable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from .base import BackendError, InputMismatchError, Session, check_feeds
from .model_handle import (
    ExecutorShutdownError,
    ModelHandle,
    ModelReleasedError,
    ModelStats,
    RunResult,
    StreamStats,
    error_text,
)
from .registry import AUTO, resolve_backend
from .run_queue import CallJob, RunJob, RunQueue

#: the executor's API; the handle, result and error classes live in :mod:`.model_handle`, the process-wide
#: executors (one per device) in :mod:`.executors`
__all__ = [
    "CancelledError", "ExecutorShutdownError", "InferenceExecutor", "ModelHandle", "ModelReleasedError", "RunResult",
]

_log = logging.getLogger(__name__)


_STOP = object()


class InferenceExecutor:
    """Serial device-work executor shared by every node of a process (see the module docstring).

    Args:
        key: name of the executor (appears in thread names and stats), e.g. ``"axcl:0"``.
        on_thread_start: optional callable run once on the worker thread before any job; if it raises, every job
            fails with that error.
    """

    POLICIES = ("streams_first", "round_robin")

    def __init__(self, key: str = "default", on_thread_start: Optional[Callable[[], None]] = None,
                 policy: str = "streams_first", pipeline_depth: int = 2) -> None:
        if policy not in self.POLICIES:
            raise ValueError(f"executor policy {policy!r} not in {self.POLICIES}")
        self.key = key
        self.policy = policy
        self.pipeline_depth = max(1, int(pipeline_depth))
        self._no_pipeline: Set[int] = set()  # handles whose pipelined path failed: serial from then on
        self.on_thread_start = on_thread_start
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._control: Deque[CallJob] = deque()
        self._queue = RunQueue(policy)
        self._handles: Dict[int, ModelHandle] = {}
        self._model_stats: Dict[int, ModelStats] = {}
        self._stream_stats: Dict[Hashable, StreamStats] = {}
        self._ids = itertools.count(1)
        self._sequence = itertools.count(1)
        self._closed = False
        self._stopping = False
        self._running: Optional[RunJob] = None
        self._thread_error: Optional[BaseException] = None
        self._prepared: Set[Tuple[str, str]] = set()
        self._completions: queue.SimpleQueue = queue.SimpleQueue()
        safe = "".join(c if c.isalnum() or c in "-_:." else "_" for c in key)
        self._worker = threading.Thread(target=self._worker_main, name=f"axcl-exec-{safe}-worker", daemon=True)
        self._completer = threading.Thread(target=self._completion_main, name=f"axcl-exec-{safe}-completion",
                                           daemon=True)
        self._completer.start()
        self._worker.start()

    # ------------------------------------------------------------------ public API

    @property
    def is_shutdown(self) -> bool:
        """True once :meth:`shutdown` has been called."""
        return self._closed

    @property
    def worker_thread(self) -> threading.Thread:
        """The thread that runs every load, run and release."""
        return self._worker

    def load(self, path, backend: str = AUTO, device: str = "", name: Optional[str] = None,
             timeout: Optional[float] = None, **options) -> ModelHandle:
        """Load ``path`` on the worker thread and return its handle (blocks until loaded).

        ``backend``/``device``/``options`` are those of :func:`axcl_ros.runtime.registry.load_model`; ``name``
        defaults to the file stem (made unique with ``#2``, ``#3`` … among the loaded models). Load errors
        (:class:`ModelLoadError`, :class:`BackendUnavailableError` …) are raised here.
        """
        path = os.fspath(path)

        def factory() -> Session:
            chosen = resolve_backend(backend, path, **options)
            key = (chosen.name, device)
            if key not in self._prepared:
                chosen.prepare_thread(device)
                self._prepared.add(key)
            return chosen.load(path, device)

        default_name = os.path.splitext(os.path.basename(path))[0] or "model"
        return self.load_session(factory, name=name or default_name, timeout=timeout)

    def load_session(self, factory: Callable[[], Session], name: str = "model",
                     timeout: Optional[float] = None) -> ModelHandle:
        """Run ``factory()`` on the worker thread and register the :class:`Session` it returns (blocks)."""

        def create() -> ModelHandle:
            if self._thread_error is not None:
                raise self._thread_error_for("load")
            session = factory()
            with self._lock:
                if self._closed:
                    session.release()
                    raise ExecutorShutdownError(f"executor {self.key!r} shut down while loading {name!r}")
                handle = ModelHandle(self, session, self._unique_name(name), next(self._ids))
                self._handles[handle.id] = handle
                self._model_stats[handle.id] = ModelStats()
            return handle

        return self._call(create, timeout, f"load {name!r}")

    def unload(self, handle: ModelHandle, timeout: Optional[float] = None) -> None:
        """Release ``handle``'s model on the worker thread (idempotent; blocks unless called on the worker).

        Its submissions still pending fail with :class:`ModelReleasedError`.
        """
        self._check_owner(handle)
        with self._lock:
            if handle._released:
                return
            handle._released = True
            pending = self._queue.remove(lambda job: job.handle is handle)
            job = None
            if not self._closed:
                job = CallJob(lambda: self._release_handle(handle))
                self._control.append(job)
                self._cond.notify()
        self._fail(pending, ModelReleasedError(f"model {handle.name!r} was unloaded before this run started"))
        if job is not None and threading.current_thread() is not self._worker:
            job.future.result(timeout)

    def submit(self, handle: ModelHandle, feeds: Mapping[str, np.ndarray],
               output_names: Optional[Sequence[str]] = None, stream: Optional[Hashable] = None) -> Future:
        """Queue one run of ``handle`` and return a future of its :class:`RunResult`.

        With ``stream`` the run goes to that stream's latest-only slot for this model (see the module docstring);
        without, to the FIFO queue. Feeds are validated against the model's specs now: a mismatch fails the
        returned future with :class:`InputMismatchError` (counted as an error) without queueing anything.
        Raises :class:`ExecutorShutdownError` after shutdown and :class:`ModelReleasedError` for an unloaded handle.
        """
        self._check_owner(handle)
        future: Future = Future()
        names = None if output_names is None else tuple(output_names)
        with self._lock:
            self._check_open(handle)
            sequence = next(self._sequence)
            mstats = self._model_stats[handle.id]
            mstats.submitted += 1
            sstats = None
            if stream is not None:
                sstats = self._stream_stats.setdefault(stream, StreamStats())
                sstats.submitted += 1
        try:
            check_feeds(handle.inputs, feeds)
            if names is not None:
                known = [s.name for s in handle.outputs]
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise InputMismatchError(f"unknown output names {unknown}; model {handle.name!r} has {known}")
        except InputMismatchError as exc:
            with self._lock:
                mstats.errors += 1
                mstats.last_error = error_text(exc)
                if sstats is not None:
                    sstats.errors += 1
            future.set_running_or_notify_cancel()
            future.set_exception(exc)
            return future

        job = RunJob(handle, dict(feeds), names, future, stream, sequence)
        replaced: Optional[RunJob] = None
        with self._lock:
            self._check_open(handle)
            replaced = self._queue.put(job)
            if replaced is not None and replaced.future.cancelled():  # the caller cancelled it already: not a drop
                mstats.cancelled += 1
            elif replaced is not None:
                mstats.drops += 1
                sstats.drops += 1
            self._cond.notify()
        if replaced is not None:
            replaced.feeds = None
            # outside the lock: cancel() runs the done-callbacks right here; the notify step then wakes
            # concurrent.futures.wait()/as_completed() waiters (a cancelled future counts as done for them only then)
            replaced.future.cancel()
            replaced.future.set_running_or_notify_cancel()
        return future

    def run(self, handle: ModelHandle, feeds: Mapping[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None, timeout: Optional[float] = None) -> RunResult:
        """Submit to the FIFO queue and wait for the result (not allowed from a completion callback)."""
        if threading.current_thread() in (self._worker, self._completer):
            raise RuntimeError("InferenceExecutor.run() would deadlock when called from the executor's own threads; "
                               "use submit() and a done-callback instead")
        return self.submit(handle, feeds, output_names).result(timeout)

    def pending(self) -> int:
        """Number of submissions queued and not started."""
        with self._lock:
            return len(self._queue)

    def models(self) -> List[ModelHandle]:
        """Handles of the models currently loaded."""
        with self._lock:
            return list(self._handles.values())

    def stats(self) -> dict:
        """Plain-dict statistics: per model (by name) and per stream, plus queue state.

        ``{"executor": key, "pending": n, "running": model name or "", "shutdown": bool,
        "models": {name: {"backend", "device", "path", "submitted", "count", "errors", "drops", "cancelled",
        "queue_wait_ms_mean", "queue_wait_ms_max", "run_ms_mean", "run_ms_max", "last_error"}},
        "streams": {str(stream): {"submitted", "count", "errors", "drops"}}}``.
        ``count`` counts successful runs; means are over runs that started (successful or not).
        """
        with self._lock:
            models = {}
            for hid, handle in self._handles.items():
                entry = {"backend": handle.backend, "device": handle.device, "path": handle.path}
                entry.update(self._model_stats[hid].as_dict())
                models[handle.name] = entry
            streams = {str(s): st.as_dict() for s, st in self._stream_stats.items()}
            running = self._running.handle.name if self._running is not None else ""
            return {"executor": self.key, "pending": len(self._queue), "running": running,
                    "shutdown": self._closed, "models": models, "streams": streams}

    def shutdown(self, timeout: Optional[float] = 5.0) -> bool:
        """Stop the executor; return True when both threads have exited within ``timeout`` seconds.

        Pending submissions fail with :class:`ExecutorShutdownError`; the run in progress (if any) completes;
        then every loaded model is released on the worker thread. Later calls to ``load``/``submit`` raise
        :class:`ExecutorShutdownError`. Idempotent.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            pending: List[RunJob] = []
            if not self._closed:
                self._closed = True
                pending = self._queue.remove(lambda job: True)
                self._control.append(CallJob(self._release_all))
                self._stopping = True
                self._cond.notify()
        self._fail(pending, ExecutorShutdownError(f"executor {self.key!r} shut down before this run started"))
        me = threading.current_thread()
        if me is not self._worker:
            self._worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if me is not self._completer:
            self._completer.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not self._worker.is_alive() and not self._completer.is_alive()
        if not done and me not in (self._worker, self._completer):
            _log.warning("executor %r: threads still running after shutdown(timeout=%s) (a run is stuck?)",
                         self.key, timeout)
        return done

    # ------------------------------------------------------------------ internals (lock held where noted)

    def _check_owner(self, handle: ModelHandle) -> None:
        if not isinstance(handle, ModelHandle) or handle._executor is not self:
            raise ValueError(f"{handle!r} is not a model handle of executor {self.key!r}")

    def _check_open(self, handle: ModelHandle) -> None:  # lock held
        if self._closed:
            raise ExecutorShutdownError(f"executor {self.key!r} is shut down; get a new one with get_executor()")
        if handle._released:
            raise ModelReleasedError(f"model {handle.name!r} was unloaded; load it again")

    def _unique_name(self, name: str) -> str:  # lock held
        taken = {h.name for h in self._handles.values()}
        if name not in taken:
            return name
        for n in itertools.count(2):
            candidate = f"{name}#{n}"
            if candidate not in taken:
                return candidate
        raise AssertionError("unreachable")

    @staticmethod
    def _fail(jobs: Sequence[RunJob], exc: BaseException) -> None:
        for job in jobs:
            job.feeds = None
            if job.future.set_running_or_notify_cancel():
                try:
                    job.future.set_exception(exc)
                except InvalidStateError:  # pragma: no cover - RUNNING futures cannot be cancelled
                    pass

    def _call(self, fn: Callable[[], object], timeout: Optional[float], what: str):
        if threading.current_thread() is self._worker:
            raise RuntimeError(f"cannot {what} from the executor's worker thread (it would wait for itself)")
        job = CallJob(fn)
        with self._lock:
            if self._closed:
                raise ExecutorShutdownError(f"executor {self.key!r} is shut down; cannot {what}")
            self._control.append(job)
            self._cond.notify()
        return job.future.result(timeout)

    def _thread_error_for(self, what: str) -> BackendError:
        err = BackendError(f"executor {self.key!r}: on_thread_start failed ({error_text(self._thread_error)}); "
                           f"cannot {what}")
        err.__cause__ = self._thread_error
        return err

    def _release_handle(self, handle: ModelHandle) -> None:  # worker thread
        session, handle._session = handle._session, None
        with self._lock:
            self._handles.pop(handle.id, None)
            stats = self._model_stats.pop(handle.id, None)
        if session is not None:
            try:
                session.release()
            except Exception as exc:  # a failing release must not stop the others
                _log.warning("executor %r: releasing %r failed: %s", self.key, handle.name, exc)
                if stats is not None:
                    stats.last_error = error_text(exc)

    def _release_all(self) -> None:  # worker thread
        with self._lock:
            handles = list(self._handles.values())
            for handle in handles:
                handle._released = True
        for handle in handles:
            self._release_handle(handle)

    def _worker_main(self) -> None:
        if self.on_thread_start is not None:
            try:
                self.on_thread_start()
            except Exception as exc:
                _log.error("executor %r: on_thread_start failed: %s", self.key, exc)
                self._thread_error = exc
        while True:
            more: List[RunJob] = []
            with self._cond:
                while not self._control and not self._queue.has_work and not self._stopping:
                    self._cond.wait()
                if self._control:
                    job = self._control.popleft()
                elif self._queue.has_work:
                    job = self._queue.take()
                    if not job.future.set_running_or_notify_cancel():  # cancelled by its caller
                        self._model_stats[job.handle.id].cancelled += 1
                        continue
                    self._running = job
                    more = self._more_for_pipeline(job)
                else:
                    break
            if isinstance(job, CallJob):
                try:
                    job.future.set_result(job.fn())
                except BaseException as exc:
                    job.future.set_exception(exc)
            elif more:
                self._execute_pipelined([job] + more)
            else:
                self._execute(job)
        self._completions.put(_STOP)  # after every result this thread queued: the completion thread ends last

    def _more_for_pipeline(self, job: RunJob) -> List[RunJob]:  # lock held
        """Other pending stream submissions of ``job``'s model to launch together with it (see module docstring)."""
        session = job.handle._session
        if (self.pipeline_depth < 2 or job.stream is None or self._thread_error is not None or session is None
                or job.handle.id in self._no_pipeline or getattr(session, "supports_pipelining", False) is not True
                or any(s.name not in job.feeds for s in job.handle.inputs)):
            return []
        more: List[RunJob] = []
        inputs = job.handle.inputs
        for nxt in self._queue.take_same_model(job.handle.id, lambda j: all(s.name in j.feeds for s in inputs)):
            if not nxt.future.set_running_or_notify_cancel():
                self._model_stats[job.handle.id].cancelled += 1
                continue
            more.append(nxt)
            if len(more) + 1 >= self.pipeline_depth:
                break
        return more

    def _execute_pipelined(self, jobs: List[RunJob]) -> None:  # worker thread
        """Launch every job on the session's IO sets, then collect them in order."""
        session = jobs[0].handle._session
        launched = []
        for k, job in enumerate(jobs):
            t_start = time.perf_counter()
            try:
                launched.append((job, session.launch(job.feeds, job.output_names, depth=self.pipeline_depth),
                                 t_start))
            except BackendError as exc:
                # the asynchronous path failed (e.g. a library that refuses async copies from pageable memory):
                # this model runs serially from now on; this job and the rest of the batch too
                _log.warning("executor %r: pipelined run of %r failed (%s); running it serially from now on",
                             self.key, job.handle.name, exc)
                with self._lock:
                    self._no_pipeline.add(job.handle.id)
                for rest in jobs[k:]:
                    self._execute(rest)
                break
            except Exception as exc:
                self._finish(job, t_start, None, exc)
        for job, ticket, t_start in launched:
            try:
                outputs = {k: np.array(v, copy=True) for k, v in session.collect(ticket).items()}
            except Exception as exc:
                self._finish(job, t_start, None, exc)
            else:
                self._finish(job, t_start, outputs, None)

    def _execute(self, job: RunJob) -> None:  # worker thread
        handle = job.handle
        t_start = time.perf_counter()
        outputs = None
        error: Optional[Exception] = None
        try:
            if self._thread_error is not None:
                raise self._thread_error_for(f"run {handle.name!r}")
            session = handle._session
            if session is None:
                raise ModelReleasedError(f"model {handle.name!r} was unloaded")
            outputs = session.run(job.feeds, job.output_names)
            if not session.owns_outputs:
                outputs = {k: np.array(v, copy=True) for k, v in outputs.items()}
        except Exception as exc:
            error = exc
        self._finish(job, t_start, outputs, error)

    def _finish(self, job: RunJob, t_start: float, outputs: Optional[Dict[str, np.ndarray]],
                error: Optional[Exception]) -> None:  # worker thread: stats and completion of one run
        handle = job.handle
        ok = error is None
        t_end = time.perf_counter()
        job.feeds = None
        wait_ms = (t_start - job.t_submit) * 1000.0
        run_ms = (t_end - t_start) * 1000.0
        with self._lock:
            self._running = None
            mstats = self._model_stats.get(handle.id)
            sstats = self._stream_stats.get(job.stream) if job.stream is not None else None
            if mstats is not None:
                mstats.ran += 1
                mstats.wait_sum += wait_ms
                mstats.wait_max = max(mstats.wait_max, wait_ms)
                mstats.run_sum += run_ms
                mstats.run_max = max(mstats.run_max, run_ms)
                if ok:
                    mstats.count += 1
                else:
                    mstats.errors += 1
                    mstats.last_error = error_text(error)
            if sstats is not None:
                if ok:
                    sstats.count += 1
                else:
                    sstats.errors += 1
        if ok:
            result = RunResult(outputs=outputs, queue_wait_ms=wait_ms, run_ms=run_ms, sequence=job.sequence,
                               model=handle.name, stream=job.stream)
            self._completions.put((job.future, True, result))
        else:
            self._completions.put((job.future, False, error))

    def _completion_main(self) -> None:
        while True:
            item = self._completions.get()
            if item is _STOP:
                return
            future, ok, value = item
            try:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            except InvalidStateError:  # pragma: no cover - RUNNING futures cannot be cancelled
                pass
