"""The compositing loops compiled ahead of time: :mod:`stacube.algo.jit` built into a C extension
module with numba's AOT compiler (``numba.pycc``), one entry per signature the composites use.

A process that runs the loops through numba's JIT dispatchers pays numba's set-up first: its
import (~0.12 s) and its first use of the on-disk cache (0.15-0.25 s, numba's typing and lowering
registries), ~0.35 s of the ~1.9 s a 1000 x 1000 px, 68-date median job takes on the machine of
README. The extension module imports in under a millisecond and runs machine code from the same
source, the same compiler (LLVM) and the same CPU features, without the GIL.

``make install`` (``scripts/install.sh``) runs ``python -m stacube.algo.aot``, which compiles the
module next to this file as ``_aot_<digest>``. The digest covers the source of both modules and
the CPU's feature flags: after an edit of a loop, or on another CPU, no module matches and every
call takes numba's JIT, as before. :func:`load` wraps each loop in a :class:`Loop`: a call whose
arrays match an exported signature exactly (dtype, byte order, number of dimensions,
C-contiguous, aligned) runs the compiled entry; any other call goes to numba's dispatcher, which
compiles and caches it. The entries check nothing themselves (an array of another dtype would be
read as the exported one), hence the exact match.

``numba.pycc`` is pending deprecation since numba 0.57 (and still in 0.68). If a release drops it,
the build says so and fails, and the loops run through the JIT: same results, numba's set-up paid
again in each process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from stacube.algo.blocks import LANES, sum_dtype

HERE = Path(__file__).resolve().parent
#: File name prefix of the built modules (``_aot_<digest><EXT_SUFFIX>``).
PREFIX = "_aot_"

_DATA = ("u1", "u2", "i2", "i4", "f4", "f8")  # band stacks: what the readers produce
_MASKS = ("u1", "u2", "i1", "i2")  # quality stacks decoded through a lookup table
_I = "i8"  # p0, p1, block (Python ints)


def signatures() -> dict[str, list[tuple[str, ...]]]:
    """The exported entries: per loop of :mod:`stacube.algo.jit`, a list of argument types, each
    ``"u2[2]"`` (a C-contiguous array: numpy dtype code, number of dimensions) or ``"u2"`` (a
    scalar). Arrays identify the entry (:func:`array_key`); scalars are converted by the entry."""
    intp = np.dtype(np.intp).str[1:]
    return {
        "order_statistic": [(f"{d}[2]", "b1[2]", d, "b1", d, "i4[2]", "f8", "f4[1]", _I, _I, _I) for d in _DATA],
        "mean": [(f"{d}[2]", "b1[2]", d, "b1", f"{a}[1]", "f4[1]", _I, _I, _I) for d in _DATA for a in _sums(d)],
        "choose": [("b1[2]", "b1[2]", f"{intp}[1]", "b1", "i2[1]", _I, _I, _I)],
        "gather": [(f"{d}[2]", "i2[1]", d, f"{d}[1]", _I, _I) for d in _DATA],
        "take": [("i2[1]", "i2[1]", "i2[1]", _I, _I)],
        "count": [("b1[2]", "b1[2]", "u2[1]", "u2[1]", _I, _I, _I)],
        "decode": [(f"{m}[2]", "u1[1]", "i8", "f4[2]", "b1", "b1[2]", "b1[2]", _I, _I) for m in _MASKS],
    }


def _sums(code: str) -> list[str]:
    """The dtypes :func:`~stacube.algo.blocks.sum_dtype` sums a ``code`` stack in: short and long
    series (2**40 values overflow every integer sum)."""
    return list(dict.fromkeys(sum_dtype(np.dtype(code), t).str[1:] for t in (1, 1 << 40)))


def signature_key(types: tuple[str, ...]) -> tuple[str, ...]:
    """The array types of an exported signature, which identify its entry."""
    return tuple(t for t in types if t.endswith("]"))


def array_key(args: tuple) -> tuple[str, ...] | None:
    """The array types of a call (as in :func:`signatures`), or None when an array is not
    C-contiguous, aligned and in native byte order (no entry takes it)."""
    key = []
    for a in args:
        if isinstance(a, np.ndarray):
            flags = a.flags
            if not (flags.c_contiguous and flags.aligned and a.dtype.isnative):
                return None
            key.append(f"{a.dtype.str[1:]}[{a.ndim}]")
    return tuple(key)


def numba_signature(types: tuple[str, ...]) -> str:
    """A numba signature string (``void(u2[:, ::1], b1, ...)``) of :func:`signatures` types."""
    out = []
    for t in types:
        if t.endswith("]"):
            code, ndim = t[:-1].split("[")
            out.append(f"{code}[{', '.join([':'] * (int(ndim) - 1) + ['::1'])}]")
        else:
            out.append(t)
    return f"void({', '.join(out)})"


def cpu_flags() -> str:
    """The CPU's feature flags (``/proc/cpuinfo``), empty where not readable."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def digest(sources: tuple[bytes, ...] | None = None, cpu: str | None = None) -> str:
    """16 hex digits over the source of :mod:`stacube.algo.jit` and of this module, and the CPU
    flags: the module a build makes, and the only one :func:`load` accepts."""
    if sources is None:
        sources = tuple((HERE / name).read_bytes() for name in ("jit.py", "aot.py"))
    h = hashlib.sha256()
    for part in (*sources, (cpu_flags() if cpu is None else cpu).encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def module_name() -> str:
    """``_aot_<digest>``: the name of the module for the current source and CPU."""
    return PREFIX + digest()


class Loop:
    """One loop: its compiled entries by :func:`array_key`, else numba's dispatcher.

    Args:
        name: the loop's name in :mod:`stacube.algo.jit`.
        entries: ``{array key: compiled entry}``.
        fallback: returns :mod:`stacube.algo.jit` (importing numba on first use).
    """

    __slots__ = ("name", "entries", "fallback")

    def __init__(self, name: str, entries: dict[tuple[str, ...], Callable], fallback: Callable[[], object]):
        self.name, self.entries, self.fallback = name, entries, fallback

    def __call__(self, *args):
        entry = self.entries.get(array_key(args))
        if entry is None:
            entry = getattr(self.fallback(), self.name)
        return entry(*args)


def load(fallback: Callable[[], object]) -> SimpleNamespace | None:
    """The loops of the built module for the current source and CPU (a namespace of
    :class:`Loop` and ``LANES``), or None when there is none (not built, stale, or built for
    another CPU) or it does not import."""
    name = f"stacube.algo.{module_name()}"
    try:
        if importlib.util.find_spec(name) is None:
            return None
        module = importlib.import_module(name)
    except ImportError:
        return None
    loops = {}
    for loop, types in signatures().items():
        entries = {signature_key(t): getattr(module, f"{loop}_{i}") for i, t in enumerate(types)}
        loops[loop] = Loop(loop, entries, fallback)
    return SimpleNamespace(LANES=LANES, **loops)


@contextlib.contextmanager
def _as_the_jit_compiles():
    """Build the entries as numba's JIT builds ``@njit(nogil=True)`` loops. Two settings of
    numba.pycc differ: its Python entries hold the GIL while they run (the JIT's ``nogil=True``
    sets the compiler flag ``release_gil``, which pycc's flags leave off), and for
    ``target_cpu = "host"`` it takes the features of the host's CPU model (LLVM's name for it),
    not those the CPU reports, as the JIT does (``numba.core.codegen.get_host_cpu_features``;
    under a hypervisor the two differ)."""
    from numba.core import codegen
    from numba.pycc import compiler

    flags = compiler.Flags
    features = codegen.AOTCPUCodegen._customize_tm_features

    class Flags(flags):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = Flags
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: codegen.get_host_cpu_features()
    try:
        yield
    finally:
        compiler.Flags = flags
        codegen.AOTCPUCodegen._customize_tm_features = features


def build(directory: Path = HERE) -> Path:
    """Compile the loops of :func:`signatures` into ``directory/_aot_<digest><EXT_SUFFIX>``
    (for the host CPU), replace the file atomically and remove other builds.

    Raises:
        RuntimeError: numba has no ``pycc``, or the compilation failed (no C compiler, no
            Python headers).
    """
    name = module_name()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending deprecation, said in the module docs
        try:
            from numba.pycc import CC
        except ImportError as exc:
            raise RuntimeError(f"numba has no AOT compiler (numba.pycc): {exc}") from None
    from stacube.algo import jit  # lazy: numba, only to build

    with tempfile.TemporaryDirectory(prefix="stacube-aot-") as tmp:
        cc = CC(name)
        cc.output_dir = tmp
        cc.target_cpu = "host"
        cc.verbose = False
        for loop, types in signatures().items():
            function = getattr(jit, loop).py_func
            for i, t in enumerate(types):
                cc.export(f"{loop}_{i}", numba_signature(t))(function)
        try:
            with _as_the_jit_compiles():
                cc.compile()
        except Exception as exc:  # distutils/compiler errors of every kind
            raise RuntimeError(f"the AOT build failed: {type(exc).__name__}: {exc}") from None
        built = next(Path(tmp).glob(f"{name}*"))
        target = directory / built.name
        shutil.move(built, target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)
    for old in directory.glob(f"{PREFIX}*"):
        if not old.name.startswith(name):
            old.unlink(missing_ok=True)
    return target


def built() -> bool:
    """True when the module for the current source and CPU is there."""
    return importlib.util.find_spec(f"stacube.algo.{module_name()}") is not None


def main(argv: list[str] | None = None) -> int:
    """``python -m stacube.algo.aot``: build the module unless the current one exists."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m stacube.algo.aot   (compile stacube's loops ahead of time)")
        return 0
    if built():
        print("compiled loops: up to date")
        return 0
    t0 = time.perf_counter()
    try:
        path = build()
    except (RuntimeError, OSError) as exc:
        print(f"compiled loops not built ({exc}); numba's JIT runs them instead", file=sys.stderr)
        return 1
    count = sum(len(t) for t in signatures().values())
    print(f"compiled loops: {count} entries in {path.name} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
