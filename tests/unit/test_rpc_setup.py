"""The gRPC service's setup: the committed modules are what the .proto gives, the ``grpc``
role builds only what it needs, and without the extra ``hitstream grpc`` says how to get it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hitstream import cli
from hitstream.bootstrap import build
from hitstream.web.app import create_app
from tests.unit.test_bootstrap import settings

ROOT = Path(__file__).parents[2]
GENERATED = ROOT / "src" / "hitstream" / "rpc" / "v1"


def test_the_committed_modules_are_what_the_proto_gives(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("protos", ROOT / "scripts" / "protos.py")
    assert spec is not None and spec.loader is not None
    protos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protos)
    generated: dict[str, str] = protos.generate(tmp_path)
    committed = {p.name for p in GENERATED.glob("stats_pb2*")}
    assert (
        set(generated)
        == committed
        == {
            "stats_pb2.py",
            "stats_pb2.pyi",
            "stats_pb2_grpc.py",
            "stats_pb2_grpc.pyi",
        }
    )
    for name, text in generated.items():
        assert (GENERATED / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run .venv/bin/python scripts/protos.py"
        )
    assert "from hitstream.rpc.v1 import stats_pb2" in generated["stats_pb2_grpc.py"]
    assert "'/hitstream.v1.Stats/UserEvents'" in generated["stats_pb2_grpc.py"]


def test_the_grpc_role_builds_the_stats_service_and_no_http_stats(tmp_path: Path) -> None:
    runtime = build(settings(tmp_path), frozenset({"grpc"}))
    assert runtime.stats is not None and runtime.gate is not None
    assert (runtime.collector, runtime.processor, runtime.live, runtime.accounts) == (
        None,
        None,
        None,
        None,
    )
    assert set(runtime.adapters()) == {"store", "cache"}  # no log, no fan-out
    assert runtime.services.stats is None  # its HTTP port serves health and metrics only
    paths = set(create_app(runtime.services).openapi()["paths"])
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    assert "/api/v1/stats/aggregate" not in paths


@pytest.mark.parametrize("command", [["grpc"], ["serve", "--grpc-port", "50999"]])
def test_without_the_extra_the_command_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    for name in list(sys.modules):
        if name.startswith(("hitstream.rpc", "grpc")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc raises ImportError
    result = CliRunner().invoke(cli.app, [*command, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "pip install 'hitstream[grpc]'" in result.output
    assert not (tmp_path / "control.sock").exists()  # refused before anything started


def test_json_clients_name_the_period_days_as_http_does() -> None:
    """grpcurl and other JSON clients send ``from``/``to``, as the HTTP query does."""
    from google.protobuf import json_format

    from hitstream.rpc.v1 import stats_pb2 as pb

    request = json_format.Parse(
        '{"site_id": "a.io", "period": "custom", "from": "2026-11-01", "to": "2026-11-30",'
        ' "metrics": ["visitors"]}',
        pb.AggregateRequest(),
    )
    assert (request.date_from, request.date_to, list(request.metrics)) == (
        "2026-11-01",
        "2026-11-30",
        ["visitors"],
    )
    assert json_format.MessageToDict(request)["from"] == "2026-11-01"
