"""ODE-Net, RK-Net and ResNet classifiers and their training loop: shapes, parameter counts
derived from the layer formulas, gradients of the whole network against finite differences
and against backprop, NFE bookkeeping, a training step, checkpoint/resume, a clean stop on a
non-finite loss, and the quick demo end to end."""
import dataclasses

import numpy as np
import pytest

from odeflow.autodiff import Tensor, no_grad
from odeflow.errors import InputError, TrainingError
from odeflow.experiments import odenet as exp
from odeflow.models.odenet import ODEBlock, ODEFunc, build_classifier, norm_groups
from odeflow.testing import check_grads


def conv_params(c_in, c_out, k, bias=True):
    return c_out * c_in * k * k + (c_out if bias else 0)


def expected_counts(image_size, w, n_classes=10):
    """Parameter counts from the architecture description (module docstring), by hand."""
    gn = 2 * w
    if image_size >= 16:
        stem = conv_params(1, w, 3) + gn + conv_params(w, w, 4) + gn + conv_params(w, w, 4)
        head = gn + w * n_classes + n_classes
    else:
        stem = conv_params(1, w, 3) + gn + conv_params(w, w, 4) + gn + conv_params(w, w, 3)
        head = gn + 4 * w * n_classes + n_classes
    ode = 3 * gn + 2 * conv_params(w + 1, w, 3)           # three norms, two convs seeing t
    res = 6 * (2 * gn + 2 * conv_params(w, w, 3, bias=False))
    return stem + ode + head, stem + res + head


@pytest.mark.parametrize("size,width", [(28, 64), (8, 32), (8, 6)])
def test_parameter_counts_follow_the_architecture(size, width):
    n_ode, n_res = expected_counts(size, width)
    assert build_classifier("odenet", size, width).num_parameters() == n_ode
    assert build_classifier("rknet", size, width).num_parameters() == n_ode
    assert build_classifier("resnet", size, width).num_parameters() == n_res


def test_paper_sized_models_have_about_a_third_of_the_parameters():
    # Table 1: 0.22 M vs 0.60 M (the public example prints 208,266 for the ODE-Net)
    ode, res = build_classifier("odenet", 28), build_classifier("resnet", 28)
    assert 0.20e6 < ode.num_parameters() < 0.22e6 and 0.55e6 < res.num_parameters() < 0.60e6
    small = build_classifier("odenet", 8).num_parameters() / build_classifier("resnet", 8).num_parameters()
    assert 0.25 < small < 0.40


def test_describe_and_verbose_print_the_count(capsys):
    model = build_classifier("resnet", 8, 4, verbose=True)
    assert f"{model.num_parameters():,} parameters" in capsys.readouterr().out
    assert model.describe().startswith("ResNet for 8x8")


@pytest.mark.parametrize("size", [28, 8])
@pytest.mark.parametrize("kind", ["odenet", "rknet", "resnet"])
def test_output_shapes(kind, size):
    model = build_classifier(kind, size, 4, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((3, 1, size, size)).astype(np.float32)
    logits = model(Tensor(x))
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    hidden = model.stem(Tensor(x))
    assert model.middle(hidden).shape == hidden.shape == (3, 4, 6 if size == 28 else 4) + hidden.shape[3:]


def test_ode_block_counts_evaluations_forward_and_backward():
    func = ODEFunc(4, rng=0)
    block = ODEBlock(func)
    h = Tensor(np.random.default_rng(1).standard_normal((2, 4, 3, 3)), requires_grad=True)
    func.nfe = 0
    out = block(h)
    after_forward = func.nfe
    # the solve's evaluations, plus the adjoint's one recorded probe of func
    assert after_forward == block.nfe_forward + block.stats["forward"].get("nfe_probe", 0)
    assert block.nfe_forward > 0 and block.nfe_backward == 0
    (out * out).sum().backward()
    assert block.nfe_backward == func.nfe - after_forward > 0
    with no_grad():  # evaluation: the plain solve only
        func.nfe = 0
        block(h)
        assert func.nfe == block.nfe_forward > 0
    assert h.grad is not None and all(p.grad is not None for p in func.parameters())


def test_ode_block_rejects_bad_arguments():
    with pytest.raises(InputError, match="`gradient`.*'exact'"):
        ODEBlock(ODEFunc(4), gradient="exact")
    with pytest.raises(InputError, match="`t`"):
        ODEBlock(ODEFunc(4), t=(1.0, 1.0))
    with pytest.raises(InputError, match="`kind`.*'vgg'"):
        build_classifier("vgg", 8)


def tiny_model(kind, seed=0):
    # Fixed RK4 steps (forward and adjoint): the loss is then a smooth function of the
    # input and the weights, which finite differences need (an adaptive solver's step
    # choices jump by about its tolerance), and the adjoint gradient is within O(h^4)
    # of the exact one.
    model = build_classifier(kind, 8, 4, rng=seed, method="rk4", options={"step_size": 1 / 64})
    rng = np.random.default_rng(seed)
    return model, rng.standard_normal((2, 1, 8, 8)), np.array([3, 7])


def test_whole_odenet_input_gradient_matches_finite_differences():
    model, x, y = tiny_model("odenet")
    check_grads(lambda x: exp.cross_entropy(model(x), y), x, order=1, rtol=1e-4, n_directions=2)
    exp.cross_entropy(model(Tensor(x, requires_grad=True)), y).backward()
    assert model.ode_block.nfe_backward > 0  # the gradient came from the adjoint solve


def test_whole_odenet_parameter_gradients_match_finite_differences_and_backprop():
    model, x, y = tiny_model("odenet")
    exp.cross_entropy(model(Tensor(x)), y).backward()
    twin, _, _ = tiny_model("rknet")   # same seed: same weights, backprop through the same steps
    exp.cross_entropy(twin(Tensor(x)), y).backward()
    rng = np.random.default_rng(5)
    named = dict(model.named_parameters())
    twin_named = dict(twin.named_parameters())
    # one parameter of each part: stem conv, ODE-block convs (weights and the t-channel), norms, head
    for name in ("stem.layers.0.weight", "middle.func.conv1.weight", "middle.func.conv2.bias",
                 "middle.func.norm3.weight", "head.layers.4.weight"):
        p = named[name]
        exact = twin_named[name].grad.data
        np.testing.assert_allclose(p.grad.data, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max(),
                                   err_msg=name)
        v = rng.standard_normal(p.shape)
        v /= np.linalg.norm(v)
        h = 1e-6
        base = p.data.copy()
        values = []
        for sign in (1, -1):
            p.data[...] = base + sign * h * v
            values.append(exp.cross_entropy(model(Tensor(x)), y).item())
        p.data[...] = base
        fd = (values[0] - values[1]) / (2 * h)
        np.testing.assert_allclose(np.vdot(p.grad.data, v), fd, rtol=1e-4, atol=1e-9, err_msg=name)


def test_one_training_step_lowers_the_loss():
    data = exp.load_images("digits", dtype=np.float64)
    x, y = data.x_train[:32], data.y_train[:32]
    for kind in ("odenet", "resnet"):
        model = build_classifier(kind, 8, 4, rng=1)
        before = exp.cross_entropy(model(Tensor(x)), y)
        before.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad.data
        after = exp.cross_entropy(model(Tensor(x)), y).item()
        assert after < before.item(), kind


@pytest.fixture(scope="module")
def small_data():
    return exp.subset(exp.load_images("digits", dtype=np.float32), 64, 32)


def small_config(**kw):
    return dataclasses.replace(exp.TrainConfig(epochs=2, batch_size=32, lr=0.05, milestones=(1,)), **kw)


def test_checkpoint_resume_equals_uninterrupted_run(small_data, tmp_path):
    straight = build_classifier("odenet", 8, 4, dtype=np.float32, rng=2)
    h_straight = exp.fit(straight, small_data, small_config(), progress=False, log=None)
    ckpt = tmp_path / "ckpt.npz"
    first = build_classifier("odenet", 8, 4, dtype=np.float32, rng=2)
    exp.fit(first, small_data, small_config(epochs=1), checkpoint=ckpt, progress=False, log=None)
    # a fresh process would start from different weights: prove they are replaced
    resumed = build_classifier("odenet", 8, 4, dtype=np.float32, rng=99)
    lines = []
    h = exp.fit(resumed, small_data, small_config(), checkpoint=ckpt, resume=True, progress=False,
                log=lines.append)
    assert "resumed" in lines[0] and len(h["test_acc"]) == 2
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        np.testing.assert_allclose(q.data, p.data, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(h["test_acc"], h_straight["test_acc"])
    with pytest.raises(InputError, match="checkpoint"):
        exp.fit(build_classifier("resnet", 8, 4), small_data, small_config(), checkpoint=ckpt,
                resume=True, progress=False, log=None)


def test_non_finite_loss_stops_clean_and_keeps_the_checkpoint(small_data, tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    model = build_classifier("odenet", 8, 4, dtype=np.float32, rng=3)
    exp.fit(model, small_data, small_config(epochs=1), checkpoint=ckpt, progress=False, log=None)
    saved = ckpt.read_bytes()
    poisoned = dataclasses.replace(small_data, x_train=small_data.x_train.copy())
    model.head.layers[-1].bias.data[0] = np.nan  # logits, hence the loss, become NaN
    with pytest.raises(TrainingError, match="non-finite|nan"):
        exp.fit(model, poisoned, small_config(epochs=2), checkpoint=ckpt, progress=False, log=None)
    assert ckpt.read_bytes() == saved
    fresh = tmp_path / "never.npz"
    with pytest.raises(TrainingError):
        exp.fit(model, small_data, small_config(epochs=1), checkpoint=fresh, progress=False, log=None)
    assert not fresh.exists()


def test_step_memory_runs_in_a_fresh_process(small_data):
    x, y = small_data.x_train[:8], small_data.y_train[:8]
    mem = exp.step_memory("odenet", 8, 4, x, y)
    assert mem["peak_bytes"] > x.nbytes and mem["nfe_forward"] > 0 and mem["nfe_backward"] > 0
    assert exp.step_memory("resnet", 8, 4, x, y)["nfe_forward"] == 0


def test_demo_quick_end_to_end(tmp_path, capsys):
    summary = exp.demo(tmp_path, quick=True)
    out = capsys.readouterr().out
    for name in ("ODE-Net", "RK-Net", "ResNet", "test error", "NFE-F"):
        assert name in out
    assert [r["kind"] for r in summary["rows"]] == ["odenet", "rknet", "resnet"]
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "nfe.png").stat().st_size > 0
    assert summary["rows"][0]["params"] < summary["rows"][2]["params"]


def test_norm_groups_two_channels_per_group():
    assert norm_groups(64) == 32 and norm_groups(32) == 16 and norm_groups(3) == 1
