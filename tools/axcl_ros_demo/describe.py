"""The ``describe`` step of ``make demo``: one described image when vision-language weights are given, otherwise one
line saying why not, plus a text-only answer of the packaged SmolLM2-135M through the same host loop."""

from __future__ import annotations

import os

from axcl_ros import assets
from axcl_ros_testing.sample_inputs import skimage_image


def _say(text: str) -> None:
    print(f"[demo] describe: {text}", flush=True)


def describe_step(vlm_dir: str = "", prompt: str = "Describe the image in one sentence.") -> None:
    """Run the step; never raises (the demo's other results stand on their own)."""
    from axcl_ros.models.llm.generate import LlmModel

    try:
        if vlm_dir:
            model = LlmModel(vlm_dir, threads=2)
            try:
                if not model.has_vision:
                    _say(f"{vlm_dir} has no vision encoder (vision.onnx / *_vit*.axmodel); nothing to describe")
                    return
                r = model.generate(prompt, image=skimage_image("astronaut"), max_new_tokens=48)
                _say(f"astronaut.png -> {r.text!r} (encode {r.image_encode_ms:.0f} ms, first token "
                     f"{r.time_to_first_token_ms:.0f} ms, {r.tokens_per_s:.1f} tokens/s)")
            finally:
                model.release()
            return
        _say("no vision-language weights on this machine (none ship in a PyPI or Debian package), so no image is "
             "described; pass --vlm-dir <folder> (README, 'describe')")
        from axcl_ros.models.llm.export_onnx import cached_conversion

        folder = cached_conversion(str(assets.smollm2_135m_gguf()))
        model = LlmModel(folder, threads=2)
        try:
            question = "What is a robot?"
            r = model.generate(question, max_new_tokens=32)
            _say(f"text-only check, SmolLM2-135M on the CPU: {question!r} -> {r.text!r} (first token "
                 f"{r.time_to_first_token_ms:.0f} ms, {r.tokens_per_s:.1f} tokens/s)")
        finally:
            model.release()
    except Exception as exc:  # noqa: BLE001 - report in one line, keep the demo's exit code
        _say(f"skipped: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    describe_step(os.environ.get("AXCL_ROS_VLM_DIR", ""))
