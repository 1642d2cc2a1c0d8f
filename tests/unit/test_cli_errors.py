"""A setting or a file that cannot work is said in one line on stderr, with the variable's
name, before anything starts: no traceback (two new users read 50-150 lines of one to find
the message at the bottom, and ``serve`` had already spawned its processor)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokers import free_port

RULE = '[{"name":"x","metric":"pageviews","op":"=","threshold":1,"window_s":60}]'


@pytest.mark.parametrize(
    ("args", "env", "code", "said"),
    [
        (["serve"], {"HITSTREAM_ALERT_RULES": RULE}, 2, "HITSTREAM_ALERT_RULES: rules[0].op"),
        (["serve"], {"HITSTREAM_SITES": "[{bad"}, 2, "HITSTREAM_SITES: not JSON"),
        (["collector"], {"HITSTREAM_LOG_URL": "foo://x"}, 2, "unknown event log URL scheme"),
        (["processor"], {"HITSTREAM_BATCH_MAX_EVENTS": "-5"}, 2, "HITSTREAM_BATCH_MAX_EVENTS:"),
        (["collector"], {"HITSTREAM_KAFKA_EXTRA": "{notjson"}, 2, "HITSTREAM_KAFKA_EXTRA:"),
        (
            ["users", "add", "x@y.z", "--role", "viewer", "--password-file", "/nonexistent"],
            {},
            1,
            "No such file or directory: /nonexistent",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, args: list[str], env: dict[str, str], code: int, said: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hitstream.cli", *args, "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "HITSTREAM_PORT": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], done.stderr


@pytest.mark.parametrize(
    "env",
    [
        {"HITSTREAM_KAFKA_EXTRA": '{"no.such.setting": 1}'},
        {"HITSTREAM_KAFKA_SASL_MECHANISM": "FOO"},
    ],
)
def test_kafka_settings_it_refuses_end_start_up_in_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """librdkafka checks its settings when the client is made, after the port opened: a
    setting it refuses ended in a 20-line traceback and exit code 3; it is a setting (2)."""
    done = subprocess.run(
        [sys.executable, "-m", "hitstream.cli", "collector", "--data-dir", str(tmp_path / "d")],
        env={
            **os.environ,
            "HITSTREAM_PORT": str(free_port()),
            "HITSTREAM_LOG_URL": "kafka://127.0.0.1:9/hitstream.events",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: HITSTREAM_KAFKA_EXTRA / HITSTREAM_KAFKA_SASL_*: Kafka refused")
