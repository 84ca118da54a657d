"""Card path (AXCL stub): bytes over PCIe per generated token of an InternVL-1B-shaped model in AXERA's per-layer
layout, ours (AxclLayerStack: KV cache on the card, written in place) against the whole-cache re-send of AXERA's Python
samples (every layer input H2D and every output D2H per token, as pyaxengine's ``run`` does), both decoding the same
tokens in the same run; and with a top-k post model. Counted by the stub's byte counters (no timing claims).

LLM host loop on the CPU: SmolLM2-135M-Instruct greedy decode tokens/s and time to first token (TTFT), against a
plain numpy implementation of the same model in the same run, quiet and with one core kept busy
(``bench_common.busy_core``), 3 repeats alternating quiet / busy, load average recorded; and against Hugging Face
transformers when a Python with it is given.

Ours: ``axcl_ros convert-llm --weights FORMAT`` ONNX (one file per layer, AXERA's per-layer contract) run by the host
loop on onnxruntime, KV cache on the host, for each format of ``AXCL_BENCH_LLM_WEIGHTS`` (default: all three, the
first is the headline): ``gguf-blocks-int8`` (the GGUF's Q4_1 blocks and Q8_0 head kept, int8 arithmetic: a quantized
ONNX against float32 numpy, said so in every row), ``gguf-blocks`` (the same blocks, float32 arithmetic on their
exact values; the tied Q8_0 head in int8 with the logits near the top recomputed in float32, so greedy choices are
exact) and ``float32`` (float32 against float32). Each format in two onnxruntime thread budgets
(``AXCL_BENCH_LLM_CONFIGS``, e.g. ``2s,1``: ``N`` threads, ``s`` = spinning): 2 intra-op threads that busy-wait
between the operators of a step (the layers are chained into one session, so one pool spins for the whole step and
sleeps after it; the describe node's ``cpu_spinning: true``), and 1 thread (a decode-step layer is ~0.1-0.3 ms, and
waking a second, non-spinning worker for each parallel operator costs more than it gains). Baseline:
:class:`axcl_ros_testing.llm_models.NumpyLlama` (the same decoder in numpy float32 on the
dequantized GGUF weights, matmuls through OpenBLAS with 2 threads, its own KV cache). Same ChatML prompts; each row
says in how many generations both produced the same greedy tokens. TTFT = prompt embedding + prefill + first token;
decode rate = the tokens after the first divided by their time. Prompts alternate ours / numpy, each after a rest of
``PAUSE_S`` (so that neither starts while the other's worker threads still spin).

Also: one decode step's ``MatMulNBits`` products alone at SmolLM2's shapes, float32 against int8 arithmetic (the
kernel that bounds the exact format, :func:`kernel_rows`), and the first request's time to first token after loading,
with and without ``LlmModel.warm_up`` (what the describe node runs at configure).

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
from bench_common import Row, busy_core, ratio  # noqa: E402

TOPIC = "llm"
#: onnxruntime thread budgets of ours (``AXCL_BENCH_LLM_CONFIGS``): "2s" = 2 intra-op threads, spinning; "1" = one
#: thread (see the module docstring)
CONFIGS = ("2s", "1")
#: seconds of rest before each timed generation: OpenBLAS's worker threads keep spinning for ~0.1 s after numpy's last
#: matmul (OpenBLAS's THREAD_TIMEOUT); started at once, ours ran its prefill against them on a 2-core machine (time to
#: first token ~75 ms instead of ~40, measured)
PAUSE_S = 0.3
REPEATS = 3
#: weight formats measured (``AXCL_BENCH_LLM_WEIGHTS``, comma-separated); the first is the headline
WEIGHTS = ("gguf-blocks-int8", "gguf-blocks", "float32")
FORMAT_NOTE = {"gguf-blocks-int8": "Q4_1 blocks + Q8_0 head kept, int8 arithmetic: quantized ONNX vs float32 numpy",
               "gguf-blocks": "Q4_1 blocks kept, float32 arithmetic on their exact values; Q8_0 head in int8, the "
                              "logits near the top recomputed in float32",
               "float32": "float32 vs float32"}
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


def _pass(model, ref, table, prompt_ids, n) -> Dict[str, List[Dict[str, object]]]:
    res: Dict[str, List[Dict[str, object]]] = {"ours": [], "numpy": []}
    for ids in prompt_ids:  # alternate, so that a slow phase of the machine hits both
        time.sleep(PAUSE_S)
        res["ours"].append(_ours(model, ids, n))
        time.sleep(PAUSE_S)
        res["numpy"].append(_numpy(ref, table, ids, n))
    return res


def _rows(label: str, passes: List[Dict[str, List[Dict[str, object]]]], note: str) -> List[Row]:
    """Median over every prompt of every pass; the ratio's range is over the passes (repeats)."""
    out = []
    for metric, unit, name in (("tok_s", "tokens/s", "decode"), ("ttft_ms", "ms", "time to first token")):
        ours = statistics.median(r[metric] for p in passes for r in p["ours"])
        base = statistics.median(r[metric] for p in passes for r in p["numpy"])
        per_pass = [statistics.median(r[metric] for r in p["ours"]) / statistics.median(r[metric] for r in p["numpy"])
                    for p in passes]
        extra = f"ratio per repeat {min(per_pass):.2f}-{max(per_pass):.2f}"
        if metric == "tok_s":
            same = sum(a["ids"] == b["ids"] for p in passes for a, b in zip(p["ours"], p["numpy"]))
            total = sum(len(p["ours"]) for p in passes)
            extra += f"; same greedy tokens as numpy in {same}/{total} generations"
        out.append(Row(TOPIC, f"SmolLM2-135M {name} ({label})", ours, unit, base, "plain numpy float32",
                       ratio(ours, base), f"{extra}; {note}", extra={"ratio_per_repeat": per_pass}))
    return out


def _resend_baseline(files, embeds: np.ndarray, n_prompt: int, steps: int, stub) -> Dict[str, object]:
    """AXERA's Python-sample data flow: one session per layer, the KV cache on the host, every input sent and every
    output read per token (group 0 for every position). Returns bytes per decode token and the tokens."""
    from axcl_ros.models.llm.axcl_layers import BF16_MASKED, from_bf16, to_bf16
    from axcl_ros.runtime.axcl_session import AxclSession

    cfg = files.config
    layers = [AxclSession(p) for p in files.layers]
    post = AxclSession(files.post)
    try:
        kv_len = layers[0].inputs[2].shape[1]
        k = np.zeros((len(layers), kv_len, cfg.kv_dim), np.uint16)
        v = np.zeros_like(k)
        tokens: List[int] = []
        x = None
        for p in range(n_prompt + steps):
            if p == n_prompt:
                stub.reset()
            row = embeds[p] if p < n_prompt else embeds[n_prompt + len(tokens) % 3]
            x = to_bf16(row.reshape(1, 1, -1))
            mask = np.full((1, 1, kv_len + 1), BF16_MASKED, np.uint16)
            mask[0, 0, :p] = 0
            mask[0, 0, -1] = 0
            for i, s in enumerate(layers):
                out = s.run({"input": x, "indices": np.array([[p]], np.uint32), "K_cache": k[i][None],
                             "V_cache": v[i][None], "mask": mask})
                k[i, p], v[i, p] = out["K_cache_out"][0, 0], out["V_cache_out"][0, 0]
                x = out["output"].copy()
            if p >= n_prompt - 1:
                tokens.append(int(np.argmax(from_bf16(post.run({"input": x})["output"].reshape(-1)))))
        c = stub.counters()
        return {"h2d": c["h2d_bytes"] / steps, "d2h": c["d2h_bytes"] / steps, "ids": tokens[1:]}
    finally:
        for s in [*layers, post]:
            s.release()


def _card_bytes(files, embeds: np.ndarray, n_prompt: int, steps: int, stub) -> Dict[str, object]:
    from axcl_ros.models.llm.axcl_layers import AxclLayerStack

    stack = AxclLayerStack(files)
    try:
        hidden = stack.forward(embeds[:n_prompt], 0)
        tokens = [int(np.argmax(stack.logits(hidden)))]
        stub.reset()
        t0 = time.perf_counter()
        for j in range(steps):
            hidden = stack.forward(embeds[n_prompt + j % 3][None], stack.position)
            tokens.append(int(np.argmax(stack.logits(hidden))))
        ms = (time.perf_counter() - t0) * 1e3 / steps
        c = stub.counters()
        calls = sum(stub.calls().values()) / steps
        return {"h2d": c["h2d_bytes"] / steps, "d2h": c["d2h_bytes"] / steps, "ids": tokens[:steps],
                "top_k": stack.top_k, "ms": ms, "calls": calls}
    finally:
        stack.release()


def card_rows(quick: bool = False) -> List[Row]:
    """Bytes per generated token on the AXCL stub (see the module docstring)."""
    import tempfile

    from bench_common import stub_library

    lib = stub_library()
    if lib is None:
        return [Row(TOPIC, "card bytes per token", None, note="skipped: the AXCL stub could not be built")]
    from axcl_ros_testing.axcl_stub_build import StubControl
    from axcl_ros_testing.axera_llm_stub import INTERNVL_1B, internvl_1b_shaped_files

    stub = StubControl(lib)
    n_prompt, steps = 20, (4 if quick else 16)
    rng = np.random.default_rng(0)
    h = INTERNVL_1B["hidden"]
    embeds = rng.uniform(-1, 1, (n_prompt + 3, h)).astype(np.float32)
    embeds[:, [1, 2]] = 0  # the stub's layer counter and error flag (axera_llm_stub.embedding_rows)
    embeds[:, 0], embeds[:, 3], embeds[:, 4] = 5, 0, 0  # token tag 5: the stub answers its sequence
    with tempfile.TemporaryDirectory() as tmp:
        files = internvl_1b_shaped_files(tmp)
        ours = _card_bytes(files, embeds, n_prompt, steps, stub)
        theirs = _resend_baseline(files, embeds, n_prompt, steps, stub)
        topk = _card_bytes(internvl_1b_shaped_files(tmp, top_k=10), embeds, n_prompt, steps, stub)
    same = "same tokens" if ours["ids"] == theirs["ids"] else "TOKENS DIFFER"
    mb = 1e6
    total, base = (ours["h2d"] + ours["d2h"]) / mb, (theirs["h2d"] + theirs["d2h"]) / mb
    shape = (f"InternVL-1B-shaped stub: 24 layers, hidden 896 bf16, kv 128 x {INTERNVL_1B['kv_len']} rows, "
             f"vocab 151,674; {steps} decode tokens after a {n_prompt}-token prompt")
    return [
        Row(TOPIC, "card: PCIe bytes per generated token", total, "MB", base,
            "whole-cache re-send (AXERA Python samples)", ratio(total, base),
            f"{shape}; ours H2D {ours['h2d']:.0f} B + D2H {ours['d2h']:.0f} B; baseline H2D {theirs['h2d']:.0f} B + "
            f"D2H {theirs['d2h']:.0f} B; {same}"),
        Row(TOPIC, "card: PCIe bytes per generated token, top-10 post model", (topk["h2d"] + topk["d2h"]) / mb, "MB",
            total, "full bf16 logits", ratio(topk["h2d"] + topk["d2h"], ours["h2d"] + ours["d2h"]),
            f"post model with a top-k output (Pulsar2 --post_topk): 10 bf16 values + 10 int32 ids; "
            f"{'same' if topk['ids'] == ours['ids'] else 'DIFFERENT'} tokens"),
        Row(TOPIC, "card: host time per generated token on the stub (top-10 post)", topk["ms"], "ms", None, "",
            None, f"{topk['calls']:.0f} AXCL calls per token through ctypes (binds, executes, copies); the stub's "
                  f"execute does almost no work, so this is our host side per token, not the card's time; "
                  f"full-logits post: {ours['ms']:.2f} ms"),
    ]


def _config(text: str):
    """``"2s"`` → (2 threads, spinning); ``"1"`` → (1 thread, not spinning)."""
    return int(text.rstrip("s")), text.endswith("s")


def _budget(threads: int, spinning: bool) -> str:
    """A thread budget in words, for row labels and notes (``2 threads, spinning``)."""
    return f"{threads} thread{'s' if threads > 1 else ''}{', spinning' if spinning else ''}"


def _executor_rows(folder: str, model, prompt_ids: List[List[int]], n: int, threads: int,
                   spinning: bool) -> List[Row]:
    """Decode through the shared inference executor (what the describe node does: one job per chunk, step and
    logits call) against calling the stack directly, alternated, quiet."""
    from axcl_ros.models.llm.generate import LlmModel
    from axcl_ros.runtime.executor import InferenceExecutor

    executor = InferenceExecutor("bench-llm")
    on_exec = LlmModel(folder, threads=threads, spinning=spinning, executor=executor)
    try:
        _ours(on_exec, prompt_ids[0], 2)
        direct, jobs = [], []
        for ids in prompt_ids:
            direct.append(_ours(model, ids, n))
            jobs.append(_ours(on_exec, ids, n))
    finally:
        on_exec.release()
        executor.shutdown()
    d, e = (statistics.median(r["tok_s"] for r in x) for x in (direct, jobs))
    same = all(a["ids"] == b["ids"] for a, b in zip(direct, jobs))
    return [Row(TOPIC, "SmolLM2-135M decode through the shared executor (quiet)", e, "tokens/s", d,
                "the same stack called directly", ratio(e, d),
                f"ONNX weights {model.config.weights}; one executor job per generated token (decode step + logits); "
                f"{'same' if same else 'DIFFERENT'} tokens")]


def _first_request_rows(folder: str, weights: str, prompt_ids: List[List[int]], threads: int, spinning: bool,
                        repeats: int) -> List[Row]:
    """Time to first token of the first request after loading, with ``LlmModel.warm_up`` (what the describe node runs
    at configure) and without, on fresh models alternated, quiet."""
    from axcl_ros.models.llm.generate import LlmModel

    ttft: Dict[bool, List[float]] = {False: [], True: []}
    warm_ms: List[float] = []
    for _ in range(repeats):
        for warmed in (False, True):
            model = LlmModel(folder, threads=threads, spinning=spinning)
            try:
                if warmed:
                    warm_ms.append(model.warm_up())
                time.sleep(PAUSE_S)
                ttft[warmed].append(_ours(model, prompt_ids[0], 2)["ttft_ms"])
            finally:
                model.release()
    with_, without = statistics.median(ttft[True]), statistics.median(ttft[False])
    return [Row(TOPIC, "SmolLM2-135M time to first token of the first request after loading (quiet)", with_, "ms",
                without, "without the warm-up", ratio(with_, without),
                f"ONNX weights {weights}, onnxruntime {_budget(threads, spinning)}; warm-up "
                f"(one full prefill chunk + one decode step) took {statistics.median(warm_ms):.0f} ms; per load "
                f"with: {', '.join(f'{v:.0f}' for v in ttft[True])} ms, without: "
                f"{', '.join(f'{v:.0f}' for v in ttft[False])} ms; {len(prompt_ids[0])}-token prompt")]


#: SmolLM2-135M's decode projections (K, N): fused q/k/v, o, fused gate/up, down
KERNEL_SHAPES = ((576, 960), (576, 576), (576, 3072), (1536, 576))


def _kernel_model(k: int, n: int, kind: str, copies: int) -> bytes:
    """``copies`` independent ``x[1,1,k] @ W[k,n]`` of one kind: ``fp32`` / ``int8`` (``MatMulNBits``, 4-bit blocks
    of 32, accuracy level 0 / 4) or ``dense`` (float32 ``MatMul``); random weights."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for c in range(copies):
        if kind == "dense":
            w = rng.standard_normal((k, n)).astype(np.float32)
            inits.append(helper.make_tensor(f"w{c}", TensorProto.FLOAT, w.shape, w.tobytes(), raw=True))
            nodes.append(helper.make_node("MatMul", ["x", f"w{c}"], [f"y{c}"]))
            continue
        codes = rng.integers(0, 256, (n, k // 32, 16), dtype=np.uint8)
        scales = (rng.random(n * k // 32, dtype=np.float32) * 0.01).astype(np.float32)
        inits += [helper.make_tensor(f"q{c}", TensorProto.UINT8, codes.shape, codes.tobytes(), raw=True),
                  helper.make_tensor(f"s{c}", TensorProto.FLOAT, scales.shape, scales.tobytes(), raw=True)]
        nodes.append(helper.make_node("MatMulNBits", ["x", f"q{c}", f"s{c}"], [f"y{c}"], domain="com.microsoft", K=k,
                                      N=n, bits=4, block_size=32, accuracy_level=0 if kind == "fp32" else 4))
    graph = helper.make_graph(nodes, "kernel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, k])],
                              [helper.make_tensor_value_info(f"y{c}", TensorProto.FLOAT, None) for c in range(copies)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft",
                                                                                                       1)])
    model.ir_version = 8
    return model.SerializeToString()


def kernel_rows(quick: bool = False) -> List[Row]:
    """One decode step's matrix products alone (M = 1, SmolLM2's shapes, 2 onnxruntime threads spinning, quiet):
    ``MatMulNBits`` with float32 arithmetic on the exact block values (the exact formats) against int8 arithmetic
    (``gguf-blocks-int8``) and a dense float32 ``MatMul`` (the ``float32`` format), kinds alternated."""
    import onnxruntime as ort

    from axcl_ros.runtime.onnxruntime_backend import session_options

    copies, rounds = 30, 3 if quick else 9
    rows = []
    for k, n in KERNEL_SHAPES:
        x = {"x": np.random.default_rng(1).standard_normal((1, 1, k)).astype(np.float32)}
        sessions = {}
        for kind in ("fp32", "int8", "dense"):
            # spinning workers of the idle sessions sleep while another kind runs
            opts = session_options(2, allow_spinning=True, stop_spinning_after_run=True)
            sessions[kind] = ort.InferenceSession(_kernel_model(k, n, kind, copies), opts,
                                                  providers=["CPUExecutionProvider"])
            sessions[kind].run(None, x)
        us: Dict[str, List[float]] = {kind: [] for kind in sessions}
        for _ in range(rounds):
            for kind, sess in sessions.items():
                t0 = time.perf_counter()
                for _ in range(5):
                    sess.run(None, x)
                us[kind].append((time.perf_counter() - t0) / (5 * copies) * 1e6)
        fp32, int8, dense = (statistics.median(us[kind]) for kind in ("fp32", "int8", "dense"))
        rows.append(Row(TOPIC, f"MatMulNBits 4-bit {k}x{n}, M=1, float32 arithmetic (exact formats)", fp32,
                        "us/product", int8, "int8 arithmetic (gguf-blocks-int8)", ratio(fp32, int8),
                        f"{k * n / fp32 / 1e3:.0f} GMAC/s vs {k * n / int8 / 1e3:.0f}; dense float32 MatMul "
                        f"{dense:.1f} us ({k * n / dense / 1e3:.0f} GMAC/s); {copies} copies per run (weights "
                        f"{copies * k * n / 2 / 2**20:.0f} MiB of codes, beyond the caches), onnxruntime "
                        f"{ort.__version__}, 2 threads spinning, {rounds} rounds alternated, quiet"))
    return rows


def run(quick: bool = False) -> List[Row]:
    """Benchmark rows (see the module docstring)."""
    rows = card_rows(quick) + kernel_rows(quick)
    return rows + _cpu_rows(quick)


def _cpu_rows(quick: bool = False) -> List[Row]:
    from axcl_ros import assets
    from axcl_ros.models.llm.checkpoint import read_gguf
    from axcl_ros.models.llm.export_onnx import cached_conversion
    from axcl_ros.models.llm.generate import LlmModel
    from axcl_ros_testing.llm_models import NumpyLlama

    try:
        gguf_path = str(assets.smollm2_135m_gguf())
    except assets.AssetNotFoundError as exc:
        return [Row(TOPIC, "SmolLM2-135M", None, note=f"skipped: {exc}")]
    formats = [f for f in os.environ.get("AXCL_BENCH_LLM_WEIGHTS", ",".join(WEIGHTS)).split(",") if f]
    configs = [_config(c) for c in os.environ.get("AXCL_BENCH_LLM_CONFIGS", ",".join(CONFIGS)).split(",") if c]
    ref = NumpyLlama(read_gguf(gguf_path))
    table = ref.ck.weight("model.embed_tokens.weight")
    n = 12 if quick else 32
    repeats = 1 if quick else REPEATS
    prompts = PROMPTS[:2] if quick else PROMPTS
    rows: List[Row] = []
    main = None
    for fmt in formats:
        t0 = time.perf_counter()
        folder = cached_conversion(gguf_path, weights=fmt)
        rows.append(Row(TOPIC, f"convert-llm --weights {fmt} (or cached folder)", time.perf_counter() - t0, "s",
                        note=f"cache: {folder}"))
        for threads, spinning in configs:
            model = LlmModel(folder, threads=threads, spinning=spinning)
            budget = _budget(threads, spinning)
            prompt_ids = [model.tokenizer.prompt_ids(p)[0] for p in prompts]
            _ours(model, prompt_ids[0], 2)  # warm-up
            _numpy(ref, table, prompt_ids[0], 2)
            load = os.getloadavg()
            runs: Dict[str, List] = {"quiet": [], "one core busy": []}
            for _ in range(repeats):  # quiet and busy alternate, so that a slow phase of the machine hits both
                for label in runs:
                    with busy_core(label != "quiet"):
                        runs[label].append(_pass(model, ref, table, prompt_ids, n))
            note = (f"ONNX weights {fmt} ({FORMAT_NOTE[fmt]}), onnxruntime {budget}; baseline plain numpy float32, "
                    f"BLAS 2 threads; {len(prompts)} prompts of {min(map(len, prompt_ids))}-"
                    f"{max(map(len, prompt_ids))} tokens, {n} tokens each, {repeats} repeats; load average "
                    f"{load[0]:.1f} at the start")
            for label, res in runs.items():
                rows += _rows(f"{label}, {fmt}, {budget}", res, note)
            if main is None:
                main = (folder, model, prompt_ids, threads, spinning)
            else:
                model.release()
    if main is not None:
        folder, model, prompt_ids, threads, spinning = main
        rows += _executor_rows(folder, model, prompt_ids, n, threads, spinning)
        rows += _first_request_rows(folder, model.config.weights, prompt_ids, threads, spinning, repeats)
        py = os.environ.get("AXCL_BENCH_TRANSFORMERS_PYTHON", "")
        if py:
            rows += _transformers_rows(py, gguf_path, model, prompt_ids, n)
        model.release()
    return rows


def _transformers_rows(py: str, gguf_path: str, model, prompt_ids: List[List[int]], n: int) -> List[Row]:
    ours = [_ours(model, ids, n) for ids in prompt_ids]
    try:
        proc = subprocess.run([py, "-c", _TRANSFORMERS, os.path.dirname(gguf_path), os.path.basename(gguf_path),
                               json.dumps(prompt_ids), str(n)], capture_output=True, text=True, timeout=900,
                              check=True)
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return [Row(TOPIC, "transformers", None, note=f"failed: {exc}")]
    med = {k: statistics.median(r[k] for r in ours) for k in ("ttft_ms", "tok_s")}
    tmed = {k: statistics.median(r[k] for r in theirs) for k in ("ttft_ms", "tok_s")}
    # transformers stops at <|im_end|>; ours runs n tokens: compare the tokens both made
    same = all(a["ids"][:len(b["ids"])] == b["ids"] for a, b in zip(ours, theirs))
    weights = f"ours: ONNX weights {model.config.weights}; transformers: float32"
    return [Row(TOPIC, "SmolLM2-135M decode vs transformers (quiet)", med["tok_s"], "tokens/s", tmed["tok_s"],
                "transformers+torch CPU", ratio(med["tok_s"], tmed["tok_s"]),
                f"{weights}; run one after the other; {'same' if same else 'DIFFERENT'} tokens"),
            Row(TOPIC, "SmolLM2-135M TTFT vs transformers (quiet)", med["ttft_ms"], "ms", tmed["ttft_ms"],
                "transformers+torch CPU", ratio(med["ttft_ms"], tmed["ttft_ms"]), weights)]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
