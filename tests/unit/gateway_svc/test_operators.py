"""The edge's operator pieces that need no server: what an audit record says of a
request, and the health targets setting."""

from __future__ import annotations

import json

import pytest

from gateway_svc.api.operators import methods_of, request_json
from gateway_svc.config import Settings
from payrail.admin.v1 import admin_pb2
from payrail_common.config import ConfigError

SERVICE = admin_pb2.DESCRIPTOR.services_by_name["PaymentAdminService"]
UPDATE = methods_of([SERVICE])["/payrail.admin.v1.PaymentAdminService/UpdateGateway"]


def test_a_forwarded_request_is_recorded_as_json() -> None:
    request = admin_pb2.UpdateGatewayRequest(gateway_id="sandbox-soap", enabled=False)
    recorded = json.loads(request_json(UPDATE, request.SerializeToString()))
    # An explicitly set false is kept: "disabled" is the whole point of the action.
    assert recorded == {"gateway_id": "sandbox-soap", "enabled": False}


def test_a_served_request_is_recorded_as_json() -> None:
    request = admin_pb2.UpdateGatewayRequest(gateway_id="g", priority=5)
    assert json.loads(request_json(UPDATE, request)) == {"gateway_id": "g", "priority": 5}


def test_undecodable_bytes_are_still_recorded() -> None:
    assert json.loads(request_json(UPDATE, b"\xff\xff\xff")) == {"undecodable_bytes": 3}


def test_every_admin_method_is_known() -> None:
    names = {path.rsplit("/", 1)[-1] for path in methods_of([SERVICE])}
    assert names == {"SearchPayments", "GetPaymentStory", "ListGateways", "UpdateGateway"}


def test_health_targets() -> None:
    assert Settings.from_env({"PAYRAIL_HEALTH_TARGETS": "a=h:1, b=h:2"}).health_target_list() == [
        ("a", "h:1"),
        ("b", "h:2"),
    ]
    assert Settings.from_env({"PAYRAIL_HEALTH_TARGETS": "-"}).health_target_list() == []
    assert len(Settings().health_target_list()) == 6  # consumer, 4 sandboxes, console
    with pytest.raises(ConfigError, match="name=host:port"):
        Settings.from_env({"PAYRAIL_HEALTH_TARGETS": "nameless"}).health_target_list()
