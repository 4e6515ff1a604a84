"""Compile the hot modules with mypyc, in place: ``python -m mediation.compile``.

The modules of ``mediation.native.COMPILED_MODULES`` are compiled from
their ``.py`` files (the same sources the interpreted build runs) into
extension modules next to them, plus one shared library
(``mediation/native_lib__mypyc*.so``) and the build stamp
(``mediation/native_build.json``: the sources' hash). All of them are
git-ignored. Nothing is done when the stamp says the build is current
(``--force`` rebuilds). Exit status: 0 built or current, 1 the compile
failed, 3 no C compiler (the interpreted build keeps running).

mypy and mypyc come with the ``dev`` extra; a C compiler and the Python
headers (``gcc``, ``python3-dev`` on Debian) are needed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

from . import native

__all__ = ["GROUP_NAME", "compiler_available", "main"]

# The shared library holding every compiled module's code: inside the
# package, so an editable install (which maps packages, not the checkout
# root) finds it.
GROUP_NAME = "mediation.native_lib"
_ROOT = native.source_path("mediation.native").parent.parent


def compiler_available() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(compiler) is not None or shutil.which("cc") is not None


def _python_headers_available() -> bool:
    include = sysconfig.get_path("include")
    return bool(include) and Path(include, "Python.h").exists()


def _remove_build() -> None:
    """Delete the stamp and the extension modules of a previous compile."""
    native.stamp_path().unlink(missing_ok=True)
    for module in [*native.COMPILED_MODULES, *native.stray_extensions()]:
        native.extension_path(module).unlink(missing_ok=True)
    for path in _ROOT.joinpath("mediation").glob("native_lib__mypyc*"):
        path.unlink()


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's and its children's stdout and stderr (mypyc, gcc) to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("wb") as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _compile() -> None:
    # Imported here: only a compile needs them (dev extra).
    from mypyc.build import mypycify
    from setuptools import Distribution

    sources = [
        str(native.source_path(module).relative_to(_ROOT)) for module in native.COMPILED_MODULES
    ]
    build_dir = _ROOT / "build" / "mypyc"
    cwd = Path.cwd()
    os.chdir(_ROOT)  # build_ext --inplace places the modules relative to it
    try:
        extensions = mypycify(
            # An empty config file: the project's [tool.mypy] names packages to check,
            # which a compile of files must not take; the rules are mypy-strict anyway.
            ["--config-file", "", "--ignore-missing-imports", *sources],
            opt_level="3",
            group_name=GROUP_NAME,
            target_dir=str(build_dir),
        )
        distribution = Distribution({"name": "mediation-native", "ext_modules": extensions})
        distribution.script_args = ["build_ext", "--inplace", "--build-temp", str(build_dir)]
        distribution.parse_command_line()
        distribution.run_commands()
    finally:
        os.chdir(cwd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mediation.compile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when current")
    parser.add_argument(
        "--clean", action="store_true", help="remove the compiled build (interpreted from then on)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="say nothing when the build is current"
    )
    args = parser.parse_args(argv)

    if args.clean:
        _remove_build()
        return 0
    state = native.decide("auto")
    if state.build == "compiled" and not args.force:
        if not args.quiet:
            print("compile: the compiled build is current")
        return 0
    if not compiler_available() or not _python_headers_available():
        missing = "C compiler" if not compiler_available() else "Python headers (python3-dev)"
        print(f"compile: no {missing}; using the interpreted rules (slower)", file=sys.stderr)
        return 3
    # A compile takes a while: say so, quiet or not.
    print(f"compile: mypyc over {len(native.COMPILED_MODULES)} modules (about half a minute)")
    started = time.monotonic()
    _remove_build()
    source_hash = native.source_hash()
    log = _ROOT / "build" / "mypyc.log"
    try:
        with _output_to(log):
            _compile()
    except (Exception, SystemExit) as exc:  # setuptools reports a failed build as SystemExit
        _remove_build()
        print(
            f"compile: failed ({str(exc).strip() or type(exc).__name__}; see {log}); "
            "using the interpreted rules",
            file=sys.stderr,
        )
        return 1
    if native.source_hash() != source_hash:
        _remove_build()
        print("compile: the sources changed during the compile; run it again", file=sys.stderr)
        return 1
    stamp = {
        "modules": list(native.COMPILED_MODULES),
        "source_hash": source_hash,
        "cache_tag": sys.implementation.cache_tag,
    }
    native.stamp_path().write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    print(f"compile: done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
