"""Generated protobuf/gRPC stubs for the semroute.v1 API (built by setup.py from protos/)."""
