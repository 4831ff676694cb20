"""Tokenizers: characters, or GPT-2's byte-level BPE through tiktoken (offline from the shipped ranks file).

A tokenizer's ``state()`` is a small dict saved with every checkpoint, so ``ablate-sample`` decodes
with exactly the vocabulary the model was trained on.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from ablate.errors import ConfigError

TOKENIZERS = ("char", "gpt2")

# sha256 of GPT-2's ranks file (tiktoken's r50k_base.tiktoken, the same merges as "gpt2")
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


class Tokenizer(Protocol):
    kind: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def state(self) -> dict[str, Any]: ...


class CharTokenizer:
    """One token per distinct character of the training text, in sorted order (65 for tiny Shakespeare)."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.vocab_size = len(chars)
        self._stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    def encode(self, text: str) -> list[int]:
        try:
            return [self._stoi[c] for c in text]
        except KeyError as e:
            raise ConfigError(
                f"character {e.args[0]!r} is not in this model's vocabulary of {self.vocab_size} characters"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}


class GPT2Tokenizer:
    """GPT-2's BPE (50,257 tokens, ``<|endoftext|>`` = 50256)."""

    kind = "gpt2"
    vocab_size = 50257

    def __init__(self) -> None:
        self.encoding = gpt2_encoding()

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind}


def _get_encoding_with_timeout(name: str, timeout: float) -> tiktoken.Encoding | None:
    """tiktoken.get_encoding, which downloads on first use and has no timeout of its own; None if it fails."""
    result: list[tiktoken.Encoding] = []

    def target() -> None:
        try:
            result.append(tiktoken.get_encoding(name))
        except Exception:  # no network, a proxy page, a bad cache: fall back to the shipped file
            pass

    thread = threading.Thread(target=target, daemon=True)  # a daemon never holds up interpreter exit
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


@cache
def gpt2_encoding(timeout: float = 5.0) -> tiktoken.Encoding:
    """GPT-2's encoding: ``tiktoken.get_encoding("gpt2")`` when that works, else built offline from the
    ranks file shipped in ``ablate/assets`` (identical merges, pattern and special token)."""
    encoding = _get_encoding_with_timeout("gpt2", timeout)
    if encoding is not None:
        return encoding
    from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str

    ranks = load_tiktoken_bpe(str(files("ablate.assets") / "gpt2.tiktoken"), expected_hash=GPT2_RANKS_SHA256)
    return tiktoken.Encoding(
        name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={ENDOFTEXT: 50256}
    )


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild the tokenizer a checkpoint was trained with."""
    if state["kind"] == "char":
        return CharTokenizer(state["chars"])
    if state["kind"] == "gpt2":
        return GPT2Tokenizer()
    raise ConfigError(f"data.tokenizer={state['kind']!r} is unknown; choose one of: {', '.join(TOKENIZERS)}")
