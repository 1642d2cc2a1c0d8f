"""Regenerate the committed gRPC modules from proto/: `.venv/bin/python scripts/protos.py`.

protoc (from grpcio-tools, pinned in requirements-dev.txt) writes the messages
(``stats_pb2.py``), the client and server stubs (``stats_pb2_grpc.py``) and, through
mypy-protobuf, their typed ``.pyi``. They are generated for the proto path
``hitstream/v1/stats.proto`` (the name clients and reflection see) and placed in the package
``hitstream.rpc.v1``, so their few import lines are moved there. ``--check`` regenerates into
a temporary folder and fails if a committed file differs (tests/unit/test_rpc_setup.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTOS = ("hitstream/v1/stats.proto",)
TARGET = ROOT / "src" / "hitstream" / "rpc" / "v1"
MOVES = (
    ("from hitstream.v1 import ", "from hitstream.rpc.v1 import "),
    ("hitstream.v1.stats_pb2", "hitstream.rpc.v1.stats_pb2"),
)
"""The generated module's own package, not the proto package (method names keep that)."""


def _plugin(name: str) -> str:
    found = Path(sys.executable).parent / name
    if found.exists():
        return str(found)
    located = shutil.which(name)
    if located is None:
        raise SystemExit(f"{name} not found: install the dev requirements (mypy-protobuf)")
    return located


def generate(out: Path) -> dict[str, str]:
    """Generate every module into ``out``; their names and text, imports moved."""
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *PROTOS,
    ]
    subprocess.run(command, check=True, cwd=ROOT)
    files: dict[str, str] = {}
    for path in sorted((out / "hitstream" / "v1").iterdir()):
        text = path.read_text(encoding="utf-8")
        for old, new in MOVES:
            text = text.replace(old, new)
        files[path.name] = text
    return files


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
    if "--check" in argv:
        stale = [
            name
            for name, text in files.items()
            if not (TARGET / name).exists() or (TARGET / name).read_text(encoding="utf-8") != text
        ]
        if stale:
            print(f"stale generated modules: {', '.join(stale)}; run scripts/protos.py")
            return 1
        return 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (TARGET / name).write_text(text, encoding="utf-8")
        print(f"wrote {(TARGET / name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
