"""A resnet8 trained for a few seconds on digits: real weights and real BN statistics, for tests that
need a trained model without running the engine."""

import torch
from torch import nn

from reslab import create_model
from reslab.data import DataBundle, normalise


def train_tiny_resnet(bundle: DataBundle, epochs: int, weight_decay: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet8", in_chans=bundle.in_chans, num_classes=bundle.num_classes)
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    x, y = normalise(bundle.train.images, mean, std), bundle.train.labels
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay)
    model.train()
    gen = torch.Generator().manual_seed(0)
    # One thread: on 8x8 images a second OpenMP thread buys little and costs a lot on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=gen).split(128):
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()
