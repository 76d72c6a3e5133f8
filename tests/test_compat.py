"""The drop-in adapters against their libraries' own update code (written out in
:mod:`fastopt.originals`; autograd's and scikit-learn's packages too, where they
install). In float64 the adapters must give the same bits as the library code (same
operations, same rounding); in float32, the tolerances of the rest of the suite."""

import copy

import numpy as np
import pytest

from fastopt.compat import cs231n, nnfs
from fastopt.originals import autograd as book_autograd
from fastopt.originals import cs231n as book_cs231n
from fastopt.originals import deeplearning_ai as book_dlai
from fastopt.originals import dlfs as book_dlfs
from fastopt.originals import nnfs as book_nnfs

from conftest import tolerance


def _same(got, want):
    if got.dtype == np.float64:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, **tolerance(got.dtype))


# -- cs231n: the assignment's optim.py, as students write it --------------------------


CS231N_RULES = [
    (cs231n.sgd, book_cs231n.sgd, {"learning_rate": 1e-2}),
    (cs231n.sgd_momentum, book_cs231n.sgd_momentum, {"learning_rate": 1e-2, "momentum": 0.9}),
    (cs231n.rmsprop, book_cs231n.rmsprop, {"learning_rate": 1e-2, "decay_rate": 0.99,
                                   "epsilon": 1e-8, "cache": None}),
    (cs231n.adam, book_cs231n.adam, {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999,
                             "epsilon": 1e-8, "m": None, "v": None, "t": 0}),
]


@pytest.mark.parametrize("rule, ref, defaults", CS231N_RULES,
                         ids=[r[0].__name__ for r in CS231N_RULES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cs231n_rules_over_epochs_with_lr_decay(rule, ref, defaults, dtype, rng, cpu_backend):
    w = rng.standard_normal((30, 7)).astype(dtype)
    w_ref = w.copy()
    config = {"learning_rate": 5e-2}  # the rest from the adapter's defaults
    ref_config = {**defaults, "learning_rate": 5e-2}
    for key in ("cache", "m", "v"):
        if key in ref_config:
            ref_config[key] = np.zeros_like(w)
    for _epoch in range(4):
        for _ in range(6):
            dw = rng.standard_normal(w.shape).astype(dtype)
            next_w, config = rule(w, dw, config)
            assert next_w is w  # updated in place and returned
            w_ref, ref_config = ref(w_ref, dw, ref_config)
        _same(w, w_ref)
        # The Solver decays the learning rate between epochs; the rules read it anew.
        config["learning_rate"] *= 0.9
        ref_config["learning_rate"] *= 0.9
    for key, value in ref_config.items():
        if isinstance(value, np.ndarray):
            _same(config[key], value)
        else:
            assert config[key] == value


def test_cs231n_defaults_are_the_assignments():
    w, dw = np.ones(3), np.ones(3)
    assert cs231n.sgd(w.copy(), dw)[1] == {"learning_rate": 1e-2}
    config = cs231n.adam(w.copy(), dw)[1]
    assert {k: config[k] for k in ("learning_rate", "beta1", "beta2", "epsilon", "t")} == \
        {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 1}
    config = cs231n.rmsprop(w.copy(), dw)[1]
    assert (config["decay_rate"], config["epsilon"]) == (0.99, 1e-8)
    assert cs231n.sgd_momentum(w.copy(), dw)[1]["momentum"] == 0.9


def test_cs231n_batchnorm_train_and_test(rng, cpu_backend):
    x = rng.standard_normal((50, 6)) * 3 + 1
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    bn, bn_ref = {"mode": "train"}, {"mode": "train"}
    for _ in range(5):
        batch = x + rng.standard_normal(x.shape)
        out, cache = cs231n.batchnorm_forward(batch, gamma, beta, bn)
        out_ref, cache_ref = book_cs231n.batchnorm_forward(batch, gamma, beta, bn_ref)
        np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-12)
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(bn[key], bn_ref[key], rtol=1e-12)
    dout = rng.standard_normal(x.shape)
    for backward in (cs231n.batchnorm_backward, cs231n.batchnorm_backward_alt):
        want_all = book_cs231n.batchnorm_backward(dout, cache_ref)
        for got, want in zip(backward(dout, cache), want_all):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    bn["mode"] = bn_ref["mode"] = "test"
    out, _ = cs231n.batchnorm_forward(x, gamma, beta, bn)
    np.testing.assert_allclose(out, book_cs231n.batchnorm_forward(x, gamma, beta, bn_ref)[0],
                               rtol=1e-12, atol=1e-12)


def test_cs231n_spatial_batchnorm_is_batchnorm_per_channel(rng, cpu_backend):
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    gamma, beta = np.float32([1, 2, 3]), np.float32([0, -1, 1])
    bn = {"mode": "train", "momentum": 0.8}
    out, cache = cs231n.spatial_batchnorm_forward(x, gamma, beta, bn)
    flat = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    bn_flat = {"mode": "train", "momentum": 0.8}
    out_flat, cache_flat = cs231n.batchnorm_forward(flat, gamma, beta, bn_flat)
    np.testing.assert_allclose(out, out_flat.reshape(4, 5, 6, 3).transpose(0, 3, 1, 2),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn["running_var"], bn_flat["running_var"], rtol=1e-6)
    assert bn["running_mean"].dtype == np.float32
    dout = rng.standard_normal(x.shape).astype(np.float32)
    dx, dgamma, dbeta = cs231n.spatial_batchnorm_backward(dout, cache)
    dx2, dgamma2, dbeta2 = cs231n.batchnorm_backward(
        dout.transpose(0, 2, 3, 1).reshape(-1, 3), cache_flat)
    np.testing.assert_allclose(dx, dx2.reshape(4, 5, 6, 3).transpose(0, 3, 1, 2),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dgamma, dgamma2, rtol=1e-4, atol=1e-4)


def test_cs231n_bad_input(cpu_backend):
    with pytest.raises(ValueError, match="Invalid forward batchnorm mode"):
        cs231n.batchnorm_forward(np.ones((4, 2)), np.ones(2), np.zeros(2), {"mode": "eval"})
    with pytest.raises(ValueError, match="4 dimensions"):
        cs231n.spatial_batchnorm_forward(np.ones((4, 2)), np.ones(2), np.zeros(2),
                                         {"mode": "train"})
    w = np.ones(3)
    with pytest.raises(ValueError, match="shape"):
        cs231n.adam(w, np.ones(4))
    with pytest.raises(TypeError, match="learning_rate"):
        cs231n.sgd(w, np.ones(3), {"learning_rate": "fast"})
    np.testing.assert_array_equal(w, np.ones(3))


# -- nnfs: the book's optimizers -----------------------------------------------------


class Layer:
    def __init__(self, rng, n_in, n_out, dtype=np.float64):
        self.weights = (0.01 * rng.standard_normal((n_in, n_out))).astype(dtype)
        self.biases = np.zeros((1, n_out), dtype=dtype)

    def set_grads(self, rng):
        self.dweights = rng.standard_normal(self.weights.shape).astype(self.weights.dtype)
        self.dbiases = rng.standard_normal(self.biases.shape).astype(self.biases.dtype)


NNFS_CASES = [
    (nnfs.Optimizer_SGD, book_nnfs.Optimizer_SGD, dict(learning_rate=0.5, decay=1e-2)),
    (nnfs.Optimizer_SGD, book_nnfs.Optimizer_SGD,
     dict(learning_rate=0.5, decay=1e-3, momentum=0.9)),
    (nnfs.Optimizer_Adagrad, book_nnfs.Optimizer_Adagrad, dict(learning_rate=0.5, decay=1e-4)),
    (nnfs.Optimizer_RMSprop, book_nnfs.Optimizer_RMSprop,
     dict(learning_rate=0.02, decay=1e-5, rho=0.999)),
    (nnfs.Optimizer_Adam, book_nnfs.Optimizer_Adam, dict(learning_rate=0.05, decay=5e-7)),
]


@pytest.mark.parametrize("ours, book, kw", NNFS_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(NNFS_CASES)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nnfs_optimizers_match_the_book(ours, book, kw, dtype, rng, cpu_backend):
    layers = [Layer(rng, 8, 16, dtype), Layer(rng, 16, 3, dtype)]
    book_layers = copy.deepcopy(layers)
    opt, ref = ours(**kw), book(**kw)
    for _ in range(30):
        for layer, book_layer in zip(layers, book_layers):
            layer.set_grads(rng)
            book_layer.dweights, book_layer.dbiases = layer.dweights, layer.dbiases
        for o, ls in ((opt, layers), (ref, book_layers)):
            o.pre_update_params()
            for layer in ls:
                o.update_params(layer)
            o.post_update_params()
    assert opt.current_learning_rate == ref.current_learning_rate
    assert opt.iterations == ref.iterations == 30
    for layer, book_layer in zip(layers, book_layers):
        for name in ("weights", "biases", "weight_momentums", "bias_momentums",
                     "weight_cache", "bias_cache"):
            if hasattr(book_layer, name):
                _same(getattr(layer, name), getattr(book_layer, name))


# -- scikit-learn: against its own optimizer classes and MLPs ---------------------------


def _sklearn():
    return pytest.importorskip("sklearn.neural_network._stochastic_optimizers")


@pytest.mark.parametrize("kind, kw", [
    ("SGDOptimizer", dict(learning_rate_init=0.1, lr_schedule="constant", momentum=0.9,
                          nesterov=True)),
    ("SGDOptimizer", dict(learning_rate_init=0.1, lr_schedule="invscaling", momentum=0.5,
                          nesterov=False, power_t=0.3)),
    ("SGDOptimizer", dict(learning_rate_init=0.05, lr_schedule="adaptive", momentum=0.0)),
    ("AdamOptimizer", dict(learning_rate_init=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-7)),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sklearn_optimizers_match_sklearn(kind, kw, dtype, rng, cpu_backend):
    sk = _sklearn()
    from fastopt.compat import sklearn as compat

    params = [rng.standard_normal(s).astype(dtype) for s in ((12, 5), (5,), (5, 3), (3,))]
    ref_params = [p.copy() for p in params]
    ours, theirs = getattr(compat, kind)(params, **kw), getattr(sk, kind)(ref_params, **kw)
    for it in range(20):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        ours.update_params(params, grads)
        theirs.update_params(ref_params, grads)
        ours.iteration_ends(it * 32)
        theirs.iteration_ends(it * 32)
        if it % 7 == 6:
            assert ours.trigger_stopping("", False) == theirs.trigger_stopping("", False)
        assert ours.learning_rate == theirs.learning_rate
    for got, want in zip(params, ref_params):
        _same(got, want)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlp_under_accelerate_trains_like_sklearn(cpu_backend):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier, _multilayer_perceptron

    from fastopt.compat import sklearn as compat

    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    for solver in ("adam", "sgd"):
        kw = dict(hidden_layer_sizes=(32,), solver=solver, max_iter=8, random_state=0,
                  learning_rate_init=0.01)
        plain = MLPClassifier(**kw).fit(X, y)
        with compat.accelerate():
            fast = MLPClassifier(**kw).fit(X, y)
        assert isinstance(fast._optimizer, (compat.AdamOptimizer, compat.SGDOptimizer))
        assert fast.loss_curve_ == plain.loss_curve_
        for a, b in zip(fast.coefs_ + fast.intercepts_, plain.coefs_ + plain.intercepts_):
            np.testing.assert_array_equal(a, b)
    assert _multilayer_perceptron.AdamOptimizer is _sklearn().AdamOptimizer


def test_accelerate_unpatches_when_fit_raises():
    sk = _sklearn()
    from sklearn.neural_network import MLPRegressor, _multilayer_perceptron

    from fastopt.compat import sklearn as compat

    with pytest.raises(ValueError):
        with compat.accelerate():
            assert _multilayer_perceptron.SGDOptimizer is compat.SGDOptimizer
            MLPRegressor(max_iter=2).fit(np.full((4, 2), np.nan), np.ones(4))
    assert _multilayer_perceptron.SGDOptimizer is sk.SGDOptimizer
    assert _multilayer_perceptron.AdamOptimizer is sk.AdamOptimizer


# -- deeplearning.ai's Course 2 "Optimization methods" -------------------------------------


def dlai_net(rng, sizes=(60, 20, 7, 5, 1)):
    """The course's layer layout (W: (n_l, n_{l-1}), b: (n_l, 1)), smaller input."""
    params = {}
    for n in range(1, len(sizes)):
        params["W" + str(n)] = rng.standard_normal((sizes[n], sizes[n - 1])) * 0.1
        params["b" + str(n)] = np.zeros((sizes[n], 1))
    return params


def dlai_grads(rng, params):
    grads = {"d" + k: rng.standard_normal(v.shape) for k, v in params.items()}
    grads["dA1"] = rng.standard_normal((3, 3))  # the notebook's grads hold more keys
    return grads


@pytest.mark.parametrize("method", ["gd", "momentum", "momentum0", "adam"])
def test_deeplearning_ai_is_bit_identical_to_the_notebook(method, rng, cpu_backend):
    from fastopt.compat import deeplearning_ai as dl

    ours = dlai_net(rng)
    theirs = {k: v.copy() for k, v in ours.items()}
    v_ours, s_ours = dl.initialize_adam(ours)
    v_theirs, s_theirs = ({k: a.copy() for k, a in d.items()} for d in (v_ours, s_ours))
    assert set(v_ours) == {"d" + k for k in ours} and v_ours["db2"].shape == (7, 1)
    for t in range(1, 41):
        grads = dlai_grads(rng, ours)
        lr = dl.schedule_lr_decay(0.05, t, 0.3, time_interval=10)
        if method == "gd":
            assert dl.update_parameters_with_gd(ours, grads, lr) is ours
            theirs = book_dlai.update_parameters_with_gd(theirs, grads, lr)
        elif method.startswith("momentum"):
            beta = 0.0 if method == "momentum0" else 0.9
            dl.update_parameters_with_momentum(ours, grads, v_ours, beta, lr)
            theirs, v_theirs = book_dlai.update_parameters_with_momentum(
                theirs, grads, v_theirs, beta, lr)
        else:
            _, _, _, vc, sc = dl.update_parameters_with_adam(ours, grads, v_ours, s_ours, t,
                                                             learning_rate=lr)
            theirs, v_theirs, s_theirs, vc_t, sc_t = book_dlai.update_parameters_with_adam(
                theirs, grads, v_theirs, s_theirs, t, learning_rate=lr)
            for k in vc_t:
                np.testing.assert_array_equal(vc[k], vc_t[k])
                np.testing.assert_array_equal(sc[k], sc_t[k])
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k])
    if method != "gd":
        for k in v_theirs:
            np.testing.assert_array_equal(v_ours[k], v_theirs[k])
            np.testing.assert_array_equal(s_ours[k], s_theirs[k])


def test_deeplearning_ai_learning_rate_decay_matches_the_notebook():
    from fastopt.compat import deeplearning_ai as dl

    assert dl.update_lr(0.5, 2, 1) == 1 / (1 + 1 * 2) * 0.5
    assert dl.schedule_lr_decay(0.5, 100, 1, time_interval=30) == 0.5 / 4
    assert dl.schedule_lr_decay(0.5, 2999, 1) == 0.5 / 3


def test_deeplearning_ai_refuses_bad_input_before_writing(rng, cpu_backend):
    from fastopt.compat import deeplearning_ai as dl

    params = dlai_net(rng)
    before = {k: v.copy() for k, v in params.items()}
    v, s = dl.initialize_adam(params)
    grads = dlai_grads(rng, params)
    with pytest.raises(ValueError, match="t must be"):
        dl.update_parameters_with_adam(params, grads, v, s, 0)
    with pytest.raises(ValueError, match="lacks"):
        dl.update_parameters_with_gd(params, {"dW1": grads["dW1"]}, 0.1)
    with pytest.raises(ValueError, match="shape"):
        dl.update_parameters_with_momentum(params, {**grads, "db2": np.ones(3)}, v, 0.9, 0.1)
    with pytest.raises(ValueError, match="W1, b1"):
        dl.update_parameters_with_gd({"W1": params["W1"]}, grads, 0.1)
    for k in before:
        np.testing.assert_array_equal(params[k], before[k])


# -- Deep Learning from Scratch (common/optimizer.py) --------------------------------------


DLFS = [("SGD", book_dlfs.SGD, dict(lr=0.1)), ("Momentum", book_dlfs.Momentum, dict(lr=0.05)),
        ("Nesterov", book_dlfs.Nesterov, dict(lr=0.05, momentum=0.8)),
        ("AdaGrad", book_dlfs.AdaGrad, dict(lr=0.05)),
        ("RMSprop", book_dlfs.RMSprop, dict(lr=0.01)),
        ("Adam", book_dlfs.Adam, dict(lr=0.01))]


@pytest.mark.parametrize("name, book, kw", DLFS, ids=[d[0] for d in DLFS])
@pytest.mark.parametrize("layout", ["dict", "list"])
def test_dlfs_is_bit_identical_to_the_book(name, book, kw, layout, rng, cpu_backend):
    from fastopt.compat import dlfs

    shapes = {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}  # the two-layer net
    ours = {k: rng.standard_normal(s) * 0.1 for k, s in shapes.items()}
    if layout == "list":
        ours = list(ours.values())
    theirs = {k: v.copy() for k, v in ours.items()} if layout == "dict" else \
        [v.copy() for v in ours]
    opt, ref = getattr(dlfs, name)(**kw), book(**kw)
    for _ in range(40):
        grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
        if layout == "list":
            grads = list(grads.values())
        opt.update(ours, grads)
        ref.update(theirs, grads)
    for key in book_dlfs.keys_of(theirs):
        np.testing.assert_array_equal(ours[key], theirs[key])
    for attribute in ("v", "h", "m"):
        if hasattr(ref, attribute):
            for key in book_dlfs.keys_of(theirs):
                np.testing.assert_array_equal(getattr(opt, attribute)[key],
                                              getattr(ref, attribute)[key])
    assert getattr(opt, "iter", None) == getattr(ref, "iter", None)


def test_dlfs_refuses_mismatched_grads(rng, cpu_backend):
    from fastopt.compat import dlfs

    params = {"W": np.ones((3, 2)), "b": np.ones(2)}
    with pytest.raises(ValueError, match="lacks"):
        dlfs.Adam().update(params, {"W": np.ones((3, 2))})
    with pytest.raises(TypeError, match="two dicts or two lists"):
        dlfs.SGD().update(list(params.values()), {"W": np.ones((3, 2))})
    np.testing.assert_array_equal(params["W"], np.ones((3, 2)))


# -- HIPS autograd (autograd.misc.optimizers) ---------------------------------------------


@pytest.mark.parametrize("name, reference, kw", [
    ("sgd", book_autograd.sgd, dict(step_size=0.05, mass=0.8)),
    ("rmsprop", book_autograd.rmsprop, dict(step_size=0.01)),
    ("adam", book_autograd.adam, dict(step_size=0.01)),
])
def test_autograd_optimizers_are_bit_identical(name, reference, kw, rng, cpu_backend):
    from fastopt.compat import autograd as ag

    # A nested x0, as autograd allows: a dict (keys sorted when flattened) of a list of
    # arrays, a tuple and a scalar.
    x0 = {"w": [rng.standard_normal((4, 3)), rng.standard_normal(3)],
          "a": (rng.standard_normal(2), 0.5), "c": np.float64(1.5)}
    target = rng.standard_normal(4 * 3 + 3 + 2 + 1 + 1)
    flat0, unflatten = ag.flatten(x0)
    assert flat0.shape == (19,)

    def flat_grad(x, i):
        return (x - target) * (1.0 + 0.01 * i)

    seen = []

    def grad(params, i):
        return unflatten(flat_grad(ag.flatten(params)[0], i))

    got = getattr(ag, name)(grad, x0, callback=lambda x, i, g: seen.append(i), num_iters=30,
                            **kw)
    want = reference(flat_grad, flat0.copy(), num_iters=30, **kw)
    np.testing.assert_array_equal(ag.flatten(got)[0], want)
    assert seen == list(range(30))
    assert isinstance(got, dict) and isinstance(got["a"], tuple) and got["w"][0].shape == (4, 3)


def test_autograd_adapter_matches_the_package_and_differentiates_through_it(cpu_backend):
    autograd = pytest.importorskip("autograd")
    from autograd.misc import optimizers

    from fastopt.compat import autograd as ag

    rng = np.random.default_rng(7)
    x0 = {"b": rng.standard_normal(3), "a": [rng.standard_normal((2, 2)), 0.25]}
    target = {"b": rng.standard_normal(3), "a": [rng.standard_normal((2, 2)), -1.0]}

    def grad(x, i):
        return {"b": x["b"] - target["b"], "a": [2.0 * (x["a"][0] - target["a"][0]),
                                                 x["a"][1] - target["a"][1]]}

    for name in ("sgd", "rmsprop", "adam"):
        ours = ag.flatten(getattr(ag, name)(grad, x0, num_iters=25))[0]
        theirs = autograd.misc.flatten(getattr(optimizers, name)(grad, x0, num_iters=25))[0]
        np.testing.assert_array_equal(ours, theirs)

    # Meta-optimisation: x0 is boxed, so the adapter runs autograd's own code.
    def final_loss(scale):
        x = ag.adam(lambda x, i: 2.0 * (x - 1.0), scale * np.ones(3), num_iters=5,
                    step_size=0.1)
        return autograd.numpy.sum(x ** 2)

    slope = autograd.grad(final_loss)(0.5)
    eps = 1e-6
    numeric = (final_loss(0.5 + eps) - final_loss(0.5 - eps)) / (2 * eps)
    assert slope == pytest.approx(numeric, rel=1e-5)
