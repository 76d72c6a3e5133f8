"""Training by watching the validation loss: a NumPy MLP on scikit-learn's digits with
fastopt's Adam, ReduceLROnPlateau and EarlyStopping.

    python examples/digits_early_stopping.py             # up to 200 epochs
    python examples/digits_early_stopping.py --quick     # a small run (CI)

Each epoch prints the training and validation loss, the validation accuracy and the
learning rate. The lr is halved when the validation loss has not improved for
``--plateau`` epochs; training stops when it has not improved for ``--patience``
epochs, and the params of the best epoch are put back, bit for bit (the validation
loss is computed again from them to show it).
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits

import fastopt
from fastopt.schedules import ReduceLROnPlateau


def init_params(sizes, seed):
    rng = np.random.default_rng(seed)
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{i}"] = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        params[f"b{i}"] = np.zeros(fan_out)
    return params


def loss_and_grads(params, X, y, weight_decay=0.0):
    """Softmax cross-entropy of a ReLU MLP, and its gradients (same keys as params)."""
    layers = len(params) // 2
    activations = [X]
    for i in range(1, layers):
        activations.append(np.maximum(activations[-1] @ params[f"W{i}"] + params[f"b{i}"], 0))
    scores = activations[-1] @ params[f"W{layers}"] + params[f"b{layers}"]
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(X)
    loss = float(-np.log(probs[np.arange(n), y]).mean())
    delta = probs
    delta[np.arange(n), y] -= 1
    delta /= n
    grads = {}
    for i in range(layers, 0, -1):
        grads[f"W{i}"] = activations[i - 1].T @ delta
        grads[f"b{i}"] = delta.sum(axis=0)
        if i > 1:
            delta = (delta @ params[f"W{i}"].T) * (activations[i - 1] > 0)
    return loss, grads


def evaluate(params, X, y):
    loss, _ = loss_and_grads(params, X, y)
    layers = len(params) // 2
    h = X
    for i in range(1, layers):
        h = np.maximum(h @ params[f"W{i}"] + params[f"b{i}"], 0)
    scores = h @ params[f"W{layers}"] + params[f"b{layers}"]
    return loss, float((scores.argmax(axis=1) == y).mean())


def load_data(seed=0):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    perm = np.random.default_rng(seed).permutation(len(X))
    X, y = X[perm], y[perm]
    return X[:1300], y[:1300], X[1300:], y[1300:]  # a validation split of 497 digits


def train(args):
    X_train, y_train, X_val, y_val = load_data()
    params = init_params([64, args.hidden, args.hidden, 10], seed=0)
    opt = fastopt.Adam(params, lr=args.lr)
    plateau = ReduceLROnPlateau(opt, factor=0.5, patience=args.plateau, min_lr=1e-5)
    stopper = fastopt.EarlyStopping(params, patience=args.patience)
    order_rng = np.random.default_rng(1)
    history = []
    print(f"{'epoch':>5}  {'train loss':>10}  {'val loss':>9}  {'val acc':>7}  {'lr':>8}")
    for epoch in range(args.epochs):
        order = order_rng.permutation(len(X_train))
        losses = []
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss, grads = loss_and_grads(params, X_train[idx], y_train[idx])
            losses.append(loss)
            opt.step(grads)
        val_loss, val_acc = evaluate(params, X_val, y_val)
        lr = opt.param_groups[0]["lr"]
        history.append(dict(epoch=epoch, loss=float(np.mean(losses)), val_loss=val_loss,
                            val_acc=val_acc, lr=lr))
        print(f"{epoch:5d}  {np.mean(losses):10.5f}  {val_loss:9.5f}  {val_acc:7.4f}  "
              f"{lr:8.2e}")
        plateau.step(val_loss)
        if stopper.update(val_loss):
            break
    else:
        stopper.restore()  # the epochs ran out first: keep the best all the same
    restored_loss, restored_acc = evaluate(params, X_val, y_val)
    print(f"stopped after epoch {epoch}; best epoch {stopper.best_step}: val loss "
          f"{stopper.best:.5f}; params restored: val loss {restored_loss:.5f}, "
          f"val acc {restored_acc:.4f}")
    return dict(history=history, best=stopper.best, best_step=stopper.best_step,
                restored_loss=restored_loss, stopped=stopper.stopped)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--plateau", type=int, default=3, help="ReduceLROnPlateau patience")
    parser.add_argument("--patience", type=int, default=8, help="EarlyStopping patience")
    parser.add_argument("--quick", action="store_true", help="a small, short run (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.epochs, args.plateau, args.patience = 32, 40, 1, 3
    return train(args)


if __name__ == "__main__":
    main()
