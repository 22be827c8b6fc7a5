"""The netCDF reader on files in WeatherBench's layout that the test writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.errors import ReslabError

pytest.importorskip("xarray")

from forecast_files import LAT, weatherbench_files  # noqa: E402

from reslab.forecast.data import DataConfig, Samples, load_data, parse_hours  # noqa: E402


@pytest.fixture
def files(tmp_path: Path) -> Path:
    weatherbench_files(tmp_path)
    return tmp_path


def test_reads_weatherbench_layout_split_by_year(files: Path) -> None:
    data = load_data(DataConfig(f"netcdf:{files}/*.nc", variables=("z500", "t850")))
    assert data.names == ["z500", "t850"] and data.step_hours == 6.0 and data.grid == (8, 16)
    assert [len(s) for s in data.splits["train"]] == [12] and len(data.splits["test"][0]) == 12
    # The last year is test, the one before validation: z500 counts times 0..35 in order.
    assert data.splits["train"][0][0, 0, 0, 0] == pytest.approx(0.0)
    assert data.splits["val"][0][0, 0, 0, 0] == pytest.approx(12.0)
    assert data.splits["test"][0][-1, 0, 0, 0] == pytest.approx(35.0)
    # Normalisation from the training year only (z500 there is 0..11 plus 0.001 * lon index).
    assert data.mean[0] == pytest.approx(5.5 + 0.001 * 7.5, rel=1e-5)
    weights = np.cos(np.deg2rad(LAT))
    np.testing.assert_allclose(data.weights, weights / weights.mean())


def test_levels_option_and_named_years(files: Path) -> None:
    data = load_data(
        DataConfig(str(files), variables=("t",), levels=(850, 500), val_years=(2015,), test_years=(2016,))
    )
    assert data.names == ["t850", "t500"]
    assert len(data.splits["train"][0]) == 12  # 2017 alone


def test_samples_stack_history_latest_first(files: Path) -> None:
    data = load_data(DataConfig(str(files), variables=("z500",)))
    samples = Samples([torch.arange(12.0).view(12, 1, 1, 1).expand(12, 1, 2, 2)], history=3, lead=4)
    assert len(samples) == 12 - 2 - 4  # inputs need t-2, targets t+4
    x, y = samples.batch(torch.tensor([0, 5]))
    assert x[:, :, 0, 0].tolist() == [[2.0, 1.0, 0.0], [7.0, 6.0, 5.0]] and y[:, 0, 0, 0].tolist() == [
        6.0,
        11.0,
    ]
    assert data.steps(24) == 4


def test_bad_inputs_are_one_line_errors(files: Path) -> None:
    with pytest.raises(ReslabError, match="has no variable 'q700'"):
        load_data(DataConfig(str(files), variables=("z500", "q700")))
    with pytest.raises(ReslabError, match="no level 700"):
        load_data(DataConfig(str(files), variables=("t700",)))
    data = load_data(DataConfig(str(files), variables=("z500",)))
    with pytest.raises(
        ReslabError, match="lead 9h is not a positive multiple of the data's time step \\(6h\\)"
    ):
        data.steps(parse_hours("9h"))
    with pytest.raises(ReslabError, match="not a duration"):
        parse_hours("soon")
