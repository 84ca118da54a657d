"""Tokenizer and chat prompt formats of the supported models.

* ``chatml`` — SmolLM2, Qwen2 / Qwen2.5 and InternVL2/2.5/3 (``<|im_start|>role\\ncontent<|im_end|>\\n``, then
  ``<|im_start|>assistant\\n``). A default system prompt (from the model's chat template) is inserted when the
  conversation has none, as the models' own templates do.
* ``plain`` — the prompt text as is.

For a vision-language model the image placeholder (e.g. InternVL's ``<img>`` + ``<IMG_CONTEXT>`` x 256 +
``</img>``) goes at the start of the user turn.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from .config import LlmConfig


class PromptError(ValueError):
    """The prompt cannot be used (empty, too long for the context)."""


class LlmTokenizer:
    """A byte-level BPE ``tokenizer.json`` (Hugging Face ``tokenizers``) plus the model's prompt format."""

    def __init__(self, path: str, config: LlmConfig) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(path)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a plain Exception for bad files
            raise PromptError(f"cannot read tokenizer {path!r}: {exc}") from exc
        self.config = config

    def token_id(self, text: str) -> Optional[int]:
        """Id of the token spelled ``text``, or None."""
        return self._tok.token_to_id(text)

    def encode(self, text: str) -> List[int]:
        """Token ids of ``text`` (special tokens written in the text are recognised)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def render(self, prompt: str, system: str = "", n_image_tokens: int = 0) -> str:
        """The prompt text the model expects for one user turn (and an optional image placeholder)."""
        cfg = self.config
        image = ""
        if n_image_tokens:
            image = f"{cfg.image_prefix}{cfg.image_token * n_image_tokens}{cfg.image_suffix}"
        if cfg.prompt_format == "plain":
            return image + prompt
        system = system or cfg.default_system_prompt
        head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        return f"{head}<|im_start|>user\n{image}{prompt}<|im_end|>\n<|im_start|>assistant\n"

    def prompt_ids(self, prompt: str, system: str = "", n_image_tokens: int = 0) -> Tuple[List[int], str]:
        """``(ids, rendered text)`` of a prompt; raise :class:`PromptError` for an empty prompt."""
        if not prompt or not prompt.strip():
            raise PromptError("the prompt is empty: ask something (e.g. 'What is on the table?')")
        text = self.render(prompt, system, n_image_tokens)
        return self.encode(text), text
