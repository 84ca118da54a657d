"""Behaviour of AXERA's real libaxcl_rt.so (V3.10.2, axcl_api.md §1.9) reproduced by the stub, and what the binding
must do about it. Each binding test here failed against the binding before the issue-13 fixes."""

import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from axcl_ros.runtime import axcl_library
from axcl_ros.runtime.axcl import AxclRuntime, get_runtime
from axcl_ros.runtime.axcl_abi import AxclError, DeviceList, decode_error
from axcl_ros.runtime.axcl_backend import AxclBackend
from axcl_ros.runtime.base import ModelLoadError
from axcl_ros_testing import stub_models as sm

NO_CONTEXT = 0x80300284


def _raw(stub_lib):
    lib = ctypes.CDLL(str(stub_lib))
    for name in ("axclrtEngineGetNumInputs", "axclrtEngineGetNumOutputs"):
        getattr(lib, name).restype, getattr(lib, name).argtypes = ctypes.c_uint32, [ctypes.c_void_p]
    for name in ("axclrtEngineGetInputSizeByIndex", "axclrtEngineGetOutputSizeByIndex"):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
    lib.axclrtEngineGetInputIndexByName.restype = ctypes.c_int32
    lib.axclrtEngineGetInputIndexByName.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.axclrtGetSocName.restype = ctypes.c_char_p
    lib.axclrtEngineGetModelType.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int32)]
    lib.axclrtMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_int]
    return lib


def _child_env(**extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------------- stub fidelity
def test_stub_getters_return_the_error_code_as_their_value(stub, stub_lib):
    lib = _raw(stub_lib)
    assert lib.axclrtEngineGetNumInputs(None) == 0x80300702
    not_an_info = ctypes.create_string_buffer(64)
    assert lib.axclrtEngineGetNumOutputs(ctypes.addressof(not_an_info)) == 0x80300703
    assert lib.axclrtEngineGetInputSizeByIndex(None, 0, 0) == 0xFFFFFFFF80300702
    assert lib.axclrtEngineGetInputIndexByName(None, b"x") == ctypes.c_int32(0x80300702).value


def test_stub_context_rules_and_codes(stub, stub_lib, tmp_path, capfd):
    lib = _raw(stub_lib)
    model = sm.copy_stub(tmp_path / "m.axmodel", [("x", (4,), np.uint8)])
    assert lib.axclInit(None) == 0
    try:
        ptr = ctypes.c_void_p()
        assert lib.axclrtMalloc(ctypes.byref(ptr), 64, 0) & 0xFFFFFFFF == NO_CONTEXT
        assert lib.axclrtGetSocName() == b"UNKNOWN"
        kind = ctypes.c_int32()
        assert lib.axclrtEngineGetModelType(str(model).encode(), ctypes.byref(kind)) & 0xFFFFFFFF == NO_CONTEXT
    finally:
        lib.axclFinalize()
    out = capfd.readouterr().out  # the vendor library logs to stdout, not stderr
    assert "axclrtMalloc" in out and "no context" in out and "axclrtEngineGetModelType" in out


def test_stub_device_list_before_init_is_empty_success(stub, stub_lib):
    lib = _raw(stub_lib)
    lst = DeviceList()
    lst.num = 7
    assert lib.axclrtGetDeviceList(ctypes.byref(lst)) == 0 and lst.num == 0


def test_stub_without_card_fails_init_with_open_failed_on_stdout(stub, stub_lib, monkeypatch, capfd):
    monkeypatch.setenv("AXCL_STUB_NO_CARD", "1")
    lib = _raw(stub_lib)
    assert lib.axclInit(None) & 0xFFFFFFFF == 0x8030010B
    assert "open /dev/axcl_host fail" in capfd.readouterr().out


# ------------------------------------------------------------------------------------------------- binding
@pytest.mark.parametrize("code, name", [
    (0x80300284, "no current context"), (0x8030010B, "open failed"), (0x80300187, "device rebooting"),
    (0x80300183, "device not active"), (0x80300281, "context create failed"), (0x80300383, "synchronize timed out"),
    (0x80300581, "not device memory"), (0x80300708, "encode"), (0x80300509, "decode"),
    (0x80300186, "port allocation failed"), (0x80300188, "port destroy failed"), (0x80300180, "query device failed"),
    (0x80300181, "no connection"), (0x80300182, "probe failed"), (0x80300282, "context destroy failed"),
    (0x80300283, "bind context to thread failed"), (0x80300381, "stream create failed"),
    (0x80300382, "stream destroy failed"),
])
def test_documented_codes_decode_by_name(code, name):
    assert name in decode_error(code).errid_name
    assert "module-specific" not in decode_error(code).describe()


@pytest.mark.parametrize("code, sub", [(0x80300801, "syslog"), (0x80300901, "sysctrl"), (0x80300A01, "latency"),
                                       (0x80300B01, "p2p"), (0x80300C01, "user work")])
def test_other_runtime_submodules_have_names(code, sub):
    assert decode_error(code).submodule_name == sub


def test_no_context_error_is_a_context_error():
    assert AxclError("axclrtMalloc", NO_CONTEXT).is_context_error


def test_load_does_not_call_get_model_type(stub, tmp_path):
    path = sm.copy_stub(tmp_path / "m.axmodel", [("x", (4,), np.uint8)])
    session = AxclBackend().load(str(path))
    try:
        assert stub.calls("axclrtEngineGetModelType") == 0  # it would load the whole model a second time
        assert stub.calls("axclrtEngineLoadFromFile") == 1
        assert session.npu_cores == 1
    finally:
        session.release()


def test_model_too_big_for_vnpu_mode_says_so(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("AXCL_VNPU", "enable")
    path = sm.copy_stub(tmp_path / "m3.axmodel", [("x", (4,), np.uint8)], cores=3)
    with pytest.raises(ModelLoadError, match="VNPU") as info:
        AxclBackend().load(str(path))
    assert "AXCL_VNPU" in str(info.value)


def test_every_io_set_gets_dynamic_batch_size_one(stub, tmp_path):
    path = sm.copy_stub(tmp_path / "m.axmodel", [("x", (4,), np.uint8)])
    session = AxclBackend().load(str(path))
    try:
        assert stub.calls("axclrtEngineSetDynamicBatchSize") == stub.calls("axclrtEngineCreateIO") >= 1
        out = session.run({"x": np.arange(4, dtype=np.uint8)})
        assert out["out_x"].tolist() == [0, 1, 2, 3]
    finally:
        session.release()


@pytest.mark.parametrize("getter, value", [
    ("axclrtEngineGetNumInputs", 0x80300702),
    ("axclrtEngineGetNumOutputs", 0x80300702),
    ("axclrtEngineGetInputSizeByIndex", 0xFFFFFFFF80300781),
    ("axclrtEngineGetOutputSizeByIndex", 0xFFFFFFFF80300781),
])
def test_getter_error_values_are_reported_not_used(stub, tmp_path, getter, value):
    path = sm.copy_stub(tmp_path / "m.axmodel", [("x", (4,), np.uint8)])
    lib = get_runtime().lib
    real = lib._fns[getter]
    lib._fns[getter] = lambda *args: value
    try:
        with pytest.raises(ModelLoadError) as info:
            AxclBackend().load(str(path))
    finally:
        lib._fns[getter] = real
    text = str(info.value)
    assert getter in text and f"0x{value & 0xFFFFFFFF:08X}" in text
    assert stub.counters()["outstanding_allocs"] == 0


def test_soc_name_read_with_a_context(stub):
    props = get_runtime().device_properties(0)
    assert props["name"] == "AX650N-STUB"


def test_config_file_passed_to_axcl_init(stub, tmp_path, monkeypatch, capfd):
    cfg = tmp_path / "axcl.json"
    cfg.write_text("{}")
    monkeypatch.setattr(axcl_library, "DEFAULT_CONFIGS", (str(tmp_path / "missing.json"), str(cfg)))
    rt = AxclRuntime()
    try:
        assert rt.config == str(cfg)
    finally:
        rt.shutdown()
    monkeypatch.setenv("AXCL_CONFIG", "")  # empty: no config file
    rt = AxclRuntime()
    try:
        assert rt.config is None
    finally:
        rt.shutdown()
    captured = capfd.readouterr()
    assert f"load config {cfg}" in captured.out + captured.err  # which stream: see the subprocess JSON test


@pytest.mark.parametrize("argv", [["doctor", "--json"], ["smi", "--json"]])
def test_json_modes_parse_while_the_library_prints_to_stdout(stub_env, tmp_path, argv):
    cfg = tmp_path / "axcl.json"
    cfg.write_text("{}")
    for extra in ({"AXCL_CONFIG": str(cfg)}, {"AXCL_STUB_NO_CARD": "1"}):
        proc = subprocess.run([sys.executable, "-m", "axcl_ros.cli", *argv], capture_output=True, text=True,
                              env=_child_env(**extra), timeout=60)
        json.loads(proc.stdout)  # raises when a vendor log line landed on stdout
        assert "[axcl_stub]" in proc.stderr, proc.stderr  # the vendor lines still reach the user, on stderr
