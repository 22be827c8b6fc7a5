"""`reslab degradation`, `responses`, `ablation` on tiny nets for one epoch: files, keys, plots, resume."""

import json
import shutil

import pytest
import torch

from reslab.analysis.plots import plot_ablation, plot_degradation, plot_responses
from reslab.analysis.responses import layer_response_std
from reslab.cli import main
from reslab.data import load_data
from reslab.models import create_model
from reslab.train.checkpoint import model_payload, save_checkpoint

FAST = ["--epochs", "1", "--precision", "fp32"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convs on a shared 2-core machine: one thread avoids oversubscription stalls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def degradation_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("deg")
    torch.set_num_threads(1)
    assert main(["degradation", "--depths", "8", "--seeds", "2", *FAST, "--out", str(out)]) == 0
    return out


def test_degradation_files_keys_and_plot(degradation_dir, capsys):
    results = json.loads((degradation_dir / "results.json").read_text())
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


def test_interrupted_run_resumes_and_other_settings_are_refused(degradation_dir, tmp_path, capsys):
    out = tmp_path / "deg"
    shutil.copytree(degradation_dir, out)
    (out / "runs" / "plain8-seed1" / "test.json").unlink()  # as if killed before the end
    capsys.readouterr()
    assert main(["degradation", "--depths", "8", "--seeds", "2", *FAST, "--out", str(out)]) == 0
    assert "interrupted earlier, resuming it" in capsys.readouterr().out
    assert (out / "runs" / "plain8-seed1" / "test.json").is_file()
    assert main(["degradation", "--depths", "8", "--epochs", "2", "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


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


def test_ablation_five_placements(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablation", "--depth", "8", *FAST, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
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
        assert config["model_config"]["order"] == r["order"]
    assert "full pre-activation" in capsys.readouterr().out
    fig = plot_ablation(results)
    bars = fig.axes[1]
    heights = [p.get_height() for p in bars.patches]
    assert heights == pytest.approx([100 * r["test_error"] for r in results["runs"]])
    assert main(["ablation", "--depth", "18", "--out", str(out / "bad")]) == 2
