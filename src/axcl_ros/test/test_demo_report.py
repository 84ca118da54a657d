"""The demo's summary tells the truth: every loss kind listed, non-zero exit on transport loss."""

import pytest

pytest.importorskip("rclpy")

from axcl_msgs.msg import DetectionArray  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue  # noqa: E402

from axcl_ros_demo.report import DemoObserver  # noqa: E402


def _observer(sent: int, det: dict, speech: dict, audio_sent: int = 0) -> DemoObserver:
    obs = object.__new__(DemoObserver)  # the summary only, without a ROS graph
    obs.sent = {i: "astronaut" for i in range(sent)}
    obs.detections = [DetectionArray() for _ in range(int(det.get("camera0.received", 0)))]
    obs.transcripts, obs.refs, obs.saved = [], [], {}
    obs.audio_sent = audio_sent
    obs.diagnostics = {
        f"axcl_ros: /{name}": DiagnosticStatus(name=f"axcl_ros: /{name}",
                                               values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        for name, values in (("detector", det), ("speech", speech))}
    return obs


def test_all_frames_and_chunks_delivered_exits_zero(capsys):
    obs = _observer(40, {"camera0.received": 40, "camera0.lost_in_transport": 0}, {"speech.chunks": 30}, 30)
    assert obs.report() == 0
    out = capsys.readouterr().out
    assert "40 received by the detector, 0 lost in transport" in out and "30 received by speech" in out
    assert "TRANSPORT LOSS" not in out


def test_frames_lost_in_transport_exit_non_zero(capsys):
    obs = _observer(40, {"camera0.received": 15, "camera0.lost_in_transport": 20, "camera0.dropped": 3}, {})
    loss = obs.losses()
    assert loss["frames_lost_in_transport"] == 20 and loss["frames_missing_unreported"] == 5
    assert loss["frames_dropped_latest_slot"] == 3
    assert obs.report() == 1
    assert "WITH TRANSPORT LOSS" in capsys.readouterr().out


def test_audio_gaps_exit_non_zero():
    obs = _observer(4, {"camera0.received": 4}, {"speech.chunks": 28, "speech.gaps": 1,
                                                 "audio.lost_in_transport": 2}, audio_sent=30)
    assert obs.losses()["audio_chunks_lost_in_transport"] == 2
    assert obs.report() == 1


def test_frames_replaced_in_the_queue_are_listed_and_are_no_transport_loss(capsys):
    """Frames a busy node did not take before the next replaced them (``skipped_in_queue``, from the publisher's
    sequence numbers) are counted like the executor's latest-frame drops: listed, not a transport failure."""
    obs = _observer(40, {"camera0.received": 35, "camera0.lost_in_transport": 0, "camera0.skipped_in_queue": 5},
                    {"speech.chunks": 28, "audio.skipped_in_queue": 2}, audio_sent=30)
    loss = obs.losses()
    assert loss["frames_skipped_in_queue"] == 5 and loss["frames_missing_unreported"] == 0
    assert loss["audio_chunks_skipped_in_queue"] == 2 and loss["audio_chunks_missing_unreported"] == 0
    assert obs.report() == 0
    out = capsys.readouterr().out
    assert "5 replaced in the subscription queue before the node took them" in out
    assert "TRANSPORT LOSS" not in out
