"""The rule declarations themselves (fastopt/rules/): what everything else derives from."""

import inspect

import numpy as np
import pytest

import fastopt
from fastopt import functional
from fastopt.rules import FUNCTIONALS, OPTIMIZERS, RULES
from fastopt.rules._spec import HYPER_LEN, REQUIRED

from conftest import torch_or_skip


def sample_hyper(rule):
    """Each rule's kernel hyperparameters at its defaults (required ones made up)."""
    # The adapters' rules have no defaults: their libraries' usual values.
    hyper = {"step": 3, "first": False, "grad_scale": None, "l1": 0.0, "maximize": False,
             "momentum": 0.9, "nesterov": False, "alpha": 0.9, "eps": 1e-8, "beta1": 0.9,
             "beta2": 0.99, "corrected": True, "mass": 0.9}
    for option in rule.options:
        if option.split:
            hyper.update(zip([n for n, _ in option.split], option.default))
        elif option.default is not REQUIRED:
            hyper[option.name] = option.default
    hyper["lr"] = 0.01
    return rule.carried_in(hyper)


@pytest.mark.parametrize("rule", RULES.values(), ids=list(RULES))
def test_host_gives_exactly_the_declared_scalars(rule):
    hyper = sample_hyper(rule)
    assert set(rule.host(hyper)) == set(rule.scalars)
    packed = rule.pack(np.float64, hyper)
    assert packed.shape == (HYPER_LEN,) and np.isfinite(packed).all()
    assert len(rule.states) <= 3 and len(rule.flag_names) <= 2


def test_rule_ids_are_dense_and_names_unique():
    assert [rule.id for rule in RULES.values()] == list(range(len(RULES)))
    fronts = [front.name for front, _ in OPTIMIZERS + FUNCTIONALS]
    assert len(fronts) == len(set(fronts))


@pytest.mark.parametrize("front, rule", OPTIMIZERS, ids=[f.name for f, _ in OPTIMIZERS])
def test_optimizer_class_has_the_declared_constructor(front, rule):
    cls = getattr(fastopt, front.name)
    params = list(inspect.signature(cls).parameters.values())
    assert params[0].name == "params"
    assert [(p.name, p.default) for p in params[1:-4]] == rule.class_options(front)
    assert [(p.name, p.default) for p in params[-4:]] == [
        ("backend", None), ("skip_nonfinite", False), ("state_bits", 32),
        ("min_8bit_size", 4096)]
    assert cls.__doc__ == front.doc and "::" in cls.__doc__
    eight = getattr(fastopt, f"{front.name}8bit", None)
    if eight is not None:  # bitsandbytes' name: the same constructor, 8-bit by default
        assert [(p.name, p.default) for p in inspect.signature(eight).parameters.values()
                ] == [(p.name, 8 if p.name == "state_bits" else p.default) for p in params]


@pytest.mark.parametrize("front, rule", FUNCTIONALS, ids=[f.name for f, _ in FUNCTIONALS])
def test_functional_kernel_has_the_rules_arguments(front, rule):
    function = getattr(functional, front.name)
    params = inspect.signature(function).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["param", "grad"] + [s.name for s in rule.states]
    keywords = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    expected = set(rule.hyper_names) - set(front.fixed)
    assert keywords == expected | {"backend"}
    assert params["lr"].default is inspect.Parameter.empty
    assert function.__doc__ == front.doc


TORCH_NAMES = ["SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "NAdam",
               "RAdam", "ASGD", "Rprop"]


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_constructor_matches_torch(name):
    # The same argument names and defaults as torch.optim's constructor, for every
    # argument both have (torch's foreach/fused/capturable/differentiable are torch's).
    torch = torch_or_skip()
    ours = inspect.signature(getattr(fastopt, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    shared = [n for n in theirs if n in ours]
    assert set(shared) >= set(ours) - {"l1", "backend", "skip_nonfinite", "state_bits",
                                       "min_8bit_size"}
    for n in shared:
        if n != "params":
            assert ours[n].default == theirs[n].default, n
