"""The describe node's card path on the AXCL stub: shape groups in the binding and the stub, AXERA's per-layer layout
run by AxclLayerStack (KV cache on the card, written in place), bytes per generated token, errors and lifecycle."""

import ctypes
import os

import numpy as np
import pytest

from axcl_ros.models.llm.axcl_layers import AxclLayerStack, from_bf16, to_bf16
from axcl_ros.models.llm.config import ModelFilesError, find_model_files
from axcl_ros.models.llm.generate import LlmModel
from axcl_ros.models.llm.layers import ContextFullError
from axcl_ros.runtime.axcl import get_runtime
from axcl_ros.runtime.axcl_abi import AxclError, IODims
from axcl_ros.runtime.axcl_groups import DeviceBuffer, GroupedModel
from axcl_ros.runtime.base import DeviceError, InputMismatchError
from axcl_ros_testing import axera_llm_stub as als
from axcl_ros_testing import stub_models as sm


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return als.axera_llm_stub(str(tmp_path_factory.mktemp("axera_llm")), layers=3, hidden=16, kv_dim=8, kv_len=384,
                              capacities=(128, 256))


def test_stub_reports_shape_groups_through_the_raw_api(stub, folder):
    """GetShapeGroupsCount, per-group sizes and dims as axcl_api.md documents them; bad group → invalid index."""
    m = GroupedModel(find_model_files(folder.folder).layers[0])
    lib, info = get_runtime().lib, m._info
    n = ctypes.c_int32()
    assert lib.call("axclrtEngineGetShapeGroupsCount", info, ctypes.byref(n)) == 0 and n.value == 3
    assert m.tensor("input").shapes == ((1, 1, 16), (1, 128, 16), (1, 128, 16))
    assert m.tensor("K_cache").shapes == ((1, 384, 8), (1, 128, 8), (1, 256, 8))
    assert m.tensor("mask").shapes == ((1, 1, 385), (1, 128, 256), (1, 128, 384))
    assert m.tensor("K_cache").sizes == (384 * 8 * 2, 128 * 8 * 2, 256 * 8 * 2)
    dims = IODims()
    rc = lib.call("axclrtEngineGetInputDims", info, 3, 0, ctypes.byref(dims))
    assert rc & 0xFFFFFFFF == 0x80300781  # engine / invalid index
    size = lib.call("axclrtEngineGetInputSizeByIndex", info, 3, 0)
    assert size & 0xFFFFFFFF == 0x80300781  # the getter returns the error code as its value
    with pytest.raises(InputMismatchError):
        m.execute(3)
    m.release()
    m.release()  # idempotent


def test_execute_checks_the_bound_buffer_against_the_group(stub, folder):
    """A buffer big enough for group 1 but not group 2 executes in group 1 and fails in group 2 (engine param)."""
    m = GroupedModel(find_model_files(folder.folder).layers[0])
    bufs = []
    try:
        def bind(g, name, nbytes, output=False):
            b = DeviceBuffer(nbytes)
            bufs.append(b)
            m.bind(g, name, b.at(0), nbytes, output=output)

        for g in (1, 2):
            for name in ("input", "indices", "K_cache", "V_cache", "mask"):
                bind(g, name, m.inputs[name].sizes[1])
            for name in ("K_cache_out", "V_cache_out", "output"):
                bind(g, name, m.outputs[name].sizes[1], output=True)
        m.execute(1)
        with pytest.raises(AxclError) as err:
            m.execute(2)
        assert err.value.code == 0x80300703
        # smaller than every group's size: refused at bind time
        small = DeviceBuffer(16)
        bufs.append(small)
        with pytest.raises(AxclError):
            m.bind(0, "K_cache", small.at(0), 16)
    finally:
        for b in bufs:
            b.free()
        m.release()


def test_device_buffer_offsets_and_bounds(stub):
    b = DeviceBuffer(64)
    b.write(np.arange(8, dtype=np.uint32), byte_offset=16)
    out = b.read(np.empty(4, np.uint32), byte_offset=24)
    assert out.tolist() == [2, 3, 4, 5]
    b.fill(0, 28, 4)
    assert b.read(np.empty(4, np.uint32), byte_offset=24).tolist() == [2, 0, 4, 5]
    with pytest.raises(InputMismatchError):
        b.at(60, 8)
    b.free()
    b.free()
    with pytest.raises(DeviceError):
        b.at(0)


def test_generates_the_stub_sequence_with_cache_checks(stub, folder):
    """End to end through LlmModel: prefill (one chunk), decode via group 0; every layer checks cache, mask and
    positions and the post model checks that every layer ran — a wrong runner answers '#' tokens."""
    model = LlmModel(folder.folder)
    try:
        assert model.files.backend == "axcl" and isinstance(model.stack, AxclLayerStack)
        r = model.generate("hello", max_new_tokens=10)
        ids, _ = model.tokenizer.prompt_ids("hello", "", 0)
        assert r.token_ids == als.expected_tokens(folder, ids[-1], 10)
        assert r.text == " hey!" and r.stop_reason == "eos"
        # a second request re-prefills and reuses the cache rows (state from the first one must not leak)
        r2 = model.generate("hi", max_new_tokens=3)
        assert r2.token_ids == als.expected_tokens(folder, model.tokenizer.prompt_ids("hi", "", 0)[0][-1], 3)
    finally:
        model.release()
        model.release()


def test_long_prompt_uses_several_prefill_chunks(stub, folder):
    """A prompt of 2+ chunks goes through groups 1 and 2 (capacities 128, 256); a longer one is refused clearly."""
    model = LlmModel(folder.folder)
    try:
        stack = model.stack
        n = 300
        rows = model.embeddings([5] * n)
        hidden = stack.forward(rows, 0)
        assert stack.position == n
        tok = int(np.argmax(stack.logits(hidden)))
        assert tok == folder.sequence[0]  # tag 5 is not in the sequence: first token, not '#'
        for p in range(n, n + 4):  # decode on top of a multi-chunk prefill
            tok = int(np.argmax(stack.logits(stack.forward(model.embeddings([tok]), p))))
        assert tok == folder.eot or tok in folder.sequence
        stack.reset()
        with pytest.raises(ContextFullError):
            stack.forward(model.embeddings([5] * 385), 0)
        # a chunk off the 128 grid (a second forward of several rows) sends its own mask and stays correct
        stack.reset()
        stack.forward(model.embeddings([5] * 5), 0)
        tok = int(np.argmax(stack.logits(stack.forward(model.embeddings([6, 7, 5]), 5))))
        assert tok == folder.sequence[0] and stack.position == 8
        tok = int(np.argmax(stack.logits(stack.forward(model.embeddings([9]), 8))))
        assert tok == folder.sequence[0]
    finally:
        model.release()


def test_wrong_state_on_the_card_is_detected(stub, folder):
    """The stub is not lenient: a corrupted cache row makes the next token '#' (the state checks work)."""
    model = LlmModel(folder.folder)
    try:
        stack = model.stack
        stack.forward(model.embeddings([5, 6, 7]), 0)
        stack._k[1].write(np.zeros(8, np.uint16), byte_offset=8 * 2)  # layer 1, row 1
        tok = int(np.argmax(stack.logits(stack.forward(model.embeddings([9]), 3))))
        assert tok == folder.bad
        stack.reset()
        stack._pmasks[0].write(np.zeros(1, np.uint16), byte_offset=2 * 1)  # row 0 would see cache row 1 (empty)
        assert int(np.argmax(stack.logits(stack.forward(model.embeddings([5, 6, 7]), 0)))) == folder.bad
    finally:
        model.release()


def test_bytes_per_generated_token(stub, folder):
    """Per decode token: one bf16 embedding row in, the bf16 logits out, nothing else over PCIe."""
    model = LlmModel(folder.folder)
    try:
        stack = model.stack
        cfg = model.config
        steps = 20
        for prompt in ([5, 6, 7, 8, 10, 11, 12], [5, 6, 7]):  # the second conversation is shorter
            stack.reset()
            stack.logits(stack.forward(model.embeddings(prompt), 0))
            stub.reset()
            for p in range(len(prompt), len(prompt) + steps):
                tok = int(np.argmax(stack.logits(stack.forward(model.embeddings([9]), p))))
                assert tok != folder.bad
            c = stub.counters()
            assert c["h2d_bytes"] == steps * cfg.hidden_size * 2
            assert c["d2h_bytes"] == steps * cfg.vocab_size * 2
            assert c["h2d_calls"] == steps and c["d2h_calls"] == steps
            assert c["executes"] == steps * (cfg.num_layers + 1)
        # re-masking the first conversation's slots for the shorter one happened on the card, once
        assert c["d2d_calls"] == 1 and c["d2d_bytes"] == (7 + steps - 1 - 3) * 2  # slots 3 … 25
        # a prefill chunk sends its 128 padded rows only (the masks of aligned starts are on the card)
        stack.reset()
        stub.reset()
        stack.logits(stack.forward(model.embeddings([5] * 130), 0))
        c = stub.counters()
        assert c["h2d_bytes"] == 2 * 128 * cfg.hidden_size * 2 and c["d2h_bytes"] == cfg.vocab_size * 2
    finally:
        model.release()


def test_top_k_post_model_sends_k_values(stub, tmp_path):
    f = als.axera_llm_stub(str(tmp_path / "topk"), layers=2, top_k=4)
    model = LlmModel(f.folder)
    try:
        assert model.stack.top_k == 4
        r = model.generate("hello", max_new_tokens=10)
        assert r.text == " hey!"
        stack = model.stack
        stub.reset()
        stack.logits(stack.forward(model.embeddings([9]), stack.position))
        assert stub.counters()["d2h_bytes"] == 4 * 2 + 4 * 4
    finally:
        model.release()


def test_missing_layer_and_wrong_dims_are_clear_errors(stub, tmp_path):
    f = als.axera_llm_stub(str(tmp_path / "m"), layers=2)
    (tmp_path / "m" / "qwen2_p128_l1_together.axmodel").unlink()
    with pytest.raises(ModelFilesError, match=r"\[1\]"):
        LlmModel(f.folder)
    g = als.axera_llm_stub(str(tmp_path / "d"), layers=2, hidden=16)
    cfg = g.config
    cfg.head_dim = 4  # kv_dim 4 in config.json, 8 in the models
    cfg.save(g.folder)
    with pytest.raises(ModelFilesError, match="kv_dim 8"):
        LlmModel(g.folder)
    assert stub.counters()["outstanding_allocs"] == 0 and stub.counters()["loaded_models"] == 0


def test_configure_cleanup_cycles_leave_nothing_on_the_card(stub, folder):
    for _ in range(50):
        model = LlmModel(folder.folder)
        model.release()
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0 and c["outstanding_ios"] == 0
    assert c["outstanding_ioinfos"] == 0


def test_cancel_mid_generation_then_release_frees_once(stub, folder):
    model = LlmModel(folder.folder)
    seen = []
    r = model.generate("hello", max_new_tokens=10, on_delta=lambda d, n: seen.append(n),
                       should_stop=lambda: len(seen) >= 2)
    assert r.stop_reason == "cancelled"
    model.release()
    model.release()
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0
    assert stub.calls("axclrtFree") == stub.calls("axclrtMalloc")


def test_bf16_helpers_round_trip():
    x = np.array([1.0, -65536.0, 3.140625, 0.0], np.float32)
    assert from_bf16(to_bf16(x)).tolist() == x.tolist()
    assert {"llm_layer", "llm_post", "vit"} <= set(sm.OPS)


@pytest.mark.parametrize("on_executor", [False, True])
def test_image_through_a_vit_axmodel_on_the_card(stub, tmp_path, on_executor):
    """AXERA's layout with a ViT axmodel (u8 NHWC input): its rows replace the image tokens' embeddings, and the
    answer is unchanged (the stub layers pass them through with every cache check passing). On the executor the
    image is one job there."""
    from axcl_ros.runtime.executors import get_executor

    f = als.axera_llm_stub(str(tmp_path / "vlm"), layers=2, vision_tokens=16)
    executor = get_executor("axcl:0") if on_executor else None
    model = LlmModel(f.folder, device="0", executor=executor)
    try:
        assert model.has_vision and model.vision.path.endswith("qwen2_vit.axmodel")
        rgb = np.full((30, 40, 3), 77, np.uint8)
        rows, ms = model.vision.encode(rgb)
        assert rows.shape == (16, 16) and ms > 0
        assert (rows[:, 0] == als.expected_vit_tag(model.vision.preprocess(rgb))).all() and rows[3, 5] == 3
        r = model.generate("what is this?", image=rgb, max_new_tokens=10)
        assert r.text == " hey!" and r.image_encode_ms > 0 and r.prompt_tokens > 16
        if on_executor:
            assert executor.stats()["models"]["qwen2_vit"]["count"] == 2
    finally:
        model.release()
    assert stub.counters()["outstanding_allocs"] == 0


def test_generation_through_the_shared_executor(stub, folder):
    """With an executor the stack is built on its worker thread and every prefill chunk, decode step and logits
    call is one job there; a detector-like model on the same executor runs between the tokens."""
    from axcl_ros.runtime.executors import get_executor

    executor = get_executor("axcl:0")
    other = executor.load(sm.affine_stub(str(folder.folder) + "_affine.axmodel", (1, 4)), backend="axcl")
    model = LlmModel(folder.folder, executor=executor)
    try:
        seen = []

        def between(delta, n):  # a frame of another model, queued while the answer is generated
            seen.append(executor.submit(other, {"x": np.full((1, 4), n, np.float32)}))

        r = model.generate("hello", max_new_tokens=10, on_delta=between)
        assert r.text == " hey!" and r.stop_reason == "eos"
        assert model.stack.jobs == 1 + 1 + 5  # reset, prefill chunk + first logits, 5 x (decode step + logits)
        assert [f.result(10).outputs["y"][0, 0] for f in seen] == [2.0 * n + 1 for n in range(1, 6)]
        stats = executor.stats()["models"]
        assert stats[os.path.basename(folder.folder)]["count"] == 7
        long = model.generate("x" * 200, max_new_tokens=2)  # 2 prefill chunks: 2 jobs, the second with the logits
        assert long.token_ids and model.stack.jobs == 7 + 1 + 2 + 1
    finally:
        model.release()
        other.release()
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0


def test_warm_up_on_the_card_through_the_executor(stub, folder):
    """The describe node's configure-time warm-up on the card: a full prefill chunk through the prefill group, a
    decode step through group 0, the cache reset; the next answer is unchanged and nothing stays allocated."""
    from axcl_ros.runtime.executors import get_executor

    model = LlmModel(folder.folder, executor=get_executor("axcl:0"))
    try:
        assert model.warm_up() > 0 and model.stack.position == 0
        assert model.stack.jobs == 1 + 1 + 1 + 1  # reset, chunk + logits, decode step + logits, reset
        r = model.generate("hello", max_new_tokens=10)
        assert r.text == " hey!" and r.stop_reason == "eos"
    finally:
        model.release()
    c = stub.counters()
    assert c["outstanding_allocs"] == 0 and c["loaded_models"] == 0


def test_prompt_beyond_the_prefill_groups_is_a_clear_error(stub, tmp_path):
    """kv_len 384 but prefill capacity 128: a 300-token prompt fits the context, not the prefill groups."""
    from axcl_ros.runtime.executors import get_executor

    f = als.axera_llm_stub(str(tmp_path / "short"), layers=2, capacities=(128,))
    model = LlmModel(f.folder, executor=get_executor("axcl:0"))
    try:
        with pytest.raises(ContextFullError, match="largest cache capacity 128"):
            model.generate("x" * 300, max_new_tokens=2)
        assert model.generate("hello", max_new_tokens=10).text == " hey!"  # still serving
    finally:
        model.release()
