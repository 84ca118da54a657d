"""The inference executor's pending work and the order it is taken in (the scheduler).

* :class:`RunJob`: one submitted run; :class:`CallJob`: a control job (load/unload/release-all).
* :class:`RunQueue`: the FIFO queue of one-shot runs and one latest-only slot per (stream, model) lane, served
  round-robin from a ring of lanes. With the ``streams_first`` policy each stream lane may run once ahead of the FIFO
  head before the FIFO head runs; ``round_robin`` treats the FIFO queue as one more lane (see
  :mod:`axcl_ros.runtime.executor` for why).

Not thread safe: the executor calls every method with its lock held.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from typing import Callable, Deque, Dict, Hashable, Iterator, List, Optional, Set, Tuple

#: lane key of the FIFO queue (stream lanes are ``(stream, handle id)``)
FIFO_LANE = ("<fifo>",)


class RunJob:
    """One submission: the model handle, its feeds and the future of its result."""

    __slots__ = ("handle", "feeds", "output_names", "future", "stream", "sequence", "t_submit")

    def __init__(self, handle, feeds, output_names, future, stream, sequence) -> None:
        self.handle = handle
        self.feeds = feeds
        self.output_names = output_names
        self.future = future
        self.stream = stream
        self.sequence = sequence
        self.t_submit = time.perf_counter()


class CallJob:
    """A control job (load/unload/release-all) run on the worker; its future is resolved there directly."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.future: Future = Future()


class RunQueue:
    """Pending runs: a FIFO queue and latest-only stream slots, taken in the policy's order."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._fifo: Deque[RunJob] = deque()
        self._slots: Dict[Tuple[Hashable, int], RunJob] = {}
        self._ring: Deque[tuple] = deque()
        self._fifo_passed: Set[tuple] = set()  # streams_first: stream lanes that already ran ahead of the FIFO head

    def __len__(self) -> int:
        return len(self._fifo) + len(self._slots)

    @property
    def has_work(self) -> bool:
        """True when a run is waiting."""
        return bool(self._ring)

    def put(self, job: RunJob) -> Optional[RunJob]:
        """Queue ``job`` (FIFO without a stream, else its lane's slot); return the job it replaced, if any."""
        if job.stream is None:
            self._fifo.append(job)
            if len(self._fifo) == 1:
                self._fifo_passed.clear()
                self._ring.append(FIFO_LANE)
            return None
        lane = (job.stream, job.handle.id)
        replaced = self._slots.get(lane)
        self._slots[lane] = job
        if replaced is None:
            self._ring.append(lane)
        return replaced

    def take(self) -> RunJob:
        """Remove and return the next job to run (there must be one: :attr:`has_work`)."""
        if self.policy == "streams_first" and FIFO_LANE in self._ring and len(self._ring) > 1:
            ahead = next((lane for lane in self._ring if lane is not FIFO_LANE and lane not in self._fifo_passed),
                         None)
            if ahead is not None:  # each stream lane may run once ahead of the FIFO head
                self._ring.remove(ahead)
                self._fifo_passed.add(ahead)
                return self._slots.pop(ahead)
            self._ring.remove(FIFO_LANE)
            return self._take_fifo()
        lane = self._ring.popleft()
        if lane is FIFO_LANE:
            return self._take_fifo()
        return self._slots.pop(lane)

    def _take_fifo(self) -> RunJob:
        job = self._fifo.popleft()
        self._fifo_passed.clear()
        if self._fifo:
            self._ring.append(FIFO_LANE)
        return job

    def take_same_model(self, handle_id: int, usable: Callable[[RunJob], bool]) -> Iterator[RunJob]:
        """Remove and yield, in ring order, the pending stream runs of model ``handle_id`` that are ``usable``
        (the pipelined path launches them together); stop iterating to leave the rest queued."""
        for lane in list(self._ring):
            if lane is FIFO_LANE or lane[1] != handle_id:
                continue
            job = self._slots[lane]
            if not usable(job):
                continue
            self._ring.remove(lane)
            del self._slots[lane]
            if self._fifo:
                self._fifo_passed.add(lane)
            yield job

    def remove(self, predicate: Callable[[RunJob], bool]) -> List[RunJob]:
        """Remove and return every pending job for which ``predicate`` is true."""
        removed = [job for job in self._fifo if predicate(job)]
        if removed:
            self._fifo = deque(job for job in self._fifo if not predicate(job))
        for lane, job in list(self._slots.items()):
            if predicate(job):
                removed.append(self._slots.pop(lane))
        self._ring = deque(lane for lane in self._ring
                           if (lane is FIFO_LANE and self._fifo) or lane in self._slots)
        return removed
