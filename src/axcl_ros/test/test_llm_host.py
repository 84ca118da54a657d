"""The LLM host loop on tiny random llama/qwen2 checkpoints: converter graphs vs a plain numpy transformer, prefill
chunking, sampling, stop strings, cancel, context limits, the image splice and the errors bad inputs get."""

import json
import os
import shutil

import numpy as np
import pytest

from axcl_ros.models.llm.checkpoint import CheckpointError, read_checkpoint
from axcl_ros.models.llm.config import LlmConfig, ModelFilesError, find_model_files
from axcl_ros.models.llm.export_onnx import WEIGHT_FORMATS, convert_checkpoint
from axcl_ros.models.llm.generate import (
    STOP_CANCELLED,
    STOP_CONTEXT,
    STOP_MAX_TOKENS,
    STOP_STRING,
    LlmModel,
    _Streamer,
)
from axcl_ros.models.llm.layers import OnnxLayerStack, causal_mask
from axcl_ros.models.llm.sampling import Sampler, SamplingParams
from axcl_ros.models.llm.tokenizer import PromptError
from axcl_ros_testing.llm_models import NumpyLlama, write_tiny_checkpoint, write_vision_encoder

PROMPT = "the robot sees a red cup on the kitchen table"


@pytest.fixture(scope="module", params=[("llama", True), ("qwen2", False)], ids=["llama-tied", "qwen2-bias-untied"])
def tiny(request, tmp_path_factory):
    arch, tie = request.param
    root = tmp_path_factory.mktemp(arch)
    src = write_tiny_checkpoint(str(root / "hf"), arch, tie=tie, layers=3)
    out = str(root / "onnx")
    convert_checkpoint(src, out, max_context=256, prefill_chunk=16)
    return src, out


def test_layers_match_numpy_reference_along_a_sampled_trajectory(tiny):
    src, out = tiny
    ref = NumpyLlama(read_checkpoint(src))
    model = LlmModel(out)
    try:
        ids, _ = model.tokenizer.prompt_ids(PROMPT)
        assert len(ids) > 2 * model.config.prefill_chunk  # several prefill chunks
        stack, emb = model.stack, model.embeddings
        stack.reset()
        ref.reset()
        ours, theirs = stack.logits(stack.forward(emb(ids), 0)), ref.forward(emb(ids))
        sampler = Sampler(SamplingParams(temperature=1.0, seed=3))
        for _ in range(12):
            np.testing.assert_allclose(ours, theirs, atol=2e-4 * max(1.0, np.abs(theirs).max()))
            token = sampler(theirs)
            ours = stack.logits(stack.forward(emb([token]), stack.position))
            theirs = ref.forward(emb([token]))
    finally:
        model.release()


def test_prefill_chunk_size_does_not_change_the_result(tiny, tmp_path):
    src, out = tiny
    other = tmp_path / "chunk5"
    shutil.copytree(out, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["prefill_chunk"] = 5
    (other / "config.json").write_text(json.dumps(cfg))
    a, b = LlmModel(out), LlmModel(str(other))
    try:
        ra = a.generate(PROMPT, max_new_tokens=8, sampling=SamplingParams(temperature=0.8, seed=1))
        rb = b.generate(PROMPT, max_new_tokens=8, sampling=SamplingParams(temperature=0.8, seed=1))
        assert ra.token_ids == rb.token_ids and len(ra.token_ids) == 8
    finally:
        a.release()
        b.release()


def test_mask_is_causal_after_the_cache():
    m = causal_mask(3, 2)[0]
    assert m.shape == (2, 5)
    assert (m[:, :3] == 0).all() and m[0, 3] == 0 and m[0, 4] < -60000 and m[1, 4] == 0


# ------------------------------------------------------------------------------------------------------- sampling
def test_sampling_greedy_seeded_top_k_top_p():
    logits = np.array([0.1, 3.0, 2.9, -1.0, 0.5], np.float32)
    assert Sampler(SamplingParams())(logits) == 1
    assert Sampler(SamplingParams(temperature=5.0, top_k=1))(logits) == 1
    assert Sampler(SamplingParams(temperature=1.0, top_p=0.05, seed=1))(logits) == 1
    a = [Sampler(SamplingParams(temperature=1.0, seed=7))(logits) for _ in range(1)]
    s1, s2 = Sampler(SamplingParams(temperature=1.0, seed=7)), Sampler(SamplingParams(temperature=1.0, seed=7))
    seq1, seq2 = [s1(logits) for _ in range(50)], [s2(logits) for _ in range(50)]
    assert seq1 == seq2 and a[0] == seq1[0]
    assert set(seq1) > {1}  # temperature 1 does not always pick the argmax
    top2 = Sampler(SamplingParams(temperature=2.0, top_k=2, seed=0))
    assert {top2(logits) for _ in range(200)} == {1, 2}
    counts = np.bincount([Sampler(SamplingParams(temperature=1.0, seed=i))(logits) for i in range(400)], minlength=5)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert np.abs(counts / 400 - p).max() < 0.08


@pytest.mark.parametrize("bad", [dict(temperature=-1.0), dict(temperature=float("nan")), dict(top_k=-1),
                                 dict(top_p=0.0), dict(top_p=1.5)])
def test_sampling_rejects_out_of_range_values(bad):
    with pytest.raises(ValueError):
        Sampler(SamplingParams(**bad))


# -------------------------------------------------------------------------------------------- streaming / stops
class _FakeTok:
    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids):
        return "".join(self.pieces[i] for i in ids)


def test_streamer_holds_back_a_possible_stop_string_and_cuts_at_it():
    pieces = ["Hello", " wor", "ld", " EN", "D", " more"]
    deltas = []
    s = _Streamer(_FakeTok(pieces), ["END"], lambda d, _n: deltas.append(d))
    stopped = [s.push(list(range(n + 1))) for n in range(5)]
    assert stopped == [False, False, False, False, True]
    assert s.text == "Hello world " and "".join(deltas) == "Hello world "
    assert all("E" not in d for d in deltas)


def test_streamer_releases_held_text_when_the_stop_string_never_completes():
    deltas = []
    s = _Streamer(_FakeTok(["a", " EN", "X"]), ["END"], lambda d, _n: deltas.append(d))
    s.push([0])
    s.push([0, 1])
    assert "".join(deltas) == "a "
    s.push([0, 1, 2])
    s.finish()
    assert "".join(deltas) == "a ENX" == s.text


def test_generation_stops_on_a_stop_string_cancel_and_token_limit(tiny):
    _, out = tiny
    model = LlmModel(out)
    try:
        free = model.generate(PROMPT, max_new_tokens=12, sampling=SamplingParams(temperature=1.0, seed=5))
        assert free.stop_reason == STOP_MAX_TOKENS and len(free.token_ids) == 12
        pieces = [model.tokenizer.decode([t]) for t in free.token_ids]
        at = next(i for i in range(3, 12) if pieces[i].isascii() and pieces[i].isprintable() and pieces[i].strip())
        stopped = model.generate(PROMPT, max_new_tokens=12, sampling=SamplingParams(temperature=1.0, seed=5),
                                 stop=[pieces[at]])
        assert stopped.stop_reason == STOP_STRING and pieces[at] not in stopped.text
        assert stopped.token_ids == free.token_ids[:len(stopped.token_ids)] and len(stopped.token_ids) <= at + 1
        asked = []

        def cancel_at_fourth_check():  # checked before the prefill, then before every decode step
            asked.append(1)
            return len(asked) >= 4

        cancelled = model.generate(PROMPT, max_new_tokens=50, should_stop=cancel_at_fourth_check)
        assert cancelled.stop_reason == STOP_CANCELLED and len(cancelled.token_ids) == 3
    finally:
        model.release()


def test_context_full_ends_generation_and_a_too_long_prompt_is_refused(tiny, tmp_path):
    _, out = tiny
    small = tmp_path / "small"
    shutil.copytree(out, small)
    cfg = json.loads((small / "config.json").read_text())
    cfg["max_context"] = 70
    (small / "config.json").write_text(json.dumps(cfg))
    model = LlmModel(str(small))
    try:
        n_prompt = len(model.tokenizer.prompt_ids("hi")[0])
        r = model.generate("hi", max_new_tokens=500, sampling=SamplingParams(temperature=1.0, seed=0))
        assert r.stop_reason == STOP_CONTEXT and n_prompt + len(r.token_ids) == 70 + 1
        with pytest.raises(PromptError, match="context holds 70"):
            model.generate("word " * 80)
    finally:
        model.release()


# ------------------------------------------------------------------------------------------------------- errors
def test_bad_requests_get_clear_errors(tiny):
    _, out = tiny
    model = LlmModel(out)
    try:
        for empty in ("", "   \n"):
            with pytest.raises(PromptError, match="empty"):
                model.generate(empty)
        with pytest.raises(PromptError, match="no vision encoder"):
            model.generate("what is this?", image=np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="max_new_tokens"):
            model.generate("hi", max_new_tokens=0)
        with pytest.raises(ValueError, match="top_p"):
            model.generate("hi", sampling=SamplingParams(top_p=2.0))
    finally:
        model.release()


def test_incomplete_model_sets_name_what_is_missing(tiny, tmp_path):
    _, out = tiny
    with pytest.raises(ModelFilesError, match="does not exist"):
        find_model_files(str(tmp_path / "nowhere"))
    with pytest.raises(ModelFilesError, match="model_dir is empty"):
        find_model_files("")
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    os.remove(broken / "llama_l1.onnx" if (broken / "llama_l1.onnx").exists() else broken / "qwen2_l1.onnx")
    with pytest.raises(ModelFilesError, match=r"layer file\(s\) \[1\] are missing"):
        LlmModel(str(broken))
    for name, pattern in (("tokenizer.json", "no tokenizer.json"), ("model.embed_tokens.weight.npy", "embedding"),
                          ("config.json", "config.json")):
        other = tmp_path / f"no-{name}"
        shutil.copytree(out, other)
        os.remove(other / name)
        with pytest.raises(ModelFilesError, match=pattern):
            find_model_files(str(other))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(out, corrupt)
    layer0 = next(p for p in corrupt.iterdir() if p.name.endswith("_l0.onnx"))
    layer0.write_bytes(layer0.read_bytes()[:1000])
    with pytest.raises(Exception, match="cannot load"):
        LlmModel(str(corrupt))


def test_converter_rejects_unsupported_or_broken_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        convert_checkpoint(str(tmp_path / "missing.gguf"), str(tmp_path / "out"))
    src = write_tiny_checkpoint(str(tmp_path / "hf"), "llama")
    cfg = json.loads(open(os.path.join(src, "config.json")).read())
    cfg["model_type"] = "gpt_neox"
    open(os.path.join(src, "config.json"), "w").write(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="gpt_neox"):
        convert_checkpoint(src, str(tmp_path / "out"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(CheckpointError, match="not a readable GGUF"):
        convert_checkpoint(str(bad), str(tmp_path / "out2"))
    other = tmp_path / "x.bin"
    other.write_bytes(b"0")
    with pytest.raises(CheckpointError, match="neither"):
        convert_checkpoint(str(other), str(tmp_path / "out3"))


def test_config_round_trip_and_validation(tmp_path):
    cfg = LlmConfig(num_layers=2, hidden_size=8, num_heads=2, num_kv_heads=1, head_dim=4, vocab_size=10)
    LlmConfig.load(cfg.save(str(tmp_path)))
    cfg.num_kv_heads = 3
    with pytest.raises(ModelFilesError, match="multiple"):
        LlmConfig.load(cfg.save(str(tmp_path)))


# -------------------------------------------------------------------------------------------------------- vision
@pytest.fixture
def vlm(tiny, tmp_path):
    src, out = tiny
    folder = tmp_path / "vlm"
    shutil.copytree(out, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(image_token="<image>", image_prefix="<img>", image_suffix="</img>\n", n_image_tokens=16)
    (folder / "config.json").write_text(json.dumps(cfg))
    write_vision_encoder(str(folder / "vision.onnx"), hidden=cfg["hidden_size"], n_tokens=16, size=32)
    return src, str(folder)


def test_image_rows_replace_the_image_tokens(vlm):
    src, folder = vlm
    model = LlmModel(folder)
    try:
        assert model.has_vision and model.vision.n_tokens == 16
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
        result = model.generate("what is this?", image=image, max_new_tokens=4)
        assert result.image_encode_ms > 0 and len(result.token_ids) == 4
        ids, text = model.tokenizer.prompt_ids("what is this?", n_image_tokens=16)
        assert text.count("<image>") == 16 and "<img><image>" in text
        rows, _ = model.vision.encode(image)
        embeds = model.embeddings(ids)
        embeds[np.asarray(ids) == model.image_token_id] = rows
        ref = NumpyLlama(read_checkpoint(src))
        ref.reset()
        first = int(np.argmax(ref.forward(embeds)))
        assert result.token_ids[0] == first
        other = model.generate("what is this?", image=255 - image, max_new_tokens=1)
        plain = model.generate("what is this?", image=image, max_new_tokens=1)
        assert plain.token_ids[0] == first
        assert other.prompt_tokens == plain.prompt_tokens
    finally:
        model.release()


def test_warm_up_runs_every_shape_once_and_changes_no_answer(vlm):
    """``warm_up`` (run at configure by the describe node) runs a full prefill chunk, a decode step and a blank
    image, leaves an empty cache, and the answers after it are the answers without it."""
    _, folder = vlm
    image = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    cold = LlmModel(folder)
    try:
        expected = [cold.generate(PROMPT, max_new_tokens=6).token_ids,
                    cold.generate("what is this?", image=image, max_new_tokens=4).token_ids]
    finally:
        cold.release()
    model = LlmModel(folder)
    seen = []
    forward = model.stack.forward
    model.stack.forward = lambda embeds, start: seen.append((len(embeds), start)) or forward(embeds, start)
    try:
        assert model.warm_up() > 0
        chunk = model.config.prefill_chunk
        assert seen == [(chunk, 0), (1, chunk)] and model.stack.position == 0
        assert [model.generate(PROMPT, max_new_tokens=6).token_ids,
                model.generate("what is this?", image=image, max_new_tokens=4).token_ids] == expected
    finally:
        model.release()


def test_image_of_a_wrong_kind_is_refused(vlm):
    _, folder = vlm
    model = LlmModel(folder)
    try:
        for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)):
            with pytest.raises(ValueError, match="RGB uint8"):
                model.generate("what?", image=bad)
    finally:
        model.release()


def test_vision_encoder_of_the_wrong_width_is_refused(tiny, tmp_path):
    _, out = tiny
    folder = tmp_path / "wrong"
    shutil.copytree(out, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(image_token="<image>", n_image_tokens=16)
    (folder / "config.json").write_text(json.dumps(cfg))
    write_vision_encoder(str(folder / "vision.onnx"), hidden=cfg["hidden_size"] + 1, n_tokens=16, size=32)
    with pytest.raises(ModelFilesError, match="hidden size"):
        LlmModel(str(folder))


# ----------------------------------------------------------------------------------------------------------- CLI
def test_convert_llm_command(tmp_path, capsys):
    from axcl_ros.cli import main

    src = write_tiny_checkpoint(str(tmp_path / "hf"), "qwen2")
    assert main(["convert-llm", src, str(tmp_path / "out"), "--max-context", "64"]) == 0
    out = capsys.readouterr().out
    assert "qwen2, 2 layers" in out and "context 64" in out
    files = find_model_files(str(tmp_path / "out"))
    assert files.config.max_context == 64 and len(files.layers) == 2
    assert main(["convert-llm", str(tmp_path / "missing.gguf"), str(tmp_path / "o2")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_convert_llm_weights_option(tmp_path, capsys):
    pytest.importorskip("gguf")
    import argparse

    from axcl_ros.cli import main
    from axcl_ros.models.llm import convert_cli
    from axcl_ros_testing.llm_models import write_tiny_gguf

    parser = argparse.ArgumentParser()
    convert_cli.add_parser(parser.add_subparsers())
    for weights in WEIGHT_FORMATS:  # the command offers every format the converter has
        assert parser.parse_args(["convert-llm", "src", "dst", "--weights", weights]).weights == weights
    hf = write_tiny_checkpoint(str(tmp_path / "hf"), "llama", hidden=64, heads=4, kv_heads=2, intermediate=128)
    path = write_tiny_gguf(str(tmp_path / "tiny.gguf"), hf, "Q4_0")
    for args, weights in ((["--weights", "gguf-blocks-int8"], "gguf-blocks-int8"),
                          (["--keep-quantization"], "gguf-blocks"), ([], "float32")):
        out = str(tmp_path / weights)
        assert main(["convert-llm", path, out, "--max-context", "64", *args]) == 0
        assert f"{weights} weights" in capsys.readouterr().out
        assert find_model_files(out).config.weights == weights
    with pytest.raises(SystemExit):
        main(["convert-llm", path, str(tmp_path / "x"), "--weights", "int3"])


def test_demo_describe_step_describes_an_image_with_given_weights(vlm, capsys):
    from axcl_ros_demo.describe import describe_step

    describe_step(vlm[1])
    out = capsys.readouterr().out
    assert "[demo] describe: astronaut.png -> " in out and "tokens/s" in out
    describe_step("/nonexistent/vlm")
    assert "skipped: ModelFilesError" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------- GGUF
@pytest.mark.parametrize("quant", ["F32", "Q8_0", "Q4_0", "Q4_1"])
def test_gguf_checkpoints_match_numpy_in_every_weight_format(tmp_path, quant):
    pytest.importorskip("gguf")
    from axcl_ros.models.llm.checkpoint import read_gguf
    from axcl_ros_testing.llm_models import write_tiny_gguf

    hf = write_tiny_checkpoint(str(tmp_path / "hf"), "llama", hidden=64, heads=4, kv_heads=2, intermediate=128,
                               tie=False)
    path = write_tiny_gguf(str(tmp_path / "tiny.gguf"), hf, quant)
    ck = read_gguf(path, keep_quant=True)
    if quant == "F32":  # unquantized: the permutation is undone exactly
        ref_ck = read_checkpoint(hf)
        for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"):
            np.testing.assert_array_equal(ck.weight(name), ref_ck.weight(name))
        assert not ck.quant
    else:
        assert ck.quant and all(q.bits == (8 if quant == "Q8_0" else 4) for q in ck.quant.values())
    ref = NumpyLlama(ck)  # the dequantized values, computed in numpy
    for weights in WEIGHT_FORMATS:
        out = str(tmp_path / f"onnx-{weights}")
        cfg = convert_checkpoint(path, out, max_context=128, prefill_chunk=8, weights=weights)
        assert cfg.weights == ("float32" if quant == "F32" else weights)
        model = LlmModel(out)
        try:
            ids, _ = model.tokenizer.prompt_ids(PROMPT)
            model.stack.reset()
            ours = model.stack.logits(model.stack.forward(model.embeddings(ids), 0))
            ref.reset()
            theirs = ref.forward(ck.weight("model.embed_tokens.weight")[ids])
            # int8 arithmetic quantizes the activations (32-value blocks, ~0.5 % of a matmul's range per layer):
            # close, not exact; its agreement on real weights is measured in test_llm_golden.py
            rel = 1e-1 if weights == "gguf-blocks-int8" and quant != "F32" else 1e-3
            np.testing.assert_allclose(ours, theirs, atol=rel * max(1.0, np.abs(theirs).max()))
        finally:
            model.release()


def test_a_tied_q8_0_head_bounds_its_error_and_gives_the_float32_argmax(tmp_path):
    """``gguf-blocks`` runs a tied Q8_0 lm head with int8 arithmetic; the post model bounds every logit's error and
    the host recomputes the logits near the top in float32, so the greedy choice is the float32 head's."""
    pytest.importorskip("gguf")
    import onnxruntime as ort

    from axcl_ros.models.llm.checkpoint import read_gguf
    from axcl_ros.models.llm.layers import BOUNDED_POST_OUTPUTS
    from axcl_ros_testing.llm_models import write_tiny_gguf

    hf = write_tiny_checkpoint(str(tmp_path / "hf"), "llama", hidden=64, heads=4, kv_heads=2, intermediate=128,
                               tie=True)
    path = write_tiny_gguf(str(tmp_path / "tiny.gguf"), hf, "Q8_0")
    ck = read_gguf(path, keep_quant=True)
    out = str(tmp_path / "onnx")
    convert_checkpoint(path, out, max_context=128, prefill_chunk=8, weights="gguf-blocks")
    files = find_model_files(out)
    post = ort.InferenceSession(files.post, providers=["CPUExecutionProvider"])
    assert [o.name for o in post.get_outputs()] == list(BOUNDED_POST_OUTPUTS)
    table = ck.weight("model.embed_tokens.weight")
    np.testing.assert_array_equal(np.load(files.embeddings), table)
    ref = NumpyLlama(ck)
    model = LlmModel(out)
    try:
        rng = np.random.default_rng(1)
        for _ in range(20):  # the bound holds for hidden states of any scale
            x = (rng.standard_normal((1, 1, ck.hidden_size)) * rng.uniform(0.1, 30)).astype(np.float32)
            approx, normed, bound = post.run(None, {"input": x})
            err = np.abs(approx.reshape(-1) - table @ normed.reshape(-1)).max()
            assert 0 < err <= bound[0], (err, bound)
        ids, _ = model.tokenizer.prompt_ids(PROMPT)
        model.stack.reset()
        ref.reset()
        ours = model.stack.logits(model.stack.forward(model.embeddings(ids), 0))
        theirs = ref.forward(table[ids])
        for token in rng.integers(0, ck.vocab_size, 6):
            best = int(np.argmax(theirs))
            assert int(np.argmax(ours)) == best
            np.testing.assert_allclose(ours[best], theirs[best], rtol=1e-4, atol=1e-4)  # recomputed, not int8
            ours = model.stack.logits(model.stack.forward(model.embeddings([int(token)]), model.stack.position))
            theirs = ref.forward(table[[int(token)]])
    finally:
        model.release()
    np.save(files.embeddings, table.astype(np.float64))  # the host rows of the head must be the float32 table
    with pytest.raises(ModelFilesError, match="tied lm head must be float32"):
        OnnxLayerStack(find_model_files(out))
