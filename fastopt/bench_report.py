"""Reports of a ``fastopt bench`` run: the full table, the one-screen summary, the chart,
the JSON document and the Markdown record.

Everything here is computed from the :class:`fastopt.benchmark.Result` rows of one run,
so a record never mixes runs and no figure is typed in by hand.
"""

import datetime
import math
import subprocess
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

# The methods that are fastopt itself (the others are its baselines).
FASTOPT_METHODS = ("numba", "c", "cuda")


def _families():
    """Kernel families, in the order the summary and the chart show them: the rules'
    benchmark cases in rule order, then batch norm."""
    from .rules import RULES

    return tuple(kernel for rule in RULES.values() for kernel in rule.bench) + ("batchnorm",)


FAMILIES = _families()

COLUMNS = ["kernel", "size", "method", "min ms", "median ms", "GB/s", "roofline",
           "vs numpy", "vs torch"]
# Markers around the summary that ``--readme`` replaces in a README.
README_BEGIN = "<!-- fastopt-bench-summary: begin -->"
README_END = "<!-- fastopt-bench-summary: end -->"


def _fmt(x, spec, suffix=""):
    return "-" if x is None else format(x, spec) + suffix


def _rows(results):
    return [[r.kernel, r.size, r.method, _fmt(r.min_ms, ".3f"), _fmt(r.median_ms, ".3f"),
             _fmt(r.gbps, ".1f"), _fmt(r.roofline_fraction, ".2f"),
             _fmt(r.speedup_vs_numpy, ".1f", "x"), _fmt(r.speedup_vs_torch, ".2f", "x")]
            for r in results]


def _text_table(header, rows, left=1):
    """A fixed-width table; the first ``left`` columns are left-aligned."""
    rows = [header] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < left else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(header, rows, left=1):
    align = ["---" if i < left else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(row) + " |" for row in [header, align] + rows)


def table(results):
    """The results as a fixed-width text table (one row per kernel x size x method)."""
    return _text_table(COLUMNS, _rows(results), left=3)


def _geomean_and_range(values):
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return None
    return math.exp(sum(map(math.log, values)) / len(values)), min(values), max(values)


def _cell(stat, spec, suffix):
    if stat is None:
        return "-"
    mean, low, high = stat
    if len({format(v, spec) for v in stat}) == 1:
        return format(mean, spec) + suffix
    return f"{mean:{spec}}{suffix} ({low:{spec}}-{high:{spec}})"


SUMMARY_HEADER = ["kernel", "backend", "cases", "vs torch", "vs NumPy", "of roofline"]


def summary_rows(results):
    """Per kernel family and fastopt backend: the geometric means, with the range, of the
    speed-up against torch and against NumPy and of the fraction of the roofline."""
    groups = defaultdict(list)
    for r in results:
        if r.method in FASTOPT_METHODS:
            groups[(r.kernel, r.method)].append(r)
    order = {k: i for i, k in enumerate(FAMILIES)}
    rows = []
    for (kernel, method) in sorted(groups, key=lambda k: (order.get(k[0], len(order)),
                                                          FASTOPT_METHODS.index(k[1]))):
        found = groups[(kernel, method)]
        rows.append([kernel, method, str(len(found)),
                     _cell(_geomean_and_range([r.speedup_vs_torch for r in found]), ".2f", "x"),
                     _cell(_geomean_and_range([r.speedup_vs_numpy for r in found]), ".1f", "x"),
                     _cell(_geomean_and_range([r.roofline_fraction for r in found]), ".2f", "")])
    return rows


def summary(results):
    """The one-screen summary of a run, as text (see :func:`summary_rows`)."""
    rows = summary_rows(results)
    if not rows:
        return "summary: no fastopt backend was timed"
    return ("summary: geometric mean over the cases (range); vs X = X's time / fastopt's\n"
            + _text_table(SUMMARY_HEADER, rows, left=2))


def to_json(results, info):
    """The JSON document written by ``--json``."""
    return {"schema": "fastopt-bench/1", "machine": info,
            "results": [asdict(r) for r in results]}


def git_commit(directory=None):
    """The checkout's short commit, with ``-dirty`` when it has changes (None outside git)."""
    directory = directory or Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=10)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def provenance(info, command, when=None):
    """One paragraph saying where, when, on what and by which command a run was made."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    versions = ", ".join(f"{name} {info[key]}" for name, key in (
        ("Python", "python"), ("NumPy", "numpy"), ("Numba", "numba"), ("torch", "torch"))
        if key in info)
    threads = ", ".join(f"{name} {info[key]}" for name, key in (
        ("Numba", "numba_threads"), ("C/OpenMP", "c_threads"), ("torch", "torch_threads"))
        if key in info)
    gpu = f"; GPU: {info['gpu']}" if info.get("gpu") else ""
    policy = f"; OpenMP wait policy: {info['omp_wait_policy']}" \
        if info.get("omp_wait_policy") else ""
    return (f"Made by `{command}` on {when:%Y-%m-%d %H:%M} UTC, fastopt {info['fastopt']} "
            f"at commit {info.get('commit') or 'unknown'}; machine: {info['processor']}, "
            f"{info['cpus']} logical CPUs{gpu}, {info['platform']}; {versions}; "
            f"threads: {threads or 'defaults'}{policy}.")


def markdown(results, info, command, chart=None, when=None):
    """The benchmark record: provenance, method, summary, full table (Markdown)."""
    parts = [
        "# fastopt benchmark record",
        "",
        "Generated from one run; do not edit by hand, run the command again.",
        "",
        provenance(info, command, when),
        "",
        "Each case is timed in interleaved rounds after one warm-up call per method; "
        "times are per call, ratios are between minima of the same run. `roofline` is "
        "a null kernel with the same memory traffic (on a GPU, a device-to-device copy "
        "of the same bytes); a method's roofline fraction is the null kernel's time over "
        "its own. float32 throughout.",
        "",
        "## Summary",
        "",
        "Geometric mean over the cases of each kernel, with the range in brackets; "
        "`vs torch` and `vs NumPy` are the baseline's time over fastopt's.",
        "",
        _markdown_table(SUMMARY_HEADER, summary_rows(results), left=2),
        "",
    ]
    if chart:
        parts += [f"![fraction of the memory roofline]({chart})", ""]
    parts += ["## Every case", "", _markdown_table(COLUMNS, _rows(results), left=3), ""]
    return "\n".join(parts)


def _readme_block(markers, table_text, info, command, record, when, every):
    """A README block between ``markers``: a table, where it came from, and a link to
    the ``record`` that has ``every`` row."""
    begin, end = markers
    source = provenance(info, command, when)
    if record:
        source += f" {every}: [{record}]({record})."
    return "\n".join([begin, "", table_text, "", source, "", end])


def readme_block(results, info, command, record=None, when=None):
    """The README's results block: the summary table and where it came from."""
    return _readme_block((README_BEGIN, README_END),
                         _markdown_table(SUMMARY_HEADER, summary_rows(results), left=2),
                         info, command, record, when, "Every case")


def update_readme(path, block, begin=README_BEGIN, end_marker=README_END):
    """Replace the text between the README markers (inclusive) with ``block``."""
    text = Path(path).read_text()
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {begin} ... {end_marker} block to replace")
    Path(path).write_text(text[:start] + block + text[end + len(end_marker):])


def plot(results, path):
    """One panel per kernel family: each case's fraction of the roofline, as horizontal
    bars per method (fastopt's backends, torch, NumPy), with the roofline at 1.0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.roofline_fraction is not None
             and r.method not in ("roofline", "cuda-copy")]
    families = [f for f in FAMILIES if any(r.kernel == f for r in shown)]
    families += sorted({r.kernel for r in shown} - set(families))
    if not families:
        raise ValueError("no result has a roofline fraction to plot (time 'roofline' too)")
    methods = [m for m in FASTOPT_METHODS + ("torch-cuda", "torch", "numpy")
               if any(r.method == m for r in shown)]
    colours = dict(zip(methods, plt.get_cmap("tab10").colors))
    columns = min(len(families), 4)
    rows = -(-len(families) // columns)
    most = max(len({r.size for r in shown if r.kernel == f}) for f in families)
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(3.6 * columns, max(2.8, 0.45 * most + 1.0) * rows))
    height = 0.8 / len(methods)
    for ax, family in zip(axes.flat, families):
        sizes = list(dict.fromkeys(r.size for r in shown if r.kernel == family))
        value = {(r.size, r.method): r.roofline_fraction for r in shown if r.kernel == family}
        for j, method in enumerate(methods):
            ys = [i + j * height for i in range(len(sizes))]
            ax.barh(ys, [value.get((s, method), 0.0) for s in sizes], height,
                    color=colours[method], label=method)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks([i + height * (len(methods) - 1) / 2 for i in range(len(sizes))])
        ax.set_yticklabels(sizes, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(family, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlim(0, max(1.1, max(value.values(), default=1.0) * 1.05))
    for ax in list(axes.flat)[len(families):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[m]) for m in methods]
    fig.legend(handles, methods, loc="lower center", ncol=len(methods), fontsize=8,
               frameon=False)
    fig.suptitle("fraction of the memory roofline (1.0 = a null kernel moving the same "
                 "bytes; float32)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------
# ``fastopt bench --small``: per-call costs (fastopt.bench_small.SmallResult rows).

SMALL_COLUMNS = ["entry point", "size", "method", "calls/sample", "min us", "median us",
                 "vs numpy", "vs torch"]
SMALL_README_BEGIN = "<!-- fastopt-bench-small: begin -->"
SMALL_README_END = "<!-- fastopt-bench-small: end -->"


def _small_rows(results):
    return [[r.entry, r.size, r.method, str(r.number), _fmt(r.min_us, ".1f"),
             _fmt(r.median_us, ".1f"), _fmt(r.speedup_vs_numpy, ".2f", "x"),
             _fmt(r.speedup_vs_torch, ".2f", "x")] for r in results]


def small_table(results):
    """The per-call results as a fixed-width text table."""
    return _text_table(SMALL_COLUMNS, _small_rows(results), left=3)


SMALL_SUMMARY_HEADER = ["entry point", "size", "NumPy us", "numba us", "c us", "torch us",
                        "numba vs NumPy", "c vs NumPy"]


def small_summary_rows(results):
    """One row per case: each method's minimum time per call and fastopt's speed-ups."""
    cases = defaultdict(dict)
    for r in results:
        cases[(r.entry, r.size)][r.method] = r
    rows = []
    for (entry, size), by_method in cases.items():
        us = [_fmt(getattr(by_method.get(m), "min_us", None), ".1f")
              for m in ("numpy", "numba", "c", "torch")]
        vs = [_fmt(getattr(by_method.get(m), "speedup_vs_numpy", None), ".2f", "x")
              for m in ("numba", "c")]
        rows.append([entry, size, *us, *vs])
    return rows


SMALL_FIXED_METHODS = ("numpy", "numba", "c", "torch")
SMALL_FIXED_HEADER = ["entry point", "elements"] + [
    f"{m} {what}" for m in SMALL_FIXED_METHODS for what in ("fixed us", "ns/element")]


def small_fixed_cost_rows(results):
    """For each entry point timed at three or more element counts: per method, the
    fixed cost of a call (its time at the fewest elements, where the work is a few
    nanoseconds) and the cost per element (the slope between the fewest and the most
    elements)."""
    points = defaultdict(lambda: defaultdict(dict))  # entry -> method -> {elements: us}
    for r in results:
        points[r.entry][r.method][r.elements] = r.min_us
    rows = []
    for entry, by_method in points.items():
        counts = sorted({n for timed in by_method.values() for n in timed})
        if len(counts) < 3:
            continue
        cells = []
        for method in SMALL_FIXED_METHODS:
            timed = by_method.get(method, {})
            if len(timed) < 2:
                cells += ["-", "-"]
                continue
            low, high = min(timed), max(timed)
            cells += [_fmt(timed[low], ".1f"),
                      _fmt((timed[high] - timed[low]) / (high - low) * 1e3, ".2f")]
        rows.append([entry, f"{counts[0]}-{counts[-1]}", *cells])
    return rows


def small_summary(results):
    """The per-case summary of a ``--small`` run, as text."""
    text = ("per call, minimum over rounds; vs NumPy = the NumPy code's time / fastopt's\n"
            + _text_table(SMALL_SUMMARY_HEADER, small_summary_rows(results), left=2))
    fixed = small_fixed_cost_rows(results)
    if fixed:
        text += ("\nfixed cost (us per call at the fewest elements) and cost per element\n"
                 + _text_table(SMALL_FIXED_HEADER, fixed, left=2))
    return text


def record(title, module_doc, info, command, sections, when=None):
    """A benchmark record in Markdown: ``title``, provenance, the method (the text of
    ``module_doc`` after its first paragraph), then ``sections``: ``(heading or None,
    Markdown table)`` pairs."""
    method = " ".join(module_doc.split("\n\n", 1)[1].split())
    parts = [f"# {title}", "", "Generated from one run; do not edit by hand, run the "
             "command again.", "", provenance(info, command, when), "", method, ""]
    for heading, table_text in sections:
        parts += ([f"## {heading}", ""] if heading else []) + [table_text, ""]
    return "\n".join(parts)


def small_markdown(results, info, command, when=None):
    """The small-work benchmark record: provenance, method, summary, every method."""
    from . import bench_small

    return record("fastopt benchmark record: small work (fixed cost per call)",
                  bench_small.__doc__, info, command, [
                      ("Summary", _markdown_table(SMALL_SUMMARY_HEADER,
                                                  small_summary_rows(results), left=2)),
                      ("Fixed cost per call and cost per element", _markdown_table(
                          SMALL_FIXED_HEADER, small_fixed_cost_rows(results), left=2)),
                      ("Every method", _markdown_table(SMALL_COLUMNS, _small_rows(results),
                                                       left=3))], when)


def small_readme_block(results, info, command, record=None, when=None):
    """The README's small-work block: the summary table and where it came from."""
    tables = _markdown_table(SMALL_SUMMARY_HEADER, small_summary_rows(results), left=2)
    fixed = small_fixed_cost_rows(results)
    if fixed:
        tables += ("\n\nThe fixed cost of a call (us at the fewest elements) and the cost "
                   "per element (ns, the slope to the most elements):\n\n"
                   + _markdown_table(SMALL_FIXED_HEADER, fixed, left=2))
    return _readme_block((SMALL_README_BEGIN, SMALL_README_END), tables, info, command,
                         record, when, "Every method")


# ---------------------------------------------------------------------------
# ``fastopt bench --distributed`` (fastopt.bench_distributed rows).


def distributed_markdown(rows, info, command, when=None):
    """The distributed benchmark record: provenance, method, the table."""
    from . import bench_distributed

    return record("fastopt benchmark record: data-parallel steps over MPI",
                  bench_distributed.__doc__, info, command,
                  [(None, _markdown_table(bench_distributed.COLUMNS,
                                          bench_distributed.table_rows(rows), left=1))],
                  when)


# ---------------------------------------------------------------------------
# ``fastopt bench --8bit`` (fastopt.bench_8bit rows).


def eight_bit_markdown(rows, info, command, when=None):
    """The 8-bit state benchmark record: provenance, method, the table."""
    from . import bench_8bit

    return record("fastopt benchmark record: Adam with 8-bit state", bench_8bit.__doc__,
                  info, command, [(None, _markdown_table(bench_8bit.COLUMNS,
                                                         bench_8bit.table_rows(rows),
                                                         left=2))], when)
