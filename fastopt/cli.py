"""The ``fastopt`` command: ``fastopt bench`` and ``fastopt info``."""

import argparse
import json
import os
import sys

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _sizes(text):
    """Parse ``1M,64M`` (K/M/G binary suffixes) into {label: element count}; an
    empty string gives no flat sizes (parameter lists only)."""
    sizes = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if item[-1:].upper() in _UNITS:
                n = int(float(item[:-1]) * _UNITS[item[-1].upper()])
            else:
                n = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a size: {item!r} (use e.g. 1M,64M)")
        if n <= 0:
            raise argparse.ArgumentTypeError(f"sizes must be positive, got {item!r}")
        sizes[item] = n
    return sizes


def _list(choices, allow_empty=False):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not (items or allow_empty):
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(bad) or '(empty)'}; choose from {', '.join(choices)}")
        return items
    return parse


def build_parser():
    from . import benchmark
    parser = argparse.ArgumentParser(prog="fastopt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmark every kernel against the memory "
                           "roofline, the NumPy reference and torch")
    scope = bench.add_mutually_exclusive_group()
    scope.add_argument("--quick", action="store_true",
                       help="the default: 1M and 16M elements, a few rounds (< 2 min)")
    scope.add_argument("--full", action="store_true",
                       help="1M and 64M elements plus ResNet-50 and MLP parameter lists")
    bench.add_argument("--sizes", type=_sizes, help="element counts, e.g. 1M,64M")
    bench.add_argument("--kernels", type=_list(tuple(benchmark.KERNELS)),
                       help="comma-separated subset of " + ",".join(benchmark.KERNELS))
    methods = benchmark.CPU_METHODS + benchmark.GPU_METHODS
    bench.add_argument("--methods", type=_list(methods), default=list(benchmark.CPU_METHODS),
                       help="comma-separated subset of " + ",".join(methods)
                       + " (default: the CPU ones; on a GPU machine use "
                       "cuda-copy,cuda,torch-cuda: the copy plays the roofline)")
    bench.add_argument("--lists", type=_list(tuple(benchmark.PARAM_LISTS), allow_empty=True),
                       help="parameter lists to include (resnet50,mlp; '' for none)")
    bench.add_argument("--rounds", type=int, help="timed rounds per case")
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG chart (matplotlib)")
    sub.add_parser("info", help="versions, backends, threads, CPU features, GPU")
    return parser


def cmd_bench(args, out=None):
    from . import benchmark
    out = out or sys.stdout
    if args.rounds is not None and args.rounds < 1:
        raise SystemExit("fastopt bench: error: --rounds must be >= 1")
    if args.full:
        sizes, lists, rounds = benchmark.FULL_SIZES, tuple(benchmark.PARAM_LISTS), 11
        bn_shapes = benchmark.BATCHNORM_FULL
    else:
        sizes, lists, rounds = benchmark.QUICK_SIZES, ("mlp",), 7
        bn_shapes = benchmark.BATCHNORM_QUICK
    sizes = sizes if args.sizes is None else args.sizes
    lists = tuple(args.lists) if args.lists is not None else lists
    rounds = args.rounds or rounds
    cases = benchmark.cases(sizes, lists, args.kernels, bn_shapes)
    info = benchmark.machine_info()
    print(f"fastopt bench: {len(cases)} cases, {rounds} rounds each, methods "
          f"{', '.join(args.methods)} on {info['processor']} ({info['cpus']} CPUs)",
          file=out, flush=True)
    results = benchmark.run(cases, args.methods, rounds, benchmark.progress_printer())
    print(benchmark.table(results), file=out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(benchmark.to_json(results, info), f, indent=1)
        print(f"wrote {args.json}", file=out)
    if args.plot:
        try:
            benchmark.plot(results, args.plot)
        except ImportError:
            raise SystemExit("fastopt bench: --plot needs matplotlib "
                             "(pip install 'fastopt[plot]')")
        print(f"wrote {args.plot}", file=out)
    return results


def cmd_info(out=None):
    from . import backends, benchmark
    out = out or sys.stdout
    info = benchmark.machine_info()
    print(f"fastopt {info['fastopt']}  python {info['python']}  numpy {info['numpy']}",
          file=out)
    print(f"platform: {info['platform']}", file=out)
    print(f"cpu: {info['processor']} ({info['cpus']} logical CPUs)", file=out)
    print(f"cpu features: {' '.join(_cpu_features()) or 'unknown'}", file=out)
    print(f"backends available: {', '.join(backends.available_backends())} "
          f"(default {backends.resolve_name(None)!r}, "
          f"FASTOPT_BACKEND={os.environ.get('FASTOPT_BACKEND')!r})", file=out)
    try:
        import numba
        layer = "not started"
        try:
            layer = numba.threading_layer()
        except ValueError:
            pass
        print(f"numba {numba.__version__}: {numba.config.NUMBA_NUM_THREADS} threads, "
              f"threading layer {layer}, cache dir "
              f"{numba.config.CACHE_DIR or '(next to the sources)'}", file=out)
    except ImportError:
        print("numba: not installed", file=out)
    print(f"c: {_c_build()}", file=out)
    print(f"torch: {info.get('torch', 'not installed')}", file=out)
    print(f"gpu: {_gpu()}", file=out)


def _c_build():
    try:
        from ._fastopt_c import lib
    except ImportError as error:
        return f"not built ({error})"
    if lib.fo_has_openmp():
        return f"built with OpenMP, {lib.fo_max_threads()} threads (OMP_NUM_THREADS)"
    return "built without OpenMP: serial"


def _cpu_features():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"]
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def _gpu():
    try:
        from numba import cuda
        if cuda.is_available():
            name = cuda.get_current_device().name
            return name.decode() if isinstance(name, bytes) else name
        return "none (numba-cuda sees no device)"
    except Exception as error:  # noqa: BLE001 - any failure means no usable GPU
        return f"none ({type(error).__name__})"


def main(argv=None):
    """Entry point of the ``fastopt`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        cmd_bench(args)
    else:
        cmd_info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
