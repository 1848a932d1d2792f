"""Write the protobuf descriptor set Envoy's grpc_json_transcoder reads for RouterService.

    .venv/bin/python scripts/envoy_descriptor.py --out examples/envoy/router.pb

Compiled from protos/ (grpcio-tools, --include_imports), then the HTTP mapping
`POST /v1/route` (JSON body = RouteRequest) is added to Route's options here, in the
descriptor set only: router.proto and semroute's own stubs then need no googleapis.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTO = "semroute/v1/router.proto"
# Method -> (HTTP path, body field) for the transcoder.
ROUTES = {"Route": "/v1/route"}


def descriptor_set() -> bytes:
    """RouterService's FileDescriptorSet with the HTTP mapping of ROUTES."""
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "router.pb"
        args = [
            "grpc_tools.protoc",
            f"-I{REPO / 'protos'}",
            f"-I{include}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            PROTO,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO}")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    # google/api/http.proto and annotations.proto (and what they import) go first, so
    # every file's dependencies precede it.
    have = {f.name for f in fds.file}
    extra: list[descriptor_pb2.FileDescriptorProto] = []
    for module in (http_pb2, annotations_pb2):
        for dep in (*module.DESCRIPTOR.dependencies, module.DESCRIPTOR):
            if dep.name not in have:
                proto = descriptor_pb2.FileDescriptorProto()
                dep.CopyToProto(proto)
                extra.append(proto)
                have.add(dep.name)
    router = next(f for f in fds.file if f.name == PROTO)
    router.dependency.append(annotations_pb2.DESCRIPTOR.name)
    service = next(s for s in router.service if s.name == "RouterService")
    for method in service.method:
        if method.name in ROUTES:
            rule = http_pb2.HttpRule(post=ROUTES[method.name], body="*")
            method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    files = [*extra, *(f for f in fds.file)]
    return descriptor_pb2.FileDescriptorSet(file=files).SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "examples" / "envoy" / "router.pb"))
    args = ap.parse_args(argv)
    Path(args.out).write_bytes(descriptor_set())
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
