"""Faults a real program meets: threads, fork, Ctrl-C, overlapping arrays, an install
where Numba cannot cache, hyperparameters that overflow float32. What could crash or
hang runs in a subprocess with a timeout."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastopt
from fastopt import backends, functional

TIMEOUT = 240


def run_script(code, backend, env=None, timeout=TIMEOUT):
    """Run ``code`` in a fresh interpreter on ``backend``; its stdout (it must exit 0)."""
    environment = {"PATH": "", "FASTOPT_BACKEND": backend, "OMP_NUM_THREADS": "2",
                   "NUMBA_NUM_THREADS": "2", **(env or {})}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout, env=environment)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_one_optimizer_stepped_from_two_threads(cpu_compiled_backend):
    out = run_script("""
        import threading
        import numpy as np, fastopt
        p = np.zeros(2_000_000, np.float32)
        small = np.zeros(1000, np.float32)
        opt = fastopt.SGD([{"params": [p]}, {"params": [small]}], lr=1.0)
        def work():
            for _ in range(25):
                opt.step([np.ones(2_000_000, np.float32), np.ones(1000, np.float32)])
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        # Each step applied whole: every element was decremented exactly 50 times.
        assert opt.steps == 50, opt.steps
        assert (p == -50).all() and (small == -50).all(), (p.min(), p.max())
        print("ok")
    """, cpu_compiled_backend.name)
    assert out.stdout.strip() == "ok"


def test_a_child_forked_after_parallel_kernels_keeps_training(cpu_compiled_backend):
    # The parent runs parallel kernels (1M elements) and forks; the child steps the
    # parent's optimizer and a new one, and runs a parallel batch norm and global_norm.
    # It must neither die (Numba under GNU OpenMP) nor hang (OpenMP's pool), and its
    # numbers must be the parent's for the same calls.
    out = run_script("""
        import multiprocessing as mp
        import warnings
        import numpy as np, fastopt

        n = 1 << 20
        def start():
            p = np.linspace(-1, 1, n).astype(np.float32)
            return p, fastopt.Adam([p], lr=0.01)
        g = np.cos(np.arange(n, dtype=np.float32))
        x = np.sin(np.arange(64 * 32 * 1024, dtype=np.float32)).reshape(64, 32, 1024)

        def work(p, opt):
            for _ in range(3):
                opt.step([g])
            q = np.ones(n, np.float32)
            fastopt.SGD([q], lr=0.5, momentum=0.9).step([g])
            y, _ = fastopt.batchnorm_forward(x, np.ones(32, np.float32),
                                             np.zeros(32, np.float32))
            return p.copy(), q, y[0, :, :8].copy(), fastopt.global_norm([g, q])

        def child(p, opt, queue):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = work(p, opt)
            queue.put((result, [str(w.message) for w in caught], opt.backend))

        p, opt = start()
        opt.step([g])  # parallel kernels have run in the parent
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(p, opt, queue))
        proc.start()
        (got, messages, backend), = [queue.get(timeout=120)]
        proc.join(60)
        assert proc.exitcode == 0, proc.exitcode
        want = work(p, opt)  # the parent, from the same state
        for a, b in zip(got[:3], want[:3]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        assert abs(got[3] - want[3]) <= 1e-9 * want[3]
        print(backend, any("forked" in m for m in messages))
    """, cpu_compiled_backend.name, timeout=300)
    backend, warned = out.stdout.split()
    if cpu_compiled_backend.name == "numba":  # Numba cannot run there: the C build does
        assert backend == "c" and warned == "True"
    else:
        assert backend == "c" and warned == "False"


def test_workqueue_layer_with_concurrent_optimizers():
    if "numba" not in fastopt.available_backends():
        pytest.skip("needs Numba")
    out = run_script("""
        import threading
        import numpy as np, fastopt, numba
        params = [np.zeros(300_000, np.float32) for _ in range(4)]
        def work(p):
            opt = fastopt.Adam([p], lr=0.1)
            for _ in range(20):
                opt.step([np.ones_like(p)])
        threads = [threading.Thread(target=work, args=(p,)) for p in params]
        for t in threads: t.start()
        for t in threads: t.join()
        ref = np.zeros(8, np.float32)
        opt = fastopt.Adam([ref], lr=0.1, backend="numpy")
        for _ in range(20):
            opt.step([np.ones(8, np.float32)])
        assert all((p == ref[0]).all() for p in params)
        print(numba.threading_layer())
    """, "numba", env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert out.stdout.strip() == "workqueue"


def test_ctrl_c_never_half_applies_a_step(cpu_compiled_backend):
    out = run_script("""
        import signal, threading, time
        import numpy as np, fastopt
        sizes = (300_000, 100, 300_000)  # a serial and two parallel groups
        params = [np.zeros(n, np.float32) for n in sizes]
        grads = [np.ones(n, np.float32) for n in sizes]
        opt = fastopt.SGD([{"params": [p]} for p in params], lr=1.0)
        main = threading.main_thread().ident
        stepping, stop = threading.Event(), threading.Event()
        def interrupt():  # SIGINT at random moments while a step is under way
            rng = np.random.default_rng(0)
            while not stop.is_set():
                time.sleep(rng.uniform(0, 0.002))
                if stepping.is_set():
                    signal.pthread_kill(main, signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        counts = {"in step": 0, "checked": 0}
        def steps():
            while counts["in step"] < 150:
                stepping.set()
                try:
                    opt.step(grads)
                    stepping.clear()
                except KeyboardInterrupt:
                    stepping.clear()
                    counts["in step"] += 1
                k = opt.steps  # every group stepped exactly k times
                assert all((p == -k).all() for p in params), [float(p[0]) for p in params]
                counts["checked"] += 1
        while True:
            try:
                steps()
                break
            except KeyboardInterrupt:  # delivered just after a step: go on
                stepping.clear()
        stop.set()
        time.sleep(0.01)
        try:
            import numba
            assert numba.get_num_threads() == 2, numba.get_num_threads()
        except ImportError:
            pass
        print("ok", counts["in step"], counts["checked"] > 150)
    """, cpu_compiled_backend.name)
    assert out.stdout.split() == ["ok", "150", "True"]


def test_numba_without_a_writable_cache_compiles_in_memory():
    if "numba" not in fastopt.available_backends():
        pytest.skip("needs Numba")
    # Every place Numba could cache in refuses, as on a read-only install run by a
    # user with no writable home (as root, file permissions cannot show it).
    out = run_script("""
        import warnings
        from numba.core import caching
        def refuse(self):
            raise PermissionError("read-only")
        caching._CacheLocator.ensure_cache_path = refuse
        import numpy as np, fastopt
        p, q = np.ones(5), np.ones(5)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            opt = fastopt.Adam([p], lr=0.1)
        assert opt.backend == "numba", opt.backend
        fastopt.Adam([q], lr=0.1, backend="numpy").step([np.full(5, 0.5)])
        opt.step([np.full(5, 0.5)])
        assert (p == q).all()
        print([str(w.message) for w in seen])
    """, "", env={"HOME": "/nonexistent"})
    assert "compiled in each process" in out.stdout


def test_a_default_backend_that_cannot_start_is_passed_over(monkeypatch):
    if "c" not in fastopt.available_backends():
        pytest.skip("needs the C backend to fall back to")
    real = backends.importlib.import_module

    def failing(name):
        if name == backends._MODULES["numba"]:
            raise RuntimeError("LLVM cannot compile here")
        return real(name)

    monkeypatch.setattr(backends, "_loaded", {})
    monkeypatch.setattr(backends, "_failures", {})
    monkeypatch.setattr(backends.importlib, "import_module", failing)
    monkeypatch.delenv("FASTOPT_BACKEND", raising=False)
    with pytest.warns(RuntimeWarning, match="cannot compile.*next backend"):
        assert backends.default_backend() == "c"
    assert fastopt.SGD([np.ones(3)]).backend == "c"
    with pytest.raises(RuntimeError, match="not available"):
        fastopt.SGD([np.ones(3)], backend="numba")


# -- overlapping arrays -------------------------------------------------------------------


def test_overlapping_params_are_refused(cpu_backend):
    buf = np.zeros(600_000, np.float32)
    with pytest.raises(ValueError, match="param 0 and param 1 share memory"):
        fastopt.Adam([buf[:301_000], buf[299_000:]])
    with pytest.raises(ValueError, match="share memory"):
        fastopt.SGD({"a": buf[:10].reshape(2, 5), "b": buf[5:15]})
    fastopt.Adam([buf[:300_000], buf[300_000:]])  # touching is not overlapping


def test_a_grad_overlapping_a_param_is_refused_before_any_write(cpu_backend):
    buf = np.arange(1001, dtype=np.float64)
    p, other = buf[:-1], np.ones(3)
    opt = fastopt.SGD([p, other], lr=0.1)
    before = p.copy()
    with pytest.raises(ValueError, match="grad 0 overlaps the memory of param 0"):
        opt.step([buf[1:], np.ones(3)])  # the param shifted by one element
    with pytest.raises(ValueError, match="grad 1 overlaps the memory of param 0"):
        opt.step([np.ones(1000), p[:3]])
    np.testing.assert_array_equal(p, before)
    assert opt.steps == 0


def test_a_grad_that_is_its_param_is_allowed(backend):
    start = np.linspace(-1, 1, 50)
    p, q = backend.put(start.copy()), start.copy()
    fastopt.Adam([p], lr=0.1).step([p])
    fastopt.Adam([q], lr=0.1, backend="numpy").step([q.copy()])
    np.testing.assert_array_equal(backend.get(p), q)


def test_functional_refuses_one_array_as_two_states(cpu_backend):
    p, g, s = np.ones(10), np.ones(10), np.zeros(10)
    with pytest.raises(ValueError, match="exp_avg 0 and exp_avg_sq 0 share memory"):
        functional.adam_(p, g, s, s, step=1, lr=0.1)
    with pytest.raises(ValueError, match="param 0 and square_avg 0 share memory"):
        functional.rmsprop_(p, g, p, lr=0.1)
    with pytest.raises(ValueError, match="grad 0 overlaps"):
        functional.sgd_(p, s, lr=0.1, momentum=0.9, momentum_buffer=s, first=True)
    np.testing.assert_array_equal(p, np.ones(10))


def test_batchnorm_running_stats_must_be_two_arrays(cpu_backend):
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    stats = np.zeros(6, np.float32)
    with pytest.raises(ValueError, match="running_mean and running_var share memory"):
        fastopt.batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32),
                                  stats[:3], stats[:3])
    assert (stats == 0).all()


# -- hyperparameters that do not fit float32 ---------------------------------------------


@pytest.mark.parametrize("cls, kw, step_kw, match", [
    (fastopt.SGD, dict(lr=1e39), {}, "lr"),
    (fastopt.SGD, dict(lr=0.1, weight_decay=1e300), {}, "weight_decay"),
    (fastopt.SGD, dict(lr=0.1), dict(grad_scale=1e-46), "grad_scale"),
    (fastopt.Adam, dict(lr=1e38), {}, "lr"),
    (fastopt.AdamW, dict(lr=1e20, weight_decay=1e20), {}, "weight_decay"),
    (fastopt.Adagrad, dict(lr=0.1, eps=1e300), {}, "eps"),
])
def test_float32_overflow_is_refused_naming_the_hyperparameter(cls, kw, step_kw, match,
                                                               backend):
    p = backend.put(np.ones(4, np.float32))
    opt = cls([p], **kw)
    with pytest.raises(ValueError, match=f"{match}.*float32"):
        opt.step([backend.put(np.ones(4, np.float32))], **step_kw)
    np.testing.assert_array_equal(backend.get(p), np.ones(4))
    assert opt.steps == 0
    q = np.ones(4)  # the same values fit float64
    cls([q], backend="numpy" if backend.on_device else None, **kw).step([np.ones(4)],
                                                                        **step_kw)
    assert np.isfinite(q).all()


def test_functional_calls_do_not_keep_the_callers_arrays_alive(cpu_backend):
    import gc
    import weakref

    refs = []
    for _ in range(20):
        p, g, m, v = (np.ones(1000, np.float32) for _ in range(4))
        functional.adam_(p, g, m, v, step=1, lr=0.1)
        refs.append([weakref.ref(a) for a in (p, m, v)])
        del p, g, m, v
    gc.collect()
    # Each call let go of the previous call's arrays; the last ones go at the next call.
    assert all(ref() is None for call in refs[:-1] for ref in call)
    kept = np.ones(3)
    functional.sgd_(kept, np.ones(3), lr=0.1)
    gc.collect()
    assert all(ref() is None for ref in refs[-1])
    # Arrays the caller still holds stay cached, and are not dropped by other calls.
    held = [np.ones(8) for _ in range(3)]
    functional.adam_(held[0], np.ones(8), held[1], held[2], step=1, lr=0.1)
    functional.sgd_(np.ones(2), np.ones(2), lr=0.1)
    assert sum(1 for plan in functional._PLANS.values()
               if plan.refs[0]() is held[0]) == 1
    # The same arrays called again reuse the cached tables and give the same numbers.
    p, q = np.ones(5), np.ones(5)
    state = [np.zeros(5) for _ in range(4)]
    for step in (1, 2, 3):
        functional.adam_(p, np.full(5, 0.5), state[0], state[1], step=step, lr=0.1)
        functional.adam_(q, np.full(5, 0.5), state[2], state[3], step=step, lr=0.1,
                         backend="numpy")
    np.testing.assert_array_equal(p, q)
