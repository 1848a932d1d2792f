"""Load-testing tools for semroute: a gRPC load generator and a trivial-RPC echo server."""
