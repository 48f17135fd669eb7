"""Refine stage: the supplement's Fig. 4 examples, clause repair, lexicon matching, leakage checks and the CLI."""
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.common.errors import StageError
from stages.common.schemas import CAPTIONS_RAW_SCHEMA, FRAMES_SCHEMA, INDEX_SCHEMA, REFINED_SCHEMA
from stages.refine.__main__ import main as refine_main, parse_config
from stages.refine.leakage import counterfactual_agreement, lexicon_flags, text_classifier
from stages.refine.lexicon import emotion_hits, load_lexicon, words
from stages.refine.refine import count_tokens, refine, split_clauses

LEXICON_DIR = Path(__file__).resolve().parents[2] / "config" / "lexicons"
# Independent of the lexicon files, so that a lexicon edit cannot silently weaken the Fig. 4 checks.
EMOTION_WORDS = {"happy", "sad", "surprise", "anger", "fear", "disgust", "joy", "smile", "sadness", "happiness",
                 "distress", "emotion", "surprised", "emotional", "emotionally", "curiosity", "positivity"}

# FineCLIPER supplement, Fig. 4, "Generated Text" column. Line wraps of the PDF are joined with a space; words the
# generated text glued together ("tuckedin", "hischin", "thecombination", ...) are kept as printed.
FIG4 = [
    "The man in the video displays a surprised expression. His eyes widen, and his eyebrows raise, indicating a "
    "sudden and unexpected event. The mouth remains slightly open, and the chin is slightly tuckedin, suggesting a "
    "momentary pause in speech or thought. The gaze direction is directed upwards, possibly towards the source of "
    "the surprise. Overall, thecombination of these facial features and implied actions conveys a sense of surprise "
    "and curiosity.",
    "The man in the video displays a happy expression with a slight smile on his face. His eyes are bright and "
    "focused, and hischin is slightly uplifted. The man's gaze is directed towards the camera, indicating a friendly "
    "and approachable demeanor. The facial muscles are relaxed, and there is no indication of anger or any other "
    "negative emotion. The overall impression is oneof happiness and positivity.",
    "The woman in the video displays a sad expression. Her eyes appear to be downcast,and her eyebrows are furrowed, "
    "conveying a sense of sadness. The corners of her mouth are turned down, and her chin is slightly protruding, "
    "further emphasizingher sadness. Her gaze is directed downwards, and her breathing appears to be slower and more "
    "shallow, suggesting a sense of contemplation or introspection.The combination of these facial features and "
    "implied actions creates a poignantand emotionally charged scene.",
    "The man in the video is portrayed as sad, with his facial expression showing adownturned mouth, puffy eyes, and "
    "a furrowed brow. The man's gaze is directed downwards, and his chin is tucked in, further emphasizing his "
    "sadness. The impliedactions of his breathing appear to be shallow and slow, which is a common sign of emotional "
    "distress. The combination of these facial features and implied actions collectively convey a sense of sadness "
    "and vulnerability.",
]
# Facial-action clauses of the paper's "Refined Text" column that must survive.
FIG4_KEPT = [
    ["eyes widen", "eyebrows raise", "mouth remains slightly open", "chin is slightly tuckedin",
     "gaze direction is directed upwards"],
    ["eyes are bright and focused", "chin is slightly uplifted", "gaze is directed towards the camera",
     "facial muscles are relaxed"],
    ["eyes appear to be downcast", "eyebrows are furrowed", "corners of her mouth are turned down",
     "chin is slightly protruding", "gaze is directed downwards", "breathing appears to be slower and more shallow"],
    ["downturned mouth", "puffy eyes", "furrowed brow", "gaze is directed downwards", "chin is tucked in",
     "breathing appear to be shallow and slow"],
]


def flat(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def lexicon():
    return load_lexicon(LEXICON_DIR)


@pytest.mark.parametrize("example", range(4))
def test_fig4_keeps_facial_actions_and_drops_emotion(lexicon, example):
    refined = refine(FIG4[example], lexicon).text
    assert emotion_hits(refined, lexicon) == []
    assert not EMOTION_WORDS & set(words(refined))
    for clause in FIG4_KEPT[example]:
        assert clause in flat(refined), (clause, refined)
    assert refined[0].isupper() and refined.endswith(".") and "  " not in refined


def test_fig4_exact_outputs_and_reasons(lexicon):
    first = refine(FIG4[0], lexicon)
    assert first.text == ("His eyes widen, and his eyebrows raise. The mouth remains slightly open, and the chin is "
                          "slightly tuckedin, suggesting a momentary pause in speech or thought. The gaze direction "
                          "is directed upwards.")
    reasons = {r.text: r.reason for r in first.removed}
    assert reasons["The man in the video displays a surprised expression"] == "emotion word 'surprised'"
    assert reasons["indicating a sudden and unexpected event"] == "emotion word 'unexpected'"
    assert any(r.startswith("summary sentence 'overall'") for r in reasons.values())
    # a clause whose subject was dropped is promoted and repaired: "..., with his facial expression showing ..."
    assert refine(FIG4[3], lexicon).text.startswith("His facial expression showing adownturned mouth, puffy eyes,")


def test_wrapped_lines_give_the_same_result(lexicon):
    wrapped = re.sub(r"(.{60,}?) ", lambda m: m.group(1) + " \n", FIG4[2])
    assert "\n" in wrapped
    assert refine(wrapped, lexicon).text == refine(FIG4[2], lexicon).text


def test_repeated_sentences_are_dropped(lexicon):
    result = refine("The lips part. The head turns left.  The lips   PART. The lips part", lexicon)
    assert result.text == "The lips part. The head turns left."
    assert [r.reason for r in result.removed] == ["repeated sentence", "repeated sentence"]


def test_whitespace_and_punctuation_are_normalised(lexicon):
    text = "  the eyes   blink ,  and the lips part ..\tThe head turns ,  .\n\nThe brows rise,,and fall"
    assert refine(text, lexicon).text == "The eyes blink, and the lips part. The head turns. The brows rise, and fall."
    assert refine("1. Eyes: the lids close.\n2. Mouth: lips press together.", lexicon).text == \
        "Eyes: the lids close. Mouth: lips press together."


def test_clause_level_repairs(lexicon):
    assert refine("His eyes widen in surprise and his mouth opens.", lexicon).text == \
        "His eyes widen and his mouth opens."
    assert refine("The man is portrayed as sad, with his lips pressed together.", lexicon).text == \
        "His lips pressed together."
    assert refine("Her brows lower as if angry, while her jaw tightens.", lexicon).text == \
        "Her brows lower, while her jaw tightens."
    assert refine("Overall, the eyebrows stay raised.", lexicon).text == "Overall, the eyebrows stay raised."
    assert refine("The woman smiles. She looks happy and joyful.", lexicon).text == ""
    assert refine(None, lexicon).text == ""


def test_split_clauses_round_trips():
    sentence = "His eyes widen, and his brows rise while the mouth opens, indicating a pause"
    pairs = split_clauses(sentence)
    assert "".join(sep + clause for sep, clause in pairs) == sentence
    assert [clause for _, clause in pairs] == ["His eyes widen", "and his brows rise", "while the mouth opens",
                                               "indicating a pause"]


def test_lexicon_matching(lexicon):
    assert lexicon_flags("The corners of the mouth turn up into a smile.", lexicon) == ["lexicon:smile"]
    assert lexicon_flags("She is SMILING, friendly and approachable.", lexicon) == \
        ["lexicon:smiling", "lexicon:friendly", "lexicon:approachable"]
    assert lexicon_flags("with a sense of calm", lexicon) == ["lexicon:calm", "lexicon:a sense of"]
    # facial-action words whose stems collide with emotion words are not matched
    neutral = ("The head position shifts while approaching the camera; a pause in thought; tears form; "
               "the lip corner depressor pulls; a playing card; the brows are relaxed and the jaw is tense.")
    assert emotion_hits(neutral, lexicon) == []


def test_lexicon_file_errors(tmp_path, lexicon):
    for name in ("emotion_words.txt", "emotion_phrases.txt", "summary_phrases.txt", "stopwords.txt"):
        (tmp_path / name).write_text((LEXICON_DIR / name).read_text())
    (tmp_path / "emotion_phrases.txt").write_text("sense of (\n")
    with pytest.raises(StageError, match="not a valid regular expression"):
        load_lexicon(tmp_path)
    (tmp_path / "emotion_phrases.txt").write_text("sense of\n")
    (tmp_path / "emotion_words.txt").write_text("happy # comment\nvery sad\n")
    with pytest.raises(StageError, match="not a single word"):
        load_lexicon(tmp_path)
    (tmp_path / "stopwords.txt").unlink()
    (tmp_path / "emotion_words.txt").write_text("happy\n")
    with pytest.raises(StageError, match="stopwords.txt: lexicon file not found"):
        load_lexicon(tmp_path)


def test_count_tokens():
    assert count_tokens("") == 2
    assert count_tokens("a photo") == 4
    assert count_tokens(" ".join(["the eyebrows rise"] * 30)) > 77


FILLER = ("eyes blink", "brows rise", "lips part", "head turns", "jaw drops", "gaze shifts", "lids lower",
          "cheeks lift", "nose wrinkles", "chin juts")


def synthetic(rng, n_per_class, classes, leaky):
    texts, labels = [], []
    for c in classes:
        for _ in range(n_per_class):
            parts = rng.sample(FILLER, 3) + ([f"marker{c}"] if leaky else [])
            texts.append(" and ".join(rng.sample(parts, len(parts))))
            labels.append(c)
    return texts, labels


def test_text_classifier_detects_leaky_captions_only():
    rng = random.Random(1)
    texts, labels = synthetic(rng, 30, ["alpha", "beta", "gamma", "delta"], leaky=True)
    leaky = text_classifier(texts, labels, folds=5, seed=0)
    assert leaky.status == "ok" and leaky.folds == 5 and leaky.classes == 4
    assert leaky.accuracy > 0.9 and leaky.uar > 0.9 and leaky.chance_uar == 0.25
    assert leaky.scores.mean() > 0.3

    texts, labels = synthetic(rng, 30, ["alpha", "beta", "gamma", "delta"], leaky=False)
    rng.shuffle(labels)
    blind = text_classifier(texts, labels, folds=5, seed=0)
    assert blind.accuracy < blind.chance_accuracy + 0.15
    assert blind.scores.mean() < 0.1
    assert text_classifier(texts, labels, folds=5, seed=0).scores.tolist() == blind.scores.tolist()  # seeded


def test_text_classifier_skips_when_it_cannot_run():
    result = text_classifier(["lips part", "brows rise", ""], ["a", "a", "b"], folds=5)
    assert result.status.startswith("skipped") and result.scores.tolist() == [0.0, 0.0, 0.0]


def test_counterfactual_agreement():
    text = "The eyebrows rise and the mouth opens wide."
    assert counterfactual_agreement(text, text) == 1.0
    assert counterfactual_agreement(text, "  the EYEBROWS rise, and the mouth opens wide") == 1.0
    assert counterfactual_agreement(text, "Her lips press together while the head tilts down.") < 0.2
    assert counterfactual_agreement("", "") == 1.0 and counterfactual_agreement(text, "") == 0.0


def test_parse_config():
    assert parse_config("{}")["max_tokens_warn"] == 77
    for bad in ("[]", "{", '{"max_tokens": 3}', '{"max_tokens_warn": 300}', '{"classifier_folds": 1}'):
        with pytest.raises(StageError):
            parse_config(bad)


def test_cli_round_trip(tmp_path):
    classes = ["happiness", "sadness"]
    ids = [f"demo-{k:03d}" for k in range(8)]
    index = [{"clip_id": cid, "source": f"/d/{cid}", "source_kind": "frames", "n_frames": 16, "label": k % 2,
              "class_name": classes[k % 2], "splits": [{"fold": "fold1", "split": "test"}]}
             for k, cid in enumerate(ids)]
    pq.write_table(pa.Table.from_pylist(index, schema=INDEX_SCHEMA), tmp_path / "index.parquet")
    captions = {
        "demo-000": ("The cheeks lift and the lips part, showing a happy smile.", "ok", "none"),
        "demo-001": ("The brows draw together. The brows draw together.", "ok", "none"),
        "demo-002": ("", "empty", "none"),
        "demo-003": ("The lids lower, conveying a sense of sadness.", "error: out of memory", "none"),
        "demo-004": (" ".join(f"In frame {k}, the eyebrows rise and the mouth opens wider." for k in range(8)), "ok",
                     "none"),
        "demo-005": ("The corners of the mouth turn down and the gaze drops.", "ok", "paper"),
        "demo-006": ("The cheeks lift and the eyes crinkle.", "ok", "paper"),
        "demo-007": ("The person displays a sad expression.", "ok", "none"),
    }
    rows = [{"clip_id": cid, "caption": text, "backend": "landmark-motion", "model_id": "v1", "prompt_sha": "",
             "label_hint": hint, "status": status, "counterfactual_caption": ""}
            for cid, (text, status, hint) in captions.items()]
    rows[6]["counterfactual_caption"] = "The brows knit and the jaw clenches in anger."
    table = pa.Table.from_pylist(rows, schema=CAPTIONS_RAW_SCHEMA)
    pq.write_table(table.slice(0, 4), tmp_path / "raw0.parquet")
    pq.write_table(table.slice(4), tmp_path / "raw1.parquet")
    counterfactual = [{"clip_id": "demo-005", "caption": "The corners of the mouth turn down, and the gaze drops."}]
    pq.write_table(pa.Table.from_pylist(counterfactual), tmp_path / "cf.parquet")
    out, report = tmp_path / "captions" / "refined.parquet", tmp_path / "captions" / "refinement_report.json"
    crops = [{"clip_id": "demo-001", "crop_flag": "face_filled", "crop_filled_fraction": 0.75},  # the face track
             {"clip_id": "demo-000", "crop_flag": "", "crop_filled_fraction": 0.0}]       # of the frames stage
    pq.write_table(pa.Table.from_pylist(crops, schema=FRAMES_SCHEMA), tmp_path / "frames.parquet")
    refine_main(["--raw", str(tmp_path / "raw0.parquet"), str(tmp_path / "raw1.parquet"),
                 "--index", str(tmp_path / "index.parquet"), "--lexicon-dir", str(LEXICON_DIR),
                 "--config-json", json.dumps({"classifier_folds": 2}), "--out", str(out), "--report", str(report),
                 "--counterfactual", str(tmp_path / "cf.parquet"), "--frames", str(tmp_path / "frames.parquet")])

    refined = pq.read_table(out)
    assert refined.schema.equals(REFINED_SCHEMA)
    got = {row["clip_id"]: row for row in refined.to_pylist()}
    assert got["demo-000"]["caption_refined"] == "The cheeks lift and the lips part."
    assert got["demo-000"]["removed"] == [{"text": "showing a happy smile", "reason": "emotion word 'happy'"}]
    assert got["demo-001"]["caption_refined"] == "The brows draw together."
    assert got["demo-001"]["flags"] == ["face_filled"] and got["demo-001"]["face_filled_fraction"] == 0.75
    assert got["demo-000"]["face_filled_fraction"] == 0 and got["demo-004"]["face_filled_fraction"] is None
    for cid in ("demo-002", "demo-003", "demo-007"):
        assert got[cid]["caption_refined"] == "" and got[cid]["flags"] == ["empty"] and got[cid]["n_tokens"] == 2
    assert got["demo-004"]["flags"] == ["info:over_77_tokens"]
    assert got["demo-005"]["flags"] == [] and got["demo-006"]["flags"] == ["counterfactual"]
    assert all(0.0 <= row["leakage_score"] <= 1.0 for row in got.values())

    summary = json.loads(report.read_text())
    assert summary["rows"] == 8 and summary["flags"]["empty"] == 3 and summary["counterfactual"]["compared"] == 2
    assert summary["removed_spans"]["by_kind"]["repeated sentence"] == 1
    assert summary["text_classifier"]["status"] == "ok" and summary["text_classifier"]["chance_uar"] == 0.5
    assert sum(b["count"] for b in summary["tokens"]["histogram"]) == 8
    assert "# Caption refinement report" in report.with_suffix(".md").read_text()
