"""payment_svc's internal PaymentService and CallbackService.

gateway_svc forwards the public calls here unchanged. The RPC bodies arrive with the
payment-submission, processing and fraud issues; until then each answers UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import TypeAlias

import grpc

from payrail.callbacks.v1 import callbacks_pb2, callbacks_pb2_grpc
from payrail.payments.v1 import payments_pb2 as pb
from payrail.payments.v1 import payments_pb2_grpc
from payrail_common.unimplemented import abort_unimplemented

Context: TypeAlias = grpc.aio.ServicerContext


class PaymentServicer(payments_pb2_grpc.PaymentServiceServicer):
    async def CreatePayment(
        self, request: pb.CreatePaymentRequest, context: Context
    ) -> pb.CreatePaymentResponse:
        await abort_unimplemented(context, "CreatePayment")

    async def GetPayment(
        self, request: pb.GetPaymentRequest, context: Context
    ) -> pb.GetPaymentResponse:
        await abort_unimplemented(context, "GetPayment")

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Context
    ) -> pb.ListPaymentsResponse:
        await abort_unimplemented(context, "ListPayments")

    async def CancelPayment(
        self, request: pb.CancelPaymentRequest, context: Context
    ) -> pb.CancelPaymentResponse:
        await abort_unimplemented(context, "CancelPayment")

    async def VerifyPayment(
        self, request: pb.VerifyPaymentRequest, context: Context
    ) -> pb.VerifyPaymentResponse:
        await abort_unimplemented(context, "VerifyPayment")

    async def WatchPayment(self, request: pb.WatchPaymentRequest, context: Context) -> None:
        # A server-streaming handler may be a coroutine; this one only ends the stream.
        await abort_unimplemented(context, "WatchPayment")

    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: Context
    ) -> pb.GetBalanceResponse:
        await abort_unimplemented(context, "GetBalance")


class CallbackServicer(callbacks_pb2_grpc.CallbackServiceServicer):
    async def ReportResult(
        self, request: callbacks_pb2.ReportResultRequest, context: Context
    ) -> callbacks_pb2.ReportResultResponse:
        await abort_unimplemented(context, "ReportResult")
