"""Language and vision-language models on the per-layer contract of AXERA's compiled LLMs (no rclpy here).

* :mod:`.config` — the model folder's ``config.json`` and finding its per-layer files.
* :mod:`.checkpoint` — GGUF / safetensors checkpoints of llama- and qwen2-architecture models as numpy arrays.
* :mod:`.export_onnx` — ``axcl_ros convert-llm``: checkpoint → per-layer ONNX files + post + embedding table.
* :mod:`.tokenizer` — BPE tokenizer and chat prompt formats (ChatML for SmolLM2 / Qwen2 / InternVL).
* :mod:`.sampling` — greedy / temperature / top-k / top-p, seeded.
* :mod:`.layers` — the per-layer runner contract and its onnxruntime implementation (KV cache on the host).
* :mod:`.axcl_layers` — the contract on an AX650N card: AXERA's layer axmodels, shape groups, KV cache on the card.
* :mod:`.executor_stack` — a layer stack on the shared inference executor (one job per chunk / token).
* :mod:`.generate` — the host loop: prompt → prefill → token by token, streamed, cancellable.
* :mod:`.vision` — the vision encoder contract and the image-token splice.
"""
