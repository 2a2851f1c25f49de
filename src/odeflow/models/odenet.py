"""ODE-Net: an image classifier whose residual stack is one ODE block (Chen et al. 2018, §3).

A residual block updates a hidden state by ``h_{k+1} = h_k + f(h_k, theta_k)``;
six of them in a row are six Euler steps of size 1 of ``dh/dt = f(h, t)`` with
six different vector fields. The ODE-Net keeps the vector field and lets an
adaptive solver choose the steps: ``h(1) = h(0) + int_0^1 f(h(t), t, theta) dt``
with one set of parameters ``theta`` (so about a third of the parameters of
the ResNet with the same downsampling and head), memory O(1) in the number of
solver steps when the gradient comes from the adjoint ODE, and a cost (the
number of function evaluations, NFE) that the tolerance and the data decide.

Three classifiers share the downsampling stem and the head and differ only in
the middle (Table 1 of the paper):

=========  ===============================================  ===========================
model      middle                                            gradient
=========  ===============================================  ===========================
ResNet     6 residual blocks ``h + f_k(h)`` (He et al. 2016)  backprop through the blocks
RK-Net     :class:`ODEBlock`, ``gradient="backprop"``          backprop through the solver
ODE-Net    :class:`ODEBlock`, ``gradient="adjoint"``           adjoint ODE (eq. 4-5)
=========  ===============================================  ===========================

Architecture, after the paper's public MNIST example (width ``w``, GroupNorm
with two channels per group, as its 32 groups of 64 channels)::

    stem   (28x28)  conv3x3(1->w) GN ReLU conv4x4/2(w->w) GN ReLU conv4x4/2(w->w)   28 -> 26 -> 13 -> 6
           (8x8)    conv3x3/p1(1->w) GN ReLU conv4x4/2(w->w) GN ReLU conv3x3/p1(w->w) 8 -> 8 -> 4 -> 4
    f(t,h)          GN ReLU tconv3x3(w->w) GN ReLU tconv3x3(w->w) GN    (tconv: t as an input channel)
    head   (28x28)  GN ReLU global-average-pool Linear(w->10)
           (8x8)    GN ReLU avg-pool 2x2 flatten Linear(4w->10)

The 8x8 variant is ours. The stem halves the digits once (halving twice leaves
2x2 maps), and the head pools 4x4 maps to 2x2 rather than to one pixel: with
global pooling the ResNet reached 96-97 % test accuracy on the digits in 8
epochs against 97.8 % with the 2x2 pool (one run each, same seed and
schedule), because where a stroke lies matters on 8x8 images.

With ``w = 64`` on 28x28 images the ODE-Net has 208,266 parameters and the
ResNet 576,778, the ~0.21 M and ~0.58 M of Table 1 (rounded there to 0.22 M
and 0.60 M).

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural ordinary
   differential equations", NeurIPS 2018, §3 (Table 1, Fig. 3) and §2 (eq. 4-5).
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image
   recognition", CVPR 2016; "Identity mappings in deep residual networks", ECCV
   2016 (the pre-activation block used here).
.. [3] Y. Wu, K. He, "Group normalization", ECCV 2018.
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint import odeint_adjoint, odeint_backprop
from odeflow.regularizers import check_regularizers, check_steer, odeint_regularized, steer_end_time
from odeflow.adjoint.common import array_func
from odeflow.autodiff.tensor import Tensor, is_grad_enabled
from odeflow.errors import InputError
from odeflow.nn import init
from odeflow.nn.conv import AvgPool2d, ConcatConv2d, Conv2d, Flatten, GlobalAvgPool2d, GroupNorm
from odeflow.nn.layers import Linear, ReLU, Sequential
from odeflow.nn.module import Module
from odeflow.solvers.integrate import solve

__all__ = ["ODEFunc", "ODEBlock", "ResBlock", "ImageClassifier", "odenet", "resnet", "rknet",
           "build_classifier", "MODEL_KINDS", "default_width", "norm_groups"]

MODEL_KINDS = ("odenet", "rknet", "resnet")
GRADIENTS = ("adjoint", "backprop")


def norm_groups(channels: int) -> int:
    """GroupNorm groups for `channels`: two channels per group, at most 32 groups
    (the paper's example has 32 groups of 64 channels)."""
    return max(1, min(32, channels // 2))


def default_width(image_size: int) -> int:
    """Channels of the hidden state: 64 for MNIST-sized images (the paper's), 32 for 8x8."""
    return 64 if image_size >= 16 else 32


class ODEFunc(Module):
    """The right-hand side ``f(t, h)`` of the ODE block: two time-conditioned 3x3 convs.

    ``GN -> ReLU -> ConcatConv2d -> GN -> ReLU -> ConcatConv2d -> GN``; the
    state keeps its shape ``(N, channels, H, W)``.

    Parameters
    ----------
    channels : int
    rng : int, numpy.random.Generator or None
    dtype : dtype, default float64

    Attributes
    ----------
    nfe : int
        Evaluations since the last reset (:class:`ODEBlock` resets it).
    """

    def __init__(self, channels: int, rng=None, dtype=np.float64):
        rng = init.as_generator(rng)
        g = norm_groups(channels)
        self.norm1 = GroupNorm(g, channels, dtype=dtype)
        self.conv1 = ConcatConv2d(channels, channels, 3, 1, 1, rng=rng, dtype=dtype)
        self.norm2 = GroupNorm(g, channels, dtype=dtype)
        self.conv2 = ConcatConv2d(channels, channels, 3, 1, 1, rng=rng, dtype=dtype)
        self.norm3 = GroupNorm(g, channels, dtype=dtype)
        self.nfe = 0

    def forward(self, t, h):
        """``dh/dt`` at time `t` (float) for the state `h` ``(N, channels, H, W)``."""
        self.nfe += 1
        out = self.conv1(t, self.norm1(h, relu=True))  # GN -> ReLU as one node
        out = self.conv2(t, self.norm2(out, relu=True))
        return self.norm3(out)


class ODEBlock(Module):
    """``h -> h(t1)`` where ``dh/dt = func(t, h)``, ``h(t0) = h``: a residual stack in the limit.

    Parameters
    ----------
    func : Module
        ``func(t, h)`` with ``h``'s shape, e.g. :class:`ODEFunc`.
    t : (float, float), default (0, 1)
        Integration interval ``(t0, t1)``, ``t0 != t1``.
    method : str, default "dopri5"
        Any method of :func:`odeflow.odeint`; fixed-step ones need ``options={"step_size": h}``.
    rtol, atol : float, default 1e-3
        The paper's tolerances for the MNIST experiment.
    gradient : {"adjoint", "backprop"}, default "adjoint"
        ``"adjoint"``: :func:`odeflow.odeint_adjoint` (O(1) memory in the steps,
        gradient from a backward ODE solve at the same tolerances).
        ``"backprop"``: :func:`odeflow.odeint_backprop`, backpropagation through
        the solver's operations (the paper's RK-Net; memory grows with the steps).
    options : dict, optional
        Solver options of the forward solve (and of the backward solve of the adjoint).
    adjoint_options : dict, optional
        Options of the backward solve only (e.g. ``{"norm": "seminorm"}``).
    regularizers : sequence of Regularizer, optional
        RNODE's penalties (:mod:`odeflow.regularizers`), integrated along the
        training solves (while recording gradients) as extra channels left
        out of the step-size control; the weighted penalty of the last call is
        :attr:`regularization` ``.penalty``, for the training loss.
    steer : float in (0, 1), optional
        STEER: while recording gradients, the solve ends at a time drawn
        uniformly in ``t1 +- steer (t1 - t0)``; evaluation uses ``t1``.
    rng : int or numpy.random.Generator, optional
        Source of the Frobenius probes and STEER's end times.

    Attributes
    ----------
    regularization : Regularization or None
        Of the last training-mode call with `regularizers` (else None).
    stats : dict
        Of the last call: ``stats["forward"]`` (``nfe``, ``n_steps``...) at once;
        ``stats["backward"]["nfe"]`` after ``backward()`` with the adjoint. With
        backprop no backward entry appears: the backward pass walks the
        recorded graph and evaluates ``func`` no more.

    Raises
    ------
    InputError
        Unknown `gradient`, ``t0 == t1``, bad `regularizers` or `steer`.

    References
    ----------
    .. [1] Chen et al. 2018, §3 and Fig. 3 (NFE forward and backward).
    .. [2] Finlay et al. 2020 (RNODE) and Ghosh et al. 2020 (STEER): see
       :mod:`odeflow.regularizers`.
    """

    def __init__(self, func, t=(0.0, 1.0), method: str = "dopri5", rtol: float = 1e-3,
                 atol: float = 1e-3, gradient: str = "adjoint", options=None, adjoint_options=None,
                 regularizers=None, steer=None, rng=None):
        if gradient not in GRADIENTS:
            raise InputError(f"`gradient` must be one of {GRADIENTS}; got {gradient!r}")
        t = tuple(float(v) for v in t)
        if len(t) != 2 or t[0] == t[1]:
            raise InputError(f"`t` must be two different times (t0, t1); got {t!r}")
        self.func = func
        self.t = t
        self.method, self.rtol, self.atol, self.gradient = method, float(rtol), float(atol), gradient
        self.options = dict(options) if options else None
        self.adjoint_options = dict(adjoint_options) if adjoint_options else None
        self.regularizers = check_regularizers(regularizers)
        self.steer = check_steer(steer)
        self.rng = np.random.default_rng(rng)
        self.regularization = None
        self.stats = {}

    def forward(self, h):
        """`h` ``(N, C, H, W)`` (any shape ``func`` accepts) to ``h(t1)``, same shape."""
        self.stats = {}
        t = np.asarray(self.t)
        if not is_grad_enabled():  # evaluation: values only, no graph, no adjoint bookkeeping
            y0 = h.data if isinstance(h, Tensor) else np.asarray(h)
            sol = solve(array_func(self.func), y0, t, rtol=self.rtol, atol=self.atol,
                        method=self.method, options=self.options)
            self.stats["forward"] = dict(sol.stats)
            return Tensor(sol.y[-1])
        if self.steer is not None:
            t = np.array([t[0], steer_end_time(t[0], t[1], self.steer, self.rng)])
        back = dict(self.options or {})
        back.update(self.adjoint_options or {})
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options,
                      stats=self.stats)
        if self.regularizers:
            out, self.regularization = odeint_regularized(
                self.func, h, t, self.regularizers, gradient=self.gradient,
                adjoint_options=back or None, rng=self.rng, **kwargs)
        elif self.gradient == "backprop":
            out = odeint_backprop(self.func, h, t, **kwargs)
        else:  # the adjoint; without recording it is a plain forward solve
            out = odeint_adjoint(self.func, h, t, adjoint_options=back or None, **kwargs)
        return out[-1]

    @property
    def nfe_forward(self) -> int:
        """Function evaluations of the last forward solve."""
        return int(self.stats.get("forward", {}).get("nfe", 0))

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the last adjoint solve (0 before backward, and with backprop)."""
        return int(self.stats.get("backward", {}).get("nfe", 0))

    def extra_repr(self):
        return (f"t={self.t}, method={self.method!r}, rtol={self.rtol}, atol={self.atol}, "
                f"gradient={self.gradient!r}")


class ResBlock(Module):
    """Pre-activation residual block ``h + conv(ReLU(GN(conv(ReLU(GN(h))))))`` (He et al. 2016).

    The same layers as :class:`ODEFunc` without the time channel and the last
    GroupNorm; the convolutions have no bias (GroupNorm follows), as in the
    paper's baseline.
    """

    def __init__(self, channels: int, rng=None, dtype=np.float64):
        rng = init.as_generator(rng)
        g = norm_groups(channels)
        self.norm1 = GroupNorm(g, channels, dtype=dtype)
        self.conv1 = Conv2d(channels, channels, 3, 1, 1, bias=False, rng=rng, dtype=dtype)
        self.norm2 = GroupNorm(g, channels, dtype=dtype)
        self.conv2 = Conv2d(channels, channels, 3, 1, 1, bias=False, rng=rng, dtype=dtype)

    def forward(self, h):
        out = self.conv1(self.norm1(h, relu=True))  # GN -> ReLU as one node
        out = self.conv2(self.norm2(out, relu=True))
        return h + out


def _stem(image_size: int, width: int, rng, dtype) -> Sequential:
    g = norm_groups(width)
    if image_size >= 16:  # the paper's: 28 -> 26 -> 13 -> 6
        last = Conv2d(width, width, 4, 2, 1, rng=rng, dtype=dtype)
        first = Conv2d(1, width, 3, 1, 0, rng=rng, dtype=dtype)
    else:  # small images keep their size, halve once: 8 -> 8 -> 4 -> 4
        first = Conv2d(1, width, 3, 1, 1, rng=rng, dtype=dtype)
        last = Conv2d(width, width, 3, 1, 1, rng=rng, dtype=dtype)
    return Sequential(first, GroupNorm(g, width, dtype=dtype), ReLU(),
                      Conv2d(width, width, 4, 2, 1, rng=rng, dtype=dtype),
                      GroupNorm(g, width, dtype=dtype), ReLU(), last)


def _head(image_size: int, width: int, n_classes: int, rng, dtype) -> Sequential:
    norm = GroupNorm(norm_groups(width), width, dtype=dtype)
    if image_size >= 16:  # the paper's: global average pool
        return Sequential(norm, ReLU(), GlobalAvgPool2d(), Linear(width, n_classes, rng=rng, dtype=dtype))
    # 4x4 maps: a 2x2 average pool keeps a coarse layout of the digit
    return Sequential(norm, ReLU(), AvgPool2d(2), Flatten(),
                      Linear(4 * width, n_classes, rng=rng, dtype=dtype))


class ImageClassifier(Module):
    """Stem -> middle (ODE block or residual blocks) -> head; logits ``(N, n_classes)``.

    Build it with :func:`odenet`, :func:`rknet`, :func:`resnet` or
    :func:`build_classifier`.

    Attributes
    ----------
    stem : Sequential
    middle : ODEBlock or Sequential of ResBlock
    head : Sequential
    kind : str
        "odenet", "rknet" or "resnet".
    image_size : int
    """

    def __init__(self, stem, middle, head, kind: str, image_size: int):
        self.stem, self.middle, self.head = stem, middle, head
        self.kind, self.image_size = kind, int(image_size)

    def forward(self, x):
        """`x` ``(N, 1, H, W)`` images to logits ``(N, n_classes)``."""
        return self.head(self.middle(self.stem(x)))

    @property
    def ode_block(self):
        """The :class:`ODEBlock`, or None for the ResNet."""
        return self.middle if isinstance(self.middle, ODEBlock) else None

    def describe(self) -> str:
        """One line: model, input size and parameter count (as the paper's Table 1 lists)."""
        names = {"odenet": "ODE-Net", "rknet": "RK-Net", "resnet": "ResNet"}
        return (f"{names.get(self.kind, self.kind)} for {self.image_size}x{self.image_size} images: "
                f"{self.num_parameters():,} parameters")


def build_classifier(kind: str = "odenet", image_size: int = 28, width: int | None = None,
                     n_classes: int = 10, *, method: str = "dopri5", rtol: float = 1e-3,
                     atol: float = 1e-3, options=None, adjoint_options=None, regularizers=None,
                     steer=None, rng=0, dtype=np.float64, verbose: bool = False) -> ImageClassifier:
    """The paper's classifier sized for the input, or one of its two baselines.

    Parameters
    ----------
    kind : {"odenet", "rknet", "resnet"}
        ODE block with the adjoint, ODE block with backprop through the solver,
        or 6 residual blocks.
    image_size : int
        Side of the square single-channel input: >= 16 uses the paper's MNIST
        stem (28 -> 6), smaller (the 8x8 digits) a stem that halves once (8 -> 4).
    width : int, optional
        Channels of the hidden state; default :func:`default_width`.
    n_classes : int, default 10
    method, rtol, atol, options, adjoint_options, regularizers, steer
        Of the ODE block (ignored by the ResNet; see :class:`ODEBlock`).
    rng : int, numpy.random.Generator or None, default 0
        Seed of the initial weights (and, after them, of the block's probes and
        STEER's end times).
    dtype : dtype, default float64
        float32 halves memory and roughly halves the GEMM time.
    verbose : bool, default False
        Print :meth:`ImageClassifier.describe` (model and parameter count).

    Returns
    -------
    ImageClassifier

    Raises
    ------
    InputError
        Unknown `kind`, or an image smaller than 4 pixels or a width below 2.
    """
    if kind not in MODEL_KINDS:
        raise InputError(f"`kind` must be one of {MODEL_KINDS}; got {kind!r}")
    if image_size < 4:
        raise InputError(f"`image_size` must be at least 4; got {image_size!r}")
    width = default_width(image_size) if width is None else int(width)
    if width < 2:
        raise InputError(f"`width` must be at least 2; got {width!r}")
    rng = init.as_generator(rng)
    stem = _stem(image_size, width, rng, dtype)
    if kind == "resnet":
        middle = Sequential(*[ResBlock(width, rng, dtype) for _ in range(6)])
    else:
        middle = ODEBlock(ODEFunc(width, rng, dtype), method=method, rtol=rtol, atol=atol,
                          gradient="adjoint" if kind == "odenet" else "backprop",
                          options=options, adjoint_options=adjoint_options,
                          regularizers=regularizers, steer=steer, rng=rng)
    head = _head(image_size, width, n_classes, rng, dtype)
    model = ImageClassifier(stem, middle, head, kind, image_size)
    if verbose:
        print(model.describe())
    return model


def odenet(image_size: int = 28, width: int | None = None, **kwargs) -> ImageClassifier:
    """ODE-Net: the ODE block with adjoint gradients (see :func:`build_classifier`)."""
    return build_classifier("odenet", image_size, width, **kwargs)


def rknet(image_size: int = 28, width: int | None = None, **kwargs) -> ImageClassifier:
    """RK-Net: the same ODE block, backpropagating through the solver (see :func:`build_classifier`)."""
    return build_classifier("rknet", image_size, width, **kwargs)


def resnet(image_size: int = 28, width: int | None = None, **kwargs) -> ImageClassifier:
    """ResNet: 6 residual blocks in place of the ODE block (see :func:`build_classifier`)."""
    return build_classifier("resnet", image_size, width, **kwargs)
