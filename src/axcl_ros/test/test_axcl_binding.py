"""AXCL ctypes binding and runtime against the C stub runtime (library loading, errors, devices, contexts, teardown)."""

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from axcl_ros.runtime import axcl_abi, axcl_library
from axcl_ros.runtime.axcl import AxclRuntime, get_runtime, shutdown_runtime
from axcl_ros.runtime.axcl_abi import AxclError, DeviceList, DeviceProperties, IODims, VNpuKind, decode_error
from axcl_ros.runtime.axcl_backend import AxclBackend, InvalidDeviceError, parse_device
from axcl_ros.runtime.axcl_library import open_library
from axcl_ros.runtime.base import BackendUnavailableError, ModelLoadError
from axcl_ros_testing import stub_models as sm
from axcl_ros_testing.axcl_stub_build import stub_source


# ------------------------------------------------------------------------------------------------------ structs/errors
def test_struct_layouts_match_documentation():
    assert ctypes.sizeof(DeviceList) == 1028
    assert ctypes.sizeof(IODims) == 132
    assert DeviceProperties.uid.offset == 64
    assert DeviceProperties.temperature.offset == 84
    assert DeviceProperties.npuLoading.offset == 108
    assert ctypes.sizeof(DeviceProperties) == 240


@pytest.mark.parametrize("code, module, sub, err", [
    (0x8030070C, "runtime", "engine", "execute failed"),
    (0x80300184, "runtime", "device", "invalid device id"),
    (0x80300185, "runtime", "device", "no active device"),
    (0x80300781, "runtime", "engine", "invalid index"),
    (0x80300507, "runtime", "memory", "out of memory"),
    (0x81300103, "native", "sub-module 1", "illegal parameter"),
    (0x80300299, "runtime", "context", "module-specific error 0x99"),
])
def test_decode_error(code, module, sub, err):
    info = decode_error(code)
    assert (info.module_name, info.submodule_name, info.errid_name) == (module, sub, err)
    assert not info.passthrough
    exc = AxclError("axclrtFoo", code, "while testing")
    assert f"0x{code:08X}" in str(exc) and err in str(exc) and "axclrtFoo" in str(exc) and "while testing" in str(exc)


def test_decode_error_passthrough_and_negative_int():
    info = decode_error(0x800A0003)
    assert info.passthrough and "device-side" in info.describe()
    # ctypes returns axclError as a signed int32
    assert decode_error(ctypes.c_int32(0x8030070C).value).code == 0x8030070C


def test_vnpu_parse():
    assert VNpuKind.parse("") is VNpuKind.DISABLE
    assert VNpuKind.parse("big_little") is VNpuKind.BIG_LITTLE
    assert VNpuKind.parse("std") is VNpuKind.ENABLE and VNpuKind.ENABLE.max_cores == 1
    assert VNpuKind.parse(3) is VNpuKind.LITTLE_BIG and VNpuKind.LITTLE_BIG.max_cores == 2
    with pytest.raises(ValueError, match="VNPU kind 'turbo'"):
        VNpuKind.parse("turbo")


def test_parse_device():
    assert parse_device("") == 0 and parse_device(None) == 0 and parse_device("1") == 1
    assert parse_device("axcl:2") == 2 and parse_device(3) == 3
    for bad in ("cuda:0", "-1", "x", -2):
        with pytest.raises(InvalidDeviceError):
            parse_device(bad)


# ------------------------------------------------------------------------------------------------------ library loading
def test_candidates_honour_env_file_and_dir(stub_lib, monkeypatch):
    monkeypatch.setenv("AXCL_LIB_PATH", str(stub_lib))
    assert axcl_library.library_candidates() == [str(stub_lib)]
    monkeypatch.setenv("AXCL_LIB_PATH", str(stub_lib.parent))
    assert axcl_library.library_candidates() == [str(stub_lib.parent / "libaxcl_rt.so")]
    monkeypatch.delenv("AXCL_LIB_PATH")
    assert "/usr/lib/axcl/libaxcl_rt.so" in axcl_library.library_candidates()


def test_missing_library_is_unavailable_with_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("AXCL_LIB_PATH", str(tmp_path / "nope.so"))
    with pytest.raises(BackendUnavailableError, match="axclhost"):
        open_library()
    shutdown_runtime()
    ok, reason = AxclBackend().available()
    assert not ok and "nope.so" in reason


def test_library_without_axcl_symbols_is_rejected(tmp_path):
    libm = ctypes.util.find_library("m")
    assert libm
    with pytest.raises(BackendUnavailableError, match="lacks AXCL functions"):
        open_library(libm)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_dependency_chain_is_preloaded_from_the_library_folder(tmp_path):
    """A libaxcl_rt.so whose NEEDED dependency is not in the loader path loads after the chain is preloaded."""
    folder = tmp_path / "axcl"
    folder.mkdir()
    (folder / "pkg.c").write_text("int axcl_pkg_marker(void) { return 42; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libaxcl_pkg.so", "-o", str(folder / "libaxcl_pkg.so"),
                    str(folder / "pkg.c")], check=True)
    subprocess.run(["cc", "-shared", "-fPIC", "-O0", "-pthread", "-fvisibility=hidden", "-o",
                    str(folder / "libaxcl_rt.so"), str(stub_source()), f"-L{folder}", "-Wl,--no-as-needed",
                    "-laxcl_pkg", "-lm"], check=True)
    path = str(folder / "libaxcl_rt.so")
    with pytest.raises(OSError, match="libaxcl_pkg"):
        ctypes.CDLL(path)  # the loader alone cannot find the dependency
    lib = open_library(path)
    assert lib.has("axclrtEngineExecute") and lib.path == path


# ------------------------------------------------------------------------------------------------------ runtime
def test_runtime_singleton_init_once_and_device_ids(stub, monkeypatch):
    monkeypatch.setenv("AXCL_STUB_DEVICE_IDS", "129,130")
    rt = get_runtime()
    assert get_runtime() is rt
    assert rt.device_ids == [129, 130] and rt.device_count == 2
    assert stub.calls("axclInit") == 1
    ok, reason = AxclBackend().available()
    assert ok and reason == ""
    with pytest.raises(BackendUnavailableError, match="index 2 out of range: 2 card"):
        rt.open_device(2)


def test_sessions_use_device_ids_not_indices(stub, monkeypatch, tmp_path):
    monkeypatch.setenv("AXCL_STUB_DEVICE_IDS", "129,130")
    model = sm.copy_stub(tmp_path / "m.axmodel", [("x", (4,), np.float32)])
    backend = AxclBackend()
    s0, s1 = backend.load(str(model), "0"), backend.load(str(model), "axcl:1")
    assert (s0.device_id, s1.device_id) == (129, 130)
    x = np.arange(4, dtype=np.float32)
    assert np.array_equal(s1.run({"x": x})["out_x"], x)
    assert np.array_equal(s0.run({"x": x + 1})["out_x"], x + 1)
    # a buffer of card 130 is not memory of card 129
    rt = get_runtime()
    rt.ensure_thread_context(0)
    ptr, n = s1.device_buffer("x")
    host = np.zeros(4, np.float32)
    with pytest.raises(AxclError, match="memory"):
        rt.lib.check("axclrtMemcpy", host.ctypes.data, ptr, n, int(axcl_abi.MemcpyKind.DEVICE_TO_HOST))
    s0.release()
    s1.release()


def test_context_is_per_thread(stub, tmp_path):
    rt = get_runtime()
    dev = rt.open_device(0)
    results = {}

    def worker(use_context: bool, key: str) -> None:
        try:
            if use_context:
                rt.ensure_thread_context(0)
            ptr = ctypes.c_void_p()
            rt.lib.check("axclrtMalloc", ctypes.byref(ptr), 256, 0)
            rt.lib.check("axclrtFree", ptr)
            results[key] = "ok"
        except AxclError as exc:
            results[key] = exc

    for use, key in ((False, "bare"), (True, "with")):
        t = threading.Thread(target=worker, args=(use, key))
        t.start()
        t.join()
    assert isinstance(results["bare"], AxclError) and results["bare"].is_context_error
    assert "axclrtMalloc" in str(results["bare"]) and "context" in str(results["bare"])
    assert results["with"] == "ok"
    assert dev.device_id == 129


def test_device_properties_decoded(stub, tmp_path):
    rt = get_runtime()
    props = rt.device_properties(0)
    assert props["properties_available"] and props["device_id"] == 129
    assert props["temperature_raw"] == 42900 and props["temperature_c"] == pytest.approx(42.9)
    assert props["temperature_unit_verified"] is False
    assert props["cpu_load_pct"] == pytest.approx(12.34)
    assert props["cmm_total_kb"] == 7040 * 1024 and props["mem_total_kb"] == 945 * 1024
    assert props["firmware"] == "V0.0.0-stub"
    used_before = props["cmm_used_kb"]
    s = AxclBackend().load(str(sm.copy_stub(tmp_path / "m.axmodel", [("x", (256, 1024), np.float32)])))
    props = rt.device_properties(0)
    assert props["name"] == "AX650N-STUB"
    assert props["cmm_used_kb"] - used_before == 2 * 1024  # input + output buffers of 1 MiB each
    s.release()
    assert rt.version().startswith("axcl_stub")


def test_engine_already_initialised_is_tolerated(stub):
    first = get_runtime()
    first.open_device(0)
    other = AxclRuntime(lib=first.lib, vnpu="enable")  # same process: the engine is already up (DISABLE)
    dev = other.open_device(0)
    assert dev.engine_owned is False and dev.vnpu is VNpuKind.DISABLE
    assert stub.calls("axclrtEngineGetVNpuKind") == 1
    other.shutdown()


def test_vnpu_mode_too_small_for_model(stub, monkeypatch, tmp_path):
    monkeypatch.setenv("AXCL_VNPU", "enable")
    backend = AxclBackend()
    three = sm.copy_stub(tmp_path / "three.axmodel", [("x", (4,), np.float32)], cores=3)
    one = sm.copy_stub(tmp_path / "one.axmodel", [("x", (4,), np.float32)], cores=1)
    # the core count is not known before loading (GetModelType(path) would load the model twice): the load error
    # names the VNPU mode and its limit
    with pytest.raises(ModelLoadError, match="NPU cores than VNPU mode ENABLE allows \\(at most 1\\)"):
        backend.load(str(three))
    s = backend.load(str(one))
    assert s.npu_cores == 1
    s.release()
    assert stub.counters()["loaded_models"] == 0


def test_shutdown_order(stub, tmp_path):
    model = sm.copy_stub(tmp_path / "m.axmodel", [("a", (8,), np.uint8), ("b", (2, 3), np.int32)])
    s = AxclBackend().load(str(model))
    s.run({"a": np.arange(8, dtype=np.uint8), "b": np.ones((2, 3), np.int32)})
    stub.reset()
    shutdown_runtime()
    log = stub.call_log()
    teardown = [n for n in log if n != "axclrtSetCurrentContext"]
    assert teardown == ["axclrtFree"] * 4 + [
        "axclrtEngineDestroyIO", "axclrtEngineDestroyIOInfo", "axclrtEngineUnload", "axclrtEngineFinalize",
        "axclrtDestroyContext", "axclrtResetDevice", "axclFinalize"]
    assert s.released
    c = stub.counters()
    assert c["reclaimed_at_teardown"] == 0 and c["live_contexts"] == 0
    shutdown_runtime()  # idempotent


def test_atexit_tears_down_a_forgotten_session(stub_lib, tmp_path):
    """A process that exits with a loaded session still unloads, finalizes and resets (atexit)."""
    model = sm.copy_stub(tmp_path / "m.axmodel", [("x", (16,), np.float32)])
    report = tmp_path / "report.txt"
    code = ("import numpy as np\n"
            "from axcl_ros.runtime.axcl_backend import AxclBackend\n"
            f"s = AxclBackend().load({str(model)!r})\n"
            "s.run({'x': np.ones(16, np.float32)})\n")
    env = dict(os.environ, AXCL_LIB_PATH=str(stub_lib), AXCL_STUB_REPORT=str(report),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    values = dict(line.split() for line in report.read_text().splitlines())
    assert values["initialized"] == "0" and values["outstanding_allocs"] == "0"
    assert values["loaded_models"] == "0" and values["reclaimed_at_teardown"] == "0"
    assert values["calls.axclrtEngineUnload"] == "1" and values["calls.axclFinalize"] == "1"
    assert values["calls.axclrtResetDevice"] == "1"


def test_stub_checks_pointer_kinds_and_ranges(stub):
    """The stub's device addresses are not host addresses; wrong kinds and out-of-range copies fail (memory error)."""
    rt = get_runtime()
    rt.ensure_thread_context(0)
    lib = rt.lib
    dev = ctypes.c_void_p()
    lib.check("axclrtMalloc", ctypes.byref(dev), 64, 0)
    host = np.arange(16, dtype=np.float32)
    back = np.zeros(16, np.float32)
    kind = axcl_abi.MemcpyKind
    lib.check("axclrtMemcpy", dev, host.ctypes.data, 64, int(kind.HOST_TO_DEVICE))
    lib.check("axclrtMemcpy", back.ctypes.data, dev, 64, int(kind.DEVICE_TO_HOST))
    assert np.array_equal(back, host)
    bad = [
        (host.ctypes.data, dev, 64, kind.HOST_TO_DEVICE),  # source is device memory
        (dev, host.ctypes.data, 64, kind.DEVICE_TO_HOST),  # source is host memory
        (dev, host.ctypes.data, 65, kind.HOST_TO_DEVICE),  # one byte past the allocation
        (dev.value + 32, host.ctypes.data, 40, kind.HOST_TO_DEVICE),  # inside, but runs past the end
        (back.ctypes.data, host.ctypes.data, 64, kind.DEVICE_TO_DEVICE),  # host pointers as device pointers
        (dev, host.ctypes.data, 64, kind.HOST_PHY_TO_DEVICE),  # unsupported kind
    ]
    for dst, src, n, k in bad:
        with pytest.raises(AxclError) as info:
            lib.check("axclrtMemcpy", dst, src, n, int(k))
        assert info.value.info.submodule_name == "memory", (k, n)
    with pytest.raises(AxclError, match="memory: illegal parameter"):
        lib.check("axclrtFree", ctypes.c_void_p(host.ctypes.data))
    lib.check("axclrtFree", dev)
    with pytest.raises(AxclError, match="memory: illegal parameter"):
        lib.check("axclrtFree", dev)  # double free
