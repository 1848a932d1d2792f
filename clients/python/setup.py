"""Generate the gRPC stubs of semroute's API into semroute_client/v1 when the package is built.

The API is defined once, in the repository's protos/semroute/v1/router.proto. pip builds a
local directory in place, so `pip install ./clients/python` (from the repository root) finds
it at ../../protos relative to this file; an sdist carries the stubs generated when it was
made, and builds without the protos. The package's grpcio/protobuf floors are read from the
generated stubs, which refuse to import under older runtimes.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent.resolve()
PROTO_ROOT = ROOT.parent.parent / "protos"
PROTO = "semroute/v1/router.proto"
OUT = ROOT / "semroute_client" / "v1"
GENERATED = ("router_pb2.py", "router_pb2.pyi", "router_pb2_grpc.py")
SERVER_IMPORT = "from semroute.v1 import router_pb2 as"
CLIENT_IMPORT = "from semroute_client.v1 import router_pb2 as"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate_stubs() -> None:
    """Compile router.proto with grpc_tools, then point the service stub at this package."""
    from grpc_tools import protoc  # build requirement (pyproject.toml)

    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            PROTO,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_ROOT / PROTO}")
        made = Path(tmp) / "semroute" / "v1"
        grpc_src = (made / "router_pb2_grpc.py").read_text()
        # The generated import follows the .proto path (semroute.v1); the file name must stay
        # the same (see v1/__init__.py), so the import is rewritten instead.
        if grpc_src.count(SERVER_IMPORT) != 1:
            raise RuntimeError("unexpected router_pb2_grpc.py: cannot rewrite its import")
        (made / "router_pb2_grpc.py").write_text(grpc_src.replace(SERVER_IMPORT, CLIENT_IMPORT))
        for name in GENERATED:
            _write_if_changed(OUT / name, (made / name).read_text())


def runtime_floors() -> list[str]:
    """grpcio/protobuf at least as new as the generated code checks for at import."""
    grpc_src = (OUT / "router_pb2_grpc.py").read_text()
    pb_src = (OUT / "router_pb2.py").read_text()
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", grpc_src)
    pb_version = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
        r"(\d+),\s*(\d+),\s*(\d+),",
        pb_src,
    )
    if grpc_version is None or pb_version is None:
        raise RuntimeError("cannot read the generated stubs' runtime versions")
    return [f"grpcio>={grpc_version.group(1)}", f"protobuf>={'.'.join(pb_version.groups())}"]


if (PROTO_ROOT / PROTO).exists():
    generate_stubs()
elif not all((OUT / name).exists() for name in GENERATED):
    raise RuntimeError(
        f"{PROTO_ROOT / PROTO} not found and no generated stubs in {OUT}: build from a checkout "
        "of the semroute repository (pip install ./clients/python) or from its sdist"
    )

setup(install_requires=runtime_floors())
