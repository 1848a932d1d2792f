"""The gRPC front: protobuf conversion, the RouterService handler, server lifecycle."""
