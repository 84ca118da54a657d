"""Whisper byte-level BPE tokenizer: decode ids to text and derive the special token ids from the vocabulary.

Two sources:

* AXERA ``{t}-tokens.txt``: one ``<base64 of the token bytes> <id>`` line per regular token (the ``.tiktoken``
  ranks). Special tokens are not listed; they follow the regular ones in Whisper's fixed layout
  (``eot, sot, <languages>, translate, transcribe, startoflm, startofprev, nospeech, notimestamps, <timestamps>``),
  or come from AXERA's ``{t}_config.json`` when given.
* Hugging Face / CTranslate2 ``tokenizer.json`` (read with the ``tokenizers`` package): regular tokens are
  GPT-2 byte-to-unicode strings, special tokens are named ``<|...|>`` added tokens.

Decoding concatenates the bytes of the ids below ``eot`` and decodes UTF-8 with replacement. ``encode`` runs
rank-ordered byte-pair merging (ids are merge ranks in Whisper's vocabularies) after a GPT-2-style split.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["LANGUAGE_CODES", "TokenizerError", "WhisperTokenizer", "bytes_to_unicode"]

#: Whisper's language codes in token order (``<|en|>`` is the first language token); large-v3 adds ``yue``
LANGUAGE_CODES: Tuple[str, ...] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id", "hi",
    "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la",
    "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy",
    "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be",
    "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
)
#: older vocabularies name a few languages differently
_CODE_ALIASES = {"iw": "he", "he": "iw", "jw": "jv", "jv": "jw"}
#: special tokens after the languages, in vocabulary order (``nocaptions`` is the no-speech token)
_TAIL = ("translate", "transcribe", "startoflm", "startofprev", "nocaptions", "notimestamps")
_N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
TIME_PRECISION = 0.02

# GPT-2 pre-tokeniser, with \p{L} ≈ [^\W\d_] and \p{N} ≈ \d (Python's re has no Unicode classes)
_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class TokenizerError(ValueError):
    """The vocabulary file is malformed or lacks a token Whisper needs (the message says which)."""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible byte → printable character map used by byte-level BPE vocabularies."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


class WhisperTokenizer:
    """Vocabulary, special ids and byte-level decoding of a Whisper model.

    ``token_bytes[i]`` is the byte string of regular token ``i`` (``i < eot``). ``specials`` maps
    ``eot, sot, translate, transcribe, sot_lm, sot_prev, no_speech, no_timestamps`` to ids;
    ``language_tokens`` maps language codes to ids in vocabulary order. ``n_vocab`` is the model's vocabulary size
    (regular + special + 1501 timestamp tokens); Whisper calls a model multilingual when it is ≥ 51865, which
    ``multilingual`` overrides (e.g. from a config's ``is_multilingual``).
    """

    def __init__(self, token_bytes: Sequence[bytes], specials: Mapping[str, int],
                 language_tokens: Mapping[str, int], n_vocab: Optional[int] = None,
                 multilingual: Optional[bool] = None):
        self.token_bytes: List[bytes] = list(token_bytes)
        required = ("eot", "sot", "translate", "transcribe", "sot_lm", "sot_prev", "no_speech", "no_timestamps")
        missing = [k for k in required if k not in specials]
        if missing:
            raise TokenizerError(f"special tokens {missing} not found (have {sorted(specials)})")
        self.eot = int(specials["eot"])
        self.sot = int(specials["sot"])
        self.translate = int(specials["translate"])
        self.transcribe = int(specials["transcribe"])
        self.sot_lm = int(specials["sot_lm"])
        self.sot_prev = int(specials["sot_prev"])
        self.no_speech = int(specials["no_speech"])
        self.no_timestamps = int(specials["no_timestamps"])
        self.timestamp_begin = int(specials.get("timestamp_begin", self.no_timestamps + 1))
        if len(self.token_bytes) != self.eot:
            raise TokenizerError(f"{len(self.token_bytes)} regular tokens but eot id is {self.eot}; "
                                 "regular tokens must be ids 0..eot-1")
        self.language_tokens: Dict[str, int] = {str(k): int(v) for k, v in language_tokens.items()}
        self.n_vocab = int(n_vocab) if n_vocab else self.timestamp_begin + _N_TIMESTAMPS
        self._multilingual = multilingual
        self._ranks: Dict[bytes, int] = {b: i for i, b in enumerate(self.token_bytes)}
        self.blank = self._single_token(b" ")
        self._non_speech: Optional[Tuple[int, ...]] = None

    # ---------------------------------------------------------------- loaders
    @classmethod
    def from_tokens_txt(cls, path: Union[str, Path], *, config: Optional[Mapping] = None,
                        n_vocab: Optional[int] = None, multilingual: Optional[bool] = None) -> WhisperTokenizer:
        """Load AXERA's ``tokens.txt`` (``<base64> <id>`` per line).

        Special ids come from ``config`` (AXERA ``{t}_config.json`` keys ``eot, sot, translate, transcribe, sot_lm,
        sot_prev, no_speech, no_timestamps, all_language_tokens, all_language_codes``) when present; otherwise from
        Whisper's layout after the regular tokens, with the language count taken from ``n_vocab`` (the model's
        vocabulary size) or, without it, the 99 languages of the original models.
        """
        path = Path(path)
        pieces: Dict[int, bytes] = {}
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 1 and line[:1].isspace():
                parts = ["", parts[0]]  # an empty token (id 50256 of the multilingual vocabulary)
            if len(parts) != 2:
                raise TokenizerError(f"{path}:{lineno}: expected '<base64> <id>', got {line[:60]!r}")
            try:
                pieces[int(parts[1])] = base64.b64decode(parts[0], validate=True)
            except ValueError as exc:
                raise TokenizerError(f"{path}:{lineno}: bad token line {line[:60]!r}: {exc}") from None
        n = len(pieces)
        if n == 0 or set(pieces) != set(range(n)):
            raise TokenizerError(f"{path}: ids must be 0..N-1 without gaps, found {n} ids")
        token_bytes = [pieces[i] for i in range(n)]
        cfg = dict(config or {})
        if n_vocab is None and cfg.get("n_vocab"):
            n_vocab = int(cfg["n_vocab"])
        if multilingual is None and cfg.get("is_multilingual") is not None:
            flag = cfg["is_multilingual"]
            multilingual = flag.strip().lower() in ("1", "true") if isinstance(flag, str) else bool(flag)
        if "eot" in cfg:
            specials = {k: int(cfg[k]) for k in ("eot", "sot", "translate", "transcribe", "sot_lm", "sot_prev",
                                                 "no_speech", "no_timestamps") if k in cfg}
            tokens = _int_list(cfg.get("all_language_tokens", ()))
            codes = _str_list(cfg.get("all_language_codes", ()))
            if len(tokens) != len(codes):
                raise TokenizerError(f"config lists {len(tokens)} language tokens but {len(codes)} codes")
            return cls(token_bytes, specials, dict(zip(codes, tokens)), n_vocab, multilingual)
        if n_vocab is not None:
            n_lang = int(n_vocab) - n - 2 - len(_TAIL) - _N_TIMESTAMPS
        else:
            n_lang = 99
        if not 0 <= n_lang <= len(LANGUAGE_CODES):
            raise TokenizerError(f"{path}: {n} regular tokens and n_vocab={n_vocab} leave {n_lang} language "
                                 f"tokens (expected 0..{len(LANGUAGE_CODES)})")
        specials = {"eot": n, "sot": n + 1}
        for j, name in enumerate(_TAIL):
            specials[_SPECIAL_KEY[name]] = n + 2 + n_lang + j
        langs = {code: n + 2 + i for i, code in enumerate(LANGUAGE_CODES[:n_lang])}
        return cls(token_bytes, specials, langs, n_vocab, multilingual)

    @classmethod
    def from_hf_json(cls, path: Union[str, Path], *, n_vocab: Optional[int] = None,
                     multilingual: Optional[bool] = None) -> WhisperTokenizer:
        """Load a Hugging Face / CTranslate2 ``tokenizer.json`` through the ``tokenizers`` package."""
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - tokenizers is a declared dependency
            raise TokenizerError("the 'tokenizers' package is needed to read tokenizer.json") from exc
        tok = Tokenizer.from_file(str(path))
        vocab = tok.get_vocab(with_added_tokens=True)
        special_names = {t.content for t in tok.get_added_tokens_decoder().values()} \
            if hasattr(tok, "get_added_tokens_decoder") else {s for s in vocab if s.startswith("<|")}
        decoder = {c: b for b, c in bytes_to_unicode().items()}
        regular: Dict[int, bytes] = {}
        named: Dict[str, int] = {}
        for text, idx in vocab.items():
            if text in special_names or (text.startswith("<|") and text.endswith("|>")):
                named[text[2:-2] if text.startswith("<|") and text.endswith("|>") else text] = int(idx)
                continue
            try:
                regular[int(idx)] = bytes(decoder[c] for c in text)
            except KeyError:
                raise TokenizerError(f"{path}: token {text!r} (id {idx}) is not byte-level BPE") from None
        if "endoftext" not in named:
            raise TokenizerError(f"{path}: no <|endoftext|> token; special tokens found: {sorted(named)[:12]}")
        eot = named["endoftext"]
        if set(regular) != set(range(eot)):
            raise TokenizerError(f"{path}: regular tokens are not ids 0..{eot - 1}")
        specials = {"eot": eot}
        for name, key in (("startoftranscript", "sot"), ("translate", "translate"), ("transcribe", "transcribe"),
                          ("startoflm", "sot_lm"), ("startofprev", "sot_prev"), ("notimestamps", "no_timestamps")):
            if name in named:
                specials[key] = named[name]
        for name in ("nospeech", "nocaptions"):
            if name in named:
                specials["no_speech"] = named[name]
        if "0.00" in named:
            specials["timestamp_begin"] = named["0.00"]
        known = set(LANGUAGE_CODES) | set(_CODE_ALIASES)
        langs = {name: idx for name, idx in sorted(named.items(), key=lambda kv: kv[1]) if name in known}
        return cls([regular[i] for i in range(eot)], specials, langs, n_vocab, multilingual)

    @classmethod
    def from_dir(cls, folder: Union[str, Path], *, config: Optional[Mapping] = None,
                 n_vocab: Optional[int] = None) -> WhisperTokenizer:
        """Load ``tokenizer.json`` from ``folder``, else the single ``*tokens.txt`` there."""
        folder = Path(folder)
        if (folder / "tokenizer.json").is_file():
            return cls.from_hf_json(folder / "tokenizer.json", n_vocab=n_vocab)
        found = sorted(folder.glob("*tokens.txt"))
        if len(found) == 1:
            return cls.from_tokens_txt(found[0], config=config, n_vocab=n_vocab)
        raise TokenizerError(f"{folder}: expected tokenizer.json or one *tokens.txt, found "
                             f"{[p.name for p in found]}")

    # ---------------------------------------------------------------- properties
    @property
    def is_multilingual(self) -> bool:
        """OpenAI's rule: a vocabulary of ≥ 51865 ids is multilingual (English-only models have 51864)."""
        if self._multilingual is not None:
            return self._multilingual
        return self.n_vocab >= 51865

    @property
    def all_language_tokens(self) -> Tuple[int, ...]:
        """Language token ids, in vocabulary order."""
        return tuple(sorted(self.language_tokens.values()))

    @property
    def all_language_codes(self) -> Tuple[str, ...]:
        """Language codes in the order of :attr:`all_language_tokens`."""
        return tuple(c for c, _ in sorted(self.language_tokens.items(), key=lambda kv: kv[1]))

    def language_token(self, code: str) -> int:
        """Id of ``<|code|>``; raises :class:`TokenizerError` for an unknown code."""
        code = code.strip().lower()
        for c in (code, _CODE_ALIASES.get(code, code)):
            if c in self.language_tokens:
                return self.language_tokens[c]
        raise TokenizerError(f"unknown language {code!r}; known: {', '.join(self.all_language_codes)}")

    def language_code(self, token: int) -> str:
        """Language code of a language token id."""
        for code, idx in self.language_tokens.items():
            if idx == token:
                return code
        raise TokenizerError(f"token {token} is not a language token")

    def sot_sequence(self, language: Optional[str] = "en", task: str = "transcribe",
                     timestamps: bool = False) -> List[int]:
        """Decoder prompt: ``[sot]`` (+ ``[lang, task]`` if multilingual) (+ ``[no_timestamps]``)."""
        if task not in ("transcribe", "translate"):
            raise TokenizerError(f"task must be 'transcribe' or 'translate', got {task!r}")
        seq = [self.sot]
        if self.is_multilingual:
            seq.append(self.language_token(language or "en"))
            seq.append(self.transcribe if task == "transcribe" else self.translate)
        if not timestamps:
            seq.append(self.no_timestamps)
        return seq

    @property
    def non_speech_tokens(self) -> Tuple[int, ...]:
        """Ids of symbols the decoder should not emit (OpenAI's list: brackets, quotes, music signs, …)."""
        if self._non_speech is None:
            symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
            symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
            misc = list("♩♪♫♬♭♮♯")
            result = {self.encode(" -")[0], self.encode(" '")[0]}
            for sym in symbols + misc:
                for ids in (self.encode(sym), self.encode(" " + sym)):
                    if len(ids) == 1 or sym in misc:
                        result.add(ids[0])
            self._non_speech = tuple(sorted(result))
        return self._non_speech

    # ---------------------------------------------------------------- coding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenated bytes of the regular tokens in ``ids`` (special and timestamp ids are skipped)."""
        n = self.eot
        return b"".join(self.token_bytes[i] for i in map(int, ids) if 0 <= i < n)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the regular tokens in ``ids`` (UTF-8 with replacement characters for broken sequences)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_with_timestamps(self, ids: Iterable[int]) -> str:
        """Like :meth:`decode` but writes timestamp tokens as ``<|1.24|>``."""
        out: List[str] = []
        run: List[int] = []
        for i in map(int, ids):
            if i >= self.timestamp_begin:
                out.append(self.decode(run))
                run = []
                out.append(f"<|{(i - self.timestamp_begin) * TIME_PRECISION:.2f}|>")
            else:
                run.append(i)
        out.append(self.decode(run))
        return "".join(out)

    def encode(self, text: str) -> List[int]:
        """Regular token ids of ``text`` (no special tokens)."""
        ids: List[int] = []
        for piece in _SPLIT.findall(text):
            ids.extend(self._bpe(piece.encode("utf-8")))
        return ids

    def is_timestamp(self, token: int) -> bool:
        """True for ``<|0.00|>`` .. ``<|30.00|>``."""
        return token >= self.timestamp_begin

    def timestamp_seconds(self, token: int) -> float:
        """Seconds of a timestamp token."""
        return (int(token) - self.timestamp_begin) * TIME_PRECISION

    def _single_token(self, piece: bytes) -> int:
        idx = self._ranks.get(piece)
        if idx is None:
            raise TokenizerError(f"the vocabulary has no single token for {piece!r}")
        return idx

    def _bpe(self, piece: bytes) -> List[int]:
        ranks = self._ranks
        if piece in ranks:
            return [ranks[piece]]
        parts = [piece[i:i + 1] for i in range(len(piece))]
        missing = [p for p in parts if p not in ranks]
        if missing:
            raise TokenizerError(f"byte {missing[0]!r} has no token; not a byte-level vocabulary")
        while len(parts) > 1:
            best, best_rank = -1, None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best < 0:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return [ranks[p] for p in parts]

    def __len__(self) -> int:
        return self.n_vocab

    def __repr__(self) -> str:
        kind = "multilingual" if self.is_multilingual else "English-only"
        return f"WhisperTokenizer({kind}, n_vocab={self.n_vocab}, eot={self.eot}, sot={self.sot})"


_SPECIAL_KEY = {"translate": "translate", "transcribe": "transcribe", "startoflm": "sot_lm",
                "startofprev": "sot_prev", "nocaptions": "no_speech", "notimestamps": "no_timestamps"}


def _int_list(value) -> List[int]:
    if isinstance(value, str):
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    return [int(v) for v in value]


def _str_list(value) -> List[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]
