"""Builds the optional C speedup ``syncwd_fast._speedups``; all other
metadata is in setup.cfg. An install never fails for want of a compiler: the
pure-Python implementation is used instead, and the build says so once.
``SYNCWD_FAST_NO_EXTENSIONS=1`` skips the build; ``SYNCWD_FAST_STRICT_BUILD=1``
(CI) turns warnings into errors and a failed build into a failed install."""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

STRICT = os.environ.get("SYNCWD_FAST_STRICT_BUILD") == "1"
SOURCES = ["decode.c", "json.c", "order.c", "render.c", "wire.c"]


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._fallback(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc: Exception) -> None:
        if STRICT:
            raise exc
        print(
            f"syncwd-fast: the C speedup was not built ({exc}); the pure-Python implementation will be used",
            file=sys.stderr,
        )


extensions = []
if os.environ.get("SYNCWD_FAST_NO_EXTENSIONS") != "1":
    extensions.append(
        Extension(
            "syncwd_fast._speedups",
            sources=[f"syncwd_fast/csrc/{name}" for name in SOURCES],
            depends=[f"syncwd_fast/csrc/{name}" for name in ("buffer.h", "json.h", "order.h", "render.h", "wire.h")],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra", *(["-Werror"] if STRICT else [])],
        )
    )

setup(ext_modules=extensions, cmdclass={"build_ext": OptionalBuildExt})
