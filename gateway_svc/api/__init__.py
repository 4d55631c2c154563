"""gRPC servicers and interceptors of gateway_svc: protobuf <-> domain mapping only."""
