"""CallbackService's batch form (ReportResults): protobuf <-> the use case only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_sdk.signing import SIGNATURE_HEADER
from payment_svc.api.errors import mapped_errors
from payment_svc.service.processing import Processing
from payment_svc.service.results import Disposition, ResultOutcome
from payrail.callbacks.v1 import callbacks_pb2
from payrail_common.authn import metadata_value

_DISPOSITIONS = {
    Disposition.APPLIED: callbacks_pb2.RESULT_DISPOSITION_APPLIED,
    Disposition.DUPLICATE: callbacks_pb2.RESULT_DISPOSITION_DUPLICATE,
    Disposition.NOT_FOUND: callbacks_pb2.RESULT_DISPOSITION_NOT_FOUND,
    Disposition.CONFLICT: callbacks_pb2.RESULT_DISPOSITION_CONFLICT,
}


def outcomes_to_pb(outcomes: Sequence[ResultOutcome]) -> callbacks_pb2.ReportResultsResponse:
    return callbacks_pb2.ReportResultsResponse(
        results=[
            callbacks_pb2.ReportedResult(
                event_id=o.result.event_id,
                payment_id=o.result.payment_id,
                disposition=_DISPOSITIONS[o.disposition],
                duplicate=o.disposition is Disposition.DUPLICATE,
                payment_status=o.conflict_status,
            )
            for o in outcomes
        ]
    )


async def report_results(
    processing: Processing, request: callbacks_pb2.ReportResultsRequest, context: Any
) -> callbacks_pb2.ReportResultsResponse:
    header = metadata_value(context, SIGNATURE_HEADER)
    async with mapped_errors(context):
        outcomes = await processing.report_results(
            request.gateway_id, request.payload, header, list(request.request_ids)
        )
    return outcomes_to_pb(outcomes)


__all__ = ["outcomes_to_pb", "report_results"]
