"""Build steps that pyproject.toml cannot express.

Two generated parts, both built from sources in the repo on every build
(editable or not), never committed:
- gRPC/protobuf stubs: protos/semroute/v1/*.proto -> semroute/v1/*_pb2*.py
- the compiled hot path: csrc/*.pyx -> semroute/_*.so (Cython)
"""

from __future__ import annotations

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()
PROTO_ROOT = ROOT / "protos"


def generate_protos() -> None:
    """Compile every .proto under protos/ into the semroute.v1 package."""
    from grpc_tools import protoc  # build-time dependency (pyproject build-system)

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


class BuildExtWithProtos(build_ext):
    """Editable installs run build_ext but not build_py: generate here too."""

    def run(self) -> None:
        generate_protos()
        super().run()


extensions = [
    Extension(
        "semroute._policy",
        ["csrc/_policy.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "semroute._static",
        ["csrc/_static.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    ),
    Extension("semroute._wordpiece", ["csrc/_wordpiece.pyx"], extra_compile_args=["-O3"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
    cmdclass={"build_py": BuildPyWithProtos, "build_ext": BuildExtWithProtos},
)
