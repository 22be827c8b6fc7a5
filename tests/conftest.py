"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny convs and tensors on a shared 2-core machine: a second OpenMP thread only adds waiting."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A resnet8 run trained for 3 epochs on digits (fp32): a real checkpoint for inference tests."""
    import reslab

    out = tmp_path_factory.mktemp("digits-run") / "run"
    reslab.train(
        model="resnet8", epochs=3, batch_size=32, precision="fp32", device="cpu", quiet=True, out=out
    )
    return out


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory):
    """20 test-split digits as 8x8 PNGs in <label>/ sub-folders; returns (folder, paths, labels)."""
    from PIL import Image

    from reslab.data import load_data

    folder = tmp_path_factory.mktemp("digit-folder")
    test = load_data("digits").test
    paths, labels = [], []
    for i in range(20):
        label = int(test.labels[i])
        path = folder / str(label) / f"digit{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(test.images[i, 0].numpy(), mode="L").save(path)
        paths.append(path)
        labels.append(label)
    return folder, paths, labels
