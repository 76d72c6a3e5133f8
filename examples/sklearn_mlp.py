"""scikit-learn's MLPClassifier on its digits data, fitted with and without
``fastopt.compat.sklearn.accelerate()``.

    python examples/sklearn_mlp.py             # 60 epochs
    python examples/sklearn_mlp.py --quick     # 5 epochs (CI)

Prints the two loss curves (identical: the adapter reproduces scikit-learn's float64
maths bit for bit), the fit times, and the time spent inside the optimizer's
``update_params``, measured the same way for both runs. The optimizer step is only
part of a fit (forward and backward passes dominate), which is what the fit times show.
"""

import argparse
import contextlib
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, _stochastic_optimizers

from fastopt.compat import sklearn as fast_sklearn


@contextlib.contextmanager
def timed_updates(cls, totals, key):
    """Accumulate the wall time of ``cls.update_params`` into ``totals[key]``."""
    original = cls.update_params

    def update_params(self, params, grads):
        start = time.perf_counter()
        original(self, params, grads)
        totals[key] += time.perf_counter() - start

    cls.update_params = update_params
    try:
        yield
    finally:
        cls.update_params = original


def fit(X, y, accelerated, totals, **kw):
    key = "fastopt" if accelerated else "sklearn"
    cls = fast_sklearn.AdamOptimizer if accelerated else _stochastic_optimizers.AdamOptimizer
    model = MLPClassifier(**kw)
    context = fast_sklearn.accelerate() if accelerated else contextlib.nullcontext()
    start = time.perf_counter()
    with timed_updates(cls, totals, key), context, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return model, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="5 epochs, for CI")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    kw = dict(hidden_layer_sizes=tuple(args.hidden), solver="adam", random_state=0,
              batch_size=args.batch_size, max_iter=5 if args.quick else args.epochs,
              n_iter_no_change=10 ** 6, learning_rate_init=1e-3)
    totals = {"sklearn": 0.0, "fastopt": 0.0}
    fit(X, y, True, dict(totals), **{**kw, "max_iter": 1})  # warm-up: load the kernels
    plain, plain_s = fit(X, y, False, totals, **kw)
    fast, fast_s = fit(X, y, True, totals, **kw)
    print(f"MLPClassifier{tuple(args.hidden)} on digits, adam, batch {args.batch_size}, "
          f"{len(plain.loss_curve_)} epochs")
    print(f"{'epoch':>5} | {'loss sklearn':>14} {'fastopt':>14}")
    for i, (a, b) in enumerate(zip(plain.loss_curve_, fast.loss_curve_), start=1):
        if i <= 3 or i == len(plain.loss_curve_) or i % 10 == 0:
            print(f"{i:5d} | {a:14.10f} {b:14.10f}")
    same = plain.loss_curve_ == fast.loss_curve_ and all(
        np.array_equal(a, b) for a, b in zip(plain.coefs_, fast.coefs_))
    print(f"identical loss curves and weights: {same}")
    print(f"fit time:      sklearn {plain_s:7.3f} s   fastopt {fast_s:7.3f} s "
          f"({plain_s / fast_s:.2f}x)")
    print(f"optimizer step: sklearn {totals['sklearn']:7.3f} s   fastopt "
          f"{totals['fastopt']:7.3f} s ({totals['sklearn'] / totals['fastopt']:.2f}x)")
    return {"same": same, "plain": plain, "fast": fast, "fit_s": (plain_s, fast_s),
            "step_s": (totals["sklearn"], totals["fastopt"])}


if __name__ == "__main__":
    main()
