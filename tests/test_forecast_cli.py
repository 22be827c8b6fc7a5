"""`reslab forecast`: bad input is one line and exit 2; simulate -> train -> evaluate on a tiny grid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xarray")

from forecast_files import weatherbench_files  # noqa: E402

from reslab.cli import main  # noqa: E402

TINY_NET = ["--channels", "4", "--blocks", "1", "--epochs", "1", "--threads", "1"]


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("reslab forecast: error: ")
    return err


def test_bad_inputs_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weatherbench_files(tmp_path)
    train = [
        "forecast",
        "train",
        "--data",
        f"netcdf:{tmp_path}/*.nc",
        "--out",
        str(tmp_path / "run"),
        *TINY_NET,
    ]
    err = one_line_error(capsys, [*train, "--vars", "z500,q700"])
    assert "has no variable 'q700'" in err
    err = one_line_error(capsys, [*train, "--vars", "z500", "--lead", "9h"])
    assert "--lead 9h is not a positive multiple of the data's time step (6h)" in err
    # A 3x8 grid cannot hold the ResNet's 7x7 first kernel.
    small = tmp_path / "small"
    small.mkdir()
    weatherbench_files(small, lat=np.array([-45.0, 0.0, 45.0]), lon=np.arange(0.0, 360.0, 45.0))
    err = one_line_error(
        capsys,
        [
            "forecast",
            "train",
            "--data",
            str(small),
            "--vars",
            "z500",
            "--out",
            str(tmp_path / "r2"),
            *TINY_NET,
        ],
    )
    assert "grid 3x8 is too small for resnet" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "r2").exists()


def test_simulate_train_evaluate_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    sim = [
        "forecast",
        "simulate",
        "--out",
        str(data),
        "--grid",
        "8x16",
        "--years",
        "0.03",
        "--val-years",
        "0.02",
        "--test-years",
        "0.03",
        "--spinup-days",
        "3",
    ]
    assert main(sim) == 0
    assert sorted(p.name for p in data.iterdir()) == ["spinup_spectrum.png", "test.nc", "train.nc", "val.nc"]
    runs = tmp_path / "runs"
    common = ["forecast", "train", "--data", str(data), "--vars", "z250,t500", *TINY_NET]
    assert main([*common, "--rollout", "--out", str(runs / "resnet")]) == 0
    assert main([*common, "--model", "plain", "--lead", "12h", "--out", str(runs / "plain")]) == 0
    assert (
        main(
            [
                "forecast",
                "train",
                "--data",
                str(data),
                "--rollout",
                "--out",
                str(runs / "resnet"),
                "--resume",
                *TINY_NET[:4],
                "--epochs",
                "2",
            ]
        )
        == 0
    )
    assert (runs / "resnet" / "metrics.csv").read_text().count(
        "\n"
    ) == 3  # header, epoch 1, epoch 2 (resumed)
    assert (
        main(["forecast", "evaluate", str(runs), "--leads", "6h,12h,24h", "--every", "3", "--threads", "1"])
        == 0
    )
    scores = json.loads((runs / "forecast_scores.json").read_text())
    assert scores["leads_hours"] == [6.0, 12.0, 24.0]
    assert set(scores["models"]) == {"persistence", "climatology", "ridge", "resnet", "plain"}
    assert (
        len(scores["models"]["resnet"]["rmse"]["t500"]) == 3
        and None not in scores["models"]["resnet"]["acc"]["z250"]
    )
    assert (
        scores["models"]["plain"]["rmse"]["z250"][0] is None
        and scores["models"]["plain"]["rmse"]["z250"][1] > 0
    )
    assert all((runs / name).is_file() for name in ("rmse_vs_lead.png", "forecast_map.png", "spectra.png"))
    capsys.readouterr()
    # Reruns are free: the simulation's files are kept.
    assert main(sim) == 0


def test_reslab_and_its_cli_do_not_import_xarray() -> None:
    code = "import sys, reslab.cli; reslab.cli.build_parser(); print('xarray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
