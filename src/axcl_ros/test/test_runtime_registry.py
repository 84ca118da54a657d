"""Registry: backend lookup by name and suffix, clear errors when the axcl backend is missing or unusable."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from axcl_ros.runtime import registry
from axcl_ros.runtime.base import Backend, BackendUnavailableError, ModelLoadError
from axcl_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
from axcl_ros_testing import onnx_builders as ob

AXCL_MODULE = "axcl_ros.runtime.axcl_backend"


@pytest.fixture
def no_axcl(monkeypatch):
    """Make the axcl backend module missing, whether or not it exists in this checkout."""
    monkeypatch.setitem(sys.modules, AXCL_MODULE, None)
    monkeypatch.setattr(registry, "_instances", {})


@pytest.fixture
def fake_axcl(monkeypatch):
    """An axcl backend module whose backend reports 'no card'."""

    class AxclBackend(Backend):
        name = "axcl"
        suffixes = (".axmodel",)

        def available(self):
            return False, "no AX650N card found (axcl-smi shows none)"

        def load(self, path, device=""):
            raise AssertionError("must not be called")

    module = types.ModuleType(AXCL_MODULE)
    module.AxclBackend = AxclBackend
    monkeypatch.setitem(sys.modules, AXCL_MODULE, module)
    monkeypatch.setattr(registry, "_instances", {})
    return AxclBackend


def test_get_backend_shared_and_options():
    first = registry.get_backend("onnxruntime")
    assert isinstance(first, OnnxRuntimeBackend)
    assert registry.get_backend("ONNXRuntime") is first
    custom = registry.get_backend("onnxruntime", intra_op_num_threads=3)
    assert custom is not first and custom.intra_op_num_threads == 3
    assert set(registry.backend_names()) == {"onnxruntime", "axcl"}


def test_unknown_backend_name():
    with pytest.raises(registry.UnknownBackendError) as info:
        registry.get_backend("tensorrt")
    assert isinstance(info.value, ValueError) and isinstance(info.value, BackendUnavailableError)
    assert "onnxruntime" in str(info.value) and "axcl" in str(info.value)
    with pytest.raises(registry.UnknownBackendError):
        registry.resolve_backend("tensorrt", "m.onnx")


def test_axcl_module_missing(no_axcl):
    with pytest.raises(BackendUnavailableError, match="axcl"):
        registry.get_backend("axcl")


def test_auto_axmodel_without_axcl(no_axcl, tmp_path):
    path = tmp_path / "yolo.axmodel"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(BackendUnavailableError, match="axcl"):
        registry.resolve_backend("auto", path)
    with pytest.raises(BackendUnavailableError, match="axcl"):
        registry.load_model(path)


def test_auto_axmodel_axcl_present_but_unavailable(fake_axcl):
    with pytest.raises(BackendUnavailableError) as info:
        registry.resolve_backend("auto", "/models/yolo.AXMODEL")
    assert "no AX650N card" in str(info.value) and "yolo.AXMODEL" in str(info.value)
    assert isinstance(registry.get_backend("axcl"), fake_axcl)


def test_suffix_mismatch_names_needed_backend(no_axcl):
    with pytest.raises(ModelLoadError) as info:
        registry.resolve_backend("onnxruntime", "/m/det.axmodel")
    assert "'axcl'" in str(info.value) and "det.axmodel" in str(info.value)
    with pytest.raises(ModelLoadError) as info:
        registry.resolve_backend("axcl", "/m/det.onnx")
    assert "'onnxruntime'" in str(info.value)


def test_auto_picks_onnxruntime(tmp_path):
    path = ob.add_model(tmp_path / "add.onnx", (1, 2))
    assert isinstance(registry.resolve_backend("auto", path), OnnxRuntimeBackend)
    upper = tmp_path / "ADD.ONNX"
    upper.write_bytes(path.read_bytes())
    sess = registry.load_model(upper)
    np.testing.assert_array_equal(sess.run({"a": np.ones((1, 2), np.float32),
                                            "b": np.full((1, 2), 2, np.float32)})["y"], [[3, 3]])


def test_auto_unknown_suffix_tries_onnxruntime(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(ob.add_model(tmp_path / "add.onnx", (1, 2)).read_bytes())
    sess = registry.load_model(path, "auto", "cpu", intra_op_num_threads=1)
    assert sess.backend_name == "onnxruntime"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        registry.load_model(junk)


def test_load_model_missing(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        registry.load_model(tmp_path / "missing.onnx")
