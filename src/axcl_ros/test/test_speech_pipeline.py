"""SpeechPipeline (no rclpy): segment accounting, bounded queue, mute, partials, gaps, listeners, stamps.

A stub VAD (voiced = loud frame) and a fake recogniser make every decision deterministic; the real VAD and Whisper
run in test_speech_node.py.
"""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from axcl_ros.io.audio import encode_chunk
from axcl_ros.io.audio_format import FORMAT_F32LE, FORMAT_S16LE, AudioFormatError
from axcl_ros.models.speech.pipeline import SpeechPipeline
from axcl_ros.models.speech.segmenter import SpeechSegmenter

SR = 16000
PAD_MS = 100


class LoudVad:
    """Voiced when the frame's RMS exceeds 0.05."""

    kind = "stub"
    threshold = 0.5
    frame_samples = 512
    sample_rate = SR

    def probability(self, frame):
        return 1.0 if float(np.sqrt(np.mean(np.square(frame)))) > 0.05 else 0.0

    def reset(self):
        pass


class FakeRecognizer:
    """Records calls; optionally waits on a gate; text from a list or 'seg<n>'."""

    def __init__(self, gate=None, texts=None, fail=False):
        self.calls = []
        self.gate = gate
        self.texts = list(texts or [])
        self.fail = fail
        self.started = threading.Event()

    def __call__(self, audio, language, task):
        self.calls.append((audio.size, language, task))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError("device lost")
        text = self.texts.pop(0) if self.texts else f"seg{len(self.calls)}"
        return SimpleNamespace(result=SimpleNamespace(text=text, language=language or "en", segments=[]))


def tone(seconds, amp=0.3, freq=440.0):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds):
    return np.zeros(int(seconds * SR), np.float32)


def make(recognizer, queue_size=4, partial=0.0, **kw):
    outcomes, activity = [], []
    seg = SpeechSegmenter(LoudVad(), min_speech_ms=96, min_silence_ms=300, speech_pad_ms=PAD_MS, max_segment_s=10,
                          partial_interval_s=partial)
    p = SpeechPipeline(recognizer, seg, queue_size=queue_size, on_outcome=outcomes.append,
                       on_activity=activity.append, **kw)
    p.start()
    return p, outcomes, activity


def stream(p, samples, t0=1000.0, chunk=1600, start_sample=0, rate=SR, channels=1, fmt=FORMAT_S16LE):
    """Push mono 16-kHz ``samples`` (re-encoded at ``rate``/``channels``) in chunks with exact stamps."""
    if rate != SR:
        from scipy.signal import resample_poly
        g = np.gcd(rate, SR)
        samples = resample_poly(samples, rate // g, SR // g).astype(np.float32)
        chunk = chunk * rate // SR
    for k in range(0, samples.size, chunk):
        p.push(encode_chunk(samples[k:k + chunk], fmt, channels), fmt, channels, rate,
               t0 + (start_sample * rate // SR + k) / rate)


def wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.005)
    raise AssertionError("condition not reached")


def finals(outcomes):
    return [o for o in outcomes if o.is_final]


def test_one_burst_one_final_with_stamp_and_activity():
    rec = FakeRecognizer()
    p, outcomes, activity = make(rec)
    audio = np.concatenate([silence(1.0), tone(1.0), silence(1.0)])
    stream(p, audio)
    wait(lambda: len(outcomes) == 1)
    p.stop()
    o = outcomes[0]
    assert o.is_final and o.success and o.text == "seg1" and o.segment_id == 1 and o.reason == "silence"
    assert o.stamp_s == pytest.approx(1000.0 + 1.0 - PAD_MS / 1000, abs=0.035)  # one VAD frame of resolution
    assert o.duration_s == pytest.approx(1.0 + 2 * PAD_MS / 1000, abs=0.07)
    assert rec.calls[0][0] == o.end_sample - o.start_sample
    assert activity == [True, False]
    s = p.summary()
    assert s["segments"] == 1 and s["finals"] == 1 and s["errors"] == 0 and s["chunks"] == 30
    assert s["gaps"] == 0 and s["overlaps"] == 0


def test_44k1_stereo_f32_stream_gives_the_same_segment():
    rec = FakeRecognizer()
    p, outcomes, _ = make(rec)
    audio = np.concatenate([silence(1.0), tone(1.0), silence(1.0)])
    stream(p, audio, rate=44100, channels=2, fmt=FORMAT_F32LE, chunk=1600)
    wait(lambda: len(outcomes) == 1)
    p.stop()
    o = outcomes[0]
    assert o.success and o.stamp_s == pytest.approx(1000.0 + 0.9, abs=0.035)
    assert p.summary()["gaps"] == 0 and p.summary()["rejected_chunks"] == 0


def test_queue_overflow_reports_the_oldest_waiting_segment_and_never_exceeds_the_bound():
    gate = threading.Event()
    rec = FakeRecognizer(gate=gate)
    p, outcomes, _ = make(rec, queue_size=2)
    burst = np.concatenate([tone(0.5), silence(0.6)])
    stream(p, np.concatenate([silence(0.5), burst]))
    wait(rec.started.is_set)  # segment 1 is being recognised (blocked)
    for i in range(4):  # segments 2..5 arrive while recognition is stuck
        stream(p, burst, start_sample=int((1.6 + 1.1 * i) * SR))
    errors = [o for o in outcomes if not o.success]
    assert [o.segment_id for o in errors] == [2, 3] and all(o.reason == "queue_full" for o in errors)
    assert all(o.is_final and "queue full" in o.error for o in errors)
    assert p.pending == 2 and p.summary()["queue_max"] == 2
    gate.set()
    wait(lambda: len(outcomes) == 5)
    p.stop()
    ids = sorted(o.segment_id for o in finals(outcomes))
    assert ids == [1, 2, 3, 4, 5]  # every segment exactly once
    assert [o.segment_id for o in outcomes if o.success] == [1, 4, 5]
    s = p.summary()
    assert s["segments"] == 5 and s["finals"] == 3 and s["dropped_queue_full"] == 2 and s["errors"] == 2


def test_mute_discards_an_open_segment_loudly_and_suppresses_new_ones():
    rec = FakeRecognizer()
    p, outcomes, activity = make(rec)
    stream(p, np.concatenate([silence(0.5), tone(0.6)]))
    assert p.speech_active
    p.set_muted(True)
    assert len(outcomes) == 1 and not outcomes[0].success and outcomes[0].reason == "muted"
    assert "mute" in outcomes[0].error and activity == [True, False]
    stream(p, np.concatenate([tone(1.0), silence(1.0)]), start_sample=int(1.1 * SR))  # speech while muted
    time.sleep(0.05)
    assert len(outcomes) == 1 and rec.calls == []
    p.set_muted(False)
    stream(p, np.concatenate([tone(0.5), silence(0.6)]), start_sample=int(3.1 * SR))
    wait(lambda: len(outcomes) == 2)
    p.stop()
    assert outcomes[1].success and outcomes[1].segment_id == 2
    assert p.summary()["dropped_muted"] == 1


def test_recognition_failure_becomes_an_error_outcome():
    p, outcomes, _ = make(FakeRecognizer(fail=True))
    stream(p, np.concatenate([silence(0.3), tone(0.5), silence(0.6)]))
    wait(lambda: len(outcomes) == 1)
    p.stop()
    o = outcomes[0]
    assert o.is_final and not o.success and o.reason == "recognition_failed" and "device lost" in o.error


def test_partials_while_the_segment_is_open_then_one_final():
    rec = FakeRecognizer()
    p, outcomes, _ = make(rec, partial=0.5)
    for k, part in enumerate([silence(0.3), tone(2.2), silence(0.6)]):
        stream(p, part, start_sample=int([0, 0.3, 2.5][k] * SR))
        time.sleep(0.05)
    wait(lambda: finals(outcomes))
    p.stop()
    partials = [o for o in outcomes if not o.is_final]
    assert partials and all(o.segment_id == 1 and o.success for o in partials)
    assert len(finals(outcomes)) == 1 and outcomes[-1].is_final
    assert all(o.stamp_s == outcomes[-1].stamp_s for o in partials)  # same speech start


def test_gap_ends_the_open_segment_and_is_counted():
    rec = FakeRecognizer()
    p, outcomes, _ = make(rec)
    stream(p, np.concatenate([silence(0.5), tone(0.8)]))
    assert p.speech_active
    # the next chunk starts 1 s later than the samples say: audio went missing
    stream(p, np.concatenate([tone(0.3), silence(0.6)]), t0=1001.0, start_sample=int(1.3 * SR))
    wait(lambda: len(outcomes) == 2)
    # a chunk stamped in the past (overlap) is counted too
    stream(p, silence(0.1), t0=1000.0, start_sample=int(1.0 * SR))
    p.stop()
    assert [o.reason for o in outcomes] == ["flush", "silence"]
    s = p.summary()
    assert s["gaps"] == 1 and s["gap_flushes"] == 1 and s["overlaps"] == 1 and s["gap_s"] == pytest.approx(1.0)
    # the second segment starts at the first sample after the gap (padding never reaches across it)
    assert outcomes[1].stamp_s == pytest.approx(1001.0 + 1.3, abs=1e-6)


def test_listener_gets_the_next_utterance_with_its_language_and_skips_empty_text():
    rec = FakeRecognizer(texts=["", "hello robot"])
    p, outcomes, _ = make(rec)
    lst = p.listen("de")
    stream(p, np.concatenate([silence(0.3), tone(0.5), silence(0.6), tone(0.5), silence(0.6)]))
    got = lst.wait(5)
    p.stop()
    assert got is not None and got.text == "hello robot" and got.segment_id == 2
    assert [c[1] for c in rec.calls] == ["de", "de"]  # language override applied to the listened segments
    lst2 = p.listen()
    p.cancel(lst2)
    assert lst2.wait(0.01) is None


def test_stop_reports_waiting_segments_and_bad_chunks_change_nothing():
    gate = threading.Event()
    p, outcomes, _ = make(FakeRecognizer(gate=gate))
    burst = np.concatenate([tone(0.5), silence(0.6)])
    stream(p, burst)
    stream(p, burst, start_sample=burst.size)
    wait(lambda: p.pending == 1)
    before = p.audio.samples_out
    for data, fmt, ch, rate in [(b"\x01\x02\x03", FORMAT_S16LE, 1, SR), (b"\0" * 8, 7, 1, SR),
                                (np.array([np.nan, 0.0], "<f4").tobytes(), FORMAT_F32LE, 1, SR),
                                (b"\0" * 8, FORMAT_S16LE, 0, SR), (b"\0" * 8, FORMAT_S16LE, 1, 0), (b"", 0, 1, SR)]:
        with pytest.raises(AudioFormatError):
            p.push(data, fmt, ch, rate, 2000.0)
    assert p.audio.samples_out == before and p.summary()["rejected_chunks"] == 6
    threading.Timer(0.2, gate.set).start()
    given_up = p.stop()
    assert given_up == 1
    assert sorted((o.segment_id, o.success, o.reason) for o in outcomes) == [(1, True, "silence"),
                                                                           (2, False, "stopped")]


def test_queue_size_must_be_positive():
    with pytest.raises(ValueError, match="queue_size"):
        SpeechPipeline(FakeRecognizer(), SpeechSegmenter(LoudVad()), queue_size=0)


# ------------------------------------------------------------------------------------------------ Whisper service
def _touch(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_find_model_files_for_converter_and_axera_layouts(tmp_path):
    from axcl_ros.models.whisper.transcriber import WhisperFilesError, find_model_files

    conv = tmp_path / "conv"
    _touch(conv, "encoder.onnx", "decoder.onnx", "tokenizer.json", "config.json")
    f = find_model_files(conv)
    assert (f.encoder, f.decoder, f.tokenizer, f.config, f.positional_embedding) == (
        str(conv / "encoder.onnx"), str(conv / "decoder.onnx"), str(conv / "tokenizer.json"),
        str(conv / "config.json"), "")
    axb = tmp_path / "axb"
    _touch(axb, "tiny/tiny-encoder.axmodel", "tiny/tiny-decoder.axmodel", "tiny-tokens.txt", "tiny_config.json")
    f = find_model_files(axb)
    assert f.encoder.endswith("tiny/tiny-encoder.axmodel") and f.decoder.endswith("tiny/tiny-decoder.axmodel")
    assert f.tokenizer.endswith("tiny-tokens.txt") and f.config.endswith("tiny_config.json")
    axa = tmp_path / "axa"
    _touch(axa, "base-encoder.axmodel", "base-decoder-main.axmodel", "base-decoder-loop.axmodel",
           "base-positional_embedding.bin", "base-tokens.txt")
    f = find_model_files(axa)
    assert f.decoder.endswith("base-decoder-loop.axmodel") and f.positional_embedding.endswith(".bin")
    # explicit paths win; the tokenizer is then looked for next to the encoder
    f = find_model_files("", encoder_path=conv / "encoder.onnx", decoder_path=axb / "tiny/tiny-decoder.axmodel")
    assert f.tokenizer == str(conv / "tokenizer.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WhisperFilesError, match="no encoder file"):
        find_model_files(tmp_path / "empty")
    _touch(tmp_path / "two", "a-encoder.onnx", "b-encoder.onnx")
    with pytest.raises(WhisperFilesError, match="several encoder files"):
        find_model_files(tmp_path / "two")
    with pytest.raises(WhisperFilesError, match="set model_dir"):
        find_model_files("")
    with pytest.raises(WhisperFilesError, match="does not exist"):
        find_model_files(conv, tokenizer_path=conv / "nope.json")


@pytest.fixture
def axcl_stub(monkeypatch):
    from axcl_ros.runtime.axcl import shutdown_runtime
    from axcl_ros_testing.axcl_stub_build import StubBuildError, StubControl, build_stub

    try:
        lib = build_stub()
    except StubBuildError as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv("AXCL_LIB_PATH", str(lib))
    for key in ("AXCL_STUB_FAIL_LOAD", "AXCL_STUB_FAIL_EXECUTE_AFTER", "AXCL_STUB_DEVICE_LOST_AFTER",
                "AXCL_STUB_DEVICE_IDS", "AXCL_VNPU", "AXCL_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    shutdown_runtime()
    ctl = StubControl(lib)
    ctl.reset()
    yield ctl
    shutdown_runtime()
    c = ctl.counters()
    assert c["loaded_models"] == 0 and c["outstanding_allocs"] == 0


def test_whisper_transcriber_on_the_axcl_stub_runs_every_step_on_the_executor(axcl_stub, tmp_path):
    """Schema-B axmodels: the device runner is built and driven on the executor's worker thread, one job per step."""
    from axcl_ros import assets
    from axcl_ros.models.whisper.tokenizer import WhisperTokenizer
    from axcl_ros.models.whisper.transcriber import WhisperTranscriber, find_model_files
    from axcl_ros.runtime.executor import InferenceExecutor
    from axcl_ros_testing import stub_models as sm

    try:
        tokenizer = assets.whisper_tiny_en_ct2() / "tokenizer.json"
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    tok = WhisperTokenizer.from_hf_json(tokenizer)
    words = tok.encode(" bring me the red cup")
    sm.whisper_stub(tmp_path, n_text_layer=2, n_text_state=32, n_vocab=len(tok), sequence=words, eot=tok.eot,
                    bad=tok.encode(" corrupt")[0], name="tiny")
    files = find_model_files(tmp_path, tokenizer_path=tokenizer)
    executor = InferenceExecutor("axcl:stub-test")
    try:
        service = WhisperTranscriber.load(executor, files, backend="auto", device="0")
        assert service.backend == "axcl" and service.schema == "B" and service.model_name == "tiny"
        assert type(service._handles[-1].session.runner).__name__ == "AxclWhisperRunner"
        rec = service.transcribe(np.zeros(16000, np.float32), "en", timestamps=False)
        assert rec.result.text == "bring me the red cup"
        steps = len(tok.sot_sequence("en")) + len(words)
        assert rec.executor_calls == 1 + 1 + steps  # encode, reset, one job per decoder step
        assert axcl_stub.counters()["executes"] == 1 + steps
        assert rec.run_ms > 0 and rec.total_ms >= rec.run_ms
        stats = service.stats()
        assert stats["tiny-decode"]["count"] == rec.executor_calls
        with pytest.raises(Exception, match="English-only"):
            service.transcribe(np.zeros(1600, np.float32), "de")
        service.release()
        service.release()
        assert executor.models() == []
    finally:
        executor.shutdown()
