"""``axcl_ros convert-llm``: the subcommand's arguments and what it runs (registered by :mod:`axcl_ros.cli`).

Kept free of heavy imports: the converter is imported when the command runs.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

COMMAND = "convert-llm"


def add_parser(sub) -> None:
    """Register ``convert-llm`` on the ``axcl_ros`` subparsers."""
    p = sub.add_parser(COMMAND, help="GGUF / safetensors llama or qwen2 checkpoint -> per-layer ONNX (describe node)",
                       description="Convert a llama- or qwen2-architecture checkpoint (a .gguf file, quantized or "
                                   "not, or a Hugging Face folder with config.json + *.safetensors + tokenizer.json) "
                                   "into per-layer ONNX files on AXERA's per-layer contract, a post model (final "
                                   "norm + lm head), the host embedding table, tokenizer.json and config.json, for "
                                   "the describe node on onnxruntime. Progress goes to stderr.")
    p.add_argument("src", metavar="CHECKPOINT", help=".gguf file, .safetensors file or Hugging Face folder")
    p.add_argument("dst", metavar="DST_DIR")
    p.add_argument("--max-context", type=int, default=2048, metavar="TOKENS",
                   help="positions the KV cache holds, prompt + answer (default %(default)s; capped by the model)")
    p.add_argument("--weights", choices=("float32", "gguf-blocks", "gguf-blocks-int8"), default="float32",
                   help="float32 (default): every matrix dequantized, the reference path. gguf-blocks: GGUF Q4_0/Q4_1 "
                        "matrices stay 4-bit blocks (onnxruntime MatMulNBits, exact values, float32 arithmetic), "
                        "~3x smaller files. gguf-blocks-int8: the same blocks and a Q8_0 lm head, int8 arithmetic "
                        "(activations quantized per 32-value block): fastest decode, not exact (README)")
    p.add_argument("--keep-quantization", dest="weights", action="store_const", const="gguf-blocks",
                   help="the same as --weights gguf-blocks")
    p.add_argument("--prefill-chunk", type=int, default=128, metavar="TOKENS",
                   help="prompt tokens per prefill call (default %(default)s, AXERA's prefill group size)")


def run(args, stdout: TextIO) -> int:
    """Run the conversion; 0 on success, 1 with a one-line reason on stderr otherwise."""
    from ...cli import ProgressPrinter

    if args.max_context < 16 or args.prefill_chunk < 1:
        print(f"axcl_ros {COMMAND}: error: --max-context must be >= 16 and --prefill-chunk >= 1", file=sys.stderr)
        return 1
    try:
        from .checkpoint import CheckpointError
        from .export_onnx import convert_checkpoint
    except ImportError as exc:
        print(f"axcl_ros {COMMAND}: error: the converter cannot be imported ({exc}); it needs numpy, onnx, "
              f"tokenizers and gguf", file=sys.stderr)
        return 1
    progress = ProgressPrinter(sys.stderr)
    t0 = time.perf_counter()
    dst = os.path.expanduser(args.dst)
    try:
        cfg = convert_checkpoint(os.path.expanduser(args.src), dst, max_context=args.max_context,
                                 prefill_chunk=args.prefill_chunk, weights=args.weights,
                                 progress=progress)
    except (CheckpointError, OSError, KeyError, ValueError) as exc:
        progress.close()
        print(f"axcl_ros {COMMAND}: error: {exc}", file=sys.stderr)
        return 1
    progress.close()
    total = sum(os.path.getsize(os.path.join(dst, f)) for f in os.listdir(dst))
    print(f"converted {args.src} -> {dst} in {time.perf_counter() - t0:.1f} s: {cfg.architecture}, "
          f"{cfg.num_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, context {cfg.max_context}, "
          f"{cfg.weights} weights, {total / 1e6:.0f} MB", file=stdout)
    print(f"Use it with the describe node: model_dir: {dst}", file=stdout)
    return 0
