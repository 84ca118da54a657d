"""models.vad: Silero VAD adapter (stub and real weights), energy fallback, create_vad."""

import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from axcl_ros import assets
from axcl_ros.io.wav import read_wav
from axcl_ros.models.vad import EnergyVad, SileroVad, VadError, check_frame, create_vad

SENTENCE = "The quick brown fox jumps over the lazy dog. Please bring me the red cup from the kitchen table."


def _save(tmp_path, name, inputs, outputs, nodes, inits=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _stub(tmp_path, name="stub", input_name="input", input_shape=("b", "n"), state_type=TensorProto.FLOAT,
          with_sr=True, with_state_out=True):
    """Silero-shaped stub: output = mean(input) + mean(state) + sr/16000 - 1; stateN = state + 1."""
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape)),
              helper.make_tensor_value_info("state", state_type, [2, "b", 128])]
    nodes = [helper.make_node("ReduceMean", [input_name], ["m_in"], axes=[1], keepdims=1),
             helper.make_node("Cast", ["state"], ["state_f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["state_f"], ["m_st"], keepdims=0),
             helper.make_node("Add", ["m_in", "m_st"], ["t"])]
    inits = [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
             helper.make_tensor("k", TensorProto.FLOAT, [], [16000.0])]
    if with_sr:
        inputs.append(helper.make_tensor_value_info("sr", TensorProto.INT64, []))
        nodes += [helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
                  helper.make_node("Div", ["srf", "k"], ["srn"]),
                  helper.make_node("Sub", ["srn", "one"], ["srm"]),
                  helper.make_node("Add", ["t", "srm"], ["output"])]
    else:
        nodes.append(helper.make_node("Identity", ["t"], ["output"]))
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["b", 1])]
    if with_state_out:
        nodes.append(helper.make_node("Add", ["state_f", "one"], ["stateN"]))
        outputs.append(helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "b", 128]))
    return _save(tmp_path, name, inputs, outputs, nodes, inits)


@pytest.fixture(scope="module")
def espeak_vad_wav(tmp_path_factory):
    """1 s silence + espeak sentence + 1 s silence, 16 kHz mono s16 (models.md section 2 recipe)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox needed (apt-get install espeak-ng sox)")
    d = tmp_path_factory.mktemp("espeak_vad")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(d / "raw.wav"), SENTENCE], check=True)
    subprocess.run(["sox", str(d / "raw.wav"), "-r", "16000", "-c", "1", "-b", "16", str(d / "s16.wav")], check=True)
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(d / "sil.wav"), "trim", "0", "1.0"],
                   check=True)
    out = d / "vad_test.wav"
    subprocess.run(["sox", str(d / "sil.wav"), str(d / "s16.wav"), str(d / "sil.wav"), str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def silero_path():
    try:
        return assets.silero_vad_onnx()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))


def _probs(vad, x):
    return np.array([vad.probability(x[i:i + 512]) for i in range(0, x.size - 511, 512)])


# -- adapter against stubs -----------------------------------------------------------------------------------------
def test_stub_feeds_context_state_and_sr(tmp_path):
    vad = SileroVad(_stub(tmp_path), threshold=0.6)
    assert vad.kind == "silero" and "stub.onnx" in vad.reason
    ones, zeros = np.ones(512, np.float32), np.zeros(512, np.float32)
    assert vad.probability(ones) == pytest.approx(512 / 576)  # zero context, zero state, sr term 0
    assert vad.probability(zeros) == pytest.approx(64 / 576 + 1.0)  # previous 64 samples + carried state
    assert vad.probability(zeros) == pytest.approx(2.0)
    vad.reset()
    assert vad.probability(zeros) == pytest.approx(0.0)
    assert vad.is_speech(ones) is True  # 1.0 + 512/576 >= 0.6


def test_stub_without_sr_input_is_accepted(tmp_path):
    vad = SileroVad(_stub(tmp_path, "nosr", with_sr=False))
    assert vad.probability(np.zeros(512, np.float32)) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"input_name": "x"}, r"needs input 'input'.*x float32\[\?,\?\]"),
        ({"input_shape": (1, 1024)}, "must take 576 samples"),
        ({"state_type": TensorProto.INT64}, r"needs input 'state' float32.*state int64\[2,\?,128\]"),
        ({"with_state_out": False}, "needs a state output"),
    ],
)
def test_wrong_signature_fails_early_showing_what_was_found(tmp_path, kwargs, words):
    with pytest.raises(VadError, match=words):
        SileroVad(_stub(tmp_path, **kwargs))
    assert issubclass(VadError, ValueError)


def test_bad_frames_raise_vad_error(tmp_path):
    vad = SileroVad(_stub(tmp_path))
    with pytest.raises(VadError, match=r"512 samples.*\(511,\)"):
        vad.probability(np.zeros(511, np.float32))
    with pytest.raises(VadError, match="NaN"):
        vad.probability(np.full(512, np.nan, np.float32))
    with pytest.raises(VadError, match="1-D"):
        check_frame(np.zeros((2, 256), np.float32))
    assert check_frame(np.zeros(512, np.int16)).dtype == np.float32


# -- create_vad fallback -------------------------------------------------------------------------------------------
def test_create_vad_falls_back_to_energy_and_says_why(tmp_path):
    none = create_vad(None)
    assert none.kind == "energy" and none.reason == "energy fallback: no VAD model configured"
    missing = create_vad(tmp_path / "missing.onnx")
    assert missing.kind == "energy" and missing.reason.startswith("energy fallback: cannot use")
    assert "missing.onnx" in missing.reason
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    assert create_vad(garbage).kind == "energy" and "garbage.onnx" in create_vad(garbage).reason
    wrong = create_vad(_stub(tmp_path, input_name="x"), threshold=0.3)
    assert wrong.kind == "energy" and "needs input 'input'" in wrong.reason and wrong.threshold == 0.3
    good = create_vad(_stub(tmp_path))
    assert good.kind == "silero" and not good.reason.startswith("energy fallback")


# -- energy VAD ----------------------------------------------------------------------------------------------------
def test_energy_vad_ignores_silence_and_steady_noise_and_adapts():
    rng = np.random.default_rng(1)
    assert _probs(EnergyVad(), np.zeros(16000 * 2, np.float32)).max() == 0.0  # below the -60 dBFS gate
    vad = EnergyVad()
    quiet = (10 ** (-50 / 20) * rng.standard_normal(16000 * 5)).astype(np.float32)
    assert _probs(vad, quiet).max() < 0.5
    assert vad.noise_floor_db == pytest.approx(-50, abs=2)
    # noise 20 dB louder: flagged at first, but the floor follows within the window (5 s)
    loud = (10 ** (-30 / 20) * rng.standard_normal(16000 * 8)).astype(np.float32)
    p = _probs(vad, loud)
    assert p[:10].min() > 0.5 and p[-60:].max() < 0.5
    # a tone burst 30 dB over the noise is speech-like energy
    t = np.arange(8000) / 16000
    burst = loud[:8000] + (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    assert _probs(vad, burst).min() > 0.9


def test_energy_vad_on_espeak_finds_the_speech(espeak_vad_wav):
    x = read_wav(espeak_vad_wav).mono()
    p = _probs(EnergyVad(), x)
    on = np.flatnonzero(p >= 0.5)
    assert on[0] * 512 / 16000 == pytest.approx(1.0, abs=0.15)
    assert (on[-1] + 1) * 512 / 16000 == pytest.approx(7.45, abs=0.15)
    assert p[: int(0.95 * 16000 / 512)].max() < 0.5 and p[-int(0.95 * 16000 / 512):].max() < 0.5


# -- real Silero ---------------------------------------------------------------------------------------------------
@pytest.mark.realweights
def test_real_silero_on_espeak(silero_path, espeak_vad_wav):
    vad = create_vad(silero_path)
    assert vad.kind == "silero"
    x = read_wav(espeak_vad_wav).mono()
    p = _probs(vad, x)
    on = np.flatnonzero(p >= 0.5)
    # models.md 4.2: p > 0.5 from 1.06 s to 7.46 s; silences stay near 0
    assert on[0] * 512 / 16000 == pytest.approx(1.06, abs=0.07)
    assert (on[-1] + 1) * 512 / 16000 == pytest.approx(7.46, abs=0.07)
    assert p[: int(16000 / 512)].max() < 0.1 and p[-int(0.5 * 16000 / 512):].max() < 0.1
    assert np.mean(p[on[0]:on[-1]] >= 0.5) > 0.8
    vad.reset()
    np.testing.assert_allclose(_probs(vad, x), p, atol=1e-6)  # reset gives a fresh, deterministic stream


@pytest.mark.realweights
def test_real_silero_ignores_noise(silero_path):
    rng = np.random.default_rng(2)
    vad = SileroVad(silero_path)
    noise = (10 ** (-50 / 20) * rng.standard_normal(16000 * 4)).astype(np.float32)
    assert _probs(vad, noise).max() < 0.3
    assert _probs(vad, np.zeros(16000, np.float32)).max() < 0.1
