"""Call a ROS service from a thread that is not spinning, surviving responses that DDS drops.

A service becomes "ready" for a client as soon as the server's request reader is matched; the server's response
writer may not yet have matched the client's response reader. rmw_fastrtps waits 100 ms for that match and otherwise
drops the response (the server logs "failed to send response (timeout)"), so on a busy machine the first call to a
node in another process can go unanswered forever. Idempotent requests (``get_state``, parameter reads) are therefore
re-sent while no answer comes; for requests with an effect, ``on_silence`` can observe the effect another way.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Tuple


def call_service(client, request, timeout: float, *, wait_service: Optional[float] = None, every: float = 1.0,
                 resend: bool = False, on_silence: Optional[Callable[[], Any]] = None,
                 stop: Optional[threading.Event] = None) -> Tuple[Optional[Any], str]:
    """Send ``request`` with ``client`` (whose node some executor spins) and wait for the response.

    Returns ``(response, "")`` or ``(None, why)``. ``wait_service`` bounds the wait for the server to appear (default
    ``timeout``). Every ``every`` seconds without an answer the request is sent again when ``resend`` is true (only
    for idempotent requests), and ``on_silence()`` is called: a non-None result ends the wait as the response (the
    effect of the request was observed another way). ``stop`` being set ends the wait early.
    """
    stopped = stop if stop is not None else threading.Event()
    appear = timeout if wait_service is None else wait_service
    deadline = time.monotonic() + appear
    while not client.service_is_ready():
        if time.monotonic() > deadline:
            return None, f"service {client.srv_name} not available after {appear:g} s"
        if stopped.wait(0.05):
            return None, "stopping"
    futures = [client.call_async(request)]
    deadline = time.monotonic() + timeout
    next_tick = time.monotonic() + every
    try:
        while True:
            done = next((f for f in futures if f.done()), None)
            if done is not None:
                exc = done.exception()
                if exc is not None:
                    return None, f"{client.srv_name} failed: {exc}"
                return done.result(), ""
            now = time.monotonic()
            if now > deadline:
                return None, f"no response from {client.srv_name} within {timeout:g} s"
            if now >= next_tick:
                next_tick = now + every
                if on_silence is not None:
                    observed = on_silence()
                    if observed is not None:
                        return observed, ""
                if resend:
                    futures.append(client.call_async(request))
            if stopped.wait(0.01):
                return None, "stopping"
    finally:
        for future in futures:
            if not future.done():
                client.remove_pending_request(future)
