"""A word- or character-level tokenizer built from a corpus, for text encoders trained from scratch.

The book's prostate LDM (ch. 4) tokenises prompts with BERT's WordPiece vocabulary but trains its
transformer from scratch; over the closed prompt vocabulary a word-level vocabulary behaves the same
and needs no download (spec ch. 4, Sect. 2.8). Tokenisation runs on the host (NumPy out); the
encoder that consumes the ids is `gensynth.models.text_encoder.TextEncoder`.
"""

from __future__ import annotations

import collections
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")  # ids 0..3, in this order
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
LEVELS = ("word", "char")
_WORD = re.compile(r"[\w'-]+|[^\w\s]")  # words (with ' and -) and single punctuation marks


class Tokenizer:
    """Maps texts to fixed-length int32 id sequences `[BOS] tokens [EOS] [PAD]...` and back.

    Texts are lower-cased (optionally) and split into words and punctuation marks (`level="word"`)
    or into characters (`level="char"`). Ids 0-3 are `[PAD]`, `[UNK]`, `[BOS]`, `[EOS]`; a token not
    in the vocabulary becomes `[UNK]`; a text longer than `max_length - 2` tokens is truncated (its
    `[EOS]` kept). `decode(encode(texts))` returns each text in canonical form (lower-cased, single
    spaces, punctuation attached to the preceding word) when all its tokens are in the vocabulary.

    Args:
      vocab: the regular tokens, ids 4, 5, ... in this order (no duplicates, no special tokens).
      max_length: L, the length of every encoded sequence, >= 3 (BOS, one token, EOS).
      level: "word" or "char".
      lowercase: lower-case texts before splitting.

    Raises:
      ValueError: on a duplicate or special token in `vocab`, `max_length < 3` or an unknown `level`.

    >>> tok = Tokenizer.from_corpus(["a t2 image of a prostate"], max_length=8)
    >>> ids, mask = tok.encode(["A T2 image"])
    >>> ids.tolist(), int(mask.sum())
    ([[2, 4, 5, 6, 3, 0, 0, 0]], 5)
    >>> tok.decode(ids)
    ['a t2 image']
    """

    def __init__(self, vocab: Sequence[str], *, max_length: int, level: str = "word", lowercase: bool = True):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 (BOS, a token, EOS), got {max_length}")
        tokens = list(SPECIAL_TOKENS) + list(vocab)
        if len(set(tokens)) != len(tokens):
            dup = sorted(t for t, n in collections.Counter(tokens).items() if n > 1)
            raise ValueError(f"vocab must not repeat tokens or contain special tokens, got duplicates {dup[:5]}")
        self.tokens = tuple(tokens)
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.max_length = max_length
        self.level = level
        self.lowercase = lowercase

    @classmethod
    def from_corpus(
        cls, texts: Iterable[str], *, max_length: int, level: str = "word", lowercase: bool = True, min_count: int = 1
    ) -> Tokenizer:
        """Builds the vocabulary of `texts`: every token seen at least `min_count` times, most frequent
        first (ties in order of first appearance)."""
        probe = cls([], max_length=max_length, level=level, lowercase=lowercase)
        counts = collections.Counter(tok for text in texts for tok in probe.split(text))
        vocab = [t for t, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n >= min_count and t not in probe.ids]
        return cls(vocab, max_length=max_length, level=level, lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """The tokens of one text (before the id lookup)."""
        if self.lowercase:
            text = text.lower()
        return _WORD.findall(text) if self.level == "word" else list(text)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encodes a batch of B texts.

        Returns:
          `(ids, mask)`: `ids` int32 `[B, L]` (`[BOS]`, tokens, `[EOS]`, then `[PAD]`), and `mask`
          bool `[B, L]`, True at the non-pad positions (BOS and EOS included).

        Raises:
          TypeError: if `texts` is a single string instead of a sequence of strings.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got a single str (wrap it in a list)")
        ids = np.full((len(texts), self.max_length), PAD_ID, np.int32)
        for b, text in enumerate(texts):
            seq = [BOS_ID] + [self.ids.get(t, UNK_ID) for t in self.split(text)][: self.max_length - 2] + [EOS_ID]
            ids[b, : len(seq)] = seq
        return ids, ids != PAD_ID

    def decode(self, ids: np.ndarray) -> list[str]:
        """Texts of `ids` `[B, L]`: the tokens between `[BOS]` and the first `[EOS]` (or `[PAD]`)."""
        texts = []
        for row in np.asarray(ids):
            words = []
            for i in row.tolist():
                if i in (EOS_ID, PAD_ID):
                    break
                if i != BOS_ID:
                    words.append(self.tokens[i])
            joined = " ".join(words) if self.level == "word" else "".join(words)
            texts.append(re.sub(r" ([^\w\s'-])", r"\1", joined) if self.level == "word" else joined)
        return texts

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary and settings as JSON (atomically: a temporary file, then a rename)."""
        path = Path(path)
        config = {"level": self.level, "lowercase": self.lowercase, "max_length": self.max_length,
                  "tokens": list(self.tokens)}  # fmt: skip
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
        os.replace(f.name, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Reads a tokenizer written by `save`.

        Raises:
          FileNotFoundError: if `path` does not exist.
          ValueError: if the file is not a tokenizer JSON (missing field or wrong special tokens).
        """
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
            tokens, level, lowercase, max_length = (config[k] for k in ("tokens", "level", "lowercase", "max_length"))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a tokenizer JSON (need tokens, level, lowercase, max_length)") from err
        if tuple(tokens[:4]) != SPECIAL_TOKENS:
            raise ValueError(f"{path}: the first tokens must be {SPECIAL_TOKENS}, got {tokens[:4]}")
        return cls(tokens[4:], max_length=max_length, level=level, lowercase=lowercase)
