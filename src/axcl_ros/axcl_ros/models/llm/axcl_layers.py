"""The per-layer contract on an AX650N card: AXERA's compiled layout, the KV cache kept on the card.

Files (``vlm.md``): ``{prefix}_p{N}_l{i}_together.axmodel`` per decoder layer, each with shape groups — group 0
decodes one token (``input [1,1,H]``, ``K_cache``/``V_cache [1,kv_len,kv_dim]``, ``mask [1,1,kv_len+1]`` whose last
slot is the current token), groups g >= 1 prefill one chunk of N tokens over a cache of ``capacity_g`` rows
(``mask [1,N,capacity_g+N]``); ``{prefix}_post.axmodel`` (``[1,1,H]`` → bf16 logits, or with Pulsar2's
``--post_topk`` bf16 values + int32 ids of the top k). Dimensions are read from the models, group by group.

Device memory (allocated once at load, freed by :meth:`AxclLayerStack.release`): per layer one K and one V cache of
``max(kv_len, largest capacity + N)`` rows; two hidden buffers of N rows used in turn (layer i's output buffer is
bound as layer i+1's input); a table of positions ``0…`` (uint32; a call's ``indices`` are an offset pointer into
it); the decode mask (extended per token with ``axclrtMemset``, shortened for a new conversation by a device-to-device
copy from a masked template: no PCIe traffic); the prefill masks of every chunk-aligned start, written once (a start
off that grid sends its mask); the post
model's output. Each layer has one IO set per group (:class:`~axcl_ros.runtime.axcl_groups.GroupedModel`); per call
only ``indices`` and ``K_cache_out``/``V_cache_out`` are re-bound — the outputs to the cache rows of the positions
being computed, so the cache is written in place — and the post model's input to the last row of the last hidden
buffer. Per generated token the host sends one bf16 embedding row (``2·H`` bytes) and reads the logits back
(``2·V`` bytes, or ``6·k`` with a top-k post model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Union

import numpy as np

from .config import LlmFiles, ModelFilesError
from .layer_chain import LAYER_INPUTS, LAYER_OUTPUTS
from .layers import ContextFullError, LayerStack

log = logging.getLogger(__name__)

#: bf16 bits of the mask value AXERA's runner uses for masked positions (-65536)
BF16_MASKED = 0xC780


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 → bf16 bits (uint16), round to nearest even."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(b: np.ndarray) -> np.ndarray:
    """bf16 bits (uint16) → float32 (exact)."""
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32)


@dataclass(frozen=True)
class CardHidden:
    """A hidden state that stays on the card: ``nbytes`` at ``offset`` in a device buffer (what
    :meth:`AxclLayerStack.forward` returns and :meth:`AxclLayerStack.logits` takes)."""

    buffer: object
    offset: int
    nbytes: int


class AxclLayerStack(LayerStack):
    """The :class:`~.layers.LayerStack` contract on the card (see the module docstring).

    Args:
        files: a checked model set with ``.axmodel`` layer files.
        device_index: card index (into ``axclrtGetDeviceList``).
        runtime: an :class:`~axcl_ros.runtime.axcl.AxclRuntime` (default: the process-wide one).
    """

    def __init__(self, files: LlmFiles, device_index: int = 0, runtime=None) -> None:
        from ...runtime.axcl import get_runtime
        from ...runtime.axcl_groups import DeviceBuffer, GroupedModel

        self.config = files.config
        self._rt = runtime if runtime is not None else get_runtime()
        self._layers: List[GroupedModel] = []
        self._post: Optional[GroupedModel] = None
        self._buffers: List[DeviceBuffer] = []
        self._pos = 0
        self._mask_upto = 0  # leading visible slots in the decode mask
        self.host_bytes_per_token = 0
        try:
            for path in files.layers:
                self._layers.append(GroupedModel(path, device_index, self._rt))
            self._post = GroupedModel(files.post, device_index, self._rt)
            self._read_dims(files)
            buf = lambda n: self._keep(DeviceBuffer(n, device_index, self._rt))  # noqa: E731
            rows, kv, h = self.rows, self.kv_dim, self.hidden
            self._k = [buf(rows * kv * 2) for _ in self._layers]
            self._v = [buf(rows * kv * 2) for _ in self._layers]
            self._hid = [buf(self.chunk * h * 2), buf(self.chunk * h * 2)]
            self._idx = buf(rows * 4)
            self._idx.write(np.arange(rows, dtype=np.uint32))
            self._dmask = buf((self.kv_len + 1) * 2)
            self._dmask_all = buf((self.kv_len + 1) * 2)  # all masked, last slot visible: written once
            pattern = np.full(self.kv_len + 1, BF16_MASKED, np.uint16)
            pattern[-1] = 0
            self._dmask_all.write(pattern)
            self._dmask.write(pattern)
            big = max(self.capacities, default=0)
            self._pmask = buf(self.chunk * (big + self.chunk) * 2) if self.capacities else None
            # prefill masks of the chunk-aligned starts, built on the card once (AXERA's runner does the same)
            self._pmasks = {}
            for start in range(0, big + 1, self.chunk) if self.capacities else ():
                g = self._group_for(start)
                table = buf(self.chunk * (self.capacities[g - 1] + self.chunk) * 2)
                table.write(self._prefill_mask(start, self.capacities[g - 1]))
                self._pmasks[start] = table
            post_out = self._post.outputs
            self._logits = buf(post_out["output"].sizes[0])
            self._topk_ids = buf(post_out["indices"].sizes[0]) if self.top_k else None
            self._bind_static()
        except Exception:
            self.release()
            raise

    # -- loading ----------------------------------------------------------------------------------------------------
    def _keep(self, b):
        self._buffers.append(b)
        return b

    def _read_dims(self, files: LlmFiles) -> None:
        cfg = self.config
        first = self._layers[0]
        for m in self._layers:
            missing = [n for n in LAYER_INPUTS if n not in m.inputs] + [n for n in LAYER_OUTPUTS if n not in m.outputs]
            if missing:
                raise ModelFilesError(f"{m.path}: not a decoder layer of AXERA's layout: missing {missing} (has "
                                      f"inputs {list(m.inputs)}, outputs {list(m.outputs)})")
            if m.n_groups != first.n_groups or any(m.tensor(n).shapes != first.tensor(n).shapes
                                                   for n in LAYER_INPUTS + LAYER_OUTPUTS):
                raise ModelFilesError(f"{m.path}: shape groups differ from {first.path}'s")
        x0, k0 = first.tensor("input").shapes[0], first.tensor("K_cache").shapes[0]
        self.hidden, self.kv_len, self.kv_dim = x0[-1], k0[1], k0[2]
        if (self.hidden, self.kv_dim) != (cfg.hidden_size, cfg.kv_dim):
            raise ModelFilesError(f"{first.path}: hidden {self.hidden}, kv_dim {self.kv_dim}; config.json says "
                                  f"hidden_size {cfg.hidden_size}, head_dim*num_kv_heads {cfg.kv_dim}")
        if x0[1] != 1 or first.tensor("mask").shapes[0][-1] != self.kv_len + 1:
            raise ModelFilesError(f"{first.path}: group 0 is not a one-token decode group (input {x0}, mask "
                                  f"{first.tensor('mask').shapes[0]})")
        chunks = {first.tensor("input").shapes[g][1] for g in range(1, first.n_groups)}
        if len(chunks) > 1:
            raise ModelFilesError(f"{first.path}: prefill groups take different chunk sizes {sorted(chunks)}")
        self.chunk = chunks.pop() if chunks else 1
        self.capacities = [first.tensor("K_cache").shapes[g][1] for g in range(1, first.n_groups)]
        self.rows = max(self.kv_len, max(self.capacities, default=0) + self.chunk)
        if cfg.max_context > self.kv_len:
            log.info("%s: the card models hold %d positions; max_context %d -> %d", files.folder, self.kv_len,
                     cfg.max_context, self.kv_len)
            cfg.max_context = self.kv_len
        post = self._post
        if "input" not in post.inputs or "output" not in post.outputs:
            raise ModelFilesError(f"{post.path}: the post model needs input 'input' and output 'output'")
        if post.tensor("input").shapes[0][-1] != self.hidden:
            raise ModelFilesError(f"{post.path}: input {post.tensor('input').shapes[0]} does not take hidden "
                                  f"{self.hidden}")
        self.top_k = 0
        n_out = int(np.prod(post.outputs["output"].shapes[0]))
        if "indices" in post.outputs:
            self.top_k = n_out
        elif n_out != cfg.vocab_size:
            raise ModelFilesError(f"{post.path}: {n_out} logits, config.json vocab_size {cfg.vocab_size}")

    def _bind_static(self) -> None:
        h2 = self.hidden * 2
        for i, m in enumerate(self._layers):
            src, dst = self._hid[i % 2], self._hid[(i + 1) % 2]
            for g in range(m.n_groups):
                n = m.tensor("input").shapes[g][1]
                cap = m.tensor("K_cache").shapes[g][1]
                m.bind(g, "input", src.at(0), n * h2)
                m.bind(g, "output", dst.at(0), n * h2, output=True)
                m.bind(g, "K_cache", self._k[i].at(0), cap * self.kv_dim * 2)
                m.bind(g, "V_cache", self._v[i].at(0), cap * self.kv_dim * 2)
                mask = self._dmask if g == 0 else self._pmask
                m.bind(g, "mask", mask.at(0), m.inputs["mask"].sizes[g])
        self._post.bind(0, "output", self._logits.at(0), self._logits.nbytes, output=True)
        if self._topk_ids is not None:
            self._post.bind(0, "indices", self._topk_ids.at(0), self._topk_ids.nbytes, output=True)

    # -- the contract -------------------------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self._pos

    def reset(self) -> None:
        self._pos = 0

    def forward(self, embeds: np.ndarray, start: int) -> CardHidden:
        """Run ``embeds [T, H]`` at ``start…`` on the card; the returned hidden state stays there."""
        if not self._layers:
            raise ModelFilesError("the model was released")
        n = int(embeds.shape[0])
        if start > self._pos or start < 0:
            raise ValueError(f"forward at position {start}, but the cache holds {self._pos} positions")
        if start + n > self.config.max_context:
            raise ContextFullError(f"{start + n} positions do not fit the card model's context of "
                                   f"{self.config.max_context} tokens")
        x = to_bf16(embeds)
        if n == 1 or not self.capacities:
            for r in range(n):
                hidden = self._decode(x[r:r + 1], start + r)
        else:
            for c0 in range(0, n, self.chunk):
                hidden = self._prefill(x[c0:c0 + self.chunk], start + c0)
        self._pos = start + n
        return hidden

    def _rebind(self, g: int, pos: int, n: int) -> None:
        kv2 = self.kv_dim * 2
        for i, m in enumerate(self._layers):
            m.bind(g, "indices", self._idx.at(pos * 4, n * 4), n * 4)
            m.bind(g, "K_cache_out", self._k[i].at(pos * kv2, n * kv2), n * kv2, output=True)
            m.bind(g, "V_cache_out", self._v[i].at(pos * kv2, n * kv2), n * kv2, output=True)

    def _run_layers(self, g: int) -> CardHidden:
        for m in self._layers:
            m.execute(g)
        return self._hid[len(self._layers) % 2]

    def _decode(self, row: np.ndarray, pos: int) -> CardHidden:
        if pos >= self.kv_len:
            raise ContextFullError(f"position {pos} is beyond the card model's {self.kv_len} cache rows")
        if self._mask_upto > pos:  # an earlier, longer conversation: mask its slots again (on the card)
            self._dmask.copy_from(self._dmask_all, pos * 2, pos * 2, (self._mask_upto - pos) * 2)
            self._mask_upto = pos
        if pos > self._mask_upto:  # the slots of the positions since the last call become visible
            self._dmask.fill(0, self._mask_upto * 2, (pos - self._mask_upto) * 2)
            self._mask_upto = pos
        self._hid[0].write(row)
        self._rebind(0, pos, 1)
        out = self._run_layers(0)
        return CardHidden(out, 0, self.hidden * 2)

    def _group_for(self, start: int) -> int:
        """The prefill group whose cache capacity holds ``start`` positions (the smallest), 0 if none."""
        return next((i + 1 for i, c in enumerate(self.capacities) if c >= start), 0)

    def _prefill_mask(self, start: int, cap: int) -> np.ndarray:
        """``[chunk, cap + chunk]`` bf16 bits: the cache's first ``start`` rows visible, the chunk causal."""
        t = self.chunk
        mask = np.zeros((t, cap + t), np.uint16)
        mask[:, start:cap] = BF16_MASKED
        mask[:, cap:] = np.where(np.triu(np.ones((t, t), bool), k=1), BF16_MASKED, 0)
        return mask

    def _prefill(self, rows: np.ndarray, start: int) -> CardHidden:
        n, t = rows.shape[0], self.chunk
        g = self._group_for(start)
        if g == 0:
            raise ContextFullError(f"a prompt chunk at position {start} is beyond the card model's prefill groups "
                                   f"(largest cache capacity {max(self.capacities)}): shorten the prompt")
        cap = self.capacities[g - 1]
        mask = self._pmasks.get(start)
        if mask is None:  # a start off the chunk grid: send its mask
            mask = self._pmask
            mask.write(self._prefill_mask(start, cap))
        size = t * (cap + t) * 2
        for m in self._layers:
            m.bind(g, "mask", mask.at(0, size), size)
        padded = np.zeros((t, self.hidden), np.uint16)
        padded[:n] = rows
        self._hid[0].write(padded)
        self._rebind(g, start, t)
        out = self._run_layers(g)
        return CardHidden(out, (n - 1) * self.hidden * 2, self.hidden * 2)

    def logits(self, hidden: Union[CardHidden, np.ndarray]) -> np.ndarray:
        """float32 logits ``[V]`` of a hidden state on the card (or of a host ``[H]`` row, sent first); with a
        top-k post model every id outside the top k is ``-inf``."""
        if self._post is None:
            raise ModelFilesError("the model was released")
        if not isinstance(hidden, CardHidden):
            self._hid[0].write(to_bf16(np.asarray(hidden, np.float32).reshape(1, -1)))
            hidden = CardHidden(self._hid[0], 0, self.hidden * 2)
        self._post.bind(0, "input", hidden.buffer.at(hidden.offset, hidden.nbytes), hidden.nbytes)
        self._post.execute(0)
        n = self._logits.nbytes // 2
        values = from_bf16(self._logits.read(np.empty(n, np.uint16)))
        if not self.top_k:
            return values[:self.config.vocab_size]
        ids = self._topk_ids.read(np.empty(self.top_k, np.int32))
        out = np.full(self.config.vocab_size, -np.inf, np.float32)
        ok = (ids >= 0) & (ids < out.size)
        out[ids[ok]] = values[:self.top_k][ok]
        return out

    def release(self) -> None:
        """Free the device buffers, IO sets and models (idempotent)."""
        errors = []
        for obj in [*self._buffers, *self._layers, *([self._post] if self._post is not None else [])]:
            try:
                obj.release()
            except Exception as exc:  # noqa: BLE001 - free the rest, report the first
                errors.append(exc)
        self._buffers, self._layers, self._post = [], [], None
        if errors:
            log.warning("releasing the card layer stack: %s", "; ".join(str(e) for e in errors))
