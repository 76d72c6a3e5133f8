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
            raise argparse.ArgumentTypeError(
                f"not a size: {item!r} (use e.g. 1M,64M)") from None
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
    scope.add_argument("--small", action="store_true",
                       help="small work: the fixed cost per call of each entry point "
                       "(optimizers, adapters, batch norm) at 10 to 10K elements and "
                       "at the adapted libraries' model sizes, against the NumPy code "
                       "it replaces (methods numpy,numba,c,torch)")
    bench.add_argument("--sizes", type=_sizes, help="element counts, e.g. 1M,64M")
    bench.add_argument("--kernels", type=_list(tuple(benchmark.KERNELS)),
                       help="comma-separated subset of " + ",".join(benchmark.KERNELS))
    scope.add_argument("--distributed", action="store_true",
                       help="a data-parallel Adam step over MPI (ZeRO-1 and allreduce + "
                       "step) at 1 and 2 ranks, state per rank, collective bandwidth "
                       "(needs fastopt[mpi])")
    scope.add_argument("--8bit", dest="eight_bit", action="store_true",
                       help="Adam with 8-bit state against float32 Adam, its own memory "
                       "roofline and bitsandbytes' Adam8bit, at 16M and 64M elements "
                       "(--sizes to change)")
    bench.add_argument("--ranks", type=lambda t: [int(x) for x in t.split(",") if x.strip()],
                       default=[1, 2], help="with --distributed: numbers of ranks (1,2)")
    bench.add_argument("--entries", type=lambda t: [e.strip() for e in t.split(",")
                                                     if e.strip()],
                       help="with --small: only the entry points whose name contains "
                       "one of these comma-separated strings (e.g. cs231n,Adam.step)")
    methods = benchmark.CPU_METHODS + benchmark.GPU_METHODS
    bench.add_argument("--methods", type=_list(methods), default=list(benchmark.CPU_METHODS),
                       help="comma-separated subset of " + ",".join(methods)
                       + " (default: the CPU ones; on a GPU machine use "
                       "cuda-copy,cuda,torch-cuda: the copy plays the roofline)")
    bench.add_argument("--lists", type=_list(tuple(benchmark.PARAM_LISTS), allow_empty=True),
                       help="parameter lists to include (resnet50,mlp; '' for none)")
    bench.add_argument("--rounds", type=int, help="timed rounds per case")
    bench.add_argument("--table", action="store_true",
                       help="print every case before the summary (--full does too)")
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG chart (matplotlib)")
    bench.add_argument("--markdown", metavar="PATH",
                       help="write the benchmark record: provenance, summary and every "
                       "case, as Markdown (links the --plot chart)")
    bench.add_argument("--readme", metavar="PATH",
                       help="replace the results block of this README with the summary")
    sub.add_parser("info", help="versions, backends, threads, CPU features, GPU")
    return parser


def cmd_bench(args, out=None, command="fastopt bench"):
    """Run the benchmark that ``args`` describe; ``command`` is quoted in the records."""
    from . import bench_report, benchmark
    out = out or sys.stdout
    if args.rounds is not None and args.rounds < 1:
        raise SystemExit("fastopt bench: error: --rounds must be >= 1")
    if args.plot or args.markdown or args.readme:
        _writable(args)
    if args.small:
        return cmd_bench_small(args, out, command)
    if args.distributed:
        return cmd_bench_distributed(args, out, command)
    if args.eight_bit:
        return cmd_bench_8bit(args, out, command)
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
    # The machine is described after the run: reading the C build's thread count loads
    # its OpenMP runtime, which must not happen before torch's (see benchmark.run). The
    # commit is read before it: the code being timed is the code loaded now.
    commit = bench_report.git_commit()
    print(f"fastopt bench: {len(cases)} cases, {rounds} rounds each, methods "
          f"{', '.join(args.methods)} on {benchmark.cpu_model()} ({os.cpu_count()} CPUs)",
          file=out, flush=True)
    results = benchmark.run(cases, args.methods, rounds, benchmark.progress_printer())
    info = benchmark.machine_info(gpu=any(m in benchmark.GPU_METHODS for m in args.methods))
    info["commit"] = commit
    if args.full or args.table:
        print(bench_report.table(results), file=out)
    if args.plot:
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        bench_report.plot(results, args.plot)
        print(f"wrote {args.plot}", file=out)
    chart = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.markdown))) \
        if args.plot and args.markdown else None
    _write_records(args, out, bench_report.to_json(results, info),
                   lambda: bench_report.markdown(results, info, command, chart=chart))
    if args.readme:
        _write_readme(args, out, lambda record: bench_report.readme_block(
            results, info, command, record), "results")
    print(bench_report.summary(results), file=out)
    return results


def cmd_bench_small(args, out, command):
    """``fastopt bench --small``: the per-call cost of each entry point."""
    from . import bench_report, bench_small, benchmark
    if args.kernels or args.sizes or args.lists is not None or args.plot:
        raise SystemExit("fastopt bench: error: --small takes --entries, --rounds, "
                         "--json, --markdown and --readme (not --kernels, --sizes, "
                         "--lists or --plot)")
    # the NumPy code is the baseline of every ratio, so it always runs
    methods = [m for m in bench_small.METHODS if m in args.methods or m == "numpy"]
    rounds = args.rounds or 15
    commit = bench_report.git_commit()
    print(f"fastopt bench --small: {rounds} rounds each, methods {', '.join(methods)} on "
          f"{benchmark.cpu_model()} ({os.cpu_count()} CPUs)", file=out, flush=True)
    results = bench_small.run(methods, rounds, bench_small.progress_printer(),
                              selected=args.entries)
    info = benchmark.machine_info()
    info["commit"] = commit
    if args.table:
        print(bench_report.small_table(results), file=out)
    _write_records(args, out, {"schema": "fastopt-bench-small/1", "machine": info,
                               "results": [vars(r) for r in results]},
                   lambda: bench_report.small_markdown(results, info, command))
    if args.readme:
        _write_readme(args, out, lambda record: bench_report.small_readme_block(
            results, info, command, record), "small-work",
            (bench_report.SMALL_README_BEGIN, bench_report.SMALL_README_END))
    print(bench_report.small_summary(results), file=out)
    return results


def cmd_bench_distributed(args, out, command):
    """``fastopt bench --distributed``: the data-parallel step at each number of ranks."""
    from . import bench_distributed, bench_report, benchmark
    if args.readme or args.plot:
        raise SystemExit("fastopt bench: error: --distributed takes --ranks, --rounds, "
                         "--json and --markdown")
    if not args.ranks or min(args.ranks) < 1:
        raise SystemExit("fastopt bench: error: --ranks must be positive integers")
    commit = bench_report.git_commit()
    rows = bench_distributed.run(args.ranks, rounds=args.rounds or 7,
                                 progress=lambda text: print(text, file=sys.stderr,
                                                             flush=True))
    info = benchmark.machine_info()
    info["commit"] = commit
    _write_records(args, out, {"schema": "fastopt-bench-distributed/1", "machine": info,
                               "results": rows},
                   lambda: bench_report.distributed_markdown(rows, info, command))
    print(bench_report._text_table(bench_distributed.COLUMNS,
                                   bench_distributed.table_rows(rows), left=1), file=out)
    return rows


def cmd_bench_8bit(args, out, command):
    """``fastopt bench --8bit``: the 8-bit Adam step against float32 and bitsandbytes."""
    from . import bench_8bit, bench_report, benchmark
    if args.readme or args.plot or args.kernels or args.lists is not None:
        raise SystemExit("fastopt bench: error: --8bit takes --sizes, --rounds, --json "
                         "and --markdown")
    sizes = bench_8bit.SIZES if args.sizes is None else args.sizes
    rounds = args.rounds or 5
    commit = bench_report.git_commit()
    print(f"fastopt bench --8bit: {len(sizes)} sizes, {rounds} rounds each, methods "
          f"{', '.join(bench_8bit.METHODS)} on {benchmark.cpu_model()} "
          f"({os.cpu_count()} CPUs)", file=out, flush=True)
    rows = bench_8bit.measure(sizes, bench_8bit.METHODS, rounds,
                              progress=lambda text: print(text, file=sys.stderr, flush=True))
    info = benchmark.machine_info()
    info["commit"] = commit
    _write_records(args, out, {"schema": "fastopt-bench-8bit/1", "machine": info,
                               "results": rows},
                   lambda: bench_report.eight_bit_markdown(rows, info, command))
    print(bench_report._text_table(bench_8bit.COLUMNS, bench_8bit.table_rows(rows), left=2),
          file=out)
    return rows


def _write_readme(args, out, block, what, markers=None):
    """Replace a block of ``--readme`` with ``block(record)``, ``record`` being the path
    of ``--markdown`` relative to the README (None without it)."""
    from . import bench_report
    record = os.path.relpath(args.markdown, os.path.dirname(os.path.abspath(args.readme))) \
        if args.markdown else None
    bench_report.update_readme(args.readme, block(record),
                               *(markers or (bench_report.README_BEGIN,
                                             bench_report.README_END)))
    print(f"updated the {what} block of {args.readme}", file=out)


def _write_records(args, out, document, markdown):
    """Write ``document`` to ``--json`` and ``markdown()`` to ``--markdown``, if given."""
    for path, write in ((args.json, lambda f: json.dump(document, f, indent=1)),
                        (args.markdown, lambda f: f.write(markdown()))):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                write(f)
            print(f"wrote {path}", file=out)


def _writable(args):
    """Refuse, before the run, outputs that could not be written after it."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("fastopt bench: --plot needs matplotlib "
                             "(pip install 'fastopt[plot]')") from None
    if args.readme:
        from .bench_report import README_BEGIN, SMALL_README_BEGIN
        begin = SMALL_README_BEGIN if args.small else README_BEGIN
        try:
            text = open(args.readme).read()
        except OSError as error:
            raise SystemExit(f"fastopt bench: --readme: {error}") from None
        if begin not in text:
            raise SystemExit(f"fastopt bench: --readme: {args.readme} has no "
                             f"'{begin}' block")


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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        cmd_bench(args, command=" ".join(["fastopt"] + argv))
    else:
        cmd_info()
    return 0


if __name__ == "__main__":
    sys.exit(main())
