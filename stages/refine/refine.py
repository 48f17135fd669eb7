"""Deterministic caption refinement: keep what the face does, drop what the face is said to feel.

The supplement of FineCLIPER (§5, Fig. 4) removes two kinds of text from the MLLM's description: sentences that
name the emotion ("The man in the video displays a surprised expression.") and clauses that infer one
(", conveying a sense of sadness", ", which is a common sign of emotional distress"). Here that is a sentence and
clause filter over the lexicons of :mod:`stages.refine.lexicon`:

1. normalise whitespace and punctuation (also "introspection.The" and "downcast,and");
2. split into sentences, and each sentence into clauses at commas, semicolons, "and" + determiner, and before
   "while", "which", "with", "as if" and inferential participles ("indicating", "suggesting", "conveying", ...);
3. drop a summary sentence ("Overall, ...", "The combination of these facial features ...") whole when it carries
   any emotion evidence; otherwise drop each clause with an emotion word or phrase, keeping its head when only a
   short trailing "in/with ..." phrase carries the emotion ("eyes widen in surprise" -> "eyes widen");
4. repair what remains (leading connective of a promoted clause, capital letter, final period), drop sentences
   left without content words, and drop repeated sentences.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from stages.refine.lexicon import Lexicon, content_words, emotion_hits, is_summary

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE_SEP = re.compile(
    r"\s*[,;:]\s*"
    r"|\s+(?=(?:while|whereas|which|with|as if|as though|indicating|suggesting|conveying|implying|signall?ing"
    r"|reflecting|possibly|perhaps|probably)\b)"
    r"|\s+(?=and\s+(?:his|her|their|its|the|an?|there|this|these|he|she|they|it)\b)",
    re.IGNORECASE,
)
_LEADING_CONNECTIVE = re.compile(r"^(?:and|but|or|so|while|whereas|which|with)\s+", re.IGNORECASE)
_BULLET = re.compile(r"^(?:[-*\u2022]+|\d+[.)])\s+")
_TRAILING_PP = re.compile(r"^(?P<head>.+?)\s+(?P<tail>(?:in|with|out of|from)\s+(?:[\w']+\s+){0,2}[\w']+)$", re.I)


@dataclass(frozen=True)
class Removed:
    text: str
    reason: str


@dataclass(frozen=True)
class Refinement:
    text: str
    removed: tuple[Removed, ...]


def normalise(text: str) -> str:
    """Single spaces, one space after and none before punctuation, no doubled punctuation.

    A newline is kept (as a sentence break) only before a blank line or a list item; wrapped lines are joined.
    """
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"(?<=[a-z])([.!?])(?=[A-Z])", r"\1 ", text)  # "introspection.The"
    text = re.sub(r"(?<=[A-Za-z])([,;])(?=[A-Za-z])", r"\1 ", text)  # "downcast,and"
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" ?\n(?!\s*(?:\n|[-*\u2022]|\d+[.)]\s))\s*", " ", text)  # wrapped line: join it
    text = re.sub(r" ?\n\s*", "\n", text)  # paragraph break or list item: keep one newline
    text = re.sub(r" +([,.;:!?])", r"\1", text)
    text = re.sub(r"[,;:]+(?=[.!?])", "", text)  # ", ." -> "."
    text = re.sub(r"([,;:])[,;: ]*[,;:]", r"\1", text)  # ",," -> ","
    text = re.sub(r"\.{2,}", ".", text)
    return text.strip()


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``; each line (paragraph or list item, bullet removed) ends a sentence."""
    lines = (_BULLET.sub("", line) for line in normalise(text).split("\n"))
    return [s.strip() for line in lines for s in _SENTENCE_END.split(line) if s.strip()]


def split_clauses(sentence: str) -> list[tuple[str, str]]:
    """``(separator before, clause)`` pairs; joining them in order gives ``sentence`` back."""
    pairs, start, sep = [], 0, ""
    for match in _CLAUSE_SEP.finditer(sentence):
        if match.start() > start:
            pairs.append((sep, sentence[start:match.start()]))
            sep = match.group(0)
        else:
            sep += match.group(0)
        start = match.end()
    if start < len(sentence):
        pairs.append((sep, sentence[start:]))
    return pairs


def _capitalise(text: str) -> str:
    for i, char in enumerate(text):
        if char.isalpha():
            return text[:i] + char.upper() + text[i + 1:]
    return text


def _refine_sentence(sentence: str, lexicon: Lexicon, removed: list[Removed]) -> str:
    hits = emotion_hits(sentence, lexicon)
    summary = is_summary(sentence, lexicon)
    if summary and hits:
        removed.append(Removed(sentence, f"summary sentence '{summary}' with {hits[0].reason}"))
        return ""
    end = sentence[-1] if sentence[-1] in ".!?" else "."
    body = sentence.rstrip(".!? ")
    kept: list[tuple[int, str, str]] = []
    for position, (sep, clause) in enumerate(split_clauses(body) if hits else [("", body)]):
        clause_hits = emotion_hits(clause, lexicon)
        if clause_hits:
            match = _TRAILING_PP.match(clause)
            head = match.group("head") if match else ""
            if head and not emotion_hits(head, lexicon) and content_words(head, lexicon.stopwords):
                removed.append(Removed(match.group("tail"), clause_hits[0].reason))
                clause = head
            else:
                removed.append(Removed(clause, clause_hits[0].reason))
                continue
        kept.append((position, sep, clause))
    if not kept:
        return ""
    first = kept[0][2] if kept[0][0] == 0 else _LEADING_CONNECTIVE.sub("", kept[0][2])  # promoted clause
    text = first + "".join((sep.strip() + " " if sep.strip() else " ") + clause for _, sep, clause in kept[1:])
    if not content_words(text, lexicon.stopwords):
        if text.strip():
            removed.append(Removed(text, "no facial content left"))
        return ""
    return _capitalise(text) + end


def refine(text: str | None, lexicon: Lexicon) -> Refinement:
    """Remove emotion-naming sentences and emotion-inferring clauses from ``text``; see the module docstring."""
    removed: list[Removed] = []
    kept: list[str] = []
    seen: set[str] = set()
    for sentence in split_sentences(text or ""):
        refined = _refine_sentence(sentence, lexicon, removed)
        if not refined:
            continue
        key = " ".join(refined.lower().rstrip(".!?").split())
        if key in seen:
            removed.append(Removed(refined, "repeated sentence"))
            continue
        seen.add(key)
        kept.append(refined)
    return Refinement(normalise(" ".join(kept)), tuple(removed))


@lru_cache(maxsize=1)
def _clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer  # imports torch: only when tokens are counted

    return SimpleTokenizer()


def count_tokens(text: str) -> int:
    """CLIP BPE tokens of ``text`` including the start and end tokens (what a CLIP text tower sees, untruncated)."""
    return len(_clip_tokenizer().encode(text)) + 2
