"""python -m stages.predict on the demo's trained models: demo test clips give the evaluation's predictions, new
videos and frame folders are predicted, unreadable inputs are reported by name while the others are predicted."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from stages.common.errors import StageError
from stages.demo.generate import ClipSpec, build_scene, synthesize_clip, write_frame_folder, write_mp4
from stages.predict.cli import main
from stages.predict.pipeline import load_run
from tests.workflow.conftest import snakemake

OVERLAY = "tests/config/test.yaml"
SUPERVISED = ["base", "star", "dagger", "star-dagger", "dfer-clip"]
MODELS = [f"results/demo/fold1/{m}" for m in SUPERVISED] + ["results/zeroshot/demo"]


@pytest.fixture(scope="module")
def trained(demo_run, tmp_path_factory) -> Path:
    """A copy of the demo run with every model kind trained on fold 1 (the four variants, DFER-CLIP, zero-shot)."""
    workdir = tmp_path_factory.mktemp("predict") / "run"
    shutil.copytree(demo_run, workdir, symlinks=True)
    snakemake(workdir, *[f"{m}/model.pt" for m in MODELS])
    return workdir


def run_predict(workdir: Path, monkeypatch, *args: str) -> tuple[int, dict]:
    """Run the CLI in ``workdir`` (as a user would, from the workflow folder); its exit status and JSON output."""
    monkeypatch.chdir(workdir)
    out = workdir / "predict.json"
    try:
        main([*args, "--configfile", OVERLAY, "--json", str(out), "--no-progress"])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, json.loads(out.read_text())


def demo_test_clips(workdir: Path) -> dict[str, str]:
    """{clip_id: source} of one video and one frame folder of fold 1's test split whose caption was approved as
    refined (so a caption model reads the text predict makes)."""
    index = pq.read_table(workdir / "results/demo/index.parquet").to_pylist()
    approved = {r["clip_id"]: r for r in pq.read_table(workdir / "results/demo/captions/approved.parquet").to_pylist()}
    refined = {r["clip_id"]: r for r in pq.read_table(workdir / "results/demo/captions/refined.parquet").to_pylist()}
    picked = {}
    for row in index:
        clip = row["clip_id"]
        in_test = {"fold": "fold1", "split": "test"} in row["splits"]
        same_caption = clip in approved and approved[clip]["caption"] == refined[clip]["caption_refined"] != ""
        if in_test and same_caption and row["source_kind"] not in picked.values():
            picked[clip] = row["source_kind"]
    assert sorted(picked.values()) == ["frames", "video"], picked
    return {clip: next(r["source"] for r in index if r["clip_id"] == clip) for clip in picked}


def softmax(logits) -> np.ndarray:
    z = np.exp(np.asarray(logits, np.float64) - np.max(logits))
    return z / z.sum()


@pytest.mark.parametrize("model", MODELS)
def test_demo_test_clips_get_the_evaluations_predictions(trained, monkeypatch, model):
    clips = demo_test_clips(trained)
    status, result = run_predict(trained, monkeypatch, *clips.values(), "--model", model, "--top", "2")
    assert status == 0, result
    evaluated = {r["clip_id"]: r for r in pq.read_table(trained / model / "predictions.parquet").to_pylist()}
    names = json.loads((trained / model / "run_info.json").read_text())["class_names"]
    assert result["class_names"] == names
    for (clip, source), row in zip(clips.items(), result["clips"]):
        assert row["source"] == source
        probabilities = np.array([row["probabilities"][c] for c in names])
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
        assert len(row["top"]) == 2 and row["top"][0]["class"] == row["prediction"]
        assert row["prediction"] == names[evaluated[clip]["prediction"]], (model, clip)
        np.testing.assert_allclose(probabilities, softmax(evaluated[clip]["logits"]), atol=1e-4)
        if model.endswith("dagger"):  # the caption models read the caption the caption and refine stages make
            approved = pq.read_table(trained / "results/demo/captions/approved.parquet").to_pylist()
            assert row["caption"] == next(r["caption"] for r in approved if r["clip_id"] == clip)


def new_clip(folder: Path) -> tuple[Path, Path]:
    """A clip the demo never made (another seed), as an mp4 and as a frame folder."""
    spec = ClipSpec("unseen", label=3, expression="anger", n_frames=30, as_frames=False, seed=(12345, 3, 0))
    frames, _ = synthesize_clip(build_scene(192), spec)
    video, images = folder / "unseen.mp4", folder / "unseen_frames"
    write_mp4(video, frames, fps=25)
    write_frame_folder(images, frames)
    return video, images


def test_new_videos_and_frame_folders_are_predicted_and_bad_inputs_named(trained, monkeypatch, tmp_path, capsys):
    video, images = new_clip(tmp_path)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    blank = tmp_path / "no_face"
    blank.mkdir()
    import cv2

    for i in range(20):
        cv2.imwrite(str(blank / f"{i:03d}.jpg"), np.full((96, 96, 3), 128, np.uint8))
    missing = tmp_path / "missing.avi"
    inputs = [video, images, corrupt, blank, missing]
    status, result = run_predict(trained, monkeypatch, *map(str, inputs), "--model", MODELS[3])
    assert status == 1  # some failed; the others were predicted
    assert "|" not in capsys.readouterr().err  # --no-progress: no stage draws a progress bar either
    rows = {Path(r["source"]): r for r in result["clips"]}
    assert list(rows) == inputs
    for good in (video, images):
        assert sum(rows[good]["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert rows[good]["caption"]  # the landmark-motion caption of a face that moves
    for bad, words in ((corrupt, "video"), (blank, "no face"), (missing, "no such file")):
        assert str(bad) in rows[bad]["error"] and words in rows[bad]["error"], rows[bad]


def test_a_folder_of_videos_stands_for_its_videos_and_csv_lists_every_class(trained, monkeypatch, tmp_path):
    video, images = new_clip(tmp_path)
    model = MODELS[4]  # dfer-clip
    monkeypatch.chdir(trained)
    main([str(tmp_path), "--model", model, "--configfile", OVERLAY, "--csv", str(tmp_path / "out.csv"),
          "--no-progress", "--top", "1"])
    lines = (tmp_path / "out.csv").read_text().splitlines()
    names = json.loads((trained / model / "run_info.json").read_text())["class_names"]
    assert lines[0].split(",") == ["source", "prediction", "probability", *names, "error"]
    assert [line.split(",")[0] for line in lines[1:]] == [str(video), str(images)]
    for line in lines[1:]:
        values = line.split(",")
        assert sum(map(float, values[3:-1])) == pytest.approx(1.0, abs=1e-5) and values[1] in names


def test_a_run_checked_against_other_config_files_is_refused(trained, monkeypatch):
    monkeypatch.chdir(trained)
    with pytest.raises(StageError, match="--configfile"):
        load_run(MODELS[0])  # trained with the test overlay: 1 epoch, tiny towers
    with pytest.raises(StageError, match="zero-shot"):
        load_run(MODELS[0], [OVERLAY], classes=["calm", "tense"])


def test_a_run_whose_features_or_captions_were_made_otherwise_is_refused(trained, monkeypatch, tmp_path):
    """run_info.json records the settings its features and captions were made with; predict compares the config
    files' (frames, faces, captions with the prompt's content, refine with the lexicons' content) against them."""
    monkeypatch.chdir(trained)
    made_with = json.loads((trained / MODELS[3] / "run_info.json").read_text())["made_with"]
    assert set(made_with) == {"frames", "faces", "captions", "refine"} and made_with["frames"]["size"] == 96
    assert set(json.loads((trained / MODELS[0] / "run_info.json").read_text())["made_with"]) == {"frames", "faces"}
    for model in MODELS:
        load_run(model, [OVERLAY])  # the config files it was trained with: accepted
    quality = tmp_path / "quality.yaml"
    quality.write_text("frames: {jpeg_quality: 75}\n")
    with pytest.raises(StageError, match=r"frames\.jpeg_quality differ"):
        load_run(MODELS[0], [OVERLAY, str(quality)])
    lexicons = tmp_path / "lexicons"
    shutil.copytree(trained / "config/lexicons", lexicons)
    edited = sorted(lexicons.glob("*.txt"))[0]
    edited.write_text(edited.read_text() + "\nnewword\n")
    other = tmp_path / "lexicons.yaml"
    other.write_text(f"refine: {{lexicons: {lexicons}}}\n")
    with pytest.raises(StageError, match=rf"refine\.lexicons\.{edited.name} differ"):
        load_run(MODELS[3], [OVERLAY, str(other)])
    load_run(MODELS[0], [OVERLAY, str(other)])  # a model without captions does not depend on them


def test_a_zero_shot_model_scores_the_classes_it_is_given(trained, monkeypatch):
    source = next(iter(demo_test_clips(trained).values()))
    status, result = run_predict(trained, monkeypatch, source, "--model", MODELS[-1], "--classes", "calm, tense")
    assert status == 0 and result["class_names"] == ["calm", "tense"]
    row = result["clips"][0]
    assert set(row["probabilities"]) == {"calm", "tense"}
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
