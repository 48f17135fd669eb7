"""Lexicons of emotion vocabulary (config/lexicons/*.txt) and the matching that refinement and leakage checks share.

Files hold one entry per line; ``#`` starts a comment. ``emotion_words.txt`` lists single words matched by Snowball
stem; ``emotion_phrases.txt`` and ``summary_phrases.txt`` hold regular expressions in which a space matches any run
of whitespace or none (generated text glues words: "thecombination", "emphasizingher"); ``stopwords.txt`` lists
function words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Collection

from nltk.stem.snowball import SnowballStemmer

from stages.common.errors import StageError

_WORD = re.compile(r"[a-z]+")
_STEMMER = SnowballStemmer("english")


@dataclass(frozen=True)
class Lexicon:
    stems: frozenset[str]  # Snowball stems of emotion_words.txt
    phrases: tuple[re.Pattern, ...]  # emotion-implying phrases
    summaries: tuple[re.Pattern, ...]  # openings of summary sentences
    stopwords: frozenset[str]


@dataclass(frozen=True)
class Hit:
    kind: str  # "word" | "phrase"
    label: str  # the word or phrase as found in the text (lowercase, single spaces)

    @property
    def reason(self) -> str:
        return f"emotion {self.kind} '{self.label}'"

    @property
    def flag(self) -> str:
        return f"lexicon:{self.label}"


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _STEMMER.stem(word.lower())


def words(text: str) -> list[str]:
    """Lowercase alphabetic tokens ("man's" -> "man", "s")."""
    return _WORD.findall(text.lower())


def read_entries(path: str | Path) -> list[str]:
    """Non-empty lines of ``path`` with ``#`` comments and surrounding whitespace removed."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: lexicon file not found. The lexicons ship in config/lexicons/; restore it from git.")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def compile_phrase(pattern: str) -> re.Pattern:
    """Compile a lexicon phrase: case-insensitive, spaces match optional whitespace, starts at a word boundary."""
    source = re.sub(r" +", r"\\s*", pattern.strip())
    if source[:1].isalpha():
        source = r"\b" + source
    return re.compile(source, re.IGNORECASE)


def _phrases(path: Path) -> tuple[re.Pattern, ...]:
    patterns = []
    for entry in read_entries(path):
        try:
            patterns.append(compile_phrase(entry))
        except re.error as err:
            raise StageError(f"{path}: '{entry}' is not a valid regular expression ({err}).") from err
    return tuple(patterns)


def load_lexicon(directory: str | Path) -> Lexicon:
    directory = Path(directory)
    entries = read_entries(directory / "emotion_words.txt")
    for entry in entries:
        if not re.fullmatch(r"[A-Za-z]+", entry):
            raise StageError(f"{directory / 'emotion_words.txt'}: '{entry}' is not a single word; "
                             "put phrases in emotion_phrases.txt.")
    return Lexicon(
        stems=frozenset(map(stem, entries)),
        phrases=_phrases(directory / "emotion_phrases.txt"),
        summaries=_phrases(directory / "summary_phrases.txt"),
        stopwords=frozenset(word.lower() for word in read_entries(directory / "stopwords.txt")),
    )


def _phrase_label(text: str, match: re.Match) -> str:
    """The matched text extended to the end of its last word ("friendl" -> "friendly"), lowercase, single spaces."""
    end = match.end()
    while end < len(text) and text[end].isalpha():
        end += 1
    return " ".join(text[match.start():end].lower().split())


def emotion_hits(text: str, lexicon: Lexicon) -> list[Hit]:
    """Every emotion word and emotion phrase in ``text``, words first, without repeats."""
    hits = [Hit("word", w) for w in words(text) if stem(w) in lexicon.stems]
    for pattern in lexicon.phrases:
        hits += [Hit("phrase", _phrase_label(text, m)) for m in pattern.finditer(text)]
    return list(dict.fromkeys(hits))


def is_summary(text: str, lexicon: Lexicon) -> str | None:
    """The summary opening found in ``text`` (lowercase), or None."""
    for pattern in lexicon.summaries:
        match = pattern.search(text)
        if match:
            return " ".join(match.group(0).lower().split())
    return None


def content_words(text: str, stopwords: Collection[str]) -> list[str]:
    """Stems of the words of ``text`` that are not stopwords (single letters count as stopwords)."""
    return [stem(w) for w in words(text) if len(w) > 1 and w not in stopwords]
