"""OnnxRuntimeBackend: specs read from the model, devices, threads and every error path."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from axcl_ros.runtime.base import (
    BackendUnavailableError,
    DeviceError,
    InputMismatchError,
    ModelLoadError,
)
from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeSession, parse_device
from axcl_ros_testing import onnx_builders as ob

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture
def backend():
    return OnnxRuntimeBackend(intra_op_num_threads=1)


@pytest.fixture
def add_path(tmp_path):
    return ob.add_model(tmp_path / "add.onnx", (None, 4), np.float32)


def test_available_and_identity(backend):
    assert backend.available() == (True, "")
    assert backend.name == "onnxruntime" and backend.suffixes == (".onnx",)


def test_specs_dynamic_dims_and_run(backend, add_path):
    sess = backend.load(str(add_path))
    assert isinstance(sess, OnnxRuntimeSession) and sess.backend_name == "onnxruntime"
    assert [(s.name, s.shape, s.dtype) for s in sess.inputs] == [("a", (None, 4), np.float32),
                                                                 ("b", (None, 4), np.float32)]
    assert [(s.name, s.shape) for s in sess.outputs] == [("y", (None, 4))]
    assert not sess.inputs[0].is_static
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    out = sess.run({"a": a, "b": b})
    assert list(out) == ["y"]
    np.testing.assert_array_equal(out["y"], a + b)
    assert sess.providers == ["CPUExecutionProvider"]
    assert sess.owns_outputs


@pytest.mark.parametrize("out_dtype", [np.float16, np.int64, np.bool_, np.uint8, np.int32, np.float64])
def test_dtype_map_from_model(backend, tmp_path, out_dtype):
    path = ob.cast_model(tmp_path / "cast.onnx", (2, 3), np.float32, out_dtype)
    sess = backend.load(path)
    assert sess.inputs[0].dtype == np.float32
    assert sess.outputs[0].dtype == np.dtype(out_dtype) and sess.outputs[0].shape == (2, 3)
    x = np.array([[0, 1, 2], [3, 0, 5]], dtype=np.float32)
    y = sess.run({"x": x})["y"]
    assert y.dtype == np.dtype(out_dtype)
    np.testing.assert_array_equal(y, x.astype(out_dtype))


def test_float16_and_int64_inputs(backend, tmp_path):
    sess = backend.load(ob.cast_model(tmp_path / "h.onnx", (4,), np.float16, np.int64))
    assert sess.inputs[0].dtype == np.float16
    np.testing.assert_array_equal(sess.run({"x": np.array([1, 2, 3, 4], np.float16)})["y"], [1, 2, 3, 4])
    sess = backend.load(ob.cast_model(tmp_path / "b.onnx", (4,), np.int64, np.bool_))
    np.testing.assert_array_equal(sess.run({"x": np.array([0, 2, 0, -1], np.int64)})["y"], [False, True, False, True])


def test_output_names_subset_and_unknown(backend, tmp_path):
    sess = backend.load(ob.two_output_model(tmp_path / "two.onnx", (1, 4)))
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    out = sess.run({"x": x}, ["times_two"])
    assert list(out) == ["times_two"]
    np.testing.assert_array_equal(out["times_two"], x * 2)
    assert set(sess.run({"x": x})) == {"plus_one", "times_two"}
    with pytest.raises(InputMismatchError, match="nope"):
        sess.run({"x": x}, ["nope"])


def test_intra_op_threads_applied(add_path):
    sess = OnnxRuntimeBackend(intra_op_num_threads=2).load(add_path)
    assert sess._sess.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ValueError):
        OnnxRuntimeBackend(intra_op_num_threads=-1)


def test_missing_file(backend, tmp_path):
    path = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelLoadError) as info:
        backend.load(str(path))
    assert str(path) in str(info.value) and "does not exist" in str(info.value)


def test_directory_is_not_a_model(backend, tmp_path):
    with pytest.raises(ModelLoadError, match="not a file"):
        backend.load(str(tmp_path))


@pytest.mark.parametrize("kind", ["random", "empty", "truncated"])
def test_corrupt_file(backend, tmp_path, add_path, kind):
    data = {"random": np.random.default_rng(1).bytes(2048), "empty": b"",
            "truncated": add_path.read_bytes()[: add_path.stat().st_size // 2]}[kind]
    bad = tmp_path / f"{kind}.onnx"
    bad.write_bytes(data)
    with pytest.raises(ModelLoadError) as info:
        backend.load(str(bad))
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("feeds, words", [
    ({"a": np.ones((1, 4), np.float32), "c": np.ones((1, 4), np.float32)}, ["'c'", "unknown input"]),
    ({"a": np.ones((1, 4), np.float32)}, ["missing inputs", "'b'"]),
    ({"a": np.ones((1, 5), np.float32), "b": np.ones((1, 5), np.float32)}, ["'a'", "float32[?,4]", "[1, 5]"]),
    ({"a": np.ones((1, 4), np.float64), "b": np.ones((1, 4), np.float32)}, ["'a'", "float64"]),
    ({"a": np.ones((4,), np.float32), "b": np.ones((1, 4), np.float32)}, ["'a'", "[4]"]),
    ({"a": [[1.0, 2.0, 3.0, 4.0]], "b": np.ones((1, 4), np.float32)}, ["'a'", "list"]),
])
def test_input_mismatch(backend, add_path, feeds, words):
    sess = backend.load(add_path)
    with pytest.raises(InputMismatchError) as info:
        sess.run(feeds)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_execution_failure_is_device_error(backend, tmp_path):
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    model = ob.make_model([node], [ob.value_info("x", (None,), np.float32), ob.value_info("shape", (2,), np.int64)],
                          [ob.value_info("y", (None, None), np.float32)])
    sess = backend.load(ob.save(model, tmp_path / "reshape.onnx"))
    np.testing.assert_array_equal(sess.run({"x": np.arange(6, dtype=np.float32),
                                            "shape": np.array([2, 3], np.int64)})["y"],
                                  np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(DeviceError, match="reshape"):
        sess.run({"x": np.arange(6, dtype=np.float32), "shape": np.array([4, 4], np.int64)})


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_unavailable(backend, add_path, device):
    with pytest.raises(BackendUnavailableError) as info:
        backend.load(add_path, device)
    assert "CUDAExecutionProvider" in str(info.value) and "cpu" in str(info.value)


@pytest.mark.parametrize("device", ["npu", "cuda:x", "gpu0"])
def test_unknown_device(backend, add_path, device):
    with pytest.raises(BackendUnavailableError, match="unknown device"):
        backend.load(add_path, device)


def test_parse_device():
    assert parse_device("") == ("CPUExecutionProvider", {})
    assert parse_device("CPU") == ("CPUExecutionProvider", {})
    assert parse_device("cuda") == ("CUDAExecutionProvider", {"device_id": "0"})
    assert parse_device("cuda:3") == ("CUDAExecutionProvider", {"device_id": "3"})


def test_release_idempotent_and_run_after_release(backend, add_path):
    sess = backend.load(add_path)
    sess.release()
    sess.release()
    assert sess.providers == []
    with pytest.raises(DeviceError, match="released"):
        sess.run({"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)})
    with backend.load(add_path) as again:
        assert again.run({"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)})["y"].sum() == 8
    assert again._sess is None


def test_slow_identity_is_exact(backend, tmp_path):
    sess = backend.load(ob.slow_identity_model(tmp_path / "slow.onnx", size=32, repeats=4))
    x = np.random.default_rng(2).standard_normal((32, 32)).astype(np.float32)
    np.testing.assert_array_equal(sess.run({"x": x})["y"], x)
    assert os.path.getsize(tmp_path / "slow.onnx") > 32 * 32 * 4


def test_session_options_thread_budget(add_path):
    """One builder for every ORT session: measured defaults (no spinning), overridable per backend."""
    from axcl_ros.runtime.onnxruntime_backend import (
        DEFAULT_ALLOW_SPINNING,
        DEFAULT_INTRA_OP_THREADS,
        DEFAULT_MEMORY_PATTERN,
        session_options,
    )

    opts = session_options()
    assert opts.intra_op_num_threads == DEFAULT_INTRA_OP_THREADS and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if DEFAULT_ALLOW_SPINNING else "0")
    spin = session_options(2, 1, allow_spinning=True)
    assert spin.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    sess = OnnxRuntimeBackend(intra_op_num_threads=2, allow_spinning=False).load(add_path)
    got = sess._sess.get_session_options()
    assert got.intra_op_num_threads == 2
    assert got.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.enable_mem_pattern == DEFAULT_MEMORY_PATTERN
    assert session_options(memory_pattern=False).enable_mem_pattern is False
    lean = OnnxRuntimeBackend(memory_pattern=False).load(add_path)
    assert lean._sess.get_session_options().enable_mem_pattern is False
    feeds = {spec.name: np.ones([d or 2 for d in spec.shape], spec.dtype) for spec in lean.inputs}
    assert all(v.shape == (2, 4) for v in lean.run(feeds).values())
    with pytest.raises(ValueError):
        session_options(-1)
    # spinning workers that go to sleep when a run ends (the LLM stack's chained sessions)
    stop = OnnxRuntimeBackend(2, allow_spinning=True, stop_spinning_after_run=True).load(add_path)
    assert stop._sess.get_session_options().get_session_config_entry("session.force_spinning_stop") == "1"


def test_node_model_passes_the_node_thread_budget(add_path, monkeypatch):
    """The detector's cpu_threads / cpu_spinning / cpu_memory_pattern reach the session options through NodeModel
    (ORT only)."""
    from types import SimpleNamespace

    from axcl_ros.nodes.node_model import NodeModel
    from axcl_ros.runtime import onnxruntime_backend as orb

    seen = []
    real = orb.OnnxRuntimeBackend._session_options

    def spy(self):
        seen.append((self.intra_op_num_threads, self.allow_spinning, self.memory_pattern))
        opts = real(self)
        assert opts.enable_mem_pattern == self.memory_pattern
        return opts

    monkeypatch.setattr(orb.OnnxRuntimeBackend, "_session_options", spy)
    node = SimpleNamespace(get_logger=lambda: SimpleNamespace(info=lambda *_a, **_k: None))
    host = NodeModel.load(node, add_path, "auto", "", cpu_options={"intra_op_num_threads": 1, "allow_spinning": True,
                                                                  "memory_pattern": False})
    try:
        assert seen[-1] == (1, True, False)
    finally:
        host.release()
    host = NodeModel.load(node, add_path, "auto", "")
    try:
        assert seen[-1] == (orb.DEFAULT_INTRA_OP_THREADS, orb.DEFAULT_ALLOW_SPINNING, orb.DEFAULT_MEMORY_PATTERN)
    finally:
        host.release()
