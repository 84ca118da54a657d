"""Copy/compute overlap for :class:`~.axcl_session.AxclSession`: extra IO sets, each with its own device buffers,
engine IO and stream, driven by the asynchronous AXCL API, so that while the NPU executes frame N, frame N+1 is
uploaded and frame N-1 downloaded.

A mixin of the session's methods, kept apart because it is a job of its own; it uses the session's lock, buffers and
guards (see :class:`~.axcl_session.AxclSession`).
"""

from __future__ import annotations

import ctypes
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .axcl_abi import D2H, H2D, AxclError
from .axcl_library import ASYNC_FUNCTIONS
from .base import DeviceError, InputMismatchError, check_feeds


@dataclass
class IOSet:
    """One extra IO set of a session for the pipelined path: device buffers, engine IO, stream, host outputs."""

    ins: List[int] = field(default_factory=list)  # device addresses, in input order
    outs: List[int] = field(default_factory=list)
    io: int = 0
    stream: int = 0
    host: Dict[str, np.ndarray] = field(default_factory=dict)
    feeds: Optional[Mapping[str, np.ndarray]] = None  # kept alive until the stream is synchronized
    names: Tuple[str, ...] = ()
    busy: bool = False


class PipelinedIO:
    """Pipelined calls of :class:`~.axcl_session.AxclSession` (mixin): :meth:`launch`, :meth:`collect`,
    :meth:`run_pipelined`."""


    @property
    def supports_pipelining(self) -> bool:
        """True when the library exports the stream API the pipelined path needs."""
        return all(self._rt.lib.has(n) for n in ASYNC_FUNCTIONS)

    @property
    def io_sets(self) -> int:
        """Number of extra IO sets allocated for the pipelined path (0 until it is first used)."""
        return len(self._sets)

    def launch(self, feeds: Mapping[str, np.ndarray], output_names: Optional[Sequence[str]] = None,
               depth: int = 2) -> int:
        """Queue upload → execute → download of one run on the next of ``depth`` IO sets; return its ticket.

        Returns at once (asynchronous API). Every input must be fed; ``feeds`` must stay unchanged until
        :meth:`collect`. Tickets are collected in any order, each once; launching onto a set whose previous run was
        not collected raises :class:`InputMismatchError`.
        """
        check_feeds(self._inputs, feeds, require_all=True)
        outs = self._outputs_named(output_names)
        with self._lock:
            self._ready()
            self._guard(self._ensure_sets, max(1, int(depth)))
            ticket = self._next_set % len(self._sets)
            st = self._sets[ticket]
            if st.busy:
                raise InputMismatchError(f"IO set {ticket} of {self.path!r} still holds an uncollected run; collect() "
                                         f"it before launching more than {len(self._sets)} runs")
            lib = self._rt.lib
            hosts = {name: np.ascontiguousarray(a) for name, a in feeds.items()}
            try:
                for buf in self._in:
                    host = hosts[buf.spec.name]
                    lib.check("axclrtMemcpyAsync", st.ins[buf.index], host.ctypes.data, host.nbytes, H2D, st.stream)
                lib.check("axclrtEngineExecuteAsync", ctypes.c_uint64(self._model_id), ctypes.c_uint64(self._ctx_id),
                          0, st.io, st.stream, detail=f"model {self.path!r}")
                for buf in outs:
                    host = st.host.get(buf.spec.name)
                    if host is None:
                        host = st.host[buf.spec.name] = np.empty(buf.spec.shape, dtype=buf.spec.dtype)
                    lib.check("axclrtMemcpyAsync", host.ctypes.data, st.outs[buf.index], buf.spec.nbytes, D2H,
                              st.stream)
            except AxclError as exc:
                self._rt.note_failure(exc)
                self._rt.lib.call("axclrtSynchronizeStream", st.stream)  # nothing may still write to our arrays
                raise
            st.feeds, st.names, st.busy = hosts, tuple(b.spec.name for b in outs), True
            self._next_set = ticket + 1
            return ticket

    def collect(self, ticket: int) -> dict:
        """Wait for the run of :meth:`launch`'s ``ticket`` and return its outputs (arrays reused by the set's next
        run)."""
        with self._lock:
            self._ready_state()
            if not 0 <= ticket < len(self._sets) or not self._sets[ticket].busy:
                raise InputMismatchError(f"ticket {ticket!r} of {self.path!r} has no run to collect")
            st = self._sets[ticket]
            self._rt.ensure_thread_context(self.device_index)
            try:
                self._guard(self._rt.lib.check, "axclrtSynchronizeStream", st.stream)
            finally:
                st.busy, st.feeds = False, None
            return {name: st.host[name] for name in st.names}

    def run_pipelined(self, feeds: Iterable[Mapping[str, np.ndarray]], output_names: Optional[Sequence[str]] = None,
                      depth: int = 2) -> Iterator[dict]:
        """Run every item of ``feeds`` with up to ``depth`` runs in flight; yield outputs in order.

        A yielded dict's arrays are reused ``depth`` runs later: copy what must outlive that. Runs still in flight
        when the generator is closed are collected (waited for) before it returns.
        """
        inflight: Deque[int] = deque()
        try:
            for item in feeds:
                if len(inflight) >= depth:
                    yield self.collect(inflight.popleft())
                inflight.append(self.launch(item, output_names, depth))
            while inflight:
                yield self.collect(inflight.popleft())
        finally:
            while inflight:
                try:
                    self.collect(inflight.popleft())
                except Exception:  # noqa: BLE001 - already failing or closing: only drain
                    pass

    def _ensure_sets(self, depth: int) -> None:  # lock held, context current
        if not self.supports_pipelining:
            missing = [n for n in ASYNC_FUNCTIONS if not self._rt.lib.has(n)]
            raise DeviceError(f"{self._rt.lib.path} lacks {missing}: no pipelined path; use run()")
        while len(self._sets) < depth:
            st = IOSet()
            try:
                self._build_set(st)
            except AxclError:
                self._free_set(st, lambda name, *args: self._rt.lib.call(name, *args))
                raise
            self._sets.append(st)

    def _build_set(self, st: IOSet) -> None:  # lock held, context current; _free_set undoes a partial build
        lib = self._rt.lib
        for buf in self._in:
            st.ins.append(self._malloc(buf.size))
        for buf in self._out:
            st.outs.append(self._malloc(buf.size))
        io = ctypes.c_void_p()
        lib.check("axclrtEngineCreateIO", self._info, ctypes.byref(io))
        st.io = int(io.value)
        if lib.has("axclrtEngineSetDynamicBatchSize"):
            lib.call("axclrtEngineSetDynamicBatchSize", st.io, 1)
        for buf in self._in:
            lib.check("axclrtEngineSetInputBufferByIndex", st.io, buf.index, st.ins[buf.index], buf.size)
        for buf in self._out:
            lib.check("axclrtEngineSetOutputBufferByIndex", st.io, buf.index, st.outs[buf.index], buf.size)
        stream = ctypes.c_void_p()
        lib.check("axclrtCreateStream", ctypes.byref(stream))
        st.stream = int(stream.value)

    @staticmethod
    def _free_set(st: IOSet, attempt) -> None:  # context current
        if st.stream:
            attempt("axclrtSynchronizeStream", st.stream)
            attempt("axclrtDestroyStream", st.stream)
        if st.io:
            attempt("axclrtEngineDestroyIO", st.io)
        for ptr in st.ins + st.outs:
            attempt("axclrtFree", ptr)
        st.stream = st.io = 0
        st.ins, st.outs = [], []

    def _free_sets(self, attempt) -> None:  # context current
        for st in self._sets:
            self._free_set(st, attempt)
        self._sets = []
