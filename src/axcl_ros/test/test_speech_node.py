"""Speech, wav_publisher and audio_capture nodes through real DDS, with the real Whisper tiny.en and Silero VAD.

Audio is streamed by WavPublisherNode at several times real time. The Whisper tiny.en CTranslate2 weights are
converted once into the cache folder (the key the demo uses) and reused.
"""

import re
import shutil
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS tests need the workspace: run through `make test`")
pytest.importorskip("axcl_msgs.msg", reason="axcl_msgs not built: run through `make test`")

from action_msgs.msg import GoalStatus  # noqa: E402
from axcl_msgs.action import ListenOnce  # noqa: E402
from axcl_msgs.msg import AudioChunk, Transcript  # noqa: E402
from axcl_msgs.srv import Transcribe  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from axcl_ros import assets  # noqa: E402
from axcl_ros.io.audio import encode_chunk  # noqa: E402
from axcl_ros.io.audio_format import FORMAT_F32LE, FORMAT_S16LE  # noqa: E402
from axcl_ros.io.wav import read_wav, write_wav  # noqa: E402
from axcl_ros.nodes.audio_capture import AudioCaptureNode  # noqa: E402
from axcl_ros.nodes.speech import SpeechNode  # noqa: E402
from axcl_ros.nodes.wav_publisher import WavPublisherNode  # noqa: E402
from axcl_ros_testing.lifecycle_client import LifecycleClient  # noqa: E402
from axcl_ros_testing.ros_graph import RosGraph  # noqa: E402
from axcl_ros_testing.sample_inputs import librivox_utterances  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.realweights]

QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
SENTENCE = "Please bring me the red cup from the kitchen table."
LONG_SENTENCE = ("the robot should carefully carry the red cup across the kitchen towards the wooden table "
                 "that stands near the big window")
LEAD_S = 1.0  # silence before the espeak sentence
PAD_S = 0.2  # speech_pad_ms default
RATE = 6.0  # playback speed (x real time)


# ------------------------------------------------------------------------------------------------ fixtures
def converted_tiny_en():
    """Whisper tiny.en as schema-B ONNX, converted once into the cache (the key the whisper tests use)."""
    from axcl_ros.models.whisper.export_onnx import cached_conversion

    return cached_conversion(assets.whisper_tiny_en_ct2(), "tiny.en")


@pytest.fixture(scope="module")
def whisper_dir():
    try:
        return converted_tiny_en()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """espeak-ng sentence framed by silence (16 kHz mono, and 44.1 kHz stereo), silence, two LibriVox utterances."""
    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        pytest.skip("espeak-ng and sox are needed: apt-get install espeak-ng sox")
    d = tmp_path_factory.mktemp("speech_audio")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(d / "raw.wav"), SENTENCE], check=True)
    subprocess.run(["sox", str(d / "raw.wav"), "-r", "16000", "-c", "1", "-b", "16", str(d / "speech16.wav")],
                   check=True)
    speech = read_wav(d / "speech16.wav").mono()
    framed = np.concatenate([np.zeros(int(LEAD_S * 16000), np.float32), speech, np.zeros(24000, np.float32)])
    write_wav(d / "espeak.wav", framed, 16000)
    subprocess.run(["sox", str(d / "espeak.wav"), "-r", "44100", "-c", "2", "-b", "16", str(d / "espeak44.wav")],
                   check=True)
    write_wav(d / "silence.wav", np.zeros(3 * 16000, np.float32), 16000)
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(d / "long_raw.wav"), LONG_SENTENCE],
                   check=True)
    subprocess.run(["sox", str(d / "long_raw.wav"), "-r", "16000", "-c", "1", "-b", "16", str(d / "long.wav"),
                    "pad", "0.5", "0.5"], check=True)
    try:
        utts = {p.stem[-4:]: (p, ref) for p, ref in librivox_utterances()}
    except assets.AssetNotFoundError:
        utts = {}
    refs = []
    if "0870" in utts and "0930" in utts:
        gap = np.zeros(16000, np.float32)
        parts = [gap]
        for key in ("0930", "0870"):
            parts += [read_wav(utts[key][0]).mono(), gap]
            refs.append(utts[key][1])
        write_wav(d / "librivox.wav", np.concatenate(parts), 16000)
    (d / "librivox_refs.txt").write_text("\n".join(refs))
    if len(utts) == 5:  # a > 30 s reading: every utterance (0870 twice), end silences trimmed, 0.15-s pauses
        order = ["0870", "0880", "0890", "0920", "0930", "0870"]
        parts = [np.zeros(8000, np.float32)]
        for key in order:
            parts += [_trim(read_wav(utts[key][0]).mono()), np.zeros(2400, np.float32)]
        parts.append(np.zeros(24000, np.float32))
        write_wav(d / "reading.wav", np.concatenate(parts), 16000)
        (d / "reading_refs.txt").write_text("\n".join(utts[k][1] for k in order))
    return d


def _trim(x, level_db=-35.0, frame=320):
    """Cut leading and trailing quiet frames (below ``level_db`` dBFS RMS)."""
    n = x.size // frame
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(20 * np.log10(rms + 1e-9) > level_db)
    return x[loud[0] * frame:(loud[-1] + 1) * frame] if loud.size else x


@pytest.fixture(scope="module")
def graph():
    with RosGraph(threads=6) as g:
        yield g


@pytest.fixture(scope="module")
def speech(graph, whisper_dir):
    """An active speech node in namespace /st, its test node, transcripts and activity it saw."""
    node = graph.add(SpeechNode("speech", namespace="st", context=graph.context, parameter_overrides=[
        Parameter("model_dir", value=str(whisper_dir)), Parameter("input_qos", value="reliable")]))
    test = graph.node("speech_test")
    lc = LifecycleClient(graph, test)
    assert lc.change("/st/speech", "configure"), node.last_error
    assert lc.change("/st/speech", "activate")
    seen = types.SimpleNamespace(transcripts=[], activity=[], node=node, test=test, lc=lc)
    test.create_subscription(Transcript, "/st/transcript", seen.transcripts.append, QOS)
    test.create_subscription(Bool, "/st/speech_active", lambda m: seen.activity.append(m.data), LATCHED)
    seen.mute = test.create_publisher(Bool, "/st/mute", QOS)
    seen.raw = test.create_publisher(AudioChunk, "/st/audio", QOS)
    graph.wait_for(lambda: seen.raw.get_subscription_count() > 0 and seen.mute.get_subscription_count() > 0, 10,
                   "speech subscriptions")
    graph.wait_for(lambda: seen.activity == [False], 10, "the latched initial speech_active")
    yield seen
    lc.change("/st/speech", "deactivate")
    lc.change("/st/speech", "cleanup")


def play(graph, path, name, rate=RATE, **params):
    """Stream ``path`` onto /st/audio with a WavPublisherNode; return it once it is done."""
    overrides = [Parameter("wav_path", value=str(path)), Parameter("topic", value="/st/audio"),
                 Parameter("rate", value=float(rate)), Parameter("wait_for_subscribers", value=1)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    pub = graph.add(WavPublisherNode(name, context=graph.context, parameter_overrides=overrides))
    graph.wait_for(pub.done.is_set, 60, f"{name} to finish")
    return pub


def finals_after(seen, n):
    return [t for t in seen.transcripts[n:] if t.is_final]


def stamp_s(msg):
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def words(text):
    text = text.lower().replace("<s>", " ").replace("</s>", " ").replace("-", " ")
    text = re.sub(r"\bmr\b\.?", "mister", text)
    return re.sub(r"[^a-z' ]+", " ", text).split()


def wer(ref, hyp):
    r, h = words(ref), words(hyp)
    d = np.arange(len(h) + 1)
    for i in range(1, len(r) + 1):
        prev, d[0] = d.copy(), i
        for j in range(1, len(h) + 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
    return d[len(h)] / max(1, len(r))


# ------------------------------------------------------------------------------------------------ streaming tests
def test_espeak_sentence_44k1_stereo_gives_one_final_transcript_stamped_at_speech_start(graph, speech, audio_dir):
    n0, a0 = len(speech.transcripts), len(speech.activity)
    before = speech.node.pipeline.summary()
    segments0 = before["segments"]
    t0 = time.monotonic()
    pub = play(graph, audio_dir / "espeak44.wav", "wav_espeak", sample_format="F32LE", chunk_ms=50)
    graph.wait_for(lambda: finals_after(speech, n0), 30, "the final transcript")
    time.sleep(0.5)
    wall = time.monotonic() - t0
    finals = finals_after(speech, n0)
    assert len(finals) == 1, [(t.text, t.error) for t in finals]
    t = finals[0]
    text = t.text.lower()
    assert t.success and "red cup" in text and "kitchen table" in text, t.text
    assert t.language == "en" and t.segment_id == segments0 + 1
    assert t.header.frame_id == "microphone"
    # stamp = first sample of the segment: speech starts ~LEAD_S into the file, padded by speech_pad_ms
    assert abs(stamp_s(t) - (pub.start_stamp_s + LEAD_S - PAD_S)) < 0.3, stamp_s(t) - pub.start_stamp_s
    assert 2.5 < t.duration < 5.0
    assert t.segments and t.segments[0].start >= 0 and t.segments[-1].end <= t.duration + 1e-3
    assert "red cup" in " ".join(s.text for s in t.segments).lower()
    assert t.timing.backend == "onnxruntime" and t.timing.inference_ms > 0 and t.timing.preprocess_ms > 0
    assert t.timing.total_ms >= t.timing.inference_ms
    assert speech.activity[a0:] == [True, False]
    summary = speech.node.pipeline.summary()
    # at most one discontinuity: where this playback's timeline starts after an earlier one
    assert summary["gaps"] + summary["overlaps"] - before["gaps"] - before["overlaps"] <= 1
    assert summary["rejected_chunks"] == before["rejected_chunks"]
    print(f"\nespeak 44.1k stereo: {t.text!r}; recognition RTF {summary['rtf']:.3f}, "
          f"latency after speech end {t.timing.total_ms:.0f} ms, wall {wall:.1f} s for "
          f"{pub.duration_s:.1f} s of audio at {RATE:g}x")


def test_silence_yields_no_transcript(graph, speech, audio_dir):
    n0 = len(speech.transcripts)
    segments0 = speech.node.pipeline.summary()["segments"]
    play(graph, audio_dir / "silence.wav", "wav_silence")
    time.sleep(1.0)
    assert speech.transcripts[n0:] == []
    assert speech.node.pipeline.summary()["segments"] == segments0


def test_librivox_utterances_wer_at_most_15_percent(graph, speech, audio_dir):
    refs = [r for r in (audio_dir / "librivox_refs.txt").read_text().splitlines() if r]
    if not refs:
        pytest.skip("pocketsphinx-testdata not installed")
    n0 = len(speech.transcripts)
    play(graph, audio_dir / "librivox.wav", "wav_librivox", rate=4.0)
    graph.wait_for(lambda: speech.node.pipeline.pending == 0 and speech.node.pipeline._busy is None
                   and not speech.node.pipeline.speech_active, 30, "recognition of every segment")
    time.sleep(0.5)
    finals = finals_after(speech, n0)
    assert finals and all(t.success for t in finals), [(t.text, t.error) for t in finals]
    hyp = " ".join(t.text for t in sorted(finals, key=lambda t: t.segment_id))
    ref = " ".join(refs)
    error = wer(ref, hyp)
    print(f"\nLibriVox: {hyp!r}\nWER {error:.3f} over {len(words(ref))} words, RTF "
          f"{speech.node.pipeline.summary()['rtf']:.3f}")
    assert error <= 0.15, (hyp, ref)


def test_mute_suppresses_recognition_and_discarding_an_open_segment_is_reported(graph, speech, audio_dir):
    n0 = len(speech.transcripts)
    segments0 = speech.node.pipeline.summary()["segments"]
    speech.mute.publish(Bool(data=True))
    graph.wait_for(lambda: speech.node.pipeline.muted, 5, "mute")
    play(graph, audio_dir / "espeak.wav", "wav_muted", rate=8.0)
    time.sleep(0.5)
    assert speech.transcripts[n0:] == [] and speech.node.pipeline.summary()["segments"] == segments0
    speech.mute.publish(Bool(data=False))
    graph.wait_for(lambda: not speech.node.pipeline.muted, 5, "unmute")
    # mute while a segment is open: the segment is discarded and reported as an error transcript
    pub = graph.add(WavPublisherNode("wav_mute_mid", context=graph.context, parameter_overrides=[
        Parameter("wav_path", value=str(audio_dir / "long.wav")), Parameter("topic", value="/st/audio"),
        Parameter("rate", value=2.0), Parameter("wait_for_subscribers", value=1)]))
    graph.wait_for(lambda: speech.node.pipeline.speech_active, 10, "speech start")
    time.sleep(0.2)
    speech.mute.publish(Bool(data=True))
    graph.wait_for(lambda: finals_after(speech, n0), 10, "the error transcript of the discarded segment")
    pub.stop()
    t = finals_after(speech, n0)[0]
    assert not t.success and "mute" in t.error and t.text == "" and t.segment_id == segments0 + 1
    time.sleep(0.3)
    assert len(finals_after(speech, n0)) == 1
    speech.mute.publish(Bool(data=False))
    graph.wait_for(lambda: not speech.node.pipeline.muted, 5, "unmute")
    assert speech.node.pipeline.summary()["dropped_muted"] >= 1


def test_reading_longer_than_30_s_is_split_and_fully_transcribed_with_partials(graph, whisper_dir, audio_dir):
    if not (audio_dir / "reading.wav").is_file():
        pytest.skip("pocketsphinx-testdata not installed")
    node = graph.add(SpeechNode("speech", namespace="lr", context=graph.context, parameter_overrides=[
        Parameter("model_dir", value=str(whisper_dir)), Parameter("input_qos", value="reliable"),
        Parameter("min_silence_ms", value=1200.0), Parameter("partial_period_s", value=3.0)]))
    test = graph.node("reading_test")
    lc = LifecycleClient(graph, test)
    assert lc.change("/lr/speech", "configure") and lc.change("/lr/speech", "activate")
    got = []
    test.create_subscription(Transcript, "/lr/transcript", got.append, QOS)
    pub = graph.add(WavPublisherNode("wav_reading", context=graph.context, parameter_overrides=[
        Parameter("wav_path", value=str(audio_dir / "reading.wav")), Parameter("topic", value="/lr/audio"),
        Parameter("rate", value=RATE), Parameter("wait_for_subscribers", value=1)]))
    assert pub.duration_s > 30.0
    graph.wait_for(pub.done.is_set, 30, "the end of the reading")
    p = node.pipeline
    graph.wait_for(lambda: not p.speech_active and p.pending == 0 and p._busy is None, 60, "every segment")
    time.sleep(0.3)
    finals = sorted((t for t in got if t.is_final), key=lambda t: t.segment_id)
    partials = [t for t in got if not t.is_final]
    assert len(finals) >= 2 and all(t.success for t in finals), [(t.text, t.error) for t in finals]
    assert p.segmenter.stats["splits"] >= 1 and all(t.duration <= 20.0 + 1e-3 for t in finals)
    # a split leaves no hole: the next segment starts where the previous one ended
    ends = [stamp_s(t) + t.duration for t in finals[:-1]]
    assert min(abs(stamp_s(t) - e) for t in finals[1:] for e in ends) < 2e-3
    assert partials and all(any(stamp_s(f) == stamp_s(t) for f in finals) for t in partials)
    hyp = " ".join(t.text for t in finals)
    refs = (audio_dir / "reading_refs.txt").read_text().splitlines()
    error = wer(" ".join(refs), hyp)
    print(f"\nreading {pub.duration_s:.1f} s -> {len(finals)} segments ({p.segmenter.stats['splits']} splits), "
          f"{len(partials)} partials, WER {error:.3f}, RTF {p.summary()['rtf']:.3f}")
    assert error <= 0.15, hyp
    lc.change("/lr/speech", "deactivate")
    lc.change("/lr/speech", "cleanup")


MALFORMED = [
    ("odd byte count", dict(data=b"\x00\x01\x02")),
    ("unknown format", dict(sample_format=7)),
    ("zero channels", dict(channels=0)),
    ("zero rate", dict(sample_rate=0)),
    ("empty data", dict(data=b"")),
    ("NaN samples", dict(sample_format=FORMAT_F32LE, data=np.array([np.nan] * 160, "<f4").tobytes())),
    ("stereo odd frames", dict(channels=2, data=b"\x00" * 6)),
]


def test_malformed_chunks_rejected_and_counted_continuity_counted_node_keeps_serving(graph, speech, audio_dir):
    node = speech.node
    rejected0, cont = node.bad_inputs.total, node.pipeline.audio.continuity
    gaps0, overlaps0 = cont.gaps, cont.overlaps
    for i, (case, changes) in enumerate(MALFORMED):
        msg = AudioChunk(sample_rate=16000, channels=1, sample_format=FORMAT_S16LE,
                         data=encode_chunk(np.zeros(160, np.float32), FORMAT_S16LE))
        msg.header.stamp.sec = 5000 + i
        for k, v in changes.items():
            setattr(msg, k, v)
        speech.raw.publish(msg)
        graph.wait_for(lambda i=i: node.bad_inputs.total == rejected0 + i + 1, 10, f"rejection of {case}")
    assert node.bad_inputs.counts["audio chunk on audio"] >= len(MALFORMED)
    # a gap and an overlap of the chunk stamps are counted (10 ms chunks of silence)
    for sec, nsec in ((6000, 0), (6000, 10_000_000), (6000, 500_000_000), (6000, 100_000_000)):
        msg = AudioChunk(sample_rate=16000, channels=1, sample_format=FORMAT_S16LE,
                         data=encode_chunk(np.zeros(160, np.float32), FORMAT_S16LE))
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nsec
        speech.raw.publish(msg)
    graph.wait_for(lambda: cont.gaps >= gaps0 + 1 and cont.overlaps >= overlaps0 + 1, 10, "gap and overlap")
    assert speech.lc.state("/st/speech") == "active"
    n0 = len(speech.transcripts)
    play(graph, audio_dir / "espeak.wav", "wav_after_bad", rate=8.0)
    graph.wait_for(lambda: finals_after(speech, n0), 30, "a transcript after the bad chunks")
    assert "red cup" in finals_after(speech, n0)[0].text.lower()


def test_transcribe_service_one_shot(graph, speech, audio_dir):
    cli = speech.test.create_client(Transcribe, "/st/speech/transcribe")
    samples = read_wav(audio_dir / "speech16.wav").mono()
    req = Transcribe.Request()
    req.audio = AudioChunk(sample_rate=16000, channels=1, sample_format=FORMAT_S16LE,
                           data=encode_chunk(samples, FORMAT_S16LE))
    req.audio.header.stamp.sec, req.audio.header.frame_id = 77, "mic1"
    resp = graph.call(cli, req, timeout=60)
    assert resp.success, resp.message
    tr = resp.transcript
    assert "red cup" in tr.text.lower() and "kitchen table" in tr.text.lower()
    assert tr.header.stamp.sec == 77 and tr.header.frame_id == "mic1" and tr.is_final and tr.language == "en"
    assert tr.duration == pytest.approx(samples.size / 16000, abs=1e-3) and tr.timing.inference_ms > 0
    bad = Transcribe.Request()
    bad.audio = AudioChunk(sample_rate=16000, channels=1, sample_format=FORMAT_S16LE, data=b"\x01\x02\x03")
    resp = graph.call(cli, bad, timeout=10)
    assert not resp.success and "bad audio" in resp.message
    wrong_language = Transcribe.Request(audio=req.audio, language="de")
    resp = graph.call(cli, wrong_language, timeout=10)
    assert not resp.success and "English-only" in resp.message


def _send_goal(graph, client, goal, feedback=None):
    assert client.wait_for_server(timeout_sec=10)
    fut = client.send_goal_async(goal, feedback_callback=feedback)
    graph.wait_for(fut.done, 10, "goal response")
    return fut.result()


def test_listen_once_action(graph, speech, audio_dir):
    client = ActionClient(speech.test, ListenOnce, "/st/speech/listen_once")
    feedback = []
    handle = _send_goal(graph, client, ListenOnce.Goal(timeout=30.0), lambda f: feedback.append(f.feedback))
    assert handle.accepted
    second = _send_goal(graph, client, ListenOnce.Goal(timeout=1.0))
    assert not second.accepted  # one listener at a time
    assert not _send_goal(graph, client, ListenOnce.Goal(timeout=1.0, language="de")).accepted  # English-only
    result_future = handle.get_result_async()
    play(graph, audio_dir / "espeak.wav", "wav_listen", rate=8.0)
    graph.wait_for(result_future.done, 30, "listen_once result")
    res = result_future.result()
    assert res.status == GoalStatus.STATUS_SUCCEEDED and res.result.success
    assert "red cup" in res.result.transcript.text.lower() and res.result.transcript.is_final
    assert feedback and any(f.speech_active for f in feedback)
    # nobody speaks: the goal times out with an explicit failure
    handle = _send_goal(graph, client, ListenOnce.Goal(timeout=0.6))
    result_future = handle.get_result_async()
    graph.wait_for(result_future.done, 10, "timeout result")
    res = result_future.result()
    assert res.status == GoalStatus.STATUS_ABORTED and not res.result.success and "no speech" in res.result.message
    client.destroy()


# ------------------------------------------------------------------------------------------------ lifecycle
def test_lifecycle_bad_config_energy_fallback_and_diagnostics(graph, whisper_dir, tmp_path):
    node = graph.add(SpeechNode("speech_lc", context=graph.context, parameter_overrides=[
        Parameter("model_dir", value=str(tmp_path / "nowhere")),
        Parameter("vad_model_path", value=str(tmp_path / "missing_vad.onnx"))]))
    lc = LifecycleClient(graph, graph.node("speech_lc_test"))
    assert lc.state("/speech_lc") == "unconfigured"
    assert not lc.change("/speech_lc", "configure")
    assert "nowhere" in node.last_error and lc.state("/speech_lc") == "unconfigured"
    node.set_parameters([Parameter("model_dir", value=str(whisper_dir)), Parameter("language", value="fr")])
    assert not lc.change("/speech_lc", "configure") and "English-only" in node.last_error
    node.set_parameters([Parameter("language", value="auto")])
    assert lc.change("/speech_lc", "configure") and lc.state("/speech_lc") == "inactive"
    assert node.vad.kind == "energy" and "missing_vad.onnx" in node.vad.reason
    values = node.diagnostic_values()
    assert values["vad"] == "energy" and values["schema"] == "B" and values["backend"] == "onnxruntime"
    node.publish_diagnostics()  # builds the message from every value without raising
    level, message = node.diagnostic_level()
    assert level == DiagnosticStatus.WARN and "energy VAD" in message
    # read-on-configure parameters are refused while configured; dynamic ones apply
    assert not node.set_parameters([Parameter("queue_size", value=9)])[0].successful
    assert not node.set_parameters([Parameter("task", value="translate")])[0].successful
    assert node.set_parameters([Parameter("language", value="en")])[0].successful
    assert node.pipeline.language == "en"
    assert lc.change("/speech_lc", "activate") and lc.state("/speech_lc") == "active"
    assert lc.change("/speech_lc", "deactivate") and lc.state("/speech_lc") == "inactive"
    assert lc.change("/speech_lc", "cleanup") and lc.state("/speech_lc") == "unconfigured"
    assert node.whisper is None and node.pipeline is None
    assert lc.change("/speech_lc", "shutdown") and lc.state("/speech_lc") == "finalized"


# ------------------------------------------------------------------------------------------------ other nodes
def test_wav_publisher_stamps_are_continuous_and_it_loops(graph, audio_dir):
    test = graph.node("wav_check")
    got = []
    test.create_subscription(AudioChunk, "/wav_check/audio", got.append, QoSProfile(depth=1000))
    pub = graph.add(WavPublisherNode("wav_loop", context=graph.context, parameter_overrides=[
        Parameter("wav_path", value=str(audio_dir / "espeak44.wav")), Parameter("topic", value="/wav_check/audio"),
        Parameter("rate", value=10.0), Parameter("loop", value=True), Parameter("chunk_ms", value=200),
        Parameter("wait_for_subscribers", value=1)]))
    frames = int(pub.duration_s * 44100)
    graph.wait_for(lambda: sum(len(m.data) for m in got) // 4 > frames + 44100, 20, "more than one loop")
    pub.stop()
    n = pub.chunks_published
    graph.wait_for(lambda: len(got) == n, 5, "the last chunks")
    assert all(m.sample_rate == 44100 and m.channels == 2 and m.sample_format == FORMAT_S16LE for m in got)
    stamps = np.array([stamp_s(m) for m in got])
    sizes = np.array([len(m.data) // 4 for m in got])
    assert abs(stamps[0] - pub.start_stamp_s) < 1e-6
    assert np.allclose(np.diff(stamps), sizes[:-1] / 44100, atol=1e-6)  # no gap, no overlap, across the loop
    data = np.frombuffer(b"".join(bytes(m.data) for m in got), "<i2").reshape(-1, 2)
    source = np.clip(np.rint(read_wav(audio_dir / "espeak44.wav").samples * 32768), -32768, 32767)
    assert np.array_equal(data[:frames], source) and np.array_equal(data[frames:frames + 1000], source[:1000])


def test_wav_publisher_main_exits_when_done(audio_dir, tmp_path):
    from axcl_ros_testing.ros_graph import RosProcess

    argv = [sys.executable, "-m", "axcl_ros.nodes.wav_publisher", "--ros-args", "-r", "__node:=wav_exit",
            "-p", f"wav_path:={audio_dir / 'silence.wav'}", "-p", "rate:=10.0", "-p", "exit_when_done:=true",
            "-p", "topic:=/wav_exit/audio"]
    proc = RosProcess(argv, timeout=60, log_path=str(tmp_path / "wav_exit.log"))
    try:
        code = proc.proc.wait(timeout=60)
    finally:
        proc.stop()
    assert code == 0, proc.output()
    assert "played 3.00 s in 30 chunks" in proc.output()


def test_audio_capture_without_sounddevice_fails_configure_with_install_hint(graph, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    node = graph.add(AudioCaptureNode("mic_missing", context=graph.context))
    lc = LifecycleClient(graph, graph.node("mic_missing_test"))
    assert not lc.change("/mic_missing", "configure")
    assert "pip install sounddevice" in node.last_error and "libportaudio2" in node.last_error
    assert lc.state("/mic_missing") == "unconfigured"


class _FakeStream:
    """Stands in for sounddevice.InputStream: a thread delivers 0.1-s blocks of a sine to the callback."""

    def __init__(self, device, channels, samplerate, blocksize, dtype, callback):
        self.channels, self.rate, self.block, self.callback = channels, samplerate, blocksize, callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        for k in range(5):
            t = (np.arange(self.block) + k * self.block) / self.rate
            block = np.repeat((0.25 * np.sin(2 * np.pi * 300 * t))[:, None], self.channels, 1).astype(np.float32)
            now = time.monotonic() - t0
            info = types.SimpleNamespace(inputBufferAdcTime=1.0 + k * self.block / self.rate,
                                         currentTime=1.0 + now + 0.01)
            self.callback(block, self.block, info, None)
            time.sleep(0.02)

    def start(self):
        self._thread.start()

    def stop(self):
        self._thread.join(5)

    def close(self):
        pass


def test_audio_capture_publishes_stamped_chunks_with_a_fake_sounddevice(graph, monkeypatch):
    fake = types.SimpleNamespace(InputStream=_FakeStream, check_input_settings=lambda **kw: None)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    graph.add(AudioCaptureNode("mic_fake", context=graph.context, parameter_overrides=[
        Parameter("channels", value=2), Parameter("topic", value="/mic_fake/audio")]))
    test = graph.node("mic_fake_test")
    got = []
    test.create_subscription(AudioChunk, "/mic_fake/audio", got.append, QOS)
    lc = LifecycleClient(graph, test)
    assert lc.change("/mic_fake", "configure") and lc.change("/mic_fake", "activate")
    graph.wait_for(lambda: len(got) == 5, 10, "five chunks")
    assert lc.change("/mic_fake", "deactivate") and lc.change("/mic_fake", "cleanup")
    assert all(m.channels == 2 and m.sample_rate == 16000 and len(m.data) == 1600 * 2 * 2 for m in got)
    stamps = np.array([stamp_s(m) for m in got])
    assert np.allclose(np.diff(stamps), 0.1, atol=1e-6)  # a continuous sample clock
    assert abs(stamps[0] - time.time()) < 5.0  # ROS time of the capture (system clock)
    x = np.frombuffer(b"".join(bytes(m.data) for m in got), "<i2").reshape(-1, 2)[:, 0] / 32768.0
    ref = 0.25 * np.sin(2 * np.pi * 300 * np.arange(x.size) / 16000)
    assert np.max(np.abs(x - ref)) < 1e-3
