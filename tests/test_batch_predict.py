"""`reslab predict` over folders and @lists, streamed: rows in order, bad files as error rows, CSV/JSONL."""

from __future__ import annotations

import csv
import json

import pytest

import reslab
from reslab.cli import main


def _sorted_paths(paths):
    return sorted(paths, key=lambda p: (p.parent.name, p.name))


def test_folders_and_lists_give_one_row_per_image_in_order(digits_run, digit_folder, tmp_path):
    folder, paths, labels = digit_folder
    listed = tmp_path / "some.txt"
    listed.write_text(f"# two of them\n{paths[3]}\n\n{paths[0]}\n")
    rows = reslab.predict(digits_run, [folder, f"@{listed}"], topk=2, device="cpu", batch_size=8)
    expected = [str(p) for p in _sorted_paths(paths)] + [str(paths[3]), str(paths[0])]
    assert [r["path"] for r in rows] == expected
    assert all(r["error"] is None and len(r["top"]) == 2 for r in rows)
    by_path = {r["path"]: r["top"][0]["class"] for r in rows}
    hits = sum(by_path[str(p)] == str(label) for p, label in zip(paths, labels, strict=True))
    assert hits >= 14  # trained well above chance (10%)


def test_workers_and_batch_size_do_not_change_the_answer(digits_run, digit_folder):
    folder = digit_folder[0]
    one = reslab.predict(digits_run, [folder], device="cpu", batch_size=20, workers=0, fast=False)
    many = reslab.predict(digits_run, [folder], device="cpu", batch_size=3, workers=2, fast=False)
    assert one == many


@pytest.fixture
def with_broken(digit_folder, tmp_path):
    folder, paths, _ = digit_folder
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return [paths[0], broken, paths[1]], broken


def test_a_bad_image_is_an_error_row_and_the_run_goes_on(digits_run, with_broken, tmp_path, capsys):
    inputs, broken = with_broken
    out = tmp_path / "pred.csv"
    assert main(["predict", str(digits_run), *map(str, inputs), "--out", str(out), "--topk", "3"]) == 0
    err = capsys.readouterr().err
    assert "1 of 3 image(s) could not be read" in err
    with open(out, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["path"] for r in table] == [str(p) for p in inputs]
    assert table[1]["error"].startswith(f"cannot decode image {broken}") and table[1]["class_1"] == ""
    assert table[0]["error"] == "" and table[0]["class_3"] != "" and float(table[0]["probability_1"]) > 0
    assert not out.with_name("pred.csv.partial").exists()


def test_strict_stops_at_the_first_bad_image_and_keeps_what_was_written(
    digits_run, with_broken, tmp_path, capsys
):
    inputs, broken = with_broken
    out = tmp_path / "pred.jsonl"
    out.write_text("an older result\n")
    argv = ["predict", str(digits_run), *map(str, inputs), "--out", str(out), "--strict", "--batch-size", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        f"reslab predict: error: cannot decode image {broken}"
    )
    assert out.read_text() == "an older result\n"  # never half-replaced
    partial = [json.loads(line) for line in out.with_name("pred.jsonl.partial").read_text().splitlines()]
    assert [r["path"] for r in partial] == [str(inputs[0])]  # what came before the bad file is kept


def test_jsonl_rows_match_the_python_api(digits_run, digit_folder, tmp_path, capsys):
    folder = digit_folder[0]
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(digits_run), str(folder), "--out", str(out), "--topk", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == reslab.predict(digits_run, [folder], topk=1, device="cpu")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--out", "pred.txt"], "name a .csv or .jsonl file"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--workers", "-1"], "--workers must be 0 or more"),
    ],
)
def test_bad_options_are_one_line(digits_run, digit_folder, capsys, extra, words):
    assert main(["predict", str(digits_run), str(digit_folder[1][0]), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_nothing_readable_is_exit_2(digits_run, tmp_path, capsys):
    missing_list = tmp_path / "none.txt"
    assert main(["predict", str(digits_run), f"@{missing_list}"]) == 2
    assert "cannot read the list" in capsys.readouterr().err
    bad = tmp_path / "a.png"
    bad.write_bytes(b"nope")
    assert main(["predict", str(digits_run), str(bad), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of the 2 images could be read" in err


def test_a_name_that_is_neither_checkpoint_nor_weights(capsys, tmp_path):
    image = tmp_path / "x.png"
    assert main(["predict", "no-such-run", str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert "neither a checkpoint nor a weights name such as resnet50.IMAGENET1K_V2" in err, err
