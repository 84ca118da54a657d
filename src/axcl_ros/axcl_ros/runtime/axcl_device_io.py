"""The device-resident part of :class:`~.axcl_session.AxclSession`: calls that keep data on the card between models
and steps (execute without copies, partial writes, device-to-device copies, zero-copy input bindings).

A mixin of the session's methods, kept apart because it is a job of its own; it uses the session's lock, buffers and
guards (see :class:`~.axcl_session.AxclSession`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np

from .axcl_abi import D2D, H2D, AxclError
from .base import InputMismatchError

if TYPE_CHECKING:
    from .axcl_session import AxclSession


class DeviceResidentIO:
    """Device-resident calls of :class:`~.axcl_session.AxclSession` (mixin)."""

    def execute(self) -> None:
        """Run the model on what the device buffers hold (no copies)."""
        with self._lock:
            self._ready()
            self._guard(self._execute)

    def read_output(self, name: str) -> np.ndarray:
        """Copy output ``name`` to its reused host array and return it."""
        buf = self._output(name)
        with self._lock:
            self._ready()
            return self._guard(self._read, buf)

    def write_input(self, name: str, array: np.ndarray, byte_offset: int = 0) -> None:
        """H2D-copy ``array`` (the input's dtype, C order) into input ``name`` starting ``byte_offset`` bytes in."""
        buf = self._input(name)
        host = np.ascontiguousarray(array)
        spec = buf.spec
        if host.dtype != spec.dtype:
            raise InputMismatchError(f"write_input {name!r}: array dtype {host.dtype.name}, the input is "
                                     f"{spec.describe()}")
        self._check_range(f"write_input {name!r}", byte_offset, host.nbytes, spec)
        with self._lock:
            self._ready()
            self._guard(self._memcpy, buf.ptr + byte_offset, host.ctypes.data, host.nbytes, H2D)

    def fill_input(self, name: str, value: int = 0) -> None:
        """Set every byte of input ``name`` on the device to ``value`` (``axclrtMemset``; nothing crosses PCIe)."""
        buf = self._input(name)
        if not 0 <= int(value) <= 255:
            raise InputMismatchError(f"fill_input {name!r}: byte value {value} not in 0..255")
        with self._lock:
            self._ready()
            self._guard(self._rt.lib.check, "axclrtMemset", buf.ptr, int(value), buf.spec.nbytes)

    def copy_output_to_input(self, output_name: str, input_name: str, dst_byte_offset: int = 0,
                             src_byte_offset: int = 0, nbytes: Optional[int] = None) -> None:
        """Device-to-device copy of output ``output_name`` (or ``nbytes`` of it from ``src_byte_offset``) into
        input ``input_name`` at ``dst_byte_offset``."""
        src, dst = self._output(output_name), self._input(input_name)
        count = src.spec.nbytes - src_byte_offset if nbytes is None else int(nbytes)
        self._check_range(f"copy_output_to_input source {output_name!r}", src_byte_offset, count, src.spec)
        self._check_range(f"copy_output_to_input destination {input_name!r}", dst_byte_offset, count, dst.spec)
        with self._lock:
            self._ready()
            self._guard(self._memcpy, dst.ptr + dst_byte_offset, src.ptr + src_byte_offset, count, D2D)

    def device_buffer(self, name: str, kind: str = "") -> Tuple[int, int]:
        """``(device address, nbytes)`` of input or output ``name`` (``kind`` ``"input"``/``"output"`` when a name
        is both)."""
        if kind not in ("", "input", "output"):
            raise ValueError(f"kind {kind!r} must be '', 'input' or 'output'")
        in_buf = self._in_by_name.get(name) if kind in ("", "input") else None
        out_buf = self._out_by_name.get(name) if kind in ("", "output") else None
        if in_buf is not None and out_buf is not None:
            raise InputMismatchError(f"{name!r} is both an input and an output; pass kind='input' or 'output'")
        buf = in_buf or out_buf
        if buf is None:
            raise InputMismatchError(f"no tensor {name!r}; inputs {list(self._in_by_name)}, outputs "
                                     f"{list(self._out_by_name)}")
        self._ready_state()
        return buf.ptr, buf.spec.nbytes

    def bind_input_to(self, name: str, other: AxclSession, output_name: str) -> None:
        """Use ``other``'s output ``output_name`` device buffer as this session's input ``name`` (zero copy).

        Both sessions must be on the same card and the tensors must have the same shape and dtype. This session's
        own buffer for ``name`` is freed; ``other`` must stay loaded while the binding is used.
        """
        if not isinstance(other, DeviceResidentIO):  # i.e. an AxclSession
            raise TypeError(f"bind_input_to needs an AxclSession, got {type(other).__name__}")
        dst, src = self._input(name), other._output(output_name)
        if other._rt is not self._rt or other.device_index != self.device_index:
            raise InputMismatchError(f"cannot bind {name!r} of {self.path} ({self.device}) to {output_name!r} of "
                                     f"{other.path} ({other.device}): different devices")
        if tuple(src.spec.shape) != tuple(dst.spec.shape) or src.spec.dtype != dst.spec.dtype:
            raise InputMismatchError(f"cannot bind input {dst.spec.describe()} to output {src.spec.describe()}")
        if src.size < dst.size:
            raise InputMismatchError(f"cannot bind input {name!r} ({dst.size} bytes on the device) to output "
                                     f"{output_name!r} ({src.size} bytes)")
        other._ready_state()
        with self._lock:
            self._ready()
            lib = self._rt.lib
            self._guard(lib.check, "axclrtEngineSetInputBufferByIndex", self._io, dst.index, src.ptr, dst.size)
            if dst.own:
                own, dst.own = dst.own, 0
                self._guard(lib.check, "axclrtFree", own)
            dst.ptr = src.ptr
            dst.source = (other, output_name)

    def unbind_input(self, name: str) -> None:
        """Give input ``name`` its own zeroed device buffer again (undo :meth:`bind_input_to`)."""
        dst = self._input(name)
        with self._lock:
            if dst.source is None:
                return
            self._ready_state()
            self._rt.ensure_thread_context(self.device_index)
            ptr = self._guard(self._malloc, dst.size)
            try:
                self._guard(self._rt.lib.check, "axclrtEngineSetInputBufferByIndex", self._io, dst.index, ptr,
                            dst.size)
            except AxclError:
                self._rt.lib.call("axclrtFree", ptr)
                raise
            dst.own = dst.ptr = ptr
            dst.source = None
