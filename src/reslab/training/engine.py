"""The fit loop: epochs of device batches through the train step, validation, checkpoints, metrics.

Crash safety: at each epoch's end the TensorBoard scalars are appended (tb_log), then best.pt (when
validation improved; with select_by "last", every epoch, as a link to last.pt), last.pt, and metrics.jsonl
+ metrics.csv are replaced atomically. last.pt holds
everything needed to continue (weights, optimiser, scheduler, RNG states, the data generator, epoch, step,
the metric history), so a run killed at any moment resumes from the last finished epoch and reproduces the
uninterrupted run exactly.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_link
from ..checkpoint import model_payload, save_checkpoint
from ..data import DataBundle
from ..data.loaders import Batches, evaluation_batches, training_batches
from ..data.stream import StreamSettings, skipped_line
from ..errors import DivergedError, ReslabError
from ..precision import Precision
from ..run_config import RunConfig
from ..split_metrics import evaluate_batches, evaluation_batch_size
from .distributed import DistContext, mark_quiet
from .ema import WeightAverage
from .finetune import set_train_mode
from .precise_bn import recompute_bn_statistics, statistics_generator
from .progress import RunProgress
from .recipes import LRSchedule, make_optimizer, make_scheduler
from .run_dir import write_metrics
from .step import TrainStep
from .tb_log import EpochLog

# Host syncs (loss/error read-outs, NaN checks) per epoch, besides the one at its end.
READS_PER_EPOCH = 4


@dataclass
class FitState:
    epoch: int = 0
    step: int = 0
    best_val_error: float = math.inf
    best_val_loss: float = math.inf
    best_epoch: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)


def make_batches(
    bundle: DataBundle,
    batch_size: int,
    precision: Precision,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
    random_erase: float = 0.0,
    augment: bool = True,
    crop: str = "pad",
    stream: StreamSettings | None = None,
) -> Batches:
    """Shuffled training batches; batch_size is the global batch; with world_size > 1 each rank gets its
    slice of every batch. augment False: the images as inference sees them (precise BN statistics)."""
    return training_batches(
        bundle,
        batch_size,
        generator=generator,
        crop=crop,
        augment=augment,
        random_erase=random_erase,
        channels_last=precision.channels_last,
        stream=stream,
        rank=rank,
        world_size=world_size,
    )


def stream_settings(run_config: RunConfig) -> StreamSettings:
    return StreamSettings(workers=run_config.data.workers, strict=run_config.data.strict)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Owns the optimiser, schedule and step of one run; `fit()` runs the remaining epochs."""

    def __init__(
        self,
        model: nn.Module,
        bundle: DataBundle,
        run_config: RunConfig,
        precision: Precision,
        device: torch.device,
        *,
        train_model: nn.Module | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.model = model  # the plain module: checkpoints and evaluation
        # Possibly compiled and/or DDP-wrapped.
        self.train_model = model if train_model is None else train_model
        # Only rank 0 writes the run directory; every rank trains on its slice of each global batch.
        self.dist = dist or DistContext()
        self.bundle = bundle
        self.run_config = run_config
        self.config = config = run_config.train
        # "auto" is resolved when the run is set up (setup.py), once the validation split's size is known.
        assert config.select_by in ("val", "last"), config.select_by
        self.precision = precision
        self.device = device
        self.run_dir = Path(run_config.run_dir)
        self.generator = torch.Generator(device=device).manual_seed(run_config.seed)
        self.batches = make_batches(
            bundle,
            config.batch_size,
            precision,
            self.generator,
            self.dist.rank,
            self.dist.world_size,
            random_erase=config.random_erase,
            crop=config.crop,
            stream=stream_settings(run_config),
        )
        # Made once: a streamed validation set keeps its workers from epoch to epoch.
        self.val_batches = evaluation_batches(
            self.dist.shard(bundle.val),
            evaluation_batch_size(bundle.image_size, config.batch_size),
            bundle.mean,
            bundle.std,
            transform=bundle.evaluation,
            device=device,
            channels_last=precision.channels_last,
            stream=stream_settings(run_config),
        )
        self.steps_per_epoch = len(self.batches)
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.schedule = LRSchedule(config, self.total_steps)
        self.optimizer = make_optimizer(model, config, device)
        self.scheduler = make_scheduler(self.optimizer, self.schedule)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.step_fn = TrainStep(
            self.train_model,
            self.optimizer,
            precision,
            scheduler=self.scheduler,
            loss_fn=loss_fn,
            reduce=self.dist.all_reduce_sum if self.dist.distributed else None,
        )
        self.ema = WeightAverage(model, config.ema) if config.ema else None
        self.state = FitState()

    # -- checkpoints -------------------------------------------------------------------------------
    @property
    def eval_model(self) -> nn.Module:
        """What validation, best.pt and the test use: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _weights(self) -> dict[str, Any]:
        """The checkpoint's weights: `model` holds what evaluation uses (eval, predict and export read
        it); with an average, the trained weights and the average's state travel beside it."""
        if self.ema is None:
            return model_payload(self.model)
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return {**model_payload(self.ema.module), "trained_model": trained, "ema": self.ema.state_dict()}

    def payload(self) -> dict[str, Any]:
        s = self.state
        return {
            **self._weights(),
            "data": self.bundle.info(),
            "run_config": self.run_config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.step_fn.grad_scaler.state_dict() if self.step_fn.grad_scaler else None,
            "rng": rng_state(self.generator),
            "epoch": s.epoch,
            "step": s.step,
            "best_val_error": s.best_val_error,
            "best_val_loss": s.best_val_loss,
            "best_epoch": s.best_epoch,
            "metrics": list(s.metrics),
        }

    def restore(self, payload: dict[str, Any]) -> None:
        """Continue from a last.pt: weights, optimiser, scheduler, RNG, counters and metric history."""
        try:
            if self.ema is not None:
                self.model.load_state_dict(payload["trained_model"])
                self.ema.load_state_dict(payload["ema"])
            else:
                self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if self.step_fn.grad_scaler is not None and payload.get("grad_scaler"):
                self.step_fn.grad_scaler.load_state_dict(payload["grad_scaler"])
            restore_rng(payload["rng"], self.generator)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise ReslabError(
                f"cannot resume from {payload.get('path', 'the checkpoint')!r}: its state does not fit "
                f"{self.run_config.model.name} ({str(exc).strip().splitlines()[0]})"
            ) from None
        self.state = FitState(
            epoch=int(payload["epoch"]),
            step=int(payload["step"]),
            best_val_error=float(payload["best_val_error"]),
            best_val_loss=float(payload.get("best_val_loss", math.inf)),
            best_epoch=int(payload.get("best_epoch", 0)),
            metrics=list(payload.get("metrics", [])),
        )
        # The checkpoint is the truth: drop rows of an epoch that finished after it was written.
        if self.dist.is_main:
            write_metrics(self.run_dir, self.state.metrics)

    # -- the loop ----------------------------------------------------------------------------------
    def _check_finite(self, loss: float, where: str) -> None:
        if math.isfinite(loss):
            return
        if self.step_fn.grad_scaler is not None and all(
            bool(torch.isfinite(p).all()) for p in self.model.parameters()
        ):
            return  # fp16 overflow: the scaler skipped those steps and lowered its scale
        if self.state.epoch > 0:
            kept = f"the last good checkpoint {self.run_dir / 'last.pt'} (epoch {self.state.epoch}) is kept"
        else:
            kept = "no epoch finished, so there is no checkpoint"
        error = DivergedError(
            f"training diverged: the loss became {loss} at {where} (step {self.state.step}); "
            f"stopped; {kept}. Try a lower lr (was {self.config.lr:g}) or more warmup_steps.",
            params=("lr", "warmup_steps"),
        )
        # Every rank sees the same reduced loss and raises the same error; rank 0 reports it.
        raise mark_quiet(error) if not self.dist.is_main else error

    def _precise_bn(self, epoch: int) -> None:
        """The evaluated model's BN statistics, recomputed for its current weights (precise_bn.py)."""
        batches = make_batches(
            self.bundle,
            self.config.batch_size,
            self.precision,
            statistics_generator(self.device, self.run_config.seed, epoch),
            self.dist.rank,
            self.dist.world_size,
            augment=False,
            stream=stream_settings(self.run_config),
        )
        recompute_bn_statistics(
            self.eval_model,
            batches,
            int(self.config.precise_bn),
            self.precision,
            lambda module: set_train_mode(module, self.config.freeze),
            reduce=self.dist.all_reduce_sum if self.dist.distributed else None,
            world_size=self.dist.world_size,
        )

    def _report_skipped(self, epoch: int) -> None:
        """One warning line per epoch for streamed images that could not be decoded (and were left out)."""
        if not self.bundle.streamed:
            return
        skipped = [*getattr(self.batches, "skipped", []), *getattr(self.val_batches, "skipped", [])]
        count = torch.tensor(len(skipped), dtype=torch.int64, device=self.device)
        if self.dist.distributed:
            self.dist.all_reduce_sum(count)
        if int(count) and self.dist.is_main:
            print(skipped_line(f"epoch {epoch}", int(count), skipped), file=sys.stderr, flush=True)

    def fit(self, progress: RunProgress) -> FitState:
        # TensorBoard events (rank 0): closed at the end, also when an epoch raises.
        log = EpochLog(self.run_dir, self.state.epoch) if self.dist.is_main else None
        try:
            return self._fit(progress, log)
        finally:
            if log is not None:
                log.close()

    def _fit(self, progress: RunProgress, log: EpochLog | None) -> FitState:
        s = self.state
        read_every = max(1, self.steps_per_epoch // READS_PER_EPOCH)
        model = self.train_model
        while s.epoch < self.epochs and s.step < self.total_steps:
            epoch = s.epoch + 1
            # Validation ends in train mode for every module; frozen parts' BN must keep its statistics.
            model.train()
            set_train_mode(self.model, self.config.freeze)
            steps = min(self.steps_per_epoch, self.total_steps - s.step)
            lr = self.optimizer.param_groups[0]["lr"]
            progress.start_epoch(epoch, steps)
            self.step_fn.reset()
            started = time.perf_counter()
            for i, (x, y) in enumerate(self.batches):
                if i >= steps:
                    break
                self.step_fn(x, y)
                if self.ema is not None:
                    self.ema.update(self.model)
                s.step += 1
                progress.advance(y.shape[0] * self.dist.world_size)
                if (i + 1) % read_every == 0 and i + 1 < steps:
                    loss, error, _ = self.step_fn.read()
                    self._check_finite(loss, f"epoch {epoch}")
                    progress.show(loss, error)
            train_loss, train_error, images = self.step_fn.read()
            self._check_finite(train_loss, f"epoch {epoch}")
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            train_seconds = time.perf_counter() - started
            # DDP: each rank's BN running statistics saw only its slice; validate (and checkpoint) rank 0's,
            # each rank on its shard of the validation set, sums reduced.
            self.dist.sync_buffers(self.model)
            if self.ema is not None:
                self.dist.sync_buffers(self.ema.module)
            if self.config.precise_bn:
                self._precise_bn(epoch)
            val = evaluate_batches(
                self.eval_model,
                self.val_batches,
                self.device,
                self.precision,
                self.bundle.num_classes,
                confusion=False,
                reduce=self.dist.all_reduce_sum if self.dist.distributed else None,
            )
            self._report_skipped(epoch)
            self._check_finite(val["loss"], f"validation after epoch {epoch}")
            s.epoch = epoch
            row = {
                "epoch": epoch,
                "step": s.step,
                "lr": lr,
                "train_loss": train_loss,
                "train_error": train_error,
                "val_loss": val["loss"],
                "val_error": val["error"],
                "seconds": round(time.perf_counter() - started, 3),
                "images_per_second": round(images / max(train_seconds, 1e-9), 1),
            }
            s.metrics.append(row)
            if log is not None:
                log.log(row)  # before last.pt: the events always hold every epoch the checkpoint holds
            # Ties on validation error go to the lower validation loss; the test set is never consulted.
            # select_by "last": best.pt follows the final weights (training/selection.py), and the
            # "best_*" fields describe them.
            improved = (val["error"], val["loss"]) < (s.best_val_error, s.best_val_loss)
            keep_last = self.config.select_by == "last"
            if improved or keep_last:
                s.best_val_error, s.best_val_loss, s.best_epoch = val["error"], val["loss"], epoch
                if self.dist.is_main and not keep_last:
                    save_checkpoint(self.run_dir / "best.pt", self.payload())
            if self.dist.is_main:
                save_checkpoint(self.run_dir / "last.pt", self.payload())
                if keep_last:
                    atomic_link(self.run_dir / "last.pt", self.run_dir / "best.pt")
                write_metrics(self.run_dir, s.metrics)
            progress.epoch_line(row, improved and not keep_last)
        return s
