"""A plain NumPy MLP with batch norm on scikit-learn's digits, trained twice: once with
its own NumPy layers and Adam (cs231n style), once with fastopt swapped in by one line.

    python examples/numpy_mlp_batchnorm.py            # 30 epochs
    python examples/numpy_mlp_batchnorm.py --quick    # 3 epochs (CI)

Prints, per epoch and side by side: training loss, validation accuracy, the time of the
epoch and the time spent in optimizer steps. Both runs start from the same weights and
see the same batches, so their curves agree to rounding.
"""

import argparse
import time
from types import SimpleNamespace

import numpy as np
from sklearn.datasets import load_digits

import fastopt.compat.cs231n

# -- the trainer's own NumPy layers (as a cs231n student writes them) -------------------


def np_batchnorm_forward(x, gamma, beta, bn_param):
    mode, eps, momentum = bn_param["mode"], bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    running_mean = bn_param.get("running_mean", np.zeros(x.shape[1], dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(x.shape[1], dtype=x.dtype))
    if mode == "train":
        mean, var = x.mean(axis=0), x.var(axis=0)
        xhat = (x - mean) / np.sqrt(var + eps)
        out, cache = gamma * xhat + beta, (xhat, gamma, var, eps)
        running_mean = momentum * running_mean + (1 - momentum) * mean
        running_var = momentum * running_var + (1 - momentum) * var
    else:
        out, cache = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta, None
    bn_param["running_mean"], bn_param["running_var"] = running_mean, running_var
    return out, cache


def np_batchnorm_backward(dout, cache):
    xhat, gamma, var, eps = cache
    n = dout.shape[0]
    dbeta, dgamma = dout.sum(axis=0), (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / \
        (n * np.sqrt(var + eps))
    return dx, dgamma, dbeta


def np_adam(w, dw, config=None):
    config = config if config is not None else {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    config["t"] += 1
    config["m"] = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
    mt = config["m"] / (1 - config["beta1"] ** config["t"])
    config["v"] = config["beta2"] * config["v"] + (1 - config["beta2"]) * (dw ** 2)
    vt = config["v"] / (1 - config["beta2"] ** config["t"])
    next_w = w - config["learning_rate"] * mt / (np.sqrt(vt) + config["epsilon"])
    return next_w, config


NUMPY = SimpleNamespace(batchnorm_forward=np_batchnorm_forward,
                        batchnorm_backward=np_batchnorm_backward, adam=np_adam)
FASTOPT = fastopt.compat.cs231n  # the one-line change: these names, fused


# -- the model: affine -> batch norm -> ReLU -> affine -> softmax ------------------------


def init_params(n_in, hidden, n_out, seed):
    rng = np.random.default_rng(seed)
    return {"W1": rng.standard_normal((n_in, hidden)) * np.sqrt(2.0 / n_in),
            "b1": np.zeros(hidden), "gamma": np.ones(hidden), "beta": np.zeros(hidden),
            "W2": rng.standard_normal((hidden, n_out)) * np.sqrt(1.0 / hidden),
            "b2": np.zeros(n_out)}


def loss_and_grads(layers, params, bn_param, X, y):
    h = X @ params["W1"] + params["b1"]
    hn, bn_cache = layers.batchnorm_forward(h, params["gamma"], params["beta"], bn_param)
    a = np.maximum(hn, 0)
    scores = a @ params["W2"] + params["b2"]
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = X.shape[0]
    loss = -np.log(probs[np.arange(n), y]).mean()
    dscores = probs
    dscores[np.arange(n), y] -= 1
    dscores /= n
    grads = {"W2": a.T @ dscores, "b2": dscores.sum(axis=0)}
    da = dscores @ params["W2"].T
    dhn = da * (hn > 0)
    dh, grads["gamma"], grads["beta"] = layers.batchnorm_backward(dhn, bn_cache)
    grads["W1"], grads["b1"] = X.T @ dh, dh.sum(axis=0)
    return loss, grads


def accuracy(layers, params, bn_param, X, y):
    bn_test = {**bn_param, "mode": "test"}
    h = X @ params["W1"] + params["b1"]
    hn, _ = layers.batchnorm_forward(h, params["gamma"], params["beta"], bn_test)
    scores = np.maximum(hn, 0) @ params["W2"] + params["b2"]
    return float((scores.argmax(axis=1) == y).mean())


def train(layers, data, *, epochs, hidden, batch_size, lr, seed=0):
    """Train with ``layers`` (NUMPY or FASTOPT); per-epoch loss, accuracy and timings."""
    X_train, y_train, X_val, y_val = data
    params = init_params(X_train.shape[1], hidden, 10, seed)
    configs = {k: {"learning_rate": lr} for k in params}
    bn_param = {"mode": "train"}
    order_rng = np.random.default_rng(seed + 1)
    history = []
    for epoch in range(epochs):
        start, step_time, losses = time.perf_counter(), 0.0, []
        order = order_rng.permutation(len(X_train))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            loss, grads = loss_and_grads(layers, params, bn_param, X_train[idx], y_train[idx])
            losses.append(loss)
            t0 = time.perf_counter()
            for name in params:
                params[name], configs[name] = layers.adam(params[name], grads[name],
                                                          configs[name])
            step_time += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "val_acc": accuracy(layers, params, bn_param, X_val, y_val),
                        "epoch_s": time.perf_counter() - start, "step_s": step_time})
        for config in configs.values():  # the Solver's per-epoch decay
            config["learning_rate"] *= 0.95
    return history


def load_data(seed=0):
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float64)
    perm = np.random.default_rng(seed).permutation(len(X))
    X, y = X[perm], y[perm]
    return X[:1400], y[:1400], X[1400:], y[1400:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--quick", action="store_true", help="3 epochs, for CI")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    data = load_data()
    runs = {}
    for name, layers in (("numpy", NUMPY), ("fastopt", FASTOPT)):
        train(layers, data, epochs=1, hidden=args.hidden, batch_size=args.batch_size,
              lr=args.lr)  # warm-up: compile or load the kernels, fill caches
        runs[name] = train(layers, data, epochs=epochs, hidden=args.hidden,
                           batch_size=args.batch_size, lr=args.lr)
    print(f"digits, 64-{args.hidden}-10 MLP with batch norm, Adam, batch {args.batch_size}")
    print(f"{'epoch':>5} | {'loss numpy':>10} {'fastopt':>10} | {'val acc numpy':>13} "
          f"{'fastopt':>7} | {'epoch ms numpy':>14} {'fastopt':>7} | "
          f"{'step ms numpy':>13} {'fastopt':>7}")
    for a, b in zip(runs["numpy"], runs["fastopt"]):
        print(f"{a['epoch']:5d} | {a['loss']:10.6f} {b['loss']:10.6f} | {a['val_acc']:13.4f} "
              f"{b['val_acc']:7.4f} | {a['epoch_s'] * 1e3:14.1f} {b['epoch_s'] * 1e3:7.1f} | "
              f"{a['step_s'] * 1e3:13.1f} {b['step_s'] * 1e3:7.1f}")
    total = {k: sum(h["step_s"] for h in v) for k, v in runs.items()}
    print(f"optimizer steps: numpy {total['numpy']:.3f} s, fastopt {total['fastopt']:.3f} s "
          f"({total['numpy'] / total['fastopt']:.2f}x)")
    return runs


if __name__ == "__main__":
    main()
