"""Bad input on every backend: a clear TypeError/ValueError, and params and state exactly as
they were. Checks about host arrays themselves (their type, flags, strides) run on the
CPU backends; the CUDA backend's own refusals are in test_cuda.py."""

import numpy as np
import pytest

import fastopt
from fastopt import functional


def fresh(backend):
    params = backend.put([np.ones((3, 4), np.float32), np.ones(5, np.float32)])
    opt = fastopt.Adam(params, lr=0.1)
    assert opt.backend == backend.name
    opt.step(backend.put([np.ones((3, 4), np.float32), np.ones(5, np.float32)]))
    return params, opt


def snapshot(backend, params, opt):
    return ([np.copy(p) for p in backend.get(params)],
            {k: np.copy(v) for k, v in opt.state_dict().items()})


def assert_same(backend, params, opt, snap):
    for p, q in zip(backend.get(params), snap[0]):
        np.testing.assert_array_equal(p, q)
    now = opt.state_dict()
    for k, v in snap[1].items():
        np.testing.assert_array_equal(now[k], v)


GOOD = [np.ones((3, 4), np.float32), np.ones(5, np.float32)]
BAD_GRADS = [
    ([np.ones((3, 4), np.float32)], ValueError, "expected 2 grads"),
    (GOOD + [np.ones(1, np.float32)], ValueError, "expected 2 grads"),
    ([np.ones((4, 3), np.float32), GOOD[1]], ValueError, "shape"),
    ([GOOD[0], np.ones(5, np.float64)], TypeError, "dtype"),
    ([GOOD[0], np.ones(5, np.int32)], TypeError, "dtype"),
    ([GOOD[0], [1.0] * 5], TypeError, "NumPy array"),
    ({"a": GOOD[0]}, TypeError, "dict"),
    (GOOD[0], TypeError, "list"),
]


HOST_ONLY = {"NumPy array"}  # a device param's grad must be a device array instead


def put_arrays(backend, grads):
    """The arrays in ``grads`` moved to the backend; anything else left as it is."""
    if isinstance(grads, dict):
        return {k: put_arrays(backend, v) for k, v in grads.items()}
    if isinstance(grads, list):
        return [put_arrays(backend, g) for g in grads]
    return backend.put(grads) if isinstance(grads, np.ndarray) else grads


@pytest.mark.parametrize("grads,error,match", BAD_GRADS)
def test_bad_grads_refused_before_any_write(grads, error, match, backend):
    if backend.on_device and match in HOST_ONLY:
        pytest.skip("about host arrays")
    params, opt = fresh(backend)
    snap = snapshot(backend, params, opt)
    with pytest.raises(error, match=match):
        opt.step(put_arrays(backend, grads))
    assert_same(backend, params, opt, snap)
    assert opt.steps == 1


@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf, "2"])
def test_bad_grad_scale(scale, backend):
    params, opt = fresh(backend)
    snap = snapshot(backend, params, opt)
    with pytest.raises((ValueError, TypeError), match="grad_scale"):
        opt.step(backend.put([np.ones((3, 4), np.float32), np.ones(5, np.float32)]),
                 grad_scale=scale)
    assert_same(backend, params, opt, snap)


def test_bad_schedule_value_refused_before_any_write(backend):
    params = backend.put([np.ones(3)])
    opt = fastopt.SGD(params, lr=lambda step: 0.1 if step == 0 else float("nan"))
    opt.step(backend.put([np.ones(3)]))
    before = backend.get(params[0]).copy()
    with pytest.raises(ValueError, match="learning rate"):
        opt.step(backend.put([np.ones(3)]))
    np.testing.assert_array_equal(backend.get(params[0]), before)


def test_second_group_error_leaves_first_group_untouched(backend):
    a, b = backend.put([np.ones(3), np.ones(3)])
    opt = fastopt.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match="learning rate"):
        opt.step(backend.put([np.ones(3), np.ones(3)]))
    np.testing.assert_array_equal(backend.get(a), np.ones(3))


BAD_PARAMS = [
    ([], ValueError, "empty parameter list"),
    ([np.ones(3, np.int64)], TypeError, "float32 or float64"),
    ([np.ones(3, np.float16)], TypeError, "float32 or float64"),
    ([[1.0, 2.0]], TypeError, "NumPy array"),
    (np.ones(3), TypeError, "single array"),
    ([np.ones((4, 4))[:, ::2]], ValueError, "not contiguous"),
    ("weights", TypeError, "params must be"),
]


@pytest.mark.parametrize("params,error,match", BAD_PARAMS)
def test_bad_params(params, error, match, cpu_backend):
    with pytest.raises(error, match=match):
        fastopt.Adam(params)


def test_read_only_param_refused(cpu_backend):
    p = np.ones(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastopt.SGD([p])


def test_duplicate_param_refused(backend):
    p = backend.put(np.ones(3))
    with pytest.raises(ValueError, match="more than once"):
        fastopt.SGD([p, p])


HYPER = [
    (fastopt.SGD, dict(lr=-0.1), "learning rate"),
    (fastopt.SGD, dict(momentum=-0.5), "momentum"),
    (fastopt.SGD, dict(nesterov=True), "nesterov"),
    (fastopt.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
    (fastopt.SGD, dict(weight_decay=-1.0), "weight_decay"),
    (fastopt.SGD, dict(l1=-1.0), "l1"),
    (fastopt.Adam, dict(betas=(1.0, 0.999)), "beta"),
    (fastopt.Adam, dict(betas=(0.9, -0.1)), "beta"),
    (fastopt.Adam, dict(betas=(0.9,)), "betas"),
    (fastopt.Adam, dict(eps=-1e-8), "eps"),
    (fastopt.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (fastopt.RMSprop, dict(alpha=-0.1), "alpha"),
    (fastopt.RMSprop, dict(momentum=-0.1), "momentum"),
    (fastopt.Adagrad, dict(lr_decay=-0.1), "lr_decay"),
    (fastopt.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (fastopt.Adam, dict(lr=float("nan")), "lr"),
    (fastopt.Adam, dict(amsgrad="yes"), "amsgrad"),
    (fastopt.Adam, dict(backend="gpu"), "backend"),
    (fastopt.Adadelta, dict(rho=1.5), "rho"),
    (fastopt.Adadelta, dict(eps=-1.0), "eps"),
    (fastopt.Adamax, dict(betas=(0.9, 1.0)), "beta"),
    (fastopt.Adamax, dict(weight_decay=-0.1), "weight_decay"),
    (fastopt.NAdam, dict(momentum_decay=-1e-3), "momentum_decay"),
    (fastopt.NAdam, dict(decoupled_weight_decay="yes"), "decoupled_weight_decay"),
    (fastopt.RAdam, dict(betas=[0.9]), "betas"),
    (fastopt.RAdam, dict(decoupled_weight_decay=1), "decoupled_weight_decay"),
    (fastopt.ASGD, dict(lambd=-1.0), "lambd"),
    (fastopt.ASGD, dict(t0=float("nan")), "t0"),
    (fastopt.ASGD, dict(alpha="0.75"), "alpha"),
    (fastopt.Rprop, dict(etas=(1.5, 1.2)), "eta"),
    (fastopt.Rprop, dict(etas=(0.5, 0.9)), "eta"),
    (fastopt.Rprop, dict(step_sizes=(1.0, 0.1)), "step_sizes"),
    (fastopt.Rprop, dict(step_sizes=1e-6), "step_sizes"),
    (fastopt.Lion, dict(betas=(1.0, 0.99)), "beta"),
    (fastopt.Lion, dict(lr=-1e-4), "learning rate"),
    (fastopt.Lion, dict(l1=-1.0), "l1"),
]


@pytest.mark.parametrize("cls,kw,match", HYPER)
def test_invalid_hyperparameters(cls, kw, match, backend):
    with pytest.raises((ValueError, TypeError), match=match):
        cls([backend.put(np.ones(3))], **kw)


def test_unknown_group_option(backend):
    with pytest.raises(ValueError, match="unknown"):
        fastopt.SGD([{"params": [backend.put(np.ones(3))], "learning_rate": 0.1}])


def test_dict_grads_must_match_keys(backend):
    params = backend.put({"w": np.ones(3), "b": np.ones(2)})
    opt = fastopt.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="missing"):
        opt.step(backend.put({"w": np.ones(3)}))
    with pytest.raises(ValueError, match="unexpected"):
        opt.step(backend.put({"w": np.ones(3), "b": np.ones(2), "c": np.ones(1)}))
    np.testing.assert_array_equal(backend.get(params["w"]), np.ones(3))


def test_functional_refuses_missing_state_and_bad_step(backend):
    put = backend.put
    p, g = put(np.ones(3)), put(np.ones(3))
    with pytest.raises(ValueError, match="momentum_buffer"):
        functional.sgd_(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="step"):
        functional.adam_(p, g, put(np.zeros(3)), put(np.zeros(3)), step=0, lr=0.1)
    with pytest.raises(ValueError, match="exp_avg"):
        functional.adam_(p, g, put(np.zeros(4)), put(np.zeros(3)), step=1, lr=0.1)
    with pytest.raises(TypeError, match="mu_product"):
        functional.nadam_(p, g, put(np.zeros(3)), put(np.zeros(3)), step=1, lr=0.1,
                          mu_product="1")
    with pytest.raises(ValueError, match="eta"):
        functional.rprop_(p, g, put(np.zeros(3)), put(np.zeros(3)), lr=0.1, etaplus=0.9)
    with pytest.raises(TypeError, match="unexpected keyword"):
        functional.lion_(p, g, put(np.zeros(3)), lr=0.1, betas=(0.9, 0.99))
    np.testing.assert_array_equal(backend.get(p), np.ones(3))
