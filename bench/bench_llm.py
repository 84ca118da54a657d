"""LLM host loop on the CPU: SmolLM2-135M-Instruct greedy decode tokens/s and time to first token (TTFT), against a
plain numpy implementation of the same model (same dequantized weights) in the same run, quiet and with one core
kept busy; and against Hugging Face transformers when a Python with it is given.

Ours: ``axcl_ros convert-llm --keep-quantization`` ONNX (one file per layer, AXERA's per-layer contract; the GGUF's
Q4_1 blocks kept as ``MatMulNBits`` codes, float32 arithmetic; ``AXCL_BENCH_LLM_WEIGHTS=float32`` for the float32
conversion) run by the host loop on onnxruntime with 2 intra-op threads, KV cache on the host. Baseline:
:class:`axcl_ros_testing.llm_models.NumpyLlama` (the same decoder in numpy float32 with its own KV cache; BLAS
limited to 2 threads). Both generate the same greedy tokens for the same ChatML prompts (checked), TTFT = prompt
embedding + prefill + first token; decode rate = the tokens after the first divided by their time. Prompts
alternate ours / numpy. "busy" runs the same with a second process spinning on one core.

transformers (optional, not a project dependency): set ``AXCL_BENCH_TRANSFORMERS_PYTHON`` to a Python that has
torch + transformers + gguf (e.g. the golden-reference venv of ``scripts/golden/smollm2_golden.py``); it loads the
same GGUF (float32, 2 torch threads) and runs ``generate`` greedily on the same prompt ids.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy is imported
    os.environ.setdefault(_var, "2")

import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402
from bench_common import Row, ratio  # noqa: E402

TOPIC = "llm"
THREADS = 2
PROMPTS = ["Write a short poem about robots.", "Name the colors of the rainbow.",
           "Describe a red cup on a kitchen table."]

_TRANSFORMERS = r"""
import json, sys, time, torch
from transformers import AutoModelForCausalLM
folder, name, prompts, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
out = []
with torch.no_grad():
    for ids in prompts:
        x = torch.tensor([ids])
        t0 = time.perf_counter()
        model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=1, pad_token_id=2)
        ttft = time.perf_counter() - t0
        t0 = time.perf_counter()
        g = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n, pad_token_id=2)
        total = time.perf_counter() - t0
        new = g[0, len(ids):].tolist()
        out.append({"ttft_ms": ttft * 1e3, "tok_s": (len(new) - 1) / max(1e-9, total - ttft), "ids": new})
print(json.dumps(out))
"""


def _ours(model, ids: List[int], n: int) -> Dict[str, object]:
    stack, emb = model.stack, model.embeddings
    t0 = time.perf_counter()
    stack.reset()
    token = int(np.argmax(stack.logits(stack.forward(emb(ids), 0))))
    t1 = time.perf_counter()
    out = [token]
    while len(out) < n:
        token = int(np.argmax(stack.logits(stack.forward(emb([token]), stack.position))))
        out.append(token)
    t2 = time.perf_counter()
    return {"ttft_ms": (t1 - t0) * 1e3, "tok_s": (n - 1) / (t2 - t1), "ids": out}


def _numpy(ref, table: np.ndarray, ids: List[int], n: int) -> Dict[str, object]:
    t0 = time.perf_counter()
    ref.reset()
    token = int(np.argmax(ref.forward(table[ids])))
    t1 = time.perf_counter()
    out = [token]
    while len(out) < n:
        token = int(np.argmax(ref.forward(table[[token]])))
        out.append(token)
    t2 = time.perf_counter()
    return {"ttft_ms": (t1 - t0) * 1e3, "tok_s": (n - 1) / (t2 - t1), "ids": out}


def _spin_one_core() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _pass(model, ref, table, prompt_ids, n) -> Dict[str, List[Dict[str, object]]]:
    res: Dict[str, List[Dict[str, object]]] = {"ours": [], "numpy": []}
    for ids in prompt_ids:  # alternate, so that a slow phase of the machine hits both
        res["ours"].append(_ours(model, ids, n))
        res["numpy"].append(_numpy(ref, table, ids, n))
    return res


def _rows(label: str, res, note: str) -> List[Row]:
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("ttft_ms", "tok_s")} for k, v in res.items()}
    same = all(a["ids"] == b["ids"] for a, b in zip(res["ours"], res["numpy"]))
    agree = "same tokens as numpy" if same else "TOKENS DIFFER from numpy"
    return [
        Row(TOPIC, f"SmolLM2-135M decode ({label})", med["ours"]["tok_s"], "tokens/s", med["numpy"]["tok_s"],
            "plain numpy", ratio(med["ours"]["tok_s"], med["numpy"]["tok_s"]), f"{note}; {agree}"),
        Row(TOPIC, f"SmolLM2-135M time to first token ({label})", med["ours"]["ttft_ms"], "ms",
            med["numpy"]["ttft_ms"], "plain numpy", ratio(med["ours"]["ttft_ms"], med["numpy"]["ttft_ms"]), note),
    ]


def run(quick: bool = False) -> List[Row]:
    """Benchmark rows (see the module docstring)."""
    from axcl_ros import assets
    from axcl_ros.models.llm.checkpoint import read_gguf
    from axcl_ros.models.llm.export_onnx import cached_conversion
    from axcl_ros.models.llm.generate import LlmModel
    from axcl_ros_testing.llm_models import NumpyLlama

    try:
        gguf_path = str(assets.smollm2_135m_gguf())
    except assets.AssetNotFoundError as exc:
        return [Row(TOPIC, "SmolLM2-135M", None, note=f"skipped: {exc}")]
    keep_quant = os.environ.get("AXCL_BENCH_LLM_WEIGHTS", "gguf-blocks") == "gguf-blocks"
    t0 = time.perf_counter()
    folder = cached_conversion(gguf_path, keep_quant=keep_quant)
    convert_s = time.perf_counter() - t0
    model = LlmModel(folder, threads=THREADS)
    ref = NumpyLlama(read_gguf(gguf_path))
    table = ref.ck.weight("model.embed_tokens.weight")
    n = 12 if quick else 32
    prompts = PROMPTS[:2] if quick else PROMPTS
    prompt_ids = [model.tokenizer.prompt_ids(p)[0] for p in prompts]
    _ours(model, prompt_ids[0], 2)  # warm-up
    _numpy(ref, table, prompt_ids[0], 2)
    note = (f"{len(prompts)} prompts of {min(map(len, prompt_ids))}-{max(map(len, prompt_ids))} tokens, {n} tokens "
            f"each; ONNX weights {model.config.weights}")
    rows = [Row(TOPIC, "convert-llm (or cached folder)", convert_s, "s", note=f"cache: {folder}")]
    rows += _rows("quiet", _pass(model, ref, table, prompt_ids, n), note)
    spinner = _spin_one_core()
    try:
        rows += _rows("one core busy", _pass(model, ref, table, prompt_ids, n), note)
    finally:
        spinner.kill()
        spinner.wait()
    py = os.environ.get("AXCL_BENCH_TRANSFORMERS_PYTHON", "")
    if py:
        ours = [_ours(model, ids, n) for ids in prompt_ids]
        try:
            proc = subprocess.run([py, "-c", _TRANSFORMERS, os.path.dirname(gguf_path), os.path.basename(gguf_path),
                                   json.dumps(prompt_ids), str(n)], capture_output=True, text=True, timeout=900,
                                  check=True)
            theirs = json.loads(proc.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            rows.append(Row(TOPIC, "transformers", None, note=f"failed: {exc}"))
        else:
            med = {k: statistics.median(r[k] for r in ours) for k in ("ttft_ms", "tok_s")}
            tmed = {k: statistics.median(r[k] for r in theirs) for k in ("ttft_ms", "tok_s")}
            # transformers stops at <|im_end|>; ours runs n tokens: compare the tokens both made
            same = all(a["ids"][:len(b["ids"])] == b["ids"] for a, b in zip(ours, theirs))
            rows += [Row(TOPIC, "SmolLM2-135M decode vs transformers (quiet)", med["tok_s"], "tokens/s",
                         tmed["tok_s"], "transformers+torch CPU", ratio(med["tok_s"], tmed["tok_s"]),
                         f"run one after the other; {'same' if same else 'DIFFERENT'} tokens"),
                     Row(TOPIC, "SmolLM2-135M TTFT vs transformers (quiet)", med["ttft_ms"], "ms", tmed["ttft_ms"],
                         "transformers+torch CPU", ratio(med["ttft_ms"], tmed["ttft_ms"]))]
    model.release()
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
