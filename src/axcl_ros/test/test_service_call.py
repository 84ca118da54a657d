"""call_service: a dropped answer is recovered by re-sending idempotent requests or by observing the effect; no
answer at all ends with a message that names the service."""

import threading

import pytest

from axcl_ros.nodes.service_call import call_service


class _Future:
    def __init__(self):
        self._done, self._result = False, None

    def set_result(self, value):
        self._done, self._result = True, value

    def done(self):
        return self._done

    def exception(self):
        return None

    def result(self):
        return self._result


class _LossyClient:
    """Answers request number ``answered_from`` (1-based) and later ones; earlier answers are lost, as when DDS
    drops a response whose reader is not matched yet."""

    srv_name = "/node/get_state"

    def __init__(self, answered_from=1, ready=True):
        self.answered_from, self.ready = answered_from, ready
        self.sent, self.removed = [], []

    def service_is_ready(self):
        return self.ready

    def call_async(self, request):
        future = _Future()
        self.sent.append(future)
        if len(self.sent) >= self.answered_from:
            future.set_result(("answer", request))
        return future

    def remove_pending_request(self, future):
        self.removed.append(future)


def test_first_answer_arrives():
    client = _LossyClient()
    assert call_service(client, "req", 1.0) == (("answer", "req"), "")
    assert len(client.sent) == 1 and client.removed == []


def test_lost_answer_is_recovered_by_resending_and_stale_requests_are_dropped():
    client = _LossyClient(answered_from=3)
    response, why = call_service(client, "req", 5.0, every=0.05, resend=True)
    assert response == ("answer", "req") and why == ""
    assert len(client.sent) == 3
    assert client.removed == client.sent[:2]  # the two unanswered requests are no longer pending


def test_without_resend_a_lost_answer_times_out_naming_the_service():
    client = _LossyClient(answered_from=2)
    response, why = call_service(client, "req", 0.3, every=0.05)
    assert response is None and why == "no response from /node/get_state within 0.3 s"
    assert len(client.sent) == 1 and client.removed == client.sent


def test_on_silence_observes_the_effect():
    client = _LossyClient(answered_from=99)
    checks = []

    def observe():
        checks.append(1)
        return "goal reached" if len(checks) == 2 else None

    assert call_service(client, "req", 5.0, every=0.05, on_silence=observe) == ("goal reached", "")
    assert len(client.sent) == 1  # a request with an effect is never sent twice


@pytest.mark.parametrize("wait_service", [0.0, 0.2])
def test_missing_service(wait_service):
    response, why = call_service(_LossyClient(ready=False), "req", 5.0, wait_service=wait_service)
    assert response is None and why == f"service /node/get_state not available after {wait_service:g} s"


def test_stop_ends_the_wait():
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert call_service(_LossyClient(answered_from=99), "req", 30.0, stop=stop) == (None, "stopping")
