"""Training the KD-MSI teacher and student jointly from tile tags.

One SGD (Nesterov) optimizer updates both networks in the same step with poly decay. After each
epoch the student is scored on held-out tags (image-level AUC) and the best epoch's networks are
written to the model file; a checkpoint for ``--resume`` is written every epoch and on cancel.

Under ``torchrun`` (:mod:`core.runtime.distributed`) the pair is wrapped in
DistributedDataParallel, each rank trains on its part of every global batch (``batch_size`` is the
global batch), batch norm is synchronised across GPUs (SyncBatchNorm) and rank 0 alone validates
and writes files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from core.callbacks import Callbacks
from core.choices import DEFAULTS, Backbone, Fusion, Precision, TeacherFusion
from core.data.tilesets import TileSet
from core.errors import Canceled, KdmsiError
from core.models.cam import saturation_fraction
from core.models.inputs import to_tensor
from core.models.model_file import AFFINITY_ROUNDS, ModelInfo, save_model
from core.models.teacher_student import CamConfig, TeacherStudent
from core.runtime import distributed
from core.runtime.distributed import SINGLE, DistEnv
from core.runtime.precision import autocast_dtype, autocasting
from core.train.batches import batches
from core.train.history import CurvePlot, write_csv
from core.train.selection import roc_auc


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters; the defaults follow the KD-MSI reference except where noted.

    ``lr`` is 3e-3, not the reference's 1e-3: with a few hundred tagged tiles training makes a few
    hundred steps, and on pooled LEVIR + WHU tiles 3e-3 reached a held-out tag AUC of 0.96 against
    0.90 for 1e-3 in 10 epochs (1e-2 saturated the student: 0.72). Chosen on tags, not pixels.

    ``epochs`` is 60. Going from 10 to 20 raised the best epoch's held-out tag AUC on the three
    benchmark seeds (0.971 / 0.874 / 0.909 to 0.976 / 0.919 / 0.970); 60 against 20 was decided on
    an H100 by a rule fixed beforehand (nine paired runs: splits 0 / 1 / 2 x three training seeds,
    pooled LEVIR + WHU 128 px tiles): the training tiles' MSI F1 rose by 0.017 on average and on 7
    of 9 pairs. On 2 CPU cores 60 epochs of 269 tiles take about three times as long as 20; pass
    ``epochs=20`` for a quick run. See BENCHMARKS.md ("Sixty epochs").

    ``frozen_stages`` freezes the stem and the first stages of both backbones and computes them
    once per batch for teacher and student
    (:class:`core.models.teacher_student.TeacherStudent`); the default was chosen by measurement
    (``python -m core.perf.train_speed``, see docs/distributed.md).
    ``freeze_bn`` keeps every batch norm on its running statistics.
    ``pool_share`` below 1 trains the teacher on the mean of its CAM's highest positions instead
    of the spatial mean (:func:`core.models.cam_outputs.image_logit`); 0.25 lowered the transfer
    suite's mean F1 by 0.023 at 48 tags (BENCHMARKS.md, session 23), so the default stays 1.
    ``affinity_rounds`` refines the student-and-CVA map with the pair's own colours that many
    times (:mod:`core.detect.affinity`; 0, off, by default: it helped aerial photographs and hurt
    10 m Sentinel-2 cities and SAR in the transfer suite, BENCHMARKS.md, session 18).
    ``min_steps`` above 0 trains at least that many optimizer steps: with few tags an epoch is a
    handful of steps, so :meth:`lengthened` raises ``epochs`` to reach it (0, off, by default:
    800 at 48 tags helped one-band Landsat pairs and hurt SAR pairs, BENCHMARKS.md, session 25).
    """

    backbone: Backbone = DEFAULTS.backbone
    teacher_fusion: TeacherFusion = DEFAULTS.teacher_fusion
    student_fusion: Fusion = DEFAULTS.student_fusion
    output_stride: int = DEFAULTS.output_stride
    epochs: int = DEFAULTS.epochs
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    weight_decay: float = 1e-4
    momentum: float = 0.9
    kd_weight: float = 10.0
    augment: bool = True
    seed: int = 0
    pretrained: bool = True
    weights: str | None = None
    frozen_stages: int = 3
    freeze_bn: bool = False
    precision: Precision = DEFAULTS.precision
    affinity_rounds: int = AFFINITY_ROUNDS
    pool_share: float = 1.0
    min_steps: int = DEFAULTS.min_steps

    def lengthened(self, tiles: int) -> TrainParams:
        """These parameters with enough epochs of ``tiles`` training tiles for ``min_steps``."""
        steps = max(1, math.ceil(tiles / self.batch_size))
        return replace(self, epochs=max(self.epochs, math.ceil(self.min_steps / steps)))

    def cam_config(self, in_channels: int) -> CamConfig:
        """The network configuration these parameters describe."""
        return CamConfig(
            backbone=self.backbone,
            teacher_fusion=self.teacher_fusion,
            student_fusion=self.student_fusion,
            output_stride=self.output_stride,
            in_channels=in_channels,
            pretrained=self.pretrained,
            kd_weight=self.kd_weight,
            frozen_stages=self.frozen_stages,
            freeze_bn=self.freeze_bn,
            pool_share=self.pool_share,
        )


@dataclass
class TrainState:
    """What a checkpoint restores: progress, the best epoch so far and the epoch rows."""

    epoch: int = 0
    iteration: int = 0
    best_epoch: int = 0
    best_auc: float = -1.0
    best_val_auc: float = float("nan")
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TrainResult:
    """Where the model went and how it was selected."""

    model_path: Path
    run_dir: Path
    best_epoch: int
    best_auc: float
    epochs: int
    method: str = "kdmsi"
    reliable: bool = True
    leader: str | None = None


class Trainer:
    """Runs the joint teacher-student training of one run folder."""

    def __init__(
        self,
        train_set: TileSet,
        val_set: TileSet | None,
        params: TrainParams,
        info: ModelInfo,
        run_dir: Path,
        device: torch.device,
        callbacks: Callbacks,
        env: DistEnv = SINGLE,
    ) -> None:
        self.train_set, self.val_set, self.params, self.info = train_set, val_set, params, info
        self.run_dir, self.device, self.cb, self.env = Path(run_dir), device, callbacks, env
        torch.manual_seed(params.seed)
        config = params.cam_config(train_set.before.shape[1])
        weights = Path(params.weights) if params.weights else None
        self.model = TeacherStudent(config, weights=weights, log=callbacks.log)
        if env.is_distributed and device.type == "cuda" and not params.freeze_bn:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = self.model.to(device).to(memory_format=torch.channels_last)
        self.forward = self.model if not env.is_distributed else self._wrap_ddp()
        if env.is_distributed and device.type != "cuda" and not params.freeze_bn:
            callbacks.warning(
                "Batch norm statistics are per process here (SyncBatchNorm needs CUDA); pass "
                "--freeze-bn for the same training as one process with the same global batch."
            )
        self.optimizer = torch.optim.SGD(
            self.model.param_groups(params.lr),
            lr=params.lr,
            momentum=params.momentum,
            nesterov=True,
            weight_decay=params.weight_decay,
        )
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.amp_dtype = autocast_dtype(params.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        self.curves = CurvePlot(self.run_dir / "curves.png")
        steps = max(1, math.ceil(len(train_set) / params.batch_size))
        self.total_iterations = steps * params.epochs

    def _wrap_ddp(self) -> torch.nn.Module:
        """DistributedDataParallel over the pair (rank 0's weights are broadcast to all)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    @property
    def checkpoint_path(self) -> Path:
        """The resumable checkpoint of this run."""
        return self.run_dir / "checkpoint.pt"

    @property
    def model_path(self) -> Path:
        """The model file (best epoch so far)."""
        return self.run_dir / "model.pt"

    def resume(self) -> None:
        """Restore networks, optimizer and progress from the run's checkpoint.

        With several ranks, rank 0 reads the file and sends it to the others (the run folder
        need not be shared).
        """
        saved = distributed.broadcast(self._read_checkpoint() if self.env.is_main else None)
        if isinstance(saved, str):
            raise KdmsiError(saved)
        try:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
        except Exception as exc:
            raise KdmsiError(
                f"The checkpoint {self.checkpoint_path} cannot be resumed ({type(exc).__name__}); "
                "train without --resume, or with the options of the interrupted run."
            ) from exc
        self.state = TrainState(**saved["state"])
        self.cb.info(f"Resumed from {self.checkpoint_path} after epoch {self.state.epoch}.")

    def _read_checkpoint(self) -> dict[str, Any] | str:
        """The checkpoint's payload on the CPU, or the sentence saying why it cannot be read."""
        if not self.checkpoint_path.is_file():
            return f"No checkpoint at {self.checkpoint_path} to resume; train without --resume."
        try:
            return torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as exc:
            return (
                f"The checkpoint {self.checkpoint_path} cannot be resumed ({type(exc).__name__}); "
                "train without --resume."
            )

    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically (rank 0 only)."""
        if not self.env.is_main:
            return
        partial = self.checkpoint_path.with_name(".checkpoint.pt.partial")
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": asdict(self.state),
            "params": asdict(self.params),
        }
        torch.save(payload, partial)
        partial.replace(self.checkpoint_path)

    def run(self) -> TrainResult:
        """Train the remaining epochs; save on every epoch and on cancel."""
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for epoch in range(self.state.epoch + 1, self.params.epochs + 1):
                losses = self._train_epoch(epoch)
                self._end_epoch(epoch, losses)
        except Canceled:
            self.save_checkpoint()
            if self.env.is_main:
                self.curves.update(self.state.rows, final=True)
            partial = (
                f" The model file {self.model_path} holds the best epoch so far "
                f"(epoch {self.state.best_epoch}) but is unfinished: no threshold or map was "
                "chosen from your tags yet."
                if self.state.best_epoch
                else ""
            )
            raise Canceled(
                f"Training canceled; its checkpoint {self.checkpoint_path} was kept.{partial} "
                "Resume the training (--resume) to finish it."
            ) from None
        return TrainResult(
            self.model_path,
            self.run_dir,
            self.state.best_epoch,
            self.state.best_val_auc,
            self.params.epochs,
        )

    def _lr_factor(self) -> float:
        """Poly decay (power 0.9) over all iterations."""
        return (
            1 - min(self.state.iteration, self.total_iterations - 1) / self.total_iterations
        ) ** 0.9

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training tiles (this rank's part of each batch); mean losses."""
        self.model.train()
        rng = np.random.default_rng(self.params.seed * 1000 + epoch)
        sums = {"teacher_bce": 0.0, "distill": 0.0, "saturated": 0.0}
        count = 0
        size, total = self.params.batch_size, len(self.train_set)
        steps = math.ceil(total / size)
        for step, (a, b, y) in enumerate(
            batches(self.train_set, size, rng, self.params.augment, self.env)
        ):
            if distributed.any_rank(self.cb.is_canceled())[0]:
                raise Canceled("canceled by the user")
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * self._lr_factor()
            a, b, y = (to_tensor(t, self.device) for t in (a, b, y))
            with autocasting(self.device, self.amp_dtype):
                out = self.model.losses_of(self.forward(a, b), y)
            if distributed.any_rank(not torch.isfinite(out.total).item())[0]:
                self._diverged(out.total.item(), epoch)
            # DDP averages gradients over ranks: weigh each rank's mean by its share of the batch
            share = len(y) * self.env.world_size / min(size, total - step * size)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(out.total * share).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.state.iteration += 1
            n = len(y)
            sums["teacher_bce"] += out.teacher_bce.item() * n
            sums["distill"] += out.distill.item() * n
            sums["saturated"] += saturation_fraction(out.student_cam) * n
            count += n
            self.cb.metric("loss", out.total.item(), self.state.iteration)
            fraction = ((epoch - 1) + (step + 1) / steps) / self.params.epochs
            self.cb.progress(
                fraction, f"epoch {epoch}/{self.params.epochs}, loss {out.total.item():.4f}"
            )
        *totals, count = distributed.sum_over_ranks([*sums.values(), float(count)])
        return {k: v / max(count, 1) for k, v in zip(sums, totals)}

    def _diverged(self, loss: float, epoch: int) -> None:
        """Stop with a clear error when the loss is not finite (on any rank)."""
        kept = (
            f"the last good checkpoint {self.checkpoint_path} was kept; lower --lr and resume"
            if self.checkpoint_path.exists()
            else "no epoch finished, so nothing was saved; lower --lr and train again"
        )
        raise KdmsiError(f"Training diverged (loss {loss} at epoch {epoch}); {kept}.")

    def _end_epoch(self, epoch: int, losses: dict[str, float]) -> None:
        """Validate, log, keep the best model, write the checkpoint and curves (rank 0 only)."""
        if not self.env.is_main:
            self.state.epoch = epoch
            return
        auc_student, auc_teacher = self._validate()
        score = auc_student if not math.isnan(auc_student) else float(epoch) / 1e6
        row = {
            "epoch": epoch,
            **losses,
            "val_auc_student": auc_student,
            "val_auc_teacher": auc_teacher,
        }
        self.state.rows.append(row)
        self.state.epoch = epoch
        if score >= self.state.best_auc:
            self.state.best_auc, self.state.best_epoch = score, epoch
            self.state.best_val_auc = auc_student
            self.info.train_summary.update(
                {"selected_epoch": epoch, "val_auc_student": auc_student}
            )
            states = {
                "student": self.model.student.state_dict(),
                "teacher": self.model.teacher.state_dict(),
            }
            save_model(self.model_path, self.info, states)
        self.save_checkpoint()
        write_csv(self.run_dir / "log.csv", self.state.rows)
        self.curves.update(self.state.rows, final=epoch == self.params.epochs)
        for key, value in row.items():
            if key != "epoch":
                self.cb.metric(key, value, epoch)
        self.cb.info(self._epoch_sentence(epoch, losses, auc_student, auc_teacher))

    def _epoch_sentence(
        self, epoch: int, losses: dict[str, float], auc_student: float, auc_teacher: float
    ) -> str:
        """One epoch in words; the raw values (BCE, distillation, saturation) go to log.csv."""
        text = (
            f"Epoch {epoch} of {self.params.epochs}: loss {losses['teacher_bce']:.4f} (teacher) "
            f"and {losses['distill']:.4f} (student)"
        )
        if math.isnan(auc_student):
            return text + "."
        return (
            text + f"; a held-out changed tile outscores an unchanged one {auc_student:.0%} of "
            f"the time with the student, {auc_teacher:.0%} with the teacher."
        )

    @torch.inference_mode()
    def _validate(self) -> tuple[float, float]:
        """Image-level AUC of the student (mean sigmoid) and teacher (logit) on held-out tags."""
        if self.val_set is None or len(self.val_set) == 0:
            return float("nan"), float("nan")
        self.model.eval()
        student, teacher = [], []
        for a, b, _ in batches(self.val_set, self.params.batch_size * 2, None, False):
            a, b = to_tensor(a, self.device), to_tensor(b, self.device)
            with autocasting(self.device, self.amp_dtype):
                s_cam = self.model.student(a, b).float()
                t_cam = self.model.teacher(a, b).float()
            student.append(torch.sigmoid(s_cam).mean(dim=(1, 2, 3)).cpu().numpy())
            teacher.append(t_cam.mean(dim=(1, 2, 3)).cpu().numpy())
        labels = self.val_set.labels
        return roc_auc(np.concatenate(student), labels), roc_auc(np.concatenate(teacher), labels)
