"""8-bit optimizer state on a real training run: the same NumPy MLP on scikit-learn's
digits trained twice from the same weights on the same batches, with fastopt's Adam
(float32 state) and Adam8bit (blockwise 8-bit state, fastopt.quant).

    python examples/digits_8bit.py            # 30 epochs of a 64-512-512-10 MLP
    python examples/digits_8bit.py --quick    # a small, short run (CI)

Prints per epoch the training loss of both runs, then the final loss on the whole
training set, the validation loss and accuracy and the bytes of optimizer state of
each, and the 8-bit run's figures over the float32 run's.
Tensors under ``min_8bit_size`` (4096) elements, the biases here, keep float32 state.
"""

import argparse
import os
import sys

import numpy as np

import fastopt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_early_stopping import evaluate, init_params, load_data, loss_and_grads  # noqa: E402


def state_bytes(opt):
    """Bytes of optimizer state: the arrays of its state_dict (codes, absmax, float32)."""
    return sum(v.nbytes for k, v in opt.state_dict().items() if k.startswith("state."))


def train(args):
    X_train, y_train, X_val, y_val = load_data()
    X_train, X_val = X_train.astype(np.float32), X_val.astype(np.float32)
    start = {k: v.astype(np.float32) for k, v in
             init_params([64, args.hidden, args.hidden, 10], seed=0).items()}
    runs = {}
    for name, cls in (("float32", fastopt.Adam), ("8-bit", fastopt.Adam8bit)):
        params = {k: v.copy() for k, v in start.items()}
        runs[name] = dict(params=params, opt=cls(params, lr=args.lr), curve=[])
    order_rng = np.random.default_rng(1)
    print(f"{'epoch':>5}  {'loss float32':>12}  {'loss 8-bit':>10}")
    for epoch in range(args.epochs):
        order = order_rng.permutation(len(X_train))
        for run in runs.values():
            losses = []
            for i in range(0, len(order), args.batch_size):
                idx = order[i:i + args.batch_size]
                loss, grads = loss_and_grads(run["params"], X_train[idx], y_train[idx])
                losses.append(loss)
                run["opt"].step(grads)
            run["curve"].append(float(np.mean(losses)))
        print(f"{epoch:5d}  {runs['float32']['curve'][-1]:12.5f}  "
              f"{runs['8-bit']['curve'][-1]:10.5f}")
    result = {}
    for name, run in runs.items():
        train_loss, _ = evaluate(run["params"], X_train, y_train)
        val_loss, val_acc = evaluate(run["params"], X_val, y_val)
        result[name] = dict(train_loss=train_loss, val_loss=val_loss, val_acc=val_acc,
                            curve=run["curve"], state_bytes=state_bytes(run["opt"]))
        print(f"{name:>8}: final training loss {train_loss:.5f}, validation loss "
              f"{val_loss:.5f}, validation accuracy {val_acc:.4f}, optimizer state "
              f"{result[name]['state_bytes']:,} bytes")
    ratio, val_ratio, saved = (result["8-bit"][key] / result["float32"][key]
                               for key in ("train_loss", "val_loss", "state_bytes"))
    print(f"8-bit / float32: final training loss {ratio:.4f}x, validation loss "
          f"{val_ratio:.4f}x, optimizer state {saved:.3f}x")
    result.update(loss_ratio=ratio, val_loss_ratio=val_ratio, state_ratio=saved)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--quick", action="store_true", help="a small, short run (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.epochs = 128, 5
    return train(args)


if __name__ == "__main__":
    main()
