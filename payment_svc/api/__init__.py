"""gRPC servicers of payment_svc: protobuf <-> domain mapping only."""
