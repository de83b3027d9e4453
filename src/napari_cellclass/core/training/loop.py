"""The optimisation loop: stages → epochs → steps, as a generator of TrainEvents.

Inputs are the cached, preprocessed tensors (``core.data.tensors``); a step is
index → augment on the device → forward → loss → backward → optimiser step, the
same work a plain PyTorch loop does.  The loss is read back from the device only
every few steps, so a GPU is never stalled for a progress number.

Ensembles train every member on its own loss (a hard vote has no gradient, and
independent members are what study 4 trained); with
``separate_member_augmentation`` each member draws its own augmentations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import fcn_targets as fcn
from .divergence import check_loss
from .distributed import DistContext, mean_across, wrap
from ..data.augment import augment_batch, make_generator
from ..device import amp_dtype, uses_channels_last
from ..models.heads import probabilities
from ..presets.recipe import Stage, TrainRecipe
from ..evaluation.thresholds import dice_per_threshold, macro_f1
from . import keepbest
from .events import Eta, TrainEvent
from .optim import Loss, Schedule, classifiers, make_optimizer, set_trainable, stages_of, train_mode

SYNC_EVERY = 10  # read the loss back from the device every this many steps


@dataclass
class LoopData:
    """Everything the loop needs, already on (or pinned for) the device."""

    x: torch.Tensor  # (N_store, C, h, w) network inputs
    train_rows: torch.Tensor  # rows of x for training (long)
    x_val: torch.Tensor  # the validation images' store tensor (x itself when split from one data set)
    val_rows: torch.Tensor  # rows of x_val for validation (may be empty)
    y_train: torch.Tensor  # (N_train, K) float targets on the device
    y_val: torch.Tensor
    masks: fcn.FcnMasks | None = None  # FCN targets at the input size (fluorescence and/or painted)
    masks_val: fcn.FcnMasks | None = None
    grid: tuple[int, int] | None = None  # FCN output grid
    sample_weights: torch.Tensor | None = None  # balanced sampling (None: plain shuffling)


@dataclass
class LoopOutcome:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    epochs_run: int = 0
    steps_run: int = 0
    cancelled: bool = False
    stopped_early: bool = False
    kept: dict[str, Any] | None = None  # which epoch's weights the model has, and why (core.training.keepbest)


@dataclass
class _RunState:
    """Counters that live across the stages and epochs of one run."""

    out: LoopOutcome
    eta: Eta
    spe: int  # steps per epoch
    total_epochs: int
    total_steps: int
    n_train: int
    step: int = 0
    epoch: int = 0
    last_loss: float | None = None
    best_loss: float = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_losses: torch.Tensor | None = None  # the best epoch's per-image validation losses (keepbest's evidence)
    last_metrics: dict[str, float] = field(default_factory=dict)
    wait: int = 0  # epochs since the stage's loss last improved by min_delta
    stage_best: float = math.inf


def _steps_per_epoch(n: int, bs: int) -> int:
    full, rest = divmod(n, bs)
    # a last batch of one image is dropped: batch-norm cannot normalise a single sample
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


class _StepModule(nn.Module):
    """One step's forward + loss as a module, so DistributedDataParallel can wrap it
    whatever the network's kind (FCN maps, ensemble members): DDP syncs the gradients
    of every parameter the step used."""

    def __init__(self, trainer: _Trainer) -> None:
        super().__init__()
        self.net = trainer.net
        self._trainer = [trainer]  # a list: the trainer is not a sub-module

    def forward(self, xb: torch.Tensor, yb: torch.Tensor, mb: torch.Tensor | None) -> torch.Tensor:
        return self._trainer[0]._forward_loss(xb, yb, mb)


class _Trainer:
    def __init__(self, network: nn.Module, output: str, r: TrainRecipe, d: LoopData, device: torch.device,
                 loss: Loss, seed: int, ctx: DistContext | None = None) -> None:
        self.net, self.output, self.r, self.d, self.dev, self.loss = network, output, r, d, device, loss
        self.ctx = ctx or DistContext()
        self.members = classifiers(network) if isinstance(getattr(network, "members", None), nn.ModuleList) else None
        n_streams = len(self.members) if (self.members and r.separate_member_augmentation) else 1
        # every process of a distributed run draws its own augmentations
        self.gens = [make_generator(seed * 1009 + 17 + m + 7919 * self.ctx.rank) for m in range(n_streams)]
        self.order_gen = make_generator(seed)
        self.dtype = amp_dtype(device)
        self.fcn = d.masks is not None and getattr(network, "is_fcn", False)
        self.val_losses: torch.Tensor | None = None  # per-image validation losses of the last validation

    # ---------------------------------------------------------------- one step
    def _forward_loss(self, xb: torch.Tensor, yb: torch.Tensor, mb: torch.Tensor | None) -> torch.Tensor:
        aug = self.r.augment
        if self.members is None:
            xa, ma = augment_batch(xb, aug, self.gens[0], mb)
            return self._single_loss(self.net, xa, yb, ma)
        total: torch.Tensor | float = 0.0
        shared = None
        for m, member in enumerate(self.members):
            if len(self.gens) > 1:
                xa, _ = augment_batch(xb, aug, self.gens[m])
            else:
                shared = shared if shared is not None else augment_batch(xb, aug, self.gens[0])[0]
                xa = shared
            total = total + self.loss(member(xa), yb)
        return total / len(self.members)  # type: ignore[return-value]

    def _single_loss(self, net: nn.Module, xa: torch.Tensor, yb: torch.Tensor, ma: torch.Tensor | None) -> torch.Tensor:
        if self.fcn and ma is not None:
            tgt = fcn.to_grid(ma.float(), self.d.grid)  # type: ignore[arg-type]
            return self.loss(net.forward_maps(xa), tgt)
        return self.loss(net(xa), yb)

    def _batch(self, rows: torch.Tensor, yb: torch.Tensor, val: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inputs and, for an FCN, the (B, K, h, w) per-class targets at the input size
        (augmented together with the inputs, reduced to the output grid in the loss)."""
        x = self.d.x_val if val else self.d.x
        masks = self.d.masks_val if val else self.d.masks
        xb = x[rows.to(x.device)].to(self.dev, non_blocking=True)
        if uses_channels_last(self.dev):
            xb = xb.contiguous(memory_format=torch.channels_last)
        mb = None if masks is None or not self.fcn else masks.batch(rows, yb, self.dev)
        return xb, mb

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> tuple[float | None, dict[str, float]]:
        d = self.d
        n = int(d.val_rows.numel())
        self.val_losses = None
        if n == 0:
            return None, {}
        was = [(m, m.training) for m in self.net.modules()]
        self.net.eval()
        bs = max(1, 2 * self.r.batch_size)
        losses, probs, per_image = [], [], []
        try:
            for s in range(0, n, bs):
                rows = d.val_rows[s:s + bs]
                yb = d.y_val[s:s + bs]
                xb, mb = self._batch(rows, yb, val=True)
                with _autocast(self.dev, self.dtype):
                    if self.members is not None:
                        outs = [m(xb) for m in self.members]
                        loss = sum(self.loss(o, yb) for o in outs) / len(outs)
                        per = sum(self.loss(o, yb, per_image=True) for o in outs) / len(outs)
                        logits = self.net(xb)
                    elif self.fcn:
                        maps = self.net.forward_maps(xb)
                        tgt = fcn.to_grid(mb, d.grid)  # type: ignore[arg-type]
                        loss, per = self.loss(maps, tgt), self.loss(maps, tgt, per_image=True)
                        logits = maps.amax(dim=(-2, -1))
                    else:
                        logits = self.net(xb)
                        loss, per = self.loss(logits, yb), self.loss(logits, yb, per_image=True)
                losses.append(float(loss) * len(rows))
                per_image.append(per.detach().float().cpu())
                probs.append(probabilities(logits, self.output).float().cpu())
        finally:
            for m, flag in was:
                m.training = flag
        p = torch.cat(probs).numpy()
        self.val_losses = torch.cat(per_image)
        return sum(losses) / n, val_metrics(d.y_val.cpu().numpy(), p, self.output)

    # ---------------------------------------------------------------- the run
    def run(self, stop: Callable[[], bool]) -> Generator[TrainEvent, None, LoopOutcome]:
        r, d = self.r, self.d
        n_train = int(d.train_rows.numel())
        n_shard = -(-n_train // self.ctx.world_size)  # this process's share of every epoch
        spe = _steps_per_epoch(n_shard, r.batch_size)
        stages = stages_of(r)
        total_epochs = sum(int(s.epochs or 0) for s in stages)
        st = _RunState(LoopOutcome(), Eta(total_epochs * spe), spe, total_epochs, total_epochs * spe, n_train)
        yield TrainEvent(kind="start", epochs=total_epochs, total=st.total_steps,
                         message=f"{n_train} training / {int(d.val_rows.numel())} validation images, {spe} steps per epoch")
        for si, stage in enumerate(stages):
            yield from self._run_stage(si, stages, st, stop)
            if st.out.cancelled:
                break
        st.out.epochs_run = len(st.out.history)  # completed epochs (a cancelled partial one does not count)
        st.out.steps_run = st.step
        return st.out

    def _event(self, st: _RunState, kind: str, **kw: Any) -> TrainEvent:
        return TrainEvent(kind=kind, epoch=st.epoch, epochs=st.total_epochs, done=st.step, total=st.total_steps,
                          eta_s=st.eta.update(st.step), best_epoch=st.out.best_epoch, **kw)

    def _run_stage(
        self, si: int, stages: list[Stage], st: _RunState, stop: Callable[[], bool]
    ) -> Generator[TrainEvent, None, None]:
        r, stage = self.r, stages[si]
        trainable = set_trainable(self.net, stage, r.freeze_fraction, r.freeze_blocks)
        # DDP registers the parameters that require gradients when it is built: once per stage
        step_fn = wrap(_StepModule(self), self.ctx, self.dev) if self.ctx.active else self._forward_loss
        opt = make_optimizer(self.net, r, stage.lr)
        sched = Schedule(opt, r, int(stage.epochs or 0))
        scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        if len(stages) > 1:
            yield self._event(
                st,
                "stage",
                loss=st.last_loss,
                message=f"stage {si + 1}/{len(stages)}: train "
                f"{stage.trainable} ({trainable:,} parameters) at lr {stage.lr:g}",
            )
        st.wait, st.stage_best = 0, math.inf
        for _ in range(int(stage.epochs or 0)):
            st.epoch += 1
            t0 = time.perf_counter()
            train_loss = yield from self._train_epoch(step_fn, opt, scaler, st, stop)
            if st.out.cancelled:
                break
            val_loss, metrics = self.validate()
            check_loss(train_loss, "training loss", st.epoch, sched.lr, validation=val_loss)
            monitored = self._keep_best(st, val_loss if val_loss is not None else train_loss, metrics)
            st.last_metrics = dict(metrics)
            sched.epoch_end(monitored)
            st.out.history.append(
                {
                    "epoch": st.epoch,
                    "stage": si + 1,
                    "lr": sched.lr,
                    "loss": train_loss,
                    "val_loss": val_loss,
                    **metrics,
                    "time_s": time.perf_counter() - t0,
                }
            )
            st.out.epochs_run = st.epoch
            yield self._event(st, "epoch", loss=train_loss, val_loss=val_loss, metrics=metrics)
            if r.early_stopping_patience is not None and st.wait >= r.early_stopping_patience:
                st.out.stopped_early = True
                remaining = st.total_epochs - st.epoch
                st.eta.total = max(st.step, st.eta.total - remaining * st.spe)  # the skipped epochs cost nothing
                break
        self._keep(st.out, st.best_state, st.best_losses, st.last_metrics if st.out.history else {})

    def _train_epoch(
        self,
        step_fn: Callable,
        opt: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        st: _RunState,
        stop: Callable[[], bool],
    ) -> Generator[TrainEvent, None, float]:
        """One pass over the training rows; returns the epoch's mean loss (across processes)."""
        d, bs = self.d, self.r.batch_size
        train_mode(self.net)
        order = self._order(st.n_train)
        running = torch.zeros((), device=self.dev)
        seen = 0
        for b in range(st.spe):
            if stop():
                st.out.cancelled = True
                break
            idx = order[b * bs:(b + 1) * bs]
            yb = d.y_train[idx.to(d.y_train.device)]
            xb, mb = self._batch(d.train_rows[idx], yb)
            with _autocast(self.dev, self.dtype):
                loss = step_fn(xb, yb, mb)
                loss = loss + self.loss.penalty(self.net)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            running += loss.detach().float()
            seen += 1
            st.step += 1
            if seen % SYNC_EVERY == 0 or b == st.spe - 1 or self.dev.type == "cpu":
                st.last_loss = float(running) / seen
                if not self.ctx.active:  # under DDP every process checks the shared epoch mean instead
                    check_loss(st.last_loss, "training loss", st.epoch, opt.param_groups[0]["lr"])
            yield self._event(st, "step", loss=st.last_loss)
        return mean_across(float(running) / max(1, seen), self.ctx) if not st.out.cancelled else math.nan

    def _keep_best(self, st: _RunState, monitored: float, metrics: dict[str, float]) -> float:
        """Record the epoch as the best so far when the monitored loss improved; count patience."""
        if monitored < st.best_loss or st.best_state is None:
            st.best_loss = min(st.best_loss, monitored)
            st.out.best_epoch, st.out.best_metrics = st.epoch, dict(metrics)
            if self.r.keep_best:
                st.best_state, st.best_losses = _snapshot(self.net), self.val_losses
        if monitored < st.stage_best - self.r.min_delta:
            st.stage_best, st.wait = monitored, 0
        else:
            st.wait += 1
        return monitored

    def _keep(self, out: LoopOutcome, best_state: dict[str, torch.Tensor] | None, best_losses: torch.Tensor | None,
              last_metrics: dict[str, float]) -> None:
        """End of a stage: keep the last epoch, or restore the best one if it is better beyond the noise."""
        last = out.history[-1]["epoch"] if out.history else 0
        if out.cancelled:  # the weights are mid-epoch, never validated: the best completed epoch if there is one
            kept = keepbest.Kept(out.best_epoch or last, best_state is not None,
                                 "cancelled: the best completed epoch" if best_state is not None else "cancelled")
        else:
            kept = keepbest.choose(out.best_epoch, best_losses, last, self.val_losses, self.r.keep_best)
            if not kept.restored:
                out.best_metrics = dict(last_metrics)  # the metrics of the weights the model has
        if kept.restored and best_state is not None:
            self.net.load_state_dict(best_state)
        out.kept = kept.to_dict()

    def _order(self, n: int) -> torch.Tensor:
        w = self.d.sample_weights
        if w is not None:
            order = torch.multinomial(w, n, replacement=True, generator=self.order_gen)
        else:
            order = torch.randperm(n, generator=self.order_gen)
        if not self.ctx.active:
            return order
        # one shuffle shared by all processes (same seed), every world_size-th item each;
        # padded by wrapping so every process runs the same number of steps (DDP needs that)
        per = -(-n // self.ctx.world_size)
        return order.repeat(self.ctx.world_size)[:per * self.ctx.world_size][self.ctx.rank::self.ctx.world_size]


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class _autocast:
    """bf16/fp16 autocast on CUDA, nothing elsewhere (fp32 on the CPU)."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None) -> None:
        self.ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else None

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def val_metrics(y: np.ndarray, p: np.ndarray, output: str) -> dict[str, float]:
    """Validation metrics for progress reports: accuracy + macro F1, or mean Dice at 0.5."""
    if output == "sigmoid":
        dice = dice_per_threshold(y, p, np.array([0.5]))[0]
        present = y.sum(0) > 0
        mean = float(dice[present].mean()) if present.any() else float(dice.mean())
        exact = float(((p >= 0.5) == (y > 0.5)).all(1).mean())
        return {"val_mean_dice": mean, "val_exact_match": exact}
    t, pred = y.argmax(1), p.argmax(1)
    return {"val_accuracy": float((t == pred).mean()), "val_macro_f1": macro_f1(t, pred, y.shape[1])}



def run_loop(network: nn.Module, output: str, recipe: TrainRecipe, data: LoopData, device: torch.device,
             loss: Loss, seed: int, stop: Callable[[], bool],
             ctx: DistContext | None = None) -> Generator[TrainEvent, None, LoopOutcome]:
    """Train ``network`` in place; yields events, returns the :class:`LoopOutcome`.

    In a torchrun job (``ctx.active``) each process trains on its shard of every epoch
    and DDP averages the gradients; validation runs on the whole validation set in
    every process, so early stopping and keep-best decide alike everywhere.
    """
    torch.manual_seed(seed)  # dropout draws from the global generator
    trainer = _Trainer(network, output, recipe, data, device, loss, seed, ctx)
    return (yield from trainer.run(stop))


__all__ = ["LoopData", "LoopOutcome", "run_loop", "val_metrics"]
