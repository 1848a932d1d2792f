"""Stubs generated from protos/semroute/v1/router.proto at build time (setup.py).

They live here, not in `semroute.v1`, so that the client and the server can be installed in
one environment. The .proto file keeps its name (`semroute/v1/router.proto`), so both sets of
stubs register the same descriptor and can be imported in the same process.
"""
