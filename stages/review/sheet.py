"""The review sheet: caption hashes, spreadsheet-safe CSV writing, robust reading, export keeping earlier decisions.

Cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab, CR or LF) get a leading
``'`` on export; cells already starting with ``'`` get one too, so that stripping exactly one such quote on import
gives back the original text whatever it was.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa

from stages.common.errors import StageError
from stages.common.io import atomic_path

# What a reviewer edits comes first, then what they read to decide (the refined caption beside what refinement removed
# from it and why), then context; caption_sha, which ties a decision to the caption it was made on, comes last.
SHEET_COLUMNS = [
    "clip_id", "status", "edited_caption", "caption_refined", "removed", "flags", "face_filled", "leakage_score", "label",
    "splits", "reviewer", "note", "caption_raw", "caption_sha",
]
REQUIRED_COLUMNS = ["clip_id", "caption_sha", "status", "edited_caption"]
STATUSES = ("pending", "approved", "rejected", "edited")
CHANGED_NOTE = "caption changed since review"

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "'")  # \n: the CSV reader turns a lone \r into \n
_NUMBER_LIKE = re.compile(r"\d+(?:e\d+)?")  # hex hashes a spreadsheet would turn into a number, e.g. 0123 or 12e45
# What a spreadsheet writes into a cell whose formula failed: the text a reviewer typed is lost.
_SPREADSHEET_ERROR = re.compile(r"#(?:NAME\?|VALUE!|REF!|DIV/0!|N/A|NUM!|NULL!|SPILL!|CALC!|FIELD!|BLOCKED!"
                                r"|UNKNOWN!|GETTING_DATA|CONNECT!|BUSY!)|\bErr:\d{3}\b", re.IGNORECASE)  # Err:508: LibreOffice
_FORMULA = re.compile(r"[=+@]|-\s*[=+@(\d]|-[A-Za-z]+\(")  # =SUM(..), +A1, @X, -=.., -1+2, -LEN(..)

INFO_FLAG_PREFIX = "info:"


def needs_review(flags) -> bool:
    """True when a caption carries a flag that asks for a human decision (``info:`` flags only inform)."""
    return any(not flag.startswith(INFO_FLAG_PREFIX) for flag in flags or [])


def spreadsheet_damage(cell: str) -> str:
    """Why a typed caption cannot be trusted ("" when it can): a spreadsheet error value, or text that a
    spreadsheet runs as a formula (so what was saved may be its result, not what the reviewer meant)."""
    text = cell.strip()
    error = _SPREADSHEET_ERROR.search(text)
    if error:
        return f"spreadsheet error value {error.group(0)}"
    if _FORMULA.match(text):
        return f"formula-looking text starting {text[:12]!r}"
    return ""


def removed_text(removed) -> str:
    """The spans refinement removed, each with its reason: "'in surprise' (emotion word 'surprise') | ..."."""
    return " | ".join(f"'{span['text']}' ({span['reason']})" for span in removed or [])


def face_filled_text(fraction) -> str:
    """Share of the clip's frames whose face crop was filled from the nearest tracked box ("" when not cropped)."""
    return "" if fraction is None else f"{fraction:.0%}"


def normalise_caption(text: str | None) -> str:
    """NFC-normalised text with runs of whitespace (CRLF, tabs, double spaces) collapsed to one space."""
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def caption_sha(text: str | None) -> str:
    """First 16 hex chars of the sha256 of the normalised caption: equal for texts that differ only in whitespace."""
    return hashlib.sha256(normalise_caption(text).encode("utf-8")).hexdigest()[:16]


def clean_sha(cell: str) -> str:
    """A caption_sha cell as typed back: without spaces, the quote that keeps it text, or upper case."""
    return cell.strip().lstrip("'").lower()


def clean_status(cell: str) -> str:
    """Status cell, case- and space-insensitive; empty means pending."""
    return cell.strip().lower() or "pending"


def neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) else cell


def write_sheet(sheet: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the sheet atomically: UTF-8 with BOM (so Excel reads it as UTF-8), every field quoted, ``\\n`` line ends."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(SHEET_COLUMNS)
        sha = SHEET_COLUMNS.index("caption_sha")
        for row in sheet[SHEET_COLUMNS].itertuples(index=False):
            cells = [neutralise(str(cell)) for cell in row]
            if _NUMBER_LIKE.fullmatch(cells[sha]):  # keep it text; clean_sha drops the quote again
                cells[sha] = "'" + cells[sha]
            writer.writerow(cells)


def read_sheet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a sheet as saved by a spreadsheet: BOM, CRLF, newlines in cells, ``,`` or ``;`` separators, all as text.

    The index is the row number a spreadsheet shows (header = row 1). Fully blank rows are dropped.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise StageError(f"{path}: not UTF-8 text ({err}). Save it again as 'CSV UTF-8' and run again.") from err
    header = text.split("\n", 1)[0]
    sep = ";" if header.count(";") > header.count(",") else ","
    try:
        sheet = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise StageError(f"{path}: not a readable CSV sheet ({err}). Save it again as CSV and run again.") from err
    sheet.columns = [str(name).strip().lower() for name in sheet.columns]
    missing = [name for name in REQUIRED_COLUMNS if name not in sheet.columns]
    if missing:
        raise StageError(f"{path}: missing columns {missing}. Keep the header row of the exported sheet "
                         f"({', '.join(SHEET_COLUMNS)}) and run again.")
    sheet = sheet.map(restore)
    sheet.index = sheet.index + 2
    return sheet[(sheet != "").any(axis=1)]


def _splits_text(splits) -> str:
    return " ".join(f"{s['fold']}:{s['split']}" for s in splits or [])


def export(refined: pa.Table, index: pa.Table, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """The review sheet for ``refined``, flagged rows first, then by clip_id.

    Decisions (status, edited_caption, reviewer, note) of ``previous`` (a sheet from :func:`read_sheet`) are kept
    for rows whose caption_sha is unchanged; rows whose caption changed go back to pending with a note.
    """
    clips = {row["clip_id"]: row for row in index.select(["clip_id", "class_name", "splits"]).to_pylist()}
    earlier = {} if previous is None else {
        row["clip_id"].strip(): row for row in previous.drop_duplicates("clip_id").to_dict("records")
    }
    rows = []
    for ref in refined.to_pylist():
        clip = clips.get(ref["clip_id"], {})
        score = ref["leakage_score"]
        row = {
            "clip_id": ref["clip_id"], "splits": _splits_text(clip.get("splits")),
            "label": clip.get("class_name") or "",
            "caption_raw": ref["caption_raw"] or "", "caption_refined": ref["caption_refined"] or "",
            "removed": removed_text(ref["removed"]),
            "caption_sha": caption_sha(ref["caption_refined"]), "flags": " ".join(ref["flags"] or []),
            "leakage_score": "" if score is None else f"{score:.3f}",
            "face_filled": face_filled_text(ref.get("face_filled_fraction")),
            "status": "pending", "edited_caption": "", "reviewer": "", "note": "",
        }
        old = earlier.get(ref["clip_id"])
        if old is not None and clean_sha(old["caption_sha"]) == row["caption_sha"]:
            status = clean_status(old["status"])
            row.update(status=status if status in STATUSES else old["status"],  # a typo stays for the human to fix
                       edited_caption=old["edited_caption"], reviewer=old.get("reviewer", ""), note=old.get("note", ""))
        elif old is not None:
            was = clean_status(old["status"])
            was_text = f"was {was}" if was != "pending" else ""
            row["note"] = "; ".join(filter(None, [CHANGED_NOTE, was_text, old.get("note", "")]))
            row["edited_caption"] = old["edited_caption"]
        rows.append(row)
    sheet = pd.DataFrame(rows, columns=SHEET_COLUMNS, dtype=object)
    sheet["_unflagged"] = [not needs_review(cell.split()) for cell in sheet["flags"]]
    return sheet.sort_values(["_unflagged", "clip_id"], kind="stable").drop(columns="_unflagged").reset_index(drop=True)
