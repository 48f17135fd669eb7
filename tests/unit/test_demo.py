"""Demo generator: list format and counts, determinism, atomic output, and anatomically sane expressions."""
import json
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from stages.common.errors import StageError
from stages.common.face_detect import detect_faces, landmarks_68
from stages.common.media import count_frames
from stages.demo.__main__ import main as demo_main
from stages.demo.expressions import CLASSES, PATTERNS, displacement, pattern_field
from stages.demo.face_model import astronaut_rgb, detect_landmarks, face_size
from stages.demo.generate import (ClipSpec, Config, build_scene, generate, intensity_curve, parse_config, plan_clips,
                                  pose_matrix, render_face, synthesize_clip)

SMALL = {"clips_per_class": 2, "min_frames": 5, "max_frames": 9, "size": 128, "seed": 7}
BROWS = slice(17, 27)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the same small config, the first through the CLI."""
    a, b = tmp_path_factory.mktemp("a") / "source", tmp_path_factory.mktemp("b") / "source"
    demo_main(["--config-json", json.dumps(SMALL), "--out-dir", str(a)])
    generate(parse_config(SMALL), b)
    return a, b


@pytest.fixture(scope="module")
def scene():
    return build_scene(192)


def read_list(path: Path) -> list[tuple[str, int, int]]:
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split(" ")
        assert len(fields) == 3, line
        rows.append((fields[0], int(fields[1]), int(fields[2])))
    return rows


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_jpgs(folder: Path) -> np.ndarray:
    return np.stack([cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))])


def test_lists_match_clips_on_disk(runs):
    root = runs[0]
    for split in (1, 2):
        train, test = (read_list(root / "lists" / f"demo_set_{split}_{part}.txt") for part in ("train", "test"))
        paths = [p for p, _, _ in train + test]
        assert len(set(paths)) == len(paths) == 2 * len(CLASSES)  # a partition of all clips
        assert {label for _, _, label in test} == {label for _, _, label in train} == set(range(len(CLASSES)))
        for path, n, label in train + test:
            assert path.startswith("/DEMO_ROOT/clips/")
            local = root / path.removeprefix("/DEMO_ROOT/")
            assert Path(path).name.startswith(CLASSES[label] + "_")
            assert SMALL["min_frames"] <= n <= SMALL["max_frames"]
            assert count_frames(local)[1] == n  # what the index stage counts
            assert len(decode(local) if local.suffix == ".mp4" else read_jpgs(local)) == n
    assert read_list(root / "lists/demo_set_1_test.txt") != read_list(root / "lists/demo_set_2_test.txt")


def test_both_source_kinds_and_manifest(runs):
    root = runs[0]
    clips = sorted((root / "clips").iterdir())
    folders = [c for c in clips if c.is_dir()]
    assert folders and len(folders) < len(clips)
    assert [p.name for p in sorted(folders[0].iterdir())][:2] == ["000001.jpg", "000002.jpg"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts_per_class"] == {c: 2 for c in CLASSES}
    assert manifest["config"]["seed"] == SMALL["seed"] and manifest["generation_seconds"] > 0


def test_same_seed_same_output(runs):
    a, b = runs
    for name in ("demo_set_1_train.txt", "demo_set_1_test.txt", "demo_set_2_train.txt", "demo_set_2_test.txt"):
        assert (a / "lists" / name).read_text() == (b / "lists" / name).read_text()
    for clip in sorted((a / "clips").iterdir()):
        read = read_jpgs if clip.is_dir() else decode
        assert np.array_equal(read(clip), read(b / "clips" / clip.name)), clip.name


def test_out_dir_is_replaced_whole(tmp_path):
    out = tmp_path / "source"
    (out / "clips").mkdir(parents=True)
    (out / "stale.txt").write_text("old")
    generate(parse_config({**SMALL, "clips_per_class": 1, "max_frames": 5}), out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]  # no temporary siblings left
    assert len(list((out / "clips").iterdir())) == len(CLASSES)


def test_config_defaults_and_errors():
    assert parse_config({}) == Config()
    bad_configs = [{"clip_per_class": 3}, {"size": 191}, {"seed": "0"}, {"min_frames": 10, "max_frames": 5}, {"test_fraction": 1}]
    for bad in bad_configs:
        with pytest.raises(StageError):
            parse_config(bad)
    with pytest.raises(StageError):
        demo_main(["--config-json", "{not json", "--out-dir", "unused"])


def test_intensity_curve_ramps_from_neutral():
    for seed in range(20):
        curve = intensity_curve(np.random.default_rng(seed), 24)
        assert curve[0] == 0 and 0 <= curve.min() and curve.max() <= 1 and curve.max() > 0.9


def test_astronaut_landmarks_are_anatomical():
    lm = detect_landmarks(astronaut_rgb())
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    nose_tip, mouth = lm[33], lm[48:68].mean(0)
    assert eye_l[0] < nose_tip[0] < eye_r[0]  # left eye left of right eye, nose between
    assert max(eye_l[1], eye_r[1]) < nose_tip[1] < mouth[1] < lm[8, 1]  # eyes above nose above mouth above chin
    assert lm[BROWS, 1].mean() < min(eye_l[1], eye_r[1])
    assert (lm[4:13, 1] > max(eye_l[1], eye_r[1])).all()  # lower jaw below the eyes
    assert 60 < face_size(lm) < 200


def test_patterns_move_the_right_landmarks():
    lm = detect_landmarks(astronaut_rgb())
    unit = face_size(lm)
    d = {name: displacement(name, lm) / unit for name in CLASSES}
    # image y grows downwards: "up" is a negative dy
    assert (d["happiness"][[48, 54], 1] < -0.03).all()
    assert d["happiness"][48, 0] < 0 < d["happiness"][54, 0]  # corners out
    assert (d["surprise"][BROWS, 1] < -0.05).all() and d["surprise"][8, 1] > 0.05 and d["surprise"][66, 1] > 0.05
    assert (d["surprise"][[37, 38, 43, 44], 1] < 0).all()  # upper lids up: eyes wide
    assert (d["anger"][BROWS, 1] > 0).all() and d["anger"][21, 0] > 0 > d["anger"][22, 0]  # down, together
    assert d["anger"][51, 1] > 0 > d["anger"][57, 1]  # lips pressed together
    assert (d["sadness"][[21, 22], 1] < -0.03).all() and (d["sadness"][[48, 54], 1] > 0.03).all()
    assert d["disgust"][51, 1] < -0.03 and d["disgust"][33, 1] < -0.02 and (d["disgust"][19:25, 1] > 0).all()
    assert (d["fear"][BROWS, 1] < 0).all() and d["fear"][21, 0] > 0 > d["fear"][22, 0]
    assert d["fear"][48, 0] < -0.03 and d["fear"][54, 0] > 0.03  # mouth stretched sideways
    assert np.abs(d["neutral"]).max() == 0
    # In face axes every pattern is mirror-symmetric: mirrored points move mirrored.
    left, right = [0, 4, 17, 21, 31, 37, 40, 48, 49, 59, 60, 61, 67], [16, 12, 26, 22, 35, 44, 47, 54, 53, 55, 64, 63, 65]
    for name in CLASSES:
        f = pattern_field(PATTERNS[name])
        assert np.allclose(f[left, 1], f[right, 1]) and np.allclose(f[left, 0], -f[right, 0]), name


def test_warped_faces_are_found_and_move_as_intended(scene):
    pose = pose_matrix(scene)
    found = {}
    for name in ("neutral", "surprise", "happiness"):
        frame, _ = render_face(scene, displacement(name, scene.source.landmarks), pose)
        faces = detect_faces(frame, upsample=0)
        assert faces, f"dlib finds no face in the {name} apex frame"
        assert faces[0].box[2] - faces[0].box[0] >= 80
        found[name] = landmarks_68(frame, faces[0].box)
    unit = face_size(found["neutral"])
    brow_lift = lambda lm: (lm[36:48, 1].mean() - lm[BROWS, 1].mean()) / unit  # noqa: E731
    assert brow_lift(found["surprise"]) > brow_lift(found["neutral"]) + 0.03
    corners = lambda lm: lm[[48, 54], 1].mean()  # noqa: E731
    assert corners(found["happiness"]) < corners(found["neutral"]) - 1.0


def test_occluded_clips_are_chosen_apart_and_leave_the_other_clips_unchanged():
    plain = plan_clips(parse_config({**SMALL, "occluded_clips": 0}))
    some = plan_clips(parse_config({**SMALL, "occluded_clips": 3}))
    assert sum(s.occluded for s in some) == 3 and not any(s.occluded for s in plain)
    assert [replace(s, occluded=False) for s in some] == plain
    with pytest.raises(StageError, match="occluded_clips"):
        parse_config({**SMALL, "occluded_clips": 15})


def test_an_occluded_demo_clip_is_flagged_by_the_face_tracker(scene):
    from stages.frames.stage import DEFAULTS, face_crop

    spec = ClipSpec("happiness_000", CLASSES.index("happiness"), "happiness", 24, False, (0, 1, 0))
    face = {**DEFAULTS["face_crop"], "enabled": True}
    clear, _ = synthesize_clip(scene, spec)
    hidden, _ = synthesize_clip(scene, replace(spec, occluded=True))
    assert np.array_equal(clear[:3], hidden[:3])  # the face is visible before the object arrives (from 15 %)
    _, clear_columns = face_crop(list(clear), range(24), face, "clear")
    with pytest.warns(UserWarning, match="flagged in the review sheet"):
        _, hidden_columns = face_crop(list(hidden), range(24), face, "hidden")
    assert clear_columns["crop_flag"] == "" and clear_columns["crop_filled_fraction"] == 0
    assert hidden_columns["crop_flag"] == "face_filled" and hidden_columns["crop_filled_fraction"] > 0.5


SHIFT = {**SMALL, "seed": 8, "classes": {"joy": "happiness", "calm": "neutral", "shock": "surprise"}, "identity": 1.0,
         "max_roll": 12, "max_brightness": 40, "fps": 15, "occluded_clips": 1}


def test_a_shifted_config_renames_and_subsets_classes_deterministically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(parse_config(SHIFT), a)
    generate(parse_config(SHIFT), b)
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["classes"] == ["joy", "calm", "shock"]
    assert manifest["counts_per_class"] == {"joy": 2, "calm": 2, "shock": 2}
    rows = read_list(a / "lists/demo_set_1_train.txt") + read_list(a / "lists/demo_set_1_test.txt")
    assert sorted((Path(p).name.split("_")[0], label) for p, _, label in rows) == [
        ("calm", 1), ("calm", 1), ("joy", 0), ("joy", 0), ("shock", 2), ("shock", 2)]
    assert (a / "lists/demo_set_1_test.txt").read_text() == (b / "lists/demo_set_1_test.txt").read_text()
    for clip in sorted((a / "clips").iterdir()):
        read = read_jpgs if clip.is_dir() else decode
        assert np.array_equal(read(clip), read(b / "clips" / clip.name)), clip.name
    video = next(p for p in (a / "clips").iterdir() if p.suffix == ".mp4")
    with av.open(str(video)) as container:
        assert container.streams.video[0].average_rate == 15
    shock = [s for s in plan_clips(parse_config(SHIFT)) if s.name.startswith("shock_")]
    assert {s.expression for s in shock} == {"surprise"} and {s.max_roll for s in shock} == {12}


def test_identity_reshapes_the_face_for_every_clip_and_dlib_still_finds_it(scene):
    other = build_scene(192, identity=1.0)
    spec = ClipSpec("x", 0, "neutral", 6, False, (3, 0, 0))
    (plain, plain_pts), (reshaped, reshaped_pts) = synthesize_clip(scene, spec), synthesize_clip(other, spec)

    def eye_distance(pts):  # over jaw width: the pose's scale cancels
        eyes = np.linalg.norm(pts[:, 42:48].mean(1) - pts[:, 36:42].mean(1), axis=1)
        return eyes / np.linalg.norm(pts[:, 16] - pts[:, 0], axis=1)

    assert np.all(eye_distance(reshaped_pts) > eye_distance(plain_pts) * 1.03)
    for frame in (plain[-1], reshaped[-1]):
        assert len(detect_faces(frame, upsample=1)) == 1


def test_class_settings_are_checked():
    for bad in ({"classes": {}}, {"classes": {"joy": "glee"}}, {"classes": {"big joy": "happiness"}},
                {"classes": ["happiness"]}, {"max_roll": 90}, {"identity": "1"}):
        with pytest.raises(StageError, match="demo config"):
            parse_config(bad)


def test_demo_shift_description_agrees_with_its_generator_settings():
    import yaml

    from stages.common.config import stage_section
    from stages.common.datasets import load_dataset_config

    config = yaml.safe_load(Path("config/config.yaml").read_text())
    generated = parse_config(stage_section(config, "demo", "demo_shift"))
    described = load_dataset_config(config["datasets"]["demo_shift"]["description"])
    assert described.classes == tuple(generated.classes)
    assert {c: described.same_as.get(c, c) for c in described.classes} == generated.classes  # patterns = demo's names
    assert set(generated.classes) != set(CLASSES) and generated != parse_config(config["demo"])
