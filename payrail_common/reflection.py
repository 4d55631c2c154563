"""gRPC server reflection, both versions: ``grpc.reflection.v1`` and ``v1alpha``.

Current clients (grpcurl >= 1.8.8, grpcui, Postman, buf curl, the Go and Java reflection
clients) ask ``grpc.reflection.v1.ServerReflection`` first and older ones only know
``v1alpha``; grpcio-reflection ships only v1alpha. The two versions are the same
protocol under two package names (v1 is v1alpha promoted unchanged, field for field),
so the v1 service here is the library's own servicer behind a second method path,
speaking the wire-identical v1alpha messages. v1's file descriptor is registered in the
descriptor pool too (built from v1alpha's by renaming the package), so a client can
describe the v1 service itself, not only list it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2 as wire

__all__ = ["V1ALPHA_SERVICE_NAME", "V1_SERVICE_NAME", "enable_reflection"]

V1ALPHA_SERVICE_NAME: str = v1alpha.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
_V1_PACKAGE = "grpc.reflection.v1"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _renamed(type_name: str) -> str:
    prefix = f".{_V1ALPHA_PACKAGE}."
    if not type_name.startswith(prefix):
        return type_name
    return f".{_V1_PACKAGE}.{type_name[len(prefix) :]}"


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """v1's reflection.proto: v1alpha's, with the package (and type references) renamed."""
    proto = descriptor_pb2.FileDescriptorProto()
    wire.DESCRIPTOR.CopyToProto(proto)
    proto.name = _V1_FILE
    proto.package = _V1_PACKAGE
    proto.ClearField("options")
    for message in proto.message_type:
        for fld in message.field:
            if fld.type_name:
                fld.type_name = _renamed(fld.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = _renamed(method.input_type)
            method.output_type = _renamed(method.output_type)
    return proto


def _register_v1(pool: Any) -> None:
    """Add v1's descriptor to ``pool`` once per process."""
    try:
        pool.FindServiceByName(V1_SERVICE_NAME)
    except KeyError:
        pool.AddSerializedFile(_v1_file().SerializeToString())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection v1 and v1alpha on ``server``, listing ``service_names`` and both
    reflection services."""
    pool = descriptor_pool.Default()
    _register_v1(pool)
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    v1alpha.enable_server_reflection(names, server)
    servicer = v1alpha.aio.ReflectionServicer(names, pool=pool)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=wire.ServerReflectionRequest.FromString,
        response_serializer=wire.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": handler}),)
    )
