"""Logs and weights out: TensorBoard events and metrics.csv mirror metrics.jsonl (also across a resume);
`reslab export --format safetensors` writes weights + config.json that create_model loads exactly."""

import csv
import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import reslab
from reslab.checkpoint import load_checkpoint, model_from_checkpoint
from reslab.cli import main
from reslab.data import load_data, normalise
from reslab.errors import ReslabError
from reslab.export import formats as export_formats
from reslab.export import read_metadata
from reslab.models import create_model
from reslab.training import engine
from reslab.training.run_dir import METRIC_KEYS, read_metrics
from reslab.training.tb_log import SCALAR_KEYS

TINY = dict(batch_size=256, precision="fp32", device="cpu", quiet=True, threads=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "run"
    reslab.train("resnet8", "digits", epochs=2, out=out, **TINY)
    return out


def _scalars(run_dir):
    """{tag: [(step, value), ...]} as TensorBoard reads the run directory (all its events files)."""
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


def _assert_logs_match_metrics(run_dir):
    rows = read_metrics(run_dir)
    scalars = _scalars(run_dir)
    assert sorted(scalars) == sorted(SCALAR_KEYS)
    for key in SCALAR_KEYS:
        # One event per epoch (a resume purged the re-trained epochs), each the metrics.jsonl value in
        # TensorBoard's float32.
        assert [step for step, _ in scalars[key]] == [row["epoch"] for row in rows], key
        for (_, value), row in zip(scalars[key], rows, strict=True):
            assert np.float32(value) == np.float32(row[key]), (key, row["epoch"])
    with open(run_dir / "metrics.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == list(METRIC_KEYS)
    assert len(lines) == len(rows) + 1
    for line, row in zip(lines[1:], rows, strict=True):
        # repr-formatted numbers read back exactly
        assert [float(v) for v in line] == [float(row[k]) for k in METRIC_KEYS]


def test_tensorboard_events_and_csv_mirror_metrics_jsonl(run):
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temp files left
    _assert_logs_match_metrics(run)


def test_resume_after_a_crash_before_last_pt_keeps_events_and_csv_consistent(tmp_path, monkeypatch):
    """Killed after epoch 2's scalars were logged but before its last.pt: the resume re-trains epoch 2 and
    TensorBoard shows it once, with the values metrics.jsonl and metrics.csv hold."""
    out = tmp_path / "cut"
    real_save = engine.save_checkpoint

    class Killed(Exception):
        pass

    def save(path, payload):
        if path.name == "last.pt" and payload["epoch"] == 2:
            raise Killed
        return real_save(path, payload)

    with monkeypatch.context() as patch:
        patch.setattr(engine, "save_checkpoint", save)
        with pytest.raises(Killed):
            reslab.train("resnet8", "digits", epochs=3, out=out, **TINY)
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert [step for step, _ in _scalars(out)["val_loss"]] == [1, 2]  # epoch 2 was logged, then the crash
    assert [r["epoch"] for r in read_metrics(out)] == [1]

    reslab.train(resume=out, quiet=True, threads=1)
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3]
    assert len(list(out.glob("events.out.tfevents.*"))) == 2  # the resume appended a new events file
    _assert_logs_match_metrics(out)


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_export_safetensors_round_trips_exactly(run, capsys):
    run_config = (run / "config.json").read_bytes()
    assert main(["export", str(run), "--format", "safetensors", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    folder = run / "best-safetensors"
    weights, config_path = folder / "model.safetensors", folder / "config.json"
    assert report["passed"] and report["path"] == str(weights) and report["config_path"] == str(config_path)
    assert report["max_abs_diff"] == 0.0 and report["input_source"].startswith("digits test split")
    assert report["dynamic_batch"] and report["batch_sizes"] == [1, 8]  # weights fit any batch size
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (run / "config.json").read_bytes() == run_config  # the run's own config.json is untouched

    payload = load_checkpoint(run)
    config = json.loads(config_path.read_text())
    data = payload["data"]
    assert config["model_name"] == "resnet8" and config["model_config"] == payload["model_config"]
    assert config["mean"] == list(data["mean"]) and config["std"] == list(data["std"])
    assert config["class_names"] == list(data["class_names"]) and config["weights"] == "model.safetensors"
    meta = read_metadata(weights)
    assert meta["class_names"] == config["class_names"] and meta["mean"] == config["mean"]

    # The file holds the fp32 state_dict, contiguous, and create_model loads it to the same logits.
    from safetensors.torch import load_file

    state = load_file(str(weights))
    assert state.keys() == payload["model"].keys()
    assert all(v.is_contiguous() and torch.equal(v, payload["model"][k]) for k, v in state.items())
    model = create_model(
        "resnet8",
        weights=weights,
        in_chans=config["model_config"]["in_chans"],
        num_classes=config["model_config"]["num_classes"],
    )
    bundle = load_data("digits")
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    x = normalise(bundle.test.images[:64], mean, std)
    assert torch.equal(_logits(model, x), _logits(model_from_checkpoint(payload), x))

    # Exporting again replaces the folder's files (the config.json there is ours).
    assert main(["export", str(run / "best.pt"), "-f", "safetensors", "-o", str(folder)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_safetensors_export_never_replaces_a_run_config(run, capsys):
    before = (run / "config.json").read_bytes()
    assert main(["export", str(run), "-f", "safetensors", "-o", str(run / "model.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "would replace" in err and err.count("\n") == 1 and "Traceback" not in err
    assert (run / "config.json").read_bytes() == before and not (run / "model.safetensors").exists()
    assert main(["export", str(run), "-f", "safetensors", "-o", str(run / "weights.bin")]) == 2
    assert "ending in .safetensors" in capsys.readouterr().err


def test_a_failed_safetensors_check_leaves_nothing(run, tmp_path, capsys, monkeypatch):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes((run / "best.pt").read_bytes())
    real = export_formats.load_runner

    def drifting(fmt, file):
        runner, name = real(fmt, file)
        return (lambda x: runner(x) + 1e-3), name

    monkeypatch.setattr(export_formats, "load_runner", drifting)
    assert main(["export", str(checkpoint), "-f", "safetensors"]) == 1
    assert "check FAILED" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no best-safetensors/ folder


@pytest.mark.parametrize("content", [b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{not json", b"PK\x03\x04 zip"])
def test_corrupt_safetensors_weights_are_one_line_exit_2(tmp_path, capsys, content):
    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(content)
    with pytest.raises(ReslabError, match="not a readable safetensors file"):
        create_model("resnet8", weights=corrupt, in_chans=1, num_classes=10)
    argv = [
        "train",
        "--model",
        "resnet8",
        "--epochs",
        "1",
        "--weights",
        str(corrupt),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main([*argv, "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not a readable safetensors file" in err and err.count("\n") == 1 and "Traceback" not in err


def test_truncated_safetensors_file_is_one_line(run, tmp_path, capsys):
    assert main(["export", str(run), "-f", "safetensors", "-o", str(tmp_path)]) == 0
    capsys.readouterr()
    whole = (tmp_path / "model.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole[: len(whole) // 2])  # an interrupted copy
    with pytest.raises(ReslabError) as info:
        create_model("resnet8", weights=cut, in_chans=1, num_classes=10)
    assert "not a readable safetensors file" in str(info.value) and "\n" not in str(info.value)
