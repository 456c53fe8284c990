"""The loops compiled ahead of time (stacube.algo.aot): the same results as numba's JIT for every
dtype the readers produce, the JIT for any other call, no numba in a compositing process."""

import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from stacube.algo import aot, reduce
from stacube.algo.composite import count_stack, select_stack
from stacube.algo.load import decode_quality
from stacube.algo.reduce import reduce_stack
from stacube.catalog.quality import QualityRule

BUILT = aot.built()
needs_build = pytest.mark.skipif(not BUILT, reason="loops not compiled ahead of time (python -m stacube.algo.aot)")


def no_fallback():
    raise AssertionError("a call found no compiled entry and fell back to numba's JIT")


@pytest.fixture
def loops(monkeypatch):
    """Run the kernels with ``loops(kind)``: ``"aot"`` (entries only) or ``"jit"``."""

    def use(kind):
        chosen = aot.load(no_fallback) if kind == "aot" else reduce.jit_loops()
        assert chosen is not None
        monkeypatch.setattr(reduce, "_JIT", chosen)

    return use


def stacks(dtype, t=23, shape=(37, 45), seed=3):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        values = rng.normal(100, 40, (t, *shape)).astype(dtype)
        values[rng.random(values.shape) < 0.05] = np.nan
    else:
        info = np.iinfo(dtype)
        values = rng.integers(max(info.min, -3000), min(info.max, 3000), (t, *shape), endpoint=True).astype(dtype)
    observed = rng.random((t, *shape)) < 0.9
    clear = observed & (rng.random((t, *shape)) < 0.7)
    return values, observed, clear


def kernel_outputs(dtype):
    values, observed, clear = stacks(dtype)
    nodata = {"b": values.flat[7]}
    out = {}
    for method, q in (("median", 50.0), ("percentile", 30.0), ("mean", 50.0)):
        for threads in (1, 2):
            r = reduce_stack({"b": values}, clear, method=method, q=q, nodata=nodata, threads=threads)
            out[f"{method}-{threads}"] = r["b"]
    times = np.arange(values.shape[0]).astype("datetime64[D]").astype("datetime64[ns]")
    ratio = clear.mean(axis=(1, 2))
    for method in ("best-pixel", "most-recent"):
        r = select_stack({"b": values}, observed, clear, method=method, times=times, clear_ratio=ratio,
                         nodata=nodata, threads=2)
        out[method], out[f"{method}-provenance"] = r["b"], r["provenance"]
    out.update(count_stack(observed, clear, threads=2))
    return out


@needs_build
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "float32", "float64"])
def test_compiled_entries_give_the_jit_results(loops, dtype):
    loops("jit")
    expected = kernel_outputs(dtype)
    loops("aot")
    got = kernel_outputs(dtype)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert np.isfinite(got["median-2"]).any() and (got["best-pixel-provenance"] >= 0).any()


@needs_build
@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_mean_of_a_series_too_long_for_the_integer_sum(loops, dtype):
    """Past 65,536 16-bit values a pixel's sum may overflow 32 bits: the float64-sum entry."""
    t = 70_000
    values = np.full((t, 1, 64), np.iinfo(dtype).max, dtype=dtype)
    clear = np.ones_like(values, dtype=bool)
    loops("aot")
    got = reduce_stack({"b": values}, clear, method="mean")["b"]
    assert np.all(got == np.float32(np.iinfo(dtype).max))


@needs_build
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int8", "int16"])
def test_quality_decoding_through_compiled_entries(loops, dtype):
    rule = QualityRule(asset="qa", kind="categorical", clear=[{"values": (1, 2)}], fill=[{"values": (0,)}])
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    mask = rng.integers(max(info.min, -2), 5, (6, 20, 30)).astype(dtype)
    reference = rng.normal(size=mask.shape).astype(np.float32)
    reference[rng.random(mask.shape) < 0.1] = np.nan
    loops("jit")
    expected = decode_quality(rule, mask, reference, threads=2)
    loops("aot")
    got = decode_quality(rule, mask, reference, threads=2)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)
    assert got[1].any() and not got[1].all()


@needs_build
def test_a_call_no_entry_takes_runs_through_the_jit(monkeypatch):
    """int8 bands, a strided or byte-swapped array: the JIT's dispatcher, never an entry."""
    calls = []

    def counting():
        calls.append(1)
        return reduce.jit_loops()

    monkeypatch.setattr(reduce, "_JIT", aot.load(counting))
    values, _, clear = stacks("int16")
    small = (values // 100).astype(np.int8)
    got = reduce_stack({"b": small}, clear, method="median")["b"]
    masked = np.where(clear, small.astype(np.float64), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        expected = np.nanmedian(masked, axis=0).astype(np.float32)
    np.testing.assert_array_equal(got, expected)
    assert calls  # the int8 stack went to the JIT
    take = reduce._JIT.take
    table = np.arange(5, dtype=np.int16)
    index = np.array([4, 0, 3, 3, 1, 2, 2, 0], dtype=np.int16)
    out = np.zeros(4, dtype=np.int16)
    calls.clear()
    take(table, index[::2], out, 0, 4)  # strided: no entry
    assert calls and out.tolist() == [4, 3, 1, 2]
    assert aot.array_key((index.astype(">i2"),)) is None
    assert aot.array_key((index, 3, np.zeros((2, 3), np.float32))) == ("i2[1]", "f4[2]")


def test_every_entry_has_its_own_array_key():
    for loop, types in aot.signatures().items():
        keys = [aot.signature_key(t) for t in types]
        assert len(set(keys)) == len(keys), loop


def test_numba_signature_of_array_and_scalar_types():
    assert aot.numba_signature(("u2[2]", "b1", "f4[1]", "i8")) == "void(u2[:, ::1], b1, f4[::1], i8)"
    assert aot.numba_signature(("f8[3]",)) == "void(f8[:, :, ::1])"


def test_the_digest_follows_the_source_and_the_cpu():
    base = aot.digest((b"loops", b"table"), "sse4_2 avx2")
    assert base == aot.digest((b"loops", b"table"), "sse4_2 avx2")
    assert base != aot.digest((b"loops ", b"table"), "sse4_2 avx2")
    assert base != aot.digest((b"loops", b"table"), "sse4_2 avx2 avx512f")
    assert base != aot.digest((b"loopst", b"able"), "sse4_2 avx2")  # parts are delimited
    assert aot.module_name() == aot.PREFIX + aot.digest()


def test_a_build_for_other_source_is_not_loaded(monkeypatch):
    monkeypatch.setattr(aot, "digest", lambda *a, **k: "0" * 16)
    assert aot.load(no_fallback) is None
    monkeypatch.setattr(reduce, "_JIT", None)
    assert reduce.compiled() is reduce.jit_loops()


def test_build_without_numbas_aot_compiler_says_so(monkeypatch, capsys):
    monkeypatch.setattr(aot, "module_name", lambda: aot.PREFIX + "f" * 16)  # not built
    monkeypatch.setitem(sys.modules, "numba.pycc", None)
    assert aot.main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "numba.pycc" in err[0] and "JIT" in err[0]


@needs_build
def test_main_leaves_a_current_build_alone(capsys):
    assert aot.main([]) == 0
    assert capsys.readouterr().out.strip() == "compiled loops: up to date"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: the loops cannot be built here")
def test_the_install_built_the_loops_for_this_source():
    assert BUILT, "no compiled loops for this source and CPU: run `make install` (python -m stacube.algo.aot)"


@needs_build
def test_compositing_in_a_process_imports_no_numba():
    code = """
import sys
import numpy as np
from stacube.algo.composite import count_stack, select_stack
from stacube.algo.reduce import reduce_stack
v = np.arange(5 * 64 * 64, dtype=np.uint16).reshape(5, 64, 64)
c = (v % 3) > 0
m = reduce_stack({"b": v, "f": v.astype(np.float32)}, c, method="median")
s = select_stack({"b": v}, c, c, method="best-pixel", times=np.arange(5).astype("datetime64[D]"),
                 clear_ratio=c.mean(axis=(1, 2)))
count_stack(c, c)
assert m["b"][0, 1] == float(np.median(v[:, 0, 1][c[:, 0, 1]])), m["b"][0, 1]
print(sorted(n for n in sys.modules if n == "numba" or n.startswith("numba.")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
