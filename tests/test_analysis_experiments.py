"""`reslab degradation`, `responses`, `ablation` on tiny nets for one epoch: files, keys, plots, resume."""

import json
import shutil

import numpy as np
import pytest
import torch
from data_writers import write_image

from reslab.analysis import ablation, gradients
from reslab.analysis.gradients import fixed_batches
from reslab.analysis.responses import layer_response_std
from reslab.analysis.runs import DEFAULT_BATCH_SIZE, TrainingSettings
from reslab.checkpoint import load_checkpoint, model_payload, save_checkpoint
from reslab.cli import main
from reslab.data import load_data
from reslab.errors import ReslabError
from reslab.models import create_model
from reslab.plots import plot_ablation, plot_degradation, plot_responses
from reslab.training.recipes import steps_per_epoch
from reslab.training.run_dir import read_metrics
from reslab.training.step import TrainStep

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--epochs", "1", "--precision", "fp32"]


@pytest.fixture(scope="module")
def degradation_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("deg")
    torch.set_num_threads(1)
    assert main(["degradation", "--depths", "8", "--seeds", "2", *FAST, "--out", str(out)]) == 0
    return out


def test_degradation_files_keys_and_plot(degradation_dir, capsys):
    results = json.loads((degradation_dir / "results.json").read_text())
    assert results["experiment"] == "degradation"
    assert (degradation_dir / "degradation.png").is_file()
    runs = results["runs"]
    assert sorted((r["kind"], r["seed"]) for r in runs) == [
        ("plain", 0),
        ("plain", 1),
        ("residual", 0),
        ("residual", 1),
    ]
    for r in runs:
        assert {"kind", "depth", "seed", "train_error", "val_error", "test_error", "curve"} <= set(r)
        assert r["depth"] == 8 and 0 <= r["test_error"] <= 1
        assert r["curve"] == [{"epoch": 1, "train_error": r["train_error"], "val_error": r["val_error"]}]
        assert (degradation_dir / "runs" / f"{r['model']}-seed{r['seed']}" / "best.pt").is_file()

    fig = plot_degradation(results)
    plain_ax, residual_ax = fig.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in residual_ax.get_lines()}
    residual = [r for r in runs if r["kind"] == "residual"]
    mean_train = sum(r["train_error"] for r in residual) / 2
    assert lines["ResNet-8 train"] == pytest.approx([100 * mean_train])
    assert plain_ax.get_title() == "plain networks" and plain_ax.get_ylabel() == "error (%)"

    # Finished runs are reused, not retrained; --replot draws without training.
    capsys.readouterr()
    assert main(["degradation", "--depths", "8", "--seeds", "2", *FAST, "--out", str(degradation_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, reusing it") == 4
    assert "±" in out
    assert json.loads((degradation_dir / "results.json").read_text())["runs"] == runs
    (degradation_dir / "degradation.png").unlink()
    assert main(["degradation", "--replot", "--out", str(degradation_dir)]) == 0
    assert (degradation_dir / "degradation.png").is_file()


class Interrupt(Exception):
    pass


def test_an_interrupted_experiment_resumes_its_run_mid_way(tmp_path, monkeypatch, capsys):
    out = tmp_path / "resp"
    command = ["responses", "--models", "plain8", "--epochs", "2", "--precision", "fp32", "--out", str(out)]
    per_epoch = steps_per_epoch(len(load_data("digits").train), DEFAULT_BATCH_SIZE)
    original = TrainStep.__call__
    calls = []

    def counting(stop_after):
        def step(self, x, y):
            calls.append(1)
            if stop_after is not None and len(calls) > stop_after:
                raise Interrupt
            return original(self, x, y)

        return step

    with monkeypatch.context() as patch:
        patch.setattr(TrainStep, "__call__", counting(per_epoch + 3))  # killed in the middle of epoch 2
        with pytest.raises(Interrupt):
            main(command)
    run = out / "runs" / "plain8-seed0"
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and not (run / "test.json").exists()
    first_epoch = read_metrics(run)
    assert [r["epoch"] for r in first_epoch] == [1]

    calls.clear()
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(TrainStep, "__call__", counting(None))
        assert main(command) == 0
    assert "interrupted earlier, resuming it" in capsys.readouterr().out
    assert len(calls) == per_epoch  # epoch 2 only: a restart would train 2 * per_epoch steps
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first_epoch[0]
    assert (run / "test.json").is_file() and (out / "responses.json").is_file()


def test_runs_with_other_settings_are_refused(degradation_dir, tmp_path, capsys):
    out = tmp_path / "deg"
    shutil.copytree(degradation_dir, out)
    folder = tmp_path / "other"
    for index in range(4):
        write_image(folder / f"c{index % 2}" / f"{index}.png", np.full((8, 8), 60 * index, np.uint8))
    same = ["degradation", "--depths", "8", "--seeds", "2", "--epochs", "1", "--precision", "fp32"]
    for flag, value, key in (
        ("--epochs", "2", "epochs"),
        ("--data", f"folder:{folder}", "data"),
        ("--precision", "bf16", "precision"),
    ):
        capsys.readouterr()
        assert main([*same, flag, value, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "other settings" in err and f"{key} " in err and err.count("\n") == 1
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        p.name for p in (degradation_dir / "runs").iterdir()
    )


def test_replot_reads_only_its_own_experiments_results(degradation_dir, tmp_path, capsys):
    def refused(command: list[str], message: str) -> None:
        capsys.readouterr()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err

    refused(["ablation", "--replot", "--out", str(degradation_dir)], "no saved ablation results")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(degradation_dir / "results.json", wrong / "ablation.json")
    refused(["ablation", "--replot", "--out", str(wrong)], "holds degradation results")
    (wrong / "gradients.json").write_text(json.dumps({"experiment": "responses", "models": {}}))
    refused(["gradients", "--replot", "--out", str(wrong)], "holds responses results")
    # A file from before the experiment key is checked for what the table and plot read.
    legacy = json.loads((degradation_dir / "results.json").read_text())
    del legacy["experiment"]
    for run in legacy["runs"]:
        run["order"] = run.pop("kind")
    (wrong / "results.json").write_text(json.dumps(legacy))
    refused(["degradation", "--replot", "--out", str(wrong)], "is not a degradation results file")
    (wrong / "responses.json").write_text("[1, 2]")
    refused(["responses", "--replot", "--out", str(wrong)], "is not a responses results file")


def test_responses_reuse_runs_and_plot_the_json(degradation_dir, capsys):
    # Same folder and run names as the degradation experiment: the trained runs are reused.
    assert main(["responses", "--models", "plain8", "resnet8", *FAST, "--out", str(degradation_dir)]) == 0
    assert "reusing" in capsys.readouterr().out
    results = json.loads((degradation_dir / "responses.json").read_text())
    assert (degradation_dir / "responses.png").is_file()
    for name in ("plain8", "resnet8"):
        entry = results["models"][name]
        assert len(entry["std"]) == len(entry["layers"]) == 7  # stem + 3 units x 2 convs
        assert entry["std_sorted"] == sorted(entry["std"], reverse=True)
    fig = plot_responses(results)
    top, bottom = fig.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in top.get_lines()}
    assert lines["plain8"] == results["models"]["plain8"]["std"]
    sorted_lines = {line.get_label(): list(line.get_ydata()) for line in bottom.get_lines()}
    assert sorted_lines["resnet8"] == results["models"]["resnet8"]["std_sorted"]


def test_responses_from_checkpoint_against_direct_std(tmp_path):
    bundle = load_data("digits")
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_chans=1)
    ckpt = save_checkpoint(tmp_path / "m.pt", {**model_payload(model), "data": bundle.info()})
    out = tmp_path / "resp"
    assert main(["responses", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    entry = json.loads((out / "responses.json").read_text())["models"]["resnet8"]
    # Direct: the last unit's branch output F(x), per-channel std over the test set, averaged.
    model.eval()
    captured = []
    unit = model.units()[-1]
    handle = unit.register_forward_hook(lambda m, i, o: captured.append(m.residual_branch(i[0])))
    x = (bundle.test.images.float() / 255 - bundle.mean[0]) / bundle.std[0]
    with torch.no_grad():
        model(x)
    handle.remove()
    direct = captured[0].double().transpose(0, 1).reshape(captured[0].shape[1], -1).std(1, unbiased=False)
    assert entry["std"][-1] == pytest.approx(direct.mean().item(), rel=1e-4)
    assert layer_response_std(model, bundle)["layers"][-1] == "layer3.0.bn2"


def test_ablation_five_placements_beside_a_degradation(degradation_dir, tmp_path, capsys):
    out = tmp_path / "shared"  # one --out for both experiments: neither overwrites the other's results
    shutil.copytree(degradation_dir, out)
    assert main(["ablation", "--depth", "8", *FAST, "--out", str(out)]) == 0
    assert (out / "results.json").read_text() == (degradation_dir / "results.json").read_text()
    results = json.loads((out / "ablation.json").read_text())
    assert [r["order"] for r in results["runs"]] == [
        "post",
        "bn_after_add",
        "relu_before_add",
        "relu_preact",
        "pre",
    ]
    assert (out / "ablation.png").is_file()
    for r in results["runs"]:
        config = json.loads((out / "runs" / f"resnet8-{r['order']}-seed0" / "config.json").read_text())
        assert config["model"]["config"]["order"] == r["order"]
    assert "full pre-activation" in capsys.readouterr().out
    fig = plot_ablation(results)
    bars = fig.axes[1]
    heights = [p.get_height() for p in bars.patches]
    assert heights == pytest.approx([100 * r["test_error"] for r in results["runs"]])
    assert main(["ablation", "--depth", "18", "--out", str(out / "bad")]) == 2
    assert main(["degradation", "--replot", "--out", str(out)]) == 0
    assert main(["ablation", "--replot", "--out", str(out)]) == 0


@pytest.mark.parametrize(
    ("call", "message", "params"),
    [
        (
            lambda: fixed_batches(load_data("digits"), 16, num_batches=0, seed=0),
            "num_batches",
            ("num_batches",),
        ),
        (lambda: TrainingSettings(seeds=0), "seeds", ("seeds",)),
        (lambda: gradients.run(["plain8"], seeds=0, num_batches=1), "seeds", ("seeds",)),
        (lambda: gradients.run(at=["init", "x.pt"]), "at takes either", ("at",)),
        (lambda: ablation.run(depth=18), "depth 18: the ablation", ("depth",)),
    ],
)
def test_library_errors_name_the_python_parameter(call, message, params):
    with pytest.raises(ReslabError) as caught:
        call()
    assert str(caught.value).startswith(message) and caught.value.params == params
    assert "--" not in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["gradients", "--batches", "0"], "reslab gradients: error: --batches must be at least 1, got 0"),
        (["ablation", "--seeds", "0"], "reslab ablation: error: --seeds must be at least 1, got 0"),
        (
            ["gradients", "--at", "x.pt", "--no-bn"],
            "reslab gradients: error: --no-bn and --zero-init-residual change the initialisation; "
            "use --at init",
        ),
    ],
)
def test_the_cli_shows_those_parameters_as_flags(argv, line, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == line + "\n"
