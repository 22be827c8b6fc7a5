"""Bad input to train/eval/predict: one line on stderr, exit status 2 (divergence: 3), no traceback."""

from __future__ import annotations

import os
import zipfile

import pytest
import torch
from data_writers import write_idx_set

import reslab
from reslab.checkpoint import load_checkpoint, save_checkpoint
from reslab.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("errrun") / "run"
    reslab.train(
        model="resnet8", epochs=1, batch_size=64, precision="fp32", device="cpu", quiet=True, out=out
    )
    return out / "best.pt"


def fails(capsys, argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("reslab ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--model", "nosuchnet"], "nosuchnet"),
        (["--data", "nosuchdata"], "nosuchdata"),
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-3"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "-8"], "--batch-size"),
        (["--precision", "fp16", "--device", "cpu"], "fp16"),
        (["--lr", "-1"], "--lr"),
        (["--label-smoothing", "1.0"], "--label-smoothing"),
        (["--random-erase", "1.5"], "--random-erase"),
    ],
)
def test_train_rejects_bad_settings(capsys, tmp_path, flags, words):
    err = fails(capsys, ["train", "--out", str(tmp_path / "run"), *flags])
    assert words in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_refuses_weights_for_another_architecture(capsys, tmp_path, checkpoint):
    err = fails(
        capsys, ["train", "--model", "resnet14", "--weights", str(checkpoint), "--out", str(tmp_path)]
    )
    assert "do not fit resnet14" in err


def test_a_diverging_run_exits_3(capsys, tmp_path):
    argv = ["train", "--model", "resnet8", "--lr", "1e12", "--epochs", "2", "--batch-size", "64"]
    err = fails(
        capsys, [*argv, "--precision", "fp32", "--device", "cpu", "--quiet", "--out", str(tmp_path)], 3
    )
    assert "diverged" in err and "--lr" in err
    # It diverged within epoch 1: no checkpoint was ever written, and the message says so.
    assert "at epoch 1 " in err and "no epoch finished, so there is no checkpoint" in err, err
    assert "is kept" not in err and not (tmp_path / "last.pt").exists()


def test_resume_refuses_settings_it_would_ignore_and_checkpoints_other_than_last(capsys, checkpoint):
    run = checkpoint.parent
    err = fails(
        capsys, ["train", "--resume", str(run), "--epochs", "5", "--lr", "0.3", "--quiet", "--threads", "1"]
    )
    assert "drop --epochs, --lr (" in err and "--quiet" not in err and "--threads" not in err
    for flags in (
        ["--model", "resnet20"],
        ["--data", "digits"],
        ["--seed", "0"],
        ["--precision", "fp32"],
        ["--random-erase", "0.5"],
        ["--label-smoothing", "0.1"],
    ):
        assert f"drop {flags[0]} (" in fails(capsys, ["train", "--resume", str(run), *flags])
    err = fails(capsys, ["train", "--resume", str(checkpoint)])
    assert "best.pt would rewind the run" in err and "last.pt" in err


def _truncated(tmp_path, checkpoint):
    path = tmp_path / "truncated.pt"
    path.write_bytes(checkpoint.read_bytes()[: os.path.getsize(checkpoint) // 2])
    return path


def _not_a_checkpoint(tmp_path, checkpoint):
    path = tmp_path / "notes.pt"
    path.write_text("these are not the weights you are looking for\n")
    return path


def _a_zip_archive(tmp_path, checkpoint):
    path = tmp_path / "images.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "no tensors here\n")
    return path


def _other_architecture(tmp_path, checkpoint):
    payload = load_checkpoint(checkpoint)
    payload.pop("path")
    payload["model_config"] = reslab.create_model("resnet14", in_chans=1, num_classes=10).config.to_dict()
    run = payload["run_config"]
    payload["run_config"] = {**run, "model": {**run["model"], "name": "resnet14"}}
    return save_checkpoint(tmp_path / "other.pt", payload)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _code_pickle(tmp_path, checkpoint):
    path = tmp_path / "evil.pt"
    torch.save({"format": "reslab-checkpoint", "version": 1, "model": RunsCode()}, path)
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_truncated, "is truncated or corrupt"),
        (_not_a_checkpoint, "is not a PyTorch checkpoint (not a zip archive)"),
        (_a_zip_archive, "is a zip archive but not a PyTorch checkpoint"),
        (_other_architecture, "resnet14"),
        (_code_pickle, "weights-only"),
    ],
)
@pytest.mark.parametrize("command", ["eval", "predict", "train-resume"])
def test_bad_checkpoints(capsys, tmp_path, checkpoint, make, words, command):
    path = make(tmp_path, checkpoint)
    if command == "eval":
        argv = ["eval", str(path), "--device", "cpu"]
    elif command == "predict":
        argv = ["predict", str(path), str(tmp_path / "any.png")]
    else:  # --resume takes only a run's last.pt
        last = tmp_path / "cut" / "last.pt"
        last.parent.mkdir()
        path.rename(last)
        argv = ["train", "--resume", str(last)]
    assert words in fails(capsys, argv)


def test_predict_rejects_an_undecodable_image(capsys, tmp_path, checkpoint):
    image = tmp_path / "broken.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    assert "broken.png" in fails(capsys, ["predict", str(checkpoint), str(image)])
    assert "missing.png" in fails(capsys, ["predict", str(checkpoint), str(tmp_path / "missing.png")])


def test_eval_rejects_missing_checkpoints_and_bad_data(capsys, tmp_path, checkpoint):
    assert "does not exist" in fails(capsys, ["eval", str(tmp_path / "nothing.pt")])
    assert "nosuchdata" in fails(capsys, ["eval", str(checkpoint), "--data", "nosuchdata"])
    write_idx_set(tmp_path / "mnist", size=12)  # 1 channel, 10 classes as digits, but 12x12 and not 8x8
    err = fails(capsys, ["eval", str(checkpoint), "--device", "cpu", "--data", f"mnist:{tmp_path / 'mnist'}"])
    assert "has 12x12 images but the model was trained on 8x8" in err
    assert "--topk" in fails(capsys, ["predict", str(checkpoint), "x.png", "--topk", "0"])


def test_unwritable_outputs_are_one_line(capsys, tmp_path, checkpoint):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    err = fails(capsys, ["train", "--model", "resnet8", "--epochs", "1", "--out", str(a_file)])
    assert "notes.txt" in err and "is a file" in err
    err = fails(capsys, ["eval", str(checkpoint), "--device", "cpu", "--out", "/proc/confusion.png"])
    assert "cannot write '/proc/confusion.png'" in err
