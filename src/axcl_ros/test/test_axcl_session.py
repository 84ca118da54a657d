"""AxclSession against the C stub runtime: specs, copies per frame, device-resident API, threads, load cycles."""

import threading

import numpy as np
import pytest

from axcl_ros.runtime.axcl import get_runtime
from axcl_ros.runtime.axcl_abi import AxclError
from axcl_ros.runtime.axcl_backend import AxclBackend
from axcl_ros.runtime.axcl_session import AxclSession
from axcl_ros.runtime.base import DeviceError, InputMismatchError, ModelLoadError
from axcl_ros_testing import stub_models as sm


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("axcl_models")
    return {"yolo": sm.yolo11_stub(d / "yolo11s.axmodel"), "depth": sm.depth_stub(d / "da2.axmodel"),
            "small_depth": sm.depth_stub(d / "small.axmodel", size=(24, 32)),
            "affine": sm.affine_stub(d / "affine.axmodel", (2, 3)),
            "affine2": sm.affine_stub(d / "affine2.axmodel", (2, 3), a=-1.0, b=0.5, in_name="y", out_name="z")}


def load(path, device="") -> AxclSession:
    return AxclBackend().load(str(path), device)


# ------------------------------------------------------------------------------------------------------ specs
def test_specs_come_from_io_info(stub, tmp_path):
    path = sm.write_stub_model(tmp_path / "kinds.axmodel", "copy", [
        sm.StubTensor("u8", (1, 4, 4, 3), np.uint8, "NHWC"), sm.StubTensor("f16", (1, 3, 2, 2), np.float16, "NCHW"),
        sm.StubTensor("i64", (5,), np.int64), sm.StubTensor("bf", (2, 2), "bf16", pad=12)],
        [sm.StubTensor("o", (7,), np.float64)])
    with load(path) as s:
        specs = {t.name: t for t in s.inputs}
        assert specs["u8"].shape == (1, 4, 4, 3) and specs["u8"].dtype == np.uint8 and specs["u8"].layout == "NHWC"
        assert specs["f16"].dtype == np.float16 and specs["f16"].layout == "NCHW"
        assert specs["i64"].dtype == np.int64 and specs["i64"].layout == ""
        assert specs["bf"].dtype == np.uint16  # bf16 exposed as raw bits
        assert s.outputs[0].dtype == np.float64 and s.outputs[0].shape == (7,)
        assert s.npu_cores == 1 and s.compiler_version == "stub-compiler 0.0" and s.backend_name == "axcl"
        # the device buffer has the size the model reports (12 bytes of padding) even though the spec needs 8
        assert s._in_by_name["bf"].size == 8 + 12 and s.device_buffer("bf")[1] == 8


def test_unsupported_dtype_and_bad_file(stub, tmp_path):
    path = sm.write_stub_model(tmp_path / "int4.axmodel", "copy", [sm.StubTensor("q", (8,), "int4")],
                               [sm.StubTensor("o", (8,), np.uint8)])
    with pytest.raises(ModelLoadError, match="input 'q' has AXCL data type INT4"):
        load(path)
    (tmp_path / "junk.axmodel").write_bytes(b"\x00not a model")
    with pytest.raises(ModelLoadError, match="axclrtEngineLoadFromFile .*engine"):
        load(tmp_path / "junk.axmodel")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load(tmp_path / "missing.axmodel")
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0 and c["outstanding_ioinfos"] == 0


# ------------------------------------------------------------------------------------------------------ image models
def test_yolo_stub_one_input_copy_three_output_copies_per_frame(stub, models):
    s = load(models["yolo"])
    assert s.input_spec("images").shape == (1, 640, 640, 3)
    assert [o.shape for o in s.outputs] == [(1, 80, 80, 144), (1, 40, 40, 144), (1, 20, 20, 144)]
    rng = np.random.default_rng(1)
    stub.reset()
    frames = 3
    for i in range(frames):
        img = rng.integers(0, 256, (1, 640, 640, 3), dtype=np.uint8)
        img[..., 0] = 10 * i
        out = s.run({"images": img})
        want = sm.expected_yolo_box(img)
        head = out[sm.YOLO_HEAD_NAMES[1]][0, 20, 20]
        assert int(np.argmax(head[64:])) == want.class_id
        assert [int(np.argmax(head[16 * k:16 * k + 16])) for k in range(4)] == [2, 3, 4, 5]
        assert 1 / (1 + np.exp(-head[64 + want.class_id])) == pytest.approx(0.9, abs=1e-5)
        assert out[sm.YOLO_HEAD_NAMES[0]][..., 64:].max() == pytest.approx(-12.0)
    c = stub.counters()
    assert c["h2d_calls"] == frames and c["h2d_bytes"] == frames * 640 * 640 * 3
    assert c["d2h_calls"] == 3 * frames and c["d2h_bytes"] == frames * 4 * 144 * (80 * 80 + 40 * 40 + 20 * 20)
    assert c["d2d_bytes"] == 0 and c["executes"] == frames
    # asking for one head copies only that head
    stub.reset()
    out = s.run({"images": img}, [sm.YOLO_HEAD_NAMES[2]])
    assert list(out) == [sm.YOLO_HEAD_NAMES[2]]
    assert stub.counters()["d2h_bytes"] == 4 * 144 * 20 * 20
    s.release()


def test_depth_stub_values_and_bytes(stub, models):
    s = load(models["depth"])
    rng = np.random.default_rng(2)
    stub.reset()
    for _ in range(2):
        img = rng.integers(0, 256, (1, 518, 518, 3), dtype=np.uint8)
        out = s.run({"input": img})["output"]
        np.testing.assert_allclose(out, sm.expected_depth(img), rtol=1e-6, atol=1e-6)
        # a swapped colour order gives a different map
        assert not np.allclose(out, sm.expected_depth(img[..., ::-1]), atol=1e-3)
    c = stub.counters()
    assert (c["h2d_calls"], c["h2d_bytes"]) == (2, 2 * 804_972)
    assert (c["d2h_calls"], c["d2h_bytes"]) == (2, 2 * 1_073_296)
    s.release()


def test_output_arrays_are_reused_and_inputs_persist(stub, models):
    s = load(models["small_depth"])
    img = np.full((1, 24, 32, 3), 200, np.uint8)
    first = s.run({"input": img})["output"]
    stub.reset()
    # no feed: the device buffer still holds the previous input, nothing is copied in
    again = s.run({})["output"]
    assert again is first
    np.testing.assert_allclose(again, sm.expected_depth(img), rtol=1e-6)
    assert stub.counters()["h2d_bytes"] == 0 and stub.counters()["executes"] == 1
    s.release()


def test_bad_feeds_raise_input_mismatch(stub, models):
    s = load(models["small_depth"])
    with pytest.raises(InputMismatchError, match="input 'input' expects input uint8\\[1,24,32,3\\], got float32"):
        s.run({"input": np.zeros((1, 24, 32, 3), np.float32)})
    with pytest.raises(InputMismatchError, match="unknown input 'image'"):
        s.run({"image": np.zeros((1, 24, 32, 3), np.uint8)})
    with pytest.raises(InputMismatchError, match="unknown output 'depth'"):
        s.run({}, ["depth"])
    with pytest.raises(InputMismatchError, match="sequence of names"):
        s.run({}, "output")
    s.release()
    with pytest.raises(DeviceError, match="released"):
        s.run({})
    s.release()  # idempotent


def test_noncontiguous_feed_is_copied_correctly(stub, models):
    s = load(models["small_depth"])
    big = np.random.default_rng(3).integers(0, 256, (1, 24, 64, 3), dtype=np.uint8)
    view = big[:, :, ::2]
    out = s.run({"input": view})["output"]
    np.testing.assert_allclose(out, sm.expected_depth(np.ascontiguousarray(view)), rtol=1e-6)
    s.release()


# ------------------------------------------------------------------------------------------------------ device-resident
def test_bind_input_to_chains_on_device_without_copies(stub, models):
    a = load(models["affine"])  # y = 2x + 1
    b = load(models["affine2"])  # z = -y + 0.5
    b.bind_input_to("y", a, "y")
    assert b.device_buffer("y") == a.device_buffer("y")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    stub.reset()
    a.run({"x": x}, [])
    z = b.run({})["z"]
    np.testing.assert_allclose(z, -(2 * x + 1) + 0.5)
    c = stub.counters()
    assert (c["h2d_bytes"], c["d2h_bytes"], c["d2d_bytes"]) == (x.nbytes, z.nbytes, 0)
    # the bound input's own buffer was freed: 3 buffers remain for 4 tensors
    assert c["outstanding_allocs"] == 3
    b.unbind_input("y")
    assert stub.counters()["outstanding_allocs"] == 4
    np.testing.assert_allclose(b.run({})["z"], np.full((2, 3), 0.5, np.float32))  # own buffer is zeroed
    b.bind_input_to("y", a, "y")
    a.release()
    with pytest.raises(DeviceError, match="bound to output 'y' .* released"):
        b.run({})
    b.release()


def test_bind_input_to_checks_shapes_and_devices(stub, models, monkeypatch):
    a = load(models["affine"])
    d = load(models["small_depth"])
    with pytest.raises(InputMismatchError, match="cannot bind input input uint8"):
        d.bind_input_to("input", a, "y")
    with pytest.raises(InputMismatchError, match="unknown output"):
        d.bind_input_to("input", a, "nope")
    with pytest.raises(TypeError):
        d.bind_input_to("input", object(), "y")
    a.release()
    d.release()


def test_write_input_copy_output_to_input_and_device_buffer(stub, tmp_path):
    path = sm.write_stub_model(tmp_path / "kv.axmodel", "copy",
                               [sm.StubTensor("row", (1, 4), np.float32), sm.StubTensor("cache", (3, 4), np.float32)],
                               [sm.StubTensor("new_row", (1, 4), np.float32),
                                sm.StubTensor("cache_out", (3, 4), np.float32)])
    s = load(path)
    stub.reset()
    s.write_input("row", np.array([[1, 2, 3, 4]], np.float32))
    s.execute()  # new_row = row, cache_out = cache
    s.copy_output_to_input("new_row", "cache", dst_byte_offset=2 * 16)  # into row 2
    s.copy_output_to_input("new_row", "cache", dst_byte_offset=0 * 16, src_byte_offset=8, nbytes=8)  # 2 floats
    s.execute()
    cache = s.read_output("cache_out")
    np.testing.assert_array_equal(cache, [[3, 4, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
    c = stub.counters()
    assert (c["h2d_bytes"], c["d2d_bytes"], c["d2d_calls"], c["d2h_bytes"]) == (16, 16 + 8, 2, 48)
    s.write_input("cache", np.array([9, 9], np.float32), byte_offset=4)
    s.execute()
    np.testing.assert_array_equal(s.read_output("cache_out")[0], [3, 9, 9, 0])
    s.fill_input("cache", 0)
    s.execute()
    assert not s.read_output("cache_out").any()
    with pytest.raises(InputMismatchError, match="do not fit"):
        s.write_input("cache", np.zeros(4, np.float32), byte_offset=40)
    with pytest.raises(InputMismatchError, match="do not fit"):
        s.write_input("cache", np.zeros(1, np.float32), byte_offset=2)
    with pytest.raises(InputMismatchError, match="dtype float64"):
        s.write_input("row", np.zeros(4))
    with pytest.raises(InputMismatchError, match="do not fit"):
        s.copy_output_to_input("cache_out", "row")
    ptr, n = s.device_buffer("cache")
    assert n == 48 and ptr >= 0x00C0000000000000  # the stub's fake device address space
    with pytest.raises(InputMismatchError, match="no tensor"):
        s.device_buffer("nothing")
    s.release()


# ------------------------------------------------------------------------------------------------------ lifecycle
def test_hundred_load_release_cycles_leave_nothing(stub, models):
    x = np.ones((2, 3), np.float32)
    for i in range(100):
        s = load(models["affine"])
        if i % 10 == 0:
            np.testing.assert_allclose(s.run({"x": x})["y"], 3 * x)
        s.release()
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["outstanding_bytes"] == 0 and c["loaded_models"] == 0
    assert c["outstanding_ios"] == 0 and c["outstanding_ioinfos"] == 0
    assert get_runtime().live_sessions == 0


def test_dropped_session_is_released_by_gc(stub, models):
    s = load(models["affine"])
    assert stub.counters()["loaded_models"] == 1
    del s
    import gc

    gc.collect()
    assert stub.counters()["loaded_models"] == 0 and stub.counters()["outstanding_allocs"] == 0


def test_sessions_from_many_threads(stub, models):
    shared = load(models["small_depth"])
    errors = []
    lock_free_sessions = [load(models["small_depth"]) for _ in range(3)]

    def worker(k: int) -> None:
        try:
            rng = np.random.default_rng(k)
            own = lock_free_sessions[k % 3] if k < 3 else None
            for _ in range(20):
                img = rng.integers(0, 256, (1, 24, 32, 3), dtype=np.uint8)
                for s in (shared, own):
                    if s is None:
                        continue
                    with _session_lock(s):
                        out = s.run({"input": img})["output"].copy()
                    np.testing.assert_allclose(out, sm.expected_depth(img), rtol=1e-6)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert stub.counters()["executes"] >= 6 * 20 + 3 * 20
    for s in [shared, *lock_free_sessions]:
        s.release()


def _session_lock(session: AxclSession):
    """Hold the session's lock across run + copy of the reused output array."""
    return session._lock


def test_run_failure_is_axcl_error_with_decoded_name(stub, models, monkeypatch):
    s = load(models["affine"])
    monkeypatch.setenv("AXCL_STUB_FAIL_EXECUTE_AFTER", "0")
    with pytest.raises(AxclError) as info:
        s.run({"x": np.zeros((2, 3), np.float32)})
    assert info.value.code == 0x8030070C and info.value.info.errid_name == "execute failed"
    assert "affine.axmodel" in str(info.value)
    s.release()
