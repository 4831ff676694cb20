"""Commands as shell lines a reader can paste: each word quoted only as much as a POSIX shell needs."""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def shell_line(words: Sequence[str]) -> str:
    """Words as one shell line (each as :func:`_shell_word` quotes it)."""
    return " ".join(_shell_word(w) for w in words)


def _shell_word(word: str) -> str:
    """``word`` quoted for a POSIX shell: as it is where it needs no quotes, in double quotes where it holds
    nothing a shell expands inside them, else as :func:`shlex.quote` quotes it."""
    quoted = shlex.quote(word)
    if quoted == word or set(word) & set('"$`\\!'):
        return quoted
    return f'"{word}"'
