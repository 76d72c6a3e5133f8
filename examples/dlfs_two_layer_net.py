"""Deep Learning from Scratch's two-layer net on scikit-learn's digits, trained with the
book's Adam and with ``fastopt.compat.dlfs.Adam``.

    python examples/dlfs_two_layer_net.py            # 300 iterations
    python examples/dlfs_two_layer_net.py --quick    # 30 iterations (CI)

The net is the book's ``TwoLayerNet`` (affine, ReLU, affine, softmax with
cross-entropy, its gradients by backpropagation) on 8x8 digits instead of MNIST, so
nothing is downloaded. The one-line change is the optimizer's import. Prints the two
loss curves (identical: the adapter reproduces the book's float64 maths bit for bit)
and the time spent in ``optimizer.update`` after the first call. At this size (3,710
parameters) a call's fixed cost, not memory, sets the time.
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

from fastopt.compat import dlfs


class BookAdam:
    """``common/optimizer.py``'s Adam, as the book gives it."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key]**2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


def init_params(rng, sizes, weight_init_std=0.01):
    return {"W1": weight_init_std * rng.standard_normal((sizes[0], sizes[1])),
            "b1": np.zeros(sizes[1]),
            "W2": weight_init_std * rng.standard_normal((sizes[1], sizes[2])),
            "b2": np.zeros(sizes[2])}


def loss_and_grads(params, x, t):
    """The two-layer net's loss and its gradients (the book's backward pass)."""
    a1 = x @ params["W1"] + params["b1"]
    z1 = np.maximum(a1, 0)
    y = z1 @ params["W2"] + params["b2"]
    y = np.exp(y - y.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    batch = x.shape[0]
    loss = -np.sum(np.log(y[np.arange(batch), t] + 1e-7)) / batch
    dy = y.copy()
    dy[np.arange(batch), t] -= 1
    dy /= batch
    dz1 = dy @ params["W2"].T
    da1 = dz1 * (a1 > 0)
    return loss, {"W1": x.T @ da1, "b1": da1.sum(axis=0), "W2": z1.T @ dy,
                  "b2": dy.sum(axis=0)}


def train(optimizer, x, t, iterations, seed=0, batch_size=100):
    rng = np.random.default_rng(seed)
    params = init_params(rng, (x.shape[1], 50, 10))
    losses, spent = [], 0.0
    for i in range(iterations):
        batch = rng.choice(x.shape[0], batch_size)
        loss, grads = loss_and_grads(params, x[batch], t[batch])
        start = time.perf_counter()
        optimizer.update(params, grads)
        if i:  # the first call creates the state (and loads the compiled kernel)
            spent += time.perf_counter() - start
        losses.append(loss)
    return losses, params, spent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 iterations")
    args = parser.parse_args(argv)
    digits = load_digits()
    x, t = digits.data / 16.0, digits.target
    iterations = 30 if args.quick else 300
    runs = {"book": train(BookAdam(lr=0.01), x, t, iterations),
            "fastopt": train(dlfs.Adam(lr=0.01), x, t, iterations)}
    for name, (losses, _, spent) in runs.items():
        print(f"{name:8s} loss {losses[0]:.4f} -> {losses[-1]:.4f}   "
              f"optimizer.update: {1e6 * spent / (iterations - 1):.1f} us per call")
    same = runs["book"][0] == runs["fastopt"][0] and all(
        np.array_equal(runs["book"][1][k], runs["fastopt"][1][k]) for k in runs["book"][1])
    print(f"identical loss curves and weights: {same}")
    return {"same": same, "losses": runs["fastopt"][0]}


if __name__ == "__main__":
    main()
