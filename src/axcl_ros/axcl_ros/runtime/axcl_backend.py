"""AXCL backend: run ``.axmodel`` files on AX650N cards (``device`` = card index); sessions are
:class:`~.axcl_session.AxclSession`."""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

from .axcl import AxclRuntime, get_runtime
from .axcl_abi import AxclError
from .axcl_library import INSTALL_HINT
from .axcl_session import AxclSession
from .base import Backend, BackendError, BackendUnavailableError

__all__ = ["AxclBackend", "InvalidDeviceError", "parse_device"]


class InvalidDeviceError(BackendError, ValueError):
    """The ``device`` string is not an AXCL card index (``""``, ``"0"``, ``"axcl:1"``)."""


def parse_device(device: Union[str, int, None]) -> int:
    """Card index from ``""``/``None`` (0), an int, ``"1"`` or ``"axcl:1"``."""
    if device is None or (isinstance(device, str) and not device.strip()):
        return 0
    if isinstance(device, int) and not isinstance(device, bool):
        index = device
    else:
        text = str(device).strip().lower()
        if text.startswith("axcl:"):
            text = text[5:]
        if not text.isdigit():
            raise InvalidDeviceError(f"AXCL device {device!r} is not a card index; use '0', '1' or 'axcl:1'")
        index = int(text)
    if index < 0:
        raise InvalidDeviceError(f"AXCL device index {index} must be >= 0")
    return index


class AxclBackend(Backend):
    """Backend for ``.axmodel`` files on AXERA AX650N cards via ``libaxcl_rt.so`` (``device`` = card index)."""

    name = "axcl"
    suffixes = (".axmodel",)

    def __init__(self, runtime: Optional[AxclRuntime] = None) -> None:
        self._runtime = runtime

    def runtime(self) -> AxclRuntime:
        """The runtime this backend uses (the process-wide one unless given)."""
        if self._runtime is not None and not self._runtime.closed:
            return self._runtime
        return get_runtime()

    def available(self) -> Tuple[bool, str]:
        """``(True, "")`` when the library loads, ``axclInit`` works and at least one card is listed."""
        try:
            rt = self.runtime()
        except BackendUnavailableError as exc:
            return False, str(exc)
        except AxclError as exc:
            return False, f"AXCL initialisation failed: {exc}; {INSTALL_HINT}"
        if rt.device_count == 0:
            return False, ("axclrtGetDeviceList lists no AXCL card: check `lspci` (Axera 1f4b:0650), that the "
                           "axcl_host driver is loaded and /dev/axcl_host exists, and `axcl-smi`")
        return True, ""

    def load(self, path: str, device: str = "") -> AxclSession:
        """Load ``path`` on card index ``device`` (``""`` → 0, ``"1"``, ``"axcl:1"``)."""
        index = parse_device(device)
        return AxclSession(path, index, runtime=self.runtime())

    def device_properties(self, device: str = "") -> Dict[str, object]:
        """Telemetry of a card (see :meth:`AxclRuntime.device_properties`)."""
        return self.runtime().device_properties(parse_device(device))
