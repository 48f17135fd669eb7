"""Review gate: sheet export with kept decisions, spreadsheet-proof import, every rejected input, the three modes."""
import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, strategies as st

from stages.common.errors import StageError, run_cli
from stages.common.schemas import APPROVED_SCHEMA, INDEX_SCHEMA, REFINED_SCHEMA
from stages.review.__main__ import main as review_main
from stages.review.gate import apply, status
from stages.review.sheet import (SHEET_COLUMNS, caption_sha, export, neutralise, read_sheet, restore,
                                 write_sheet)

CAPTIONS = {  # clip_id -> (refined caption, flags)
    "demo-a": ("The person raises both eyebrows.", []),
    "demo-b": ("The corners of the mouth turn up, a smile.", ["lexicon:smile"]),
    "demo-c": ("-The lips press together.", []),
    "demo-d": ("=HYPERLINK(\"x\") the head tilts.", []),
}


def refined_table(captions=CAPTIONS) -> pa.Table:
    rows = [{"clip_id": cid, "caption_raw": f"raw {text}", "caption_refined": text, "removed": [], "flags": flags,
             "leakage_score": 0.8 if flags else 0.0, "n_tokens": 10, "label_hint": "none"}
            for cid, (text, flags) in captions.items()]
    return pa.Table.from_pylist(rows, schema=REFINED_SCHEMA)


def index_table() -> pa.Table:
    rows = [{"clip_id": cid, "source": f"/d/{cid}", "source_kind": "frames", "n_frames": 16, "label": 0,
             "class_name": "happiness",
             "splits": [{"fold": "fold1", "split": "test"}, {"fold": "fold2", "split": "train"}]}
            for cid in CAPTIONS]
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


def exported(tmp_path, decisions=None, refined=None):
    """Export a sheet, set ``decisions`` (clip_id -> dict of cells) like a human would, and save it."""
    sheet = export(refined or refined_table(), index_table())
    for clip_id, cells in (decisions or {}).items():
        for column, value in cells.items():
            sheet.loc[sheet["clip_id"] == clip_id, column] = value
    path = tmp_path / "demo.csv"
    write_sheet(sheet, path)
    return path


def rewrite(path, edit):
    """Load the sheet's cells as text rows (header first), let ``edit`` change them, write them back."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    edit(rows)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)


def all_approved(**override):
    return {cid: {"status": "approved", **override.get(cid, {})} for cid in CAPTIONS}


def test_caption_sha_ignores_crlf_extra_spaces_and_unicode_form():
    assert caption_sha("a smile.\r\nThen  the  eyes close ") == caption_sha("a smile. Then the eyes close")
    assert caption_sha("caf\u00e9") == caption_sha("cafe\u0301")
    assert caption_sha("a smile") != caption_sha("a frown")
    assert len(caption_sha("x")) == 16 and int(caption_sha("x"), 16) >= 0


def test_export_columns_order_and_flagged_first():
    sheet = export(refined_table(), index_table())
    assert list(sheet.columns) == SHEET_COLUMNS
    assert SHEET_COLUMNS[:6] == ["clip_id", "status", "edited_caption", "caption_refined", "removed", "flags"]
    assert list(sheet["clip_id"]) == ["demo-b", "demo-a", "demo-c", "demo-d"]
    first = sheet.iloc[0]
    assert first["splits"] == "fold1:test fold2:train" and first["label"] == "happiness"
    assert first["flags"] == "lexicon:smile" and first["leakage_score"] == "0.800" and first["status"] == "pending"


def test_a_flagged_face_crop_shows_in_the_sheet_and_needs_a_decision(tmp_path):
    table = refined_table({"demo-a": ("The brows lift.", ["face_filled"]), "demo-c": ("The lips press.", [])})
    table = table.set_column(table.schema.get_field_index("face_filled_fraction"), "face_filled_fraction",
                             pa.array([0.8, 0.0], pa.float32()))
    sheet = export(table, index_table()).set_index("clip_id")
    assert list(sheet.index) == ["demo-a", "demo-c"] and "face_filled" in SHEET_COLUMNS
    assert sheet.loc["demo-a", ["flags", "face_filled"]].tolist() == ["face_filled", "80%"]
    assert sheet.loc["demo-c", "face_filled"] == "0%" and export(refined_table(), index_table())["face_filled"].eq("").all()
    approved, _ = apply(table, None, "auto_approve_unflagged")
    assert approved["clip_id"].to_pylist() == ["demo-c"]  # the crop may show someone else: a person decides


def test_removed_spans_and_their_reasons_sit_beside_the_refined_caption():
    refined = refined_table().to_pylist()
    refined[0]["removed"] = [{"text": "in surprise", "reason": "emotion word 'surprise'"},
                             {"text": "conveying joy", "reason": "emotion word 'joy'"}]
    sheet = export(pa.Table.from_pylist(refined, schema=REFINED_SCHEMA), index_table()).set_index("clip_id")
    assert sheet.loc["demo-a", "removed"] == ("'in surprise' (emotion word 'surprise') | "
                                               "'conveying joy' (emotion word 'joy')")
    assert sheet.loc["demo-b", "removed"] == ""


@pytest.mark.parametrize("cell", ["#NAME?", "#VALUE!", "#REF!", "#DIV/0!", "#N/A", "Err:508",
                                  "=A1&\" the brows lift\"", "+brows lift", "@brows", "-=1+2", "-SUM(1)"])
def test_spreadsheet_errors_and_formula_looking_edits_are_not_approved(tmp_path, cell):
    message = problems_for(tmp_path, lambda rows: None, **{"demo-a": {"status": "edited", "edited_caption": cell}})
    assert "row 3: edited_caption is not a caption a reviewer typed" in message and "nothing was applied" in message


def test_ordinary_edits_pass_even_with_hash_or_dash_inside(tmp_path):
    edits = {"demo-a": {"status": "edited", "edited_caption": "The brows lift - twice, #2 of 3."},
             "demo-c": {"status": "edited", "edited_caption": "- The lips press together."}}
    approved, _ = apply(refined_table(), exported(tmp_path, all_approved(**edits)), "required")
    captions = dict(zip(approved["clip_id"].to_pylist(), approved["caption"].to_pylist()))
    assert captions["demo-a"] == "The brows lift - twice, #2 of 3." and captions["demo-c"] == "- The lips press together."


def test_sheet_file_is_fully_quoted_with_lf_and_formulas_neutralised(tmp_path):
    path = exported(tmp_path)
    raw = path.read_bytes()
    assert b"\r\n" not in raw
    assert raw.decode("utf-8-sig").splitlines()[0] == ",".join(f'"{c}"' for c in SHEET_COLUMNS)
    text = raw.decode("utf-8-sig")
    assert "\"'-The lips" in text and "\"'=HYPERLINK(\"\"x\"\")" in text
    sheet = read_sheet(path)
    assert set(sheet["caption_refined"]) == {text for text, _ in CAPTIONS.values()}


@given(st.text())
def test_neutralise_round_trip_is_lossless(cell):
    assert restore(neutralise(cell)) == cell
    assert not neutralise(cell).startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-x", "@SUM(A1)", "\tx", "\nx", "'=x", "'"])
def test_dangerous_cells_round_trip_through_a_sheet(tmp_path, cell):
    path = exported(tmp_path, {"demo-a": {"status": "edited", "edited_caption": cell, "note": cell}})
    sheet = read_sheet(path)
    row = sheet[sheet["clip_id"] == "demo-a"].iloc[0]
    assert row["note"] == cell and row["edited_caption"] == cell


def test_numeric_looking_sha_stays_text(tmp_path):
    sheet = export(refined_table(), index_table())
    sheet.loc[0, "caption_sha"] = "0123456789012345"
    write_sheet(sheet, tmp_path / "s.csv")
    assert "\"'0123456789012345\"" in (tmp_path / "s.csv").read_text(encoding="utf-8-sig")


def test_spreadsheet_saved_sheet_bom_crlf_semicolons_and_newlines_in_cells(tmp_path):
    sheet = export(refined_table(), index_table())
    sheet["status"] = " Approved "
    sheet.loc[sheet["clip_id"] == "demo-a", ["status", "edited_caption"]] = ["EDITED", "The person\r\nraises  brows."]
    path = tmp_path / "demo.csv"
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:  # what Excel writes in a ';' locale
        csv.writer(handle, delimiter=";", lineterminator="\r\n").writerows(
            [SHEET_COLUMNS] + [[neutralise(str(c)) for c in row] for row in sheet.itertuples(index=False)])
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    table, summary = apply(refined_table(), path, "required")
    captions = dict(zip(table["clip_id"].to_pylist(), table["caption"].to_pylist()))
    assert captions["demo-a"] == "The person raises brows."
    assert captions["demo-c"] == "-The lips press together."
    assert summary.counts["edited"] == 1 and summary.counts["approved"] == 3


def test_required_mode_all_decided(tmp_path):
    path = exported(tmp_path, all_approved(**{"demo-b": {"status": "rejected"},
                                             "demo-c": {"status": "edited", "edited_caption": "Lips  press."}}))
    table, summary = apply(refined_table(), path, "required")
    assert table.schema == APPROVED_SCHEMA
    rows = {r["clip_id"]: r for r in table.to_pylist()}
    assert set(rows) == {"demo-a", "demo-c", "demo-d"}
    assert rows["demo-c"]["caption"] == "Lips press." and rows["demo-c"]["decision"] == "edited"
    assert rows["demo-c"]["caption_sha"] == caption_sha("-The lips press together.")
    assert rows["demo-a"]["decision"] == "approved" and rows["demo-a"]["label_hint"] == "none"
    assert summary.line().startswith("review (required): 2 approved, 1 edited, 1 rejected, 0 pending")


def test_required_mode_with_pending_rows_names_counts_and_next_step(tmp_path):
    path = exported(tmp_path, {"demo-a": {"status": "approved"}})
    with pytest.raises(StageError) as err:
        apply(refined_table(), path, "required")
    assert f"3 of 4 rows still pending in {path}. Open it, set status to approved, rejected or edited" in str(err.value)
    assert "run the same snakemake command again" in str(err.value)


def test_required_mode_counts_clips_missing_from_the_sheet(tmp_path):
    path = exported(tmp_path, all_approved())
    rewrite(path, lambda rows: rows.pop())
    with pytest.raises(StageError, match="1 of 4 rows still pending.*1 of them are not in the sheet at all"):
        apply(refined_table(), path, "required", generated="results/demo/review/sheet.csv")


def test_required_mode_missing_sheet_says_to_copy_the_generated_one(tmp_path):
    generated = tmp_path / "sheet.csv"
    generated.write_text("x")
    with pytest.raises(StageError) as err:
        apply(refined_table(), tmp_path / "config" / "demo.csv", "required", generated=str(generated))
    assert f"copy {generated} to {tmp_path / 'config' / 'demo.csv'}, review it, and run again" in str(err.value)


def test_auto_mode_approves_unflagged_and_leaves_flagged_out(tmp_path):
    table, summary = apply(refined_table(), None, "auto_approve_unflagged")
    assert table["clip_id"].to_pylist() == ["demo-a", "demo-c", "demo-d"]
    assert set(table["decision"].to_pylist()) == {"auto_approved"}
    assert summary.counts["auto"] == 3 and summary.counts["pending"] == 1
    assert "1 flagged captions have no decision" in summary.warnings[0] and "demo-b" in summary.warnings[0]


def test_informational_flags_do_not_block_auto_approval():
    captions = {"demo-a": ("A long but clean caption.", ["info:over_77_tokens"]),
                "demo-b": ("Too long even for Long-CLIP.", ["over_248_tokens"])}
    table, summary = apply(refined_table(captions), None, "auto_approve_unflagged")
    assert table["clip_id"].to_pylist() == ["demo-a"] and summary.counts["pending"] == 1


def test_auto_mode_follows_the_sheet_where_it_decides(tmp_path):
    path = exported(tmp_path, {"demo-b": {"status": "approved"}, "demo-a": {"status": "rejected"}})
    table, summary = apply(refined_table(), path, "auto_approve_unflagged")
    decisions = dict(zip(table["clip_id"].to_pylist(), table["decision"].to_pylist()))
    assert decisions == {"demo-b": "approved", "demo-c": "auto_approved", "demo-d": "auto_approved"}
    assert summary.warnings == []


def test_off_mode_passes_every_non_empty_caption(tmp_path):
    captions = {**CAPTIONS, "demo-e": ("  ", ["empty"])}
    table, summary = apply(refined_table(captions), tmp_path / "missing.csv", "off")
    assert table.num_rows == 4 and set(table["decision"].to_pylist()) == {"unreviewed"}
    assert summary.counts["empty"] == 1


def problems_for(tmp_path, edit, **decisions):
    path = exported(tmp_path, all_approved(**decisions))
    rewrite(path, edit)
    with pytest.raises(StageError) as err:
        apply(refined_table(), path, "required")
    assert str(path) in str(err.value)
    return str(err.value)


def test_unknown_clip_id_is_rejected_with_row_number(tmp_path):
    def edit(rows):
        rows[2][0] = "demo-zzz"
    message = problems_for(tmp_path, edit)
    assert "row 3: clip_id not in the refined captions (demo-zzz)" in message


def test_duplicate_clip_id_is_rejected(tmp_path):
    message = problems_for(tmp_path, lambda rows: rows.append(list(rows[1])))
    assert "clip_id demo-b is on rows 2, 6. Keep one row per clip" in message


def test_unknown_status_is_rejected(tmp_path):
    message = problems_for(tmp_path, lambda rows: None, **{"demo-a": {"status": "aproved"}})
    assert "row 3: unknown status ('aproved'). Use pending, approved, rejected or edited." in message


def test_edited_without_text_is_rejected(tmp_path):
    message = problems_for(tmp_path, lambda rows: None, **{"demo-a": {"status": "edited", "edited_caption": " "}})
    assert "row 3: status is edited but edited_caption is empty" in message


def test_stale_caption_sha_asks_to_re_export(tmp_path):
    path = exported(tmp_path, all_approved())
    changed = {**CAPTIONS, "demo-d": ("The head tilts left.", [])}
    with pytest.raises(StageError, match=r"row 5: caption_sha does not match.*Re-export and review those rows"):
        apply(refined_table(changed), path, "required")


def test_missing_columns_are_rejected(tmp_path):
    path = exported(tmp_path, all_approved())

    def drop_sha(rows):
        for row in rows:
            del row[SHEET_COLUMNS.index("caption_sha")]
    rewrite(path, drop_sha)
    with pytest.raises(StageError, match=r"missing columns \['caption_sha'\]"):
        apply(refined_table(), path, "required")


def test_all_problems_are_reported_at_once(tmp_path):
    def edit(rows):
        rows[2][0] = "demo-zzz"
        rows[3][SHEET_COLUMNS.index("status")] = "maybe"
    assert "2 problem(s)" in problems_for(tmp_path, edit)


def test_export_keeps_decisions_for_unchanged_captions_and_resets_changed_ones(tmp_path):
    path = exported(tmp_path, {"demo-a": {"status": "approved", "reviewer": "ana", "note": "ok"},
                               "demo-d": {"status": "Rejected", "reviewer": "ana"}})
    changed = refined_table({**CAPTIONS, "demo-d": ("The head tilts left.", [])})
    sheet = export(changed, index_table(), read_sheet(path)).set_index("clip_id")
    assert sheet.loc["demo-a", ["status", "reviewer", "note"]].tolist() == ["approved", "ana", "ok"]
    assert sheet.loc["demo-d", "status"] == "pending" and sheet.loc["demo-d", "reviewer"] == ""
    assert sheet.loc["demo-d", "note"].startswith("caption changed since review")
    assert sheet.loc["demo-b", "status"] == "pending"


def test_status_reports_counts_pending_and_next_step(tmp_path, capsys):
    results, review = tmp_path / "results", tmp_path / "review"
    (results / "demo" / "captions").mkdir(parents=True)
    pq.write_table(refined_table(), results / "demo" / "captions" / "refined.parquet")
    assert "next: copy" in status("demo", str(results), str(review))
    review.mkdir()
    exported(review, {"demo-a": {"status": "approved"}})
    review_main(["status", "demo", "--results", str(results), "--review-dir", str(review)])
    out = capsys.readouterr().out
    assert out.startswith("review mode: auto_approve_unflagged: captions without flags are used without a decision")
    assert "1 approved" in out and "3 pending" in out
    assert "1 of the pending rows are flagged; under this mode 1 captions wait" in out
    assert "first pending: demo-b\n" in out and "1 of 4 rows wait for a decision" in out


def test_status_describes_each_mode(tmp_path):
    results, review = tmp_path / "results", tmp_path / "review"
    (results / "demo" / "captions").mkdir(parents=True)
    pq.write_table(refined_table(), results / "demo" / "captions" / "refined.parquet")
    off = status("demo", str(results), str(review), "off")
    assert off.startswith("review mode: off: no review") and "nothing to review" in off
    required = status("demo", str(results), str(review), "required")
    assert "training waits until none is pending" in required and "all 4 captions wait" in required
    review.mkdir()
    exported(review, {"demo-a": {"status": "approved"}})
    assert "3 of 4 rows wait for a decision" in status("demo", str(results), str(review), "required")
    auto = status("demo", str(results), str(review), "auto_approve_unflagged")
    assert "flagged ones are left out of training" in auto and "1 of 4 rows wait" in auto


def test_status_reads_the_mode_from_the_config(tmp_path, capsys):
    results = tmp_path / "results"
    (results / "demo" / "captions").mkdir(parents=True)
    pq.write_table(refined_table(), results / "demo" / "captions" / "refined.parquet")
    config = tmp_path / "config.yaml"
    config.write_text("datasets: {demo: {description: x, review: {mode: required}}}\n"
                      f"review: {{mode: off, sheets: {tmp_path / 'sheets'}}}\n")
    review_main(["status", "demo", "--results", str(results), "--config", str(config)])
    out = capsys.readouterr().out
    assert out.startswith("review mode: required") and str(tmp_path / "sheets" / "demo.csv") in out


def test_cli_export_then_apply(tmp_path, capsys):
    refined, index = tmp_path / "refined.parquet", tmp_path / "index.parquet"
    pq.write_table(refined_table(), refined)
    pq.write_table(index_table(), index)
    generated, human, approved = tmp_path / "sheet.csv", tmp_path / "config" / "demo.csv", tmp_path / "approved.parquet"
    review_main(["export", "--refined", str(refined), "--index", str(index), "--previous", str(human),
                 "--out", str(generated)])
    assert "4 rows, 1 flagged, 0 decided" in capsys.readouterr().out
    review_main(["apply", "--refined", str(refined), "--sheet", str(human), "--generated", str(generated),
                 "--mode", "auto_approve_unflagged", "--out", str(approved)])
    out = capsys.readouterr()
    assert "3 auto" in out.out and "warning: 1 flagged" in out.err
    assert pq.read_table(approved).schema.names == APPROVED_SCHEMA.names
    with pytest.raises(SystemExit) as exc:
        run_cli(review_main, ["apply", "--refined", str(refined), "--sheet", str(human), "--generated",
                              str(generated), "--mode", "required", "--out", str(approved)])
    assert exc.value.code == 2 and f"copy {generated} to {human}" in capsys.readouterr().err
