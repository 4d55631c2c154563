"""gateway_svc: the single public edge (gRPC on port 50051).

Serves AuthService itself and forwards PaymentService and CallbackService to payment_svc
over internal gRPC with a deadline.
"""
