"""A whole MLP as ONE graph node: fused forward and fused VJP.

An MLP ``h_0 = x, h_i = act_i(h_{i-1} W_i^T + b_i)`` built from engine ops is
about three nodes per layer (``linear``, the activation, and the walk's
bookkeeping for each). A neural ODE evaluates it at every solver stage, so a
gradient through a solve walks hundreds of such nodes, and every node keeps
its own arrays alive. Here the network is one node:

forward
    per layer, one BLAS product into a buffer, the bias added in place, the
    activation applied in place by NumPy's vectorised ufunc (the same formula
    as the engine's op, so the values are the same). Only the layers' outputs
    ``h_i`` are kept, and the hidden ones live in reusable scratch arrays
    (:mod:`odeflow.autodiff.scratch`).
VJP (backpropagation, Rumelhart, Hinton & Williams 1986; Goodfellow, Bengio &
Courville 2016, §6.5.4, Algorithm 6.4), for the output gradient ``g``, from
the last layer down::

    dz_i  = g_i * act_i'(z_i)           (act' from the output h_i: mlp_kernels)
    dW_i  = dz_i^T h_{i-1}              db_i = sum over the batch of dz_i
    g_i-1 = dz_i W_i

    with ``g_L = g``; ``dx = g_0``. The elementwise line and the bias sum are
    one jitted pass (:func:`odeflow.nn.mlp_kernels.activation_backward`), the
    products are BLAS. Gradients no parent needs are not computed.

Higher order. The fused VJP works on arrays, so it is not itself
differentiable. When the walk records (``backward(create_graph=True)``,
``gradients(..., create_graph=True)``), the VJP instead re-evaluates the MLP
with engine ops and applies those ops' own VJPs, layer by layer, with
recording on: the gradients then have a graph and second derivatives are
exactly those of the unfused MLP (at the price of one more forward).

Used by :meth:`odeflow.nn.MLP.forward` when every layer is a ``Linear``
followed by at most one of the activations below and all dtypes agree; any
other network takes the generic path (``Sequential``).
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff import ops, scratch
from odeflow.autodiff.tensor import Tensor, _mode, _wrap

__all__ = ["TANH", "RELU", "SIGMOID", "SOFTPLUS", "ELU", "IDENTITY", "mlp"]

TANH, RELU, SIGMOID, SOFTPLUS, ELU, IDENTITY = range(6)

# the engine ops with the same values, for the recorded (create_graph) VJP
_OPS = {TANH: lambda z, alpha: ops.tanh(z), RELU: lambda z, alpha: ops.relu(z),
        SIGMOID: lambda z, alpha: ops.sigmoid(z), SOFTPLUS: lambda z, alpha: ops.softplus(z),
        ELU: ops.elu}


def _activate(z, code, alpha):
    """``z = act(z)`` in place, by the formulas of :mod:`odeflow.autodiff.ops`."""
    if code == TANH:
        np.tanh(z, out=z)
    elif code == RELU:
        np.maximum(z, 0, out=z)
    elif code == SIGMOID:  # exp(-softplus(-z)): no overflow, full precision in both tails
        np.negative(z, out=z)
        np.logaddexp(0.0, z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
    elif code == SOFTPLUS:
        np.logaddexp(0.0, z, out=z)
    elif code == ELU:  # expm1 of the clipped value: the branch not taken must not overflow
        np.copyto(z, alpha * np.expm1(np.minimum(z, 0)), where=np.logical_not(z > 0))


def forward_arrays(x, layers):
    """Outputs of every layer for a batch ``x`` of shape (n, in_features).

    `layers` holds ``(weight, bias or None, code, alpha)`` arrays; all but the
    last output are scratch arrays (the caller gives them back).
    """
    h, outs = x, []
    for i, (w, b, code, alpha) in enumerate(layers):
        shape = (x.shape[0], w.shape[0])
        z = np.empty(shape, x.dtype) if i == len(layers) - 1 else scratch.take(shape, x.dtype)
        np.dot(h, w.T, out=z)
        if b is not None:
            np.add(z, b, out=z)
        _activate(z, code, alpha)
        outs.append(z)
        h = z
    return outs


def backward_arrays(x, layers, outs, g, wanted):
    """The fused VJP on arrays: ``(dx, [dW_1, db_1, dW_2, ...])``.

    `wanted` = ``(x_wanted, [(w_wanted, b_wanted) per layer])``; gradients not
    wanted are None (and, below the lowest wanted one, not computed).
    """
    from odeflow.nn.mlp_kernels import activation_backward  # Numba, on first use

    x_wanted, per_layer = wanted
    lowest = 0 if x_wanted else min((i for i, (w_, b_) in enumerate(per_layer) if w_ or b_),
                                    default=len(layers))
    grads = [None] * (2 * len(layers))
    dx, d = None, g  # d: the gradient of the current layer's output (g is the caller's: read only)
    no_bias = np.empty(0, x.dtype)
    for i in range(len(layers) - 1, lowest - 1, -1):
        w, b, code, alpha = layers[i]
        w_wanted, b_wanted = per_layer[i]
        if code == IDENTITY:
            dz = d
            if b is not None and b_wanted:
                grads[2 * i + 1] = d.sum(axis=0)
        else:
            dz = d if d is not g else scratch.take(d.shape, d.dtype)  # ours: overwrite in place
            db = np.empty(d.shape[1], d.dtype) if b is not None and b_wanted else no_bias
            activation_backward(d, outs[i], code, alpha, dz, db, db is not no_bias)
            if db is not no_bias:
                grads[2 * i + 1] = db
        h_prev = x if i == 0 else outs[i - 1]
        if w_wanted:
            grads[2 * i] = np.dot(dz.T, h_prev)
        if i > lowest:
            d = scratch.take((dz.shape[0], w.shape[1]), dz.dtype)
            np.dot(dz, w, out=d)
        elif i == 0 and x_wanted:
            dx = np.dot(dz, w)
        if dz is not g:
            scratch.give(dz)
    return dx, grads


def _recorded_vjp(x, params, layers, g):
    """The VJP with engine ops, recording: differentiable again (module docstring)."""
    h, chain = x, []
    for w, b, code, alpha in layers:
        z = ops.linear(h, w, b)
        chain.append((z, z if code == IDENTITY else _OPS[code](z, alpha)))
        h = chain[-1][1]
    grads = [None] * len(params)
    end, d = len(params), g  # params[: end] belong to the layers not yet visited
    for (z, a), (_, b, _, _) in zip(reversed(chain), reversed(layers)):
        start = end - (1 if b is None else 2)
        if a is not z and d is not None and a._vjp is not None:
            (d,) = a._vjp(d, a)
        if d is None or z._vjp is None:  # nothing below this layer requires grad
            return [None] + grads
        d, *grads[start: end] = z._vjp(d, z)
        end = start
    return [d if x.requires_grad else None] + grads


def mlp(x, layers):
    """Evaluate an MLP as one node; None when the fused path does not apply.

    Parameters
    ----------
    x : Tensor or ndarray, shape (..., in_features)
    layers : list of ``(weight, bias, code, alpha)``
        ``weight`` a Tensor (out, in), ``bias`` a Tensor (out,) or None,
        ``code`` the activation after the affine map (``TANH`` ...
        ``IDENTITY``), ``alpha`` ELU's parameter (> 0).

    Returns
    -------
    Tensor of shape (..., out_features) and `x`'s dtype, or None when `x` is
    not a float32/float64 Tensor, a dtype differs, or the widths do not chain
    (the caller then runs the generic path, which reports shape errors).
    """
    if not isinstance(x, Tensor):
        if not isinstance(x, np.ndarray):
            return None
        x = Tensor(x)
    dtype = x.data.dtype
    if dtype not in (np.float32, np.float64) or x.ndim == 0:
        return None
    width = x.shape[-1]
    for w, b, _, _ in layers:
        if (w.data.dtype != dtype or w.ndim != 2 or w.shape[1] != width
                or (b is not None and (b.data.dtype != dtype or b.shape != w.shape[:1]))):
            return None
        width = w.shape[0]
    params = [p for w, b, _, _ in layers for p in ((w,) if b is None else (w, b))]
    arrays = [(w.data, None if b is None else b.data, code, alpha) for w, b, code, alpha in layers]
    x2 = x.data.reshape(-1, x.shape[-1])
    outs = forward_arrays(x2, arrays)
    out_shape = x.shape[:-1] + (width,)
    record = _mode.enabled and (x.requires_grad or any(p.requires_grad for p in params))
    if not record:
        scratch.give(*outs[:-1])
        return _wrap(outs[-1].reshape(out_shape))
    lease = scratch.Lease(outs[:-1])  # the hidden outputs, back to the pool with the node
    last = outs[-1]  # the array, not the output Tensor: no reference cycle

    def vjp(g):
        if _mode.enabled:  # the walk records: a differentiable VJP
            return _recorded_vjp(x, params, layers, g)
        wanted = (x.requires_grad, [(w.requires_grad, b is not None and b.requires_grad)
                                    for w, b, _, _ in layers])
        g2 = g.data.reshape(-1, last.shape[1])
        if not (g2.flags.c_contiguous and g2.flags.writeable):  # e.g. a broadcast seed: one
            g2 = np.array(g2)  # array type for the jitted kernel, so one compilation per dtype
        dx, grads = backward_arrays(x2, arrays, lease.arrays + [last], g2, wanted)
        return [None if dx is None else _wrap(dx.reshape(x.shape))] + _pick(grads, layers)

    return ops.make_node(outs[-1].reshape(out_shape), (x, *params), vjp)


def _pick(grads, layers):
    """The per-parameter gradients from the ``[dW_1, db_1, ...]`` slots (no slot for absent biases)."""
    out = []
    for i, (_, b, _, _) in enumerate(layers):
        out.append(grads[2 * i])
        if b is not None:
            out.append(grads[2 * i + 1])
    return out
