"""The contracts as other languages and outside clients see them: the public buf module
holds only public services (PaymentOpsService lives in protos-internal/), and every file
names its Go package."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from google.protobuf import descriptor_pb2

from tests.conftest import ROOT

GO_MODULE = "github.com/payrail/payrail/generated/go"
PUBLIC_SERVICES = {
    "payrail.auth.v1.AuthService",
    "payrail.payments.v1.PaymentService",
    "payrail.callbacks.v1.CallbackService",
    "payrail.insights.v1.InsightsService",
}


def image(buf: str, tmp_path: Path, *module: str) -> descriptor_pb2.FileDescriptorSet:
    """The compiled files of ``module`` (all modules when none), without imports."""
    out = tmp_path / "image.binpb"
    result = subprocess.run(
        [buf, "build", *module, "--exclude-imports", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def services(files: descriptor_pb2.FileDescriptorSet) -> set[str]:
    return {f"{f.package}.{s.name}" for f in files.file for s in f.service}


def test_the_public_module_holds_no_internal_service(buf: str, tmp_path: Path) -> None:
    public = image(buf, tmp_path, "protos")
    assert services(public) >= PUBLIC_SERVICES
    assert not any(name.endswith(".PaymentOpsService") for name in services(public))
    assert not any(f.package.startswith("payrail.internal.") for f in public.file)


def test_the_internal_module_holds_payment_ops(buf: str, tmp_path: Path) -> None:
    internal = image(buf, tmp_path, "protos-internal")
    assert services(internal) == {"payrail.internal.v1.PaymentOpsService"}


def test_every_file_names_its_go_package(buf: str, tmp_path: Path) -> None:
    """``<module>/<proto dir>;<area><version>``, the layout protoc-gen-go writes."""
    files = image(buf, tmp_path).file
    assert files
    for f in files:
        directory = f.name.rpartition("/")[0]
        area, version = f.package.split(".")[-2:]
        assert f.options.go_package == f"{GO_MODULE}/{directory};{area}{version}", f.name
        assert re.fullmatch(r"[a-z][a-z0-9]*", f"{area}{version}"), f.name
