"""odeflow.nn: Module tree, saving, flatten/unflatten, layers against their
equations, initialisation bounds, and an MLP that learns XOR."""
import math

import numpy as np
import pytest

from odeflow import nn, optim
from odeflow.autodiff import Tensor, ops, vjp
from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.nn import init
from odeflow.testing import check_grads


class Pair(nn.Module):
    def __init__(self, shared):
        super().__init__()
        self.first = nn.Linear(2, 3, rng=0)
        self.blocks = [nn.Linear(3, 3, rng=1), nn.Tanh()]
        self.heads = {"mean": nn.Linear(3, 1, rng=2)}
        self.scale = nn.Parameter(np.ones(1))
        self.again = shared  # the same Parameter under a second name

    def forward(self, x):
        h = self.blocks[1](self.blocks[0](self.first(x)))
        return self.heads["mean"](h) * self.scale * self.again


def make_pair():
    shared = nn.Parameter([2.0])
    m = Pair(shared)
    m.also = shared
    return m


def test_named_parameters_order_and_sharing():
    m = make_pair()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["first.weight", "first.bias", "blocks.0.weight", "blocks.0.bias",
                     "heads.mean.weight", "heads.mean.bias", "scale", "again"]
    assert len(m.parameters()) == 8
    assert m.num_parameters() == 6 + 3 + 9 + 3 + 3 + 1 + 1 + 1
    assert [type(x).__name__ for x in m.modules()] == ["Pair", "Linear", "Linear", "Tanh", "Linear"]


def test_train_eval_zero_grad_and_call():
    m = make_pair()
    assert m.training and all(x.training for x in m.modules())
    assert m.eval() is m and not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    m(np.ones((4, 2))).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(NotImplementedError, match="Module must define forward"):
        nn.Module()(1)


def test_state_dict_npz_round_trip(tmp_path):
    m, other = nn.MLP([2, 5, 1], rng=0), nn.MLP([2, 5, 1], rng=1)
    x = np.random.default_rng(0).standard_normal((3, 2))
    assert not np.allclose(m(x).data, other(x).data)
    path = tmp_path / "model.npz"
    m.save(path)
    assert other.load(path) is other
    np.testing.assert_array_equal(m(x).data, other(x).data)
    state = m.state_dict()
    state["layers.0.weight"][...] = 0  # a copy: the module is unchanged
    assert np.any(m.layers[0].weight.data != 0)


def test_load_state_dict_errors_name_the_keys_and_shapes():
    m = nn.MLP([2, 3, 1], rng=0)
    state = m.state_dict()
    with pytest.raises(InputError, match=r"missing \['layers.2.bias'\], unexpected \['extra'\]"):
        m.load_state_dict({**{k: v for k, v in state.items() if k != "layers.2.bias"}, "extra": 1})
    bad = dict(state, **{"layers.0.weight": np.ones((2, 3))})
    with pytest.raises(ShapeError, match=r"`state\['layers.0.weight'\]` has shape \(2, 3\).*\(3, 2\)"):
        m.load_state_dict(bad)
    m.load_state_dict({"layers.0.bias": np.zeros(3)}, strict=False)
    np.testing.assert_array_equal(m.layers[0].bias.data, 0)


def test_load_keeps_parameter_dtype():
    m = nn.Linear(2, 2, rng=0, dtype=np.float32)
    m.load_state_dict({"weight": np.ones((2, 2)), "bias": np.zeros(2)})
    assert m.weight.dtype == np.float32 and m(np.ones((1, 2), np.float32)).dtype == np.float32


def test_parameters_to_vector_round_trip():
    m = make_pair()
    params = m.parameters()
    vec = nn.parameters_to_vector(params)
    assert vec.shape == (m.num_parameters(),)
    nn.vector_to_parameters(np.arange(vec.size, dtype=float), params)
    np.testing.assert_array_equal(nn.parameters_to_vector(params), np.arange(vec.size))
    assert m.first.weight.data[1, 0] == 2.0  # row-major, in named_parameters order
    pieces = nn.split_vector(vec, [p.shape for p in params])
    for piece, p in zip(pieces, params):
        assert piece.shape == p.shape
    with pytest.raises(ShapeError, match=r"shape \(3,\).*total size 27"):
        nn.vector_to_parameters(np.ones(3), params)
    assert nn.parameters_to_vector([]).shape == (0,)


def test_parameter_copies_and_promotes():
    source = np.array([1, 2])
    p = nn.Parameter(source)
    p.data += 1
    assert source.tolist() == [1, 2] and p.dtype == np.float64 and p.requires_grad
    assert repr(p).startswith("Parameter(")
    with pytest.raises(InputTypeError, match="complex"):
        nn.Parameter(np.ones(2, complex))


def test_linear_shapes_layout_and_pytorch_init_bounds():
    layer = nn.Linear(16, 4, rng=0)
    assert layer.weight.shape == (4, 16) and layer.bias.shape == (4,)
    bound = 1 / math.sqrt(16)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound  # really uniform on the full interval
    x = np.random.default_rng(1).standard_normal((2, 3, 16))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data.T + layer.bias.data)
    np.testing.assert_array_equal(nn.Linear(16, 4, rng=0).weight.data, layer.weight.data)
    assert nn.Linear(3, 2, bias=False).bias is None
    with pytest.raises(ShapeError, match=r"last axis 16; got shape \(2, 15\)"):
        layer(np.ones((2, 15)))
    with pytest.raises(InputError, match="`in_features`"):
        nn.Linear(0, 3)


def test_init_schemes():
    w = init.kaiming_uniform((100, 50), rng=0)
    assert np.abs(w).max() <= 1 / math.sqrt(50)
    w = init.kaiming_uniform((100, 50), a=0.0, rng=0)  # He for ReLU: sqrt(6 / fan_in)
    assert math.sqrt(6 / 50) * 0.9 < np.abs(w).max() <= math.sqrt(6 / 50)
    w = init.xavier_uniform((30, 20), rng=0, dtype=np.float32)
    assert w.dtype == np.float32 and np.abs(w).max() <= math.sqrt(6 / 50)
    with pytest.raises(InputError, match=r"shape \(5,\)"):
        init.kaiming_uniform((5,))


def test_mlp_structure_and_activations():
    m = nn.MLP([3, 4, 4, 2], activation="relu", final_activation=nn.Sigmoid, rng=0)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Sigmoid"]
    out = m(np.ones((5, 3)))
    assert out.shape == (5, 2) and np.all((out.data > 0) & (out.data < 1))
    with pytest.raises(InputError, match="unknown activation 'swish'"):
        nn.MLP([2, 2], activation="swish", final_activation="swish")
    with pytest.raises(InputError, match=r"`sizes`.*\[2\]"):
        nn.MLP([2])


@pytest.mark.parametrize("module, fn", [
    (nn.Tanh(), np.tanh), (nn.ReLU(), lambda x: np.maximum(x, 0)), (nn.Identity(), lambda x: x),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))), (nn.Softplus(), lambda x: np.log1p(np.exp(x))),
    (nn.ELU(0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
])
def test_activation_modules(module, fn):
    x = np.linspace(-2, 2, 7)
    np.testing.assert_allclose(module(Tensor(x)).data, fn(x), rtol=1e-12)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_rnn_cell_equation():
    cell = nn.RNNCell(3, 4, rng=0)
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    p = {k: v.data for k, v in cell.named_parameters()}
    expected = np.tanh(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])
    np.testing.assert_allclose(cell(x, h).data, expected)
    assert cell(x).shape == (2, 4)
    with pytest.raises(ShapeError, match=r"hidden state with last axis 4; got shape \(2, 5\)"):
        cell(x, np.ones((2, 5)))
    with pytest.raises(InputError, match="`nonlinearity`"):
        nn.RNNCell(3, 4, nonlinearity="gelu")


def test_gru_cell_matches_pytorch_equations_and_gradients():
    cell = nn.GRUCell(3, 2, rng=0)
    assert cell.weight_ih.shape == (6, 3) and cell.weight_hh.shape == (6, 2)
    bound = 1 / math.sqrt(2)
    assert all(np.abs(p.data).max() <= bound for p in cell.parameters())
    rng = np.random.default_rng(2)
    x, h = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    p = {k: v.data for k, v in cell.named_parameters()}
    gi = x @ p["weight_ih"].T + p["bias_ih"]
    gh = h @ p["weight_hh"].T + p["bias_hh"]
    r = _sigmoid(gi[:, 0:2] + gh[:, 0:2])
    z = _sigmoid(gi[:, 2:4] + gh[:, 2:4])
    n = np.tanh(gi[:, 4:6] + r * gh[:, 4:6])
    np.testing.assert_allclose(cell(x, h).data, (1 - z) * n + z * h, rtol=1e-12)
    check_grads(cell, x, h, order=2)

    def with_weights(w_ih, w_hh, b_ih, b_hh):
        cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh = w_ih, w_hh, b_ih, b_hh
        return cell(x, h)

    check_grads(with_weights, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"], order=1)


def test_mlp_gradients_by_finite_differences_and_vjp_params():
    m = nn.MLP([2, 4, 3], activation="softplus", rng=0)
    x = np.random.default_rng(0).standard_normal((5, 2))
    check_grads(m, x, order=2)
    out, vjp_fn = vjp(m, x, params=m.parameters())
    u = np.random.default_rng(1).standard_normal(out.shape)
    _, param_grads = vjp_fn(u)
    m(x).backward(u)
    for p, g in zip(m.parameters(), param_grads):
        np.testing.assert_allclose(p.grad.data, g)


def test_mlp_learns_xor():
    """A 2-8-1 tanh MLP with Adam reaches a logistic loss below 0.05 on XOR in 300 steps."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[-1.0], [1.0], [1.0], [-1.0]])  # labels as signs
    model = nn.MLP([2, 8, 1], activation="tanh", rng=0)
    opt = optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = ops.mean(ops.softplus(-y * model(x)))  # logistic loss, in nats
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    np.testing.assert_array_equal(np.sign(model(x).data), y)


def test_mlp_fits_a_small_regression():
    """1-16-16-1 tanh MLP fits sin on [-2, 2] to mean squared error below 1e-3 in 600 Adam steps."""
    x = np.linspace(-2, 2, 64)[:, None]
    y = np.sin(x)
    model = nn.MLP([1, 16, 16, 1], rng=1)
    opt = optim.Adam(model.parameters(), lr=0.01)
    for _ in range(600):
        opt.zero_grad()
        loss = ops.mean((model(x) - y) ** 2)
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
