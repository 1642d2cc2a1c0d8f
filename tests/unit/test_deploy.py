"""deploy/ stays true to the code: compose and Kubernetes wiring, the image, the Prometheus
rules and the Grafana dashboard name only roles, settings and metrics that hitstream has.

PromQL is checked by ``promtool`` when it is on PATH (Debian: ``apt-get install -y
--no-install-recommends prometheus``); schema checks run when ``check-jsonschema`` and
``kubernetes-validate`` are on PATH. Without them those tests skip and say so.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SRC = ROOT / "src" / "hitstream"
K8S = DEPLOY / "kubernetes"
PROMTOOL = shutil.which("promtool")


def venv_tool(name: str) -> str | None:
    """A console script of this environment (dev extras), on PATH or beside the interpreter."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


CHECK_JSONSCHEMA = venv_tool("check-jsonschema")
KUBERNETES_VALIDATE = venv_tool("kubernetes-validate")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH (Debian: apt-get install -y --no-install-recommends prometheus)",
)

# The URLs each role reads (see bootstrap.Runtime.adapters and the README's Scale-out).
NEEDS = {
    "collector": {"LOG_URL", "SALTS_URL"},
    "processor": {"LOG_URL", "STORE_URL", "FANOUT_URL"},
    "web": {"STORE_URL", "FANOUT_URL", "CACHE_URL"},
}
EMBEDDED = {"", "sqlite", "duckdb", "memory", "file"}  # one process only: no scale-out
PROMETHEUS_BUILTINS: dict[str, set[str]] = {"up": set()}
GRAFANA_MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- metric names and labels, parsed from the source -------------------------------------------


def source_metrics() -> dict[str, set[str]]:
    """Every series name hitstream exposes -> its label names (from Counter(...) etc. calls)."""
    series: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            first = node.args[0]
            if kind not in ("Counter", "Gauge", "Histogram", "Summary"):
                continue
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            names = node.args[2] if len(node.args) > 2 else None
            names = names or next((k.value for k in node.keywords if k.arg == "labelnames"), None)
            labels = {
                e.value
                for e in getattr(names, "elts", [])
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
            name = first.value
            if kind == "Counter":
                base = name.removesuffix("_total")
                series |= {f"{base}_total": labels, f"{base}_created": labels}
            elif kind == "Gauge":
                series[name] = labels
            else:
                series |= {f"{name}_{s}": labels for s in ("count", "sum", "created")}
                series[name if kind == "Summary" else f"{name}_bucket"] = labels | {"le"}
    return series


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression uses; enough PromQL for our own files."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    labels: set[str] = set()
    for block in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
    for group in re.findall(grouping, text):
        labels |= {part.strip() for part in group.split(",") if part.strip()}
    text = re.sub(grouping, " ", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    keywords = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
    metrics = {
        m.group(0)
        for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text)
        if m.group(0).lower() not in keywords and not text[m.end() :].lstrip().startswith("(")
    }
    return metrics, labels


def scrape_labels() -> set[str]:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    labels = {"job", "instance", "__name__"}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            labels |= set(static.get("labels", {}))
    return labels


def check_names(expr: str, known: dict[str, set[str]]) -> list[str]:
    metrics, labels = promql_names(expr)
    problems = [f"unknown metric {m!r}" for m in sorted(metrics - set(known))]
    allowed = scrape_labels().union(*(known.get(m, set()) for m in metrics))
    problems += [f"label {lab!r} is on none of {sorted(metrics)}" for lab in labels - allowed]
    return problems


def test_promql_names_reads_metrics_and_labels() -> None:
    metrics, labels = promql_names(
        'sum by (le, kind) (rate(a_bucket{x="1}", y=~"b"}[5m])) / ignoring(z) b'
        " or vector(0) and on() histogram_quantile(0.9, c:d:rate5m)"
    )
    assert metrics == {"a_bucket", "b", "c:d:rate5m"}
    assert labels == {"le", "kind", "x", "y", "z"}


def test_source_metrics_include_labels_and_histogram_series() -> None:
    series = source_metrics()
    assert series["hitstream_events_rejected_total"] == {"field", "reason"}
    assert series["hitstream_query_seconds_bucket"] == {"kind", "cache", "le"}
    assert "hitstream_live_latency_seconds_count" in series


# --- Prometheus rules -----------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    groups = load_yaml(DEPLOY / "prometheus" / "rules.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_name_only_existing_metrics_and_labels() -> None:
    recorded = {r["record"]: promql_names(r["expr"])[1] - {"le"} for r in rules() if "record" in r}
    known = source_metrics() | PROMETHEUS_BUILTINS | recorded
    problems = {r.get("alert") or r["record"]: check_names(r["expr"], known) for r in rules()}
    assert {name: p for name, p in problems.items() if p} == {}


def test_rules_are_named_and_documented() -> None:
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:hitstream_[a-z_]+:[a-z0-9_]+", rule["record"]), rule
        else:
            assert rule["alert"].startswith("Hitstream"), rule
            assert rule["labels"]["severity"] in ("warning", "critical"), rule
            assert {"summary", "description"} <= set(rule["annotations"]), rule


def test_every_alert_has_a_promtool_test() -> None:
    cases = load_yaml(DEPLOY / "prometheus" / "rules_test.yml")["tests"]
    fired = {
        case["alertname"]
        for test in cases
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert {r["alert"] for r in rules() if "alert" in r} == fired


def promtool(*args: str | Path) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_checks_config_and_rules() -> None:
    promtool("check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    promtool("check", "rules", DEPLOY / "prometheus" / "rules.yml")


@needs_promtool
def test_promtool_unit_tests_of_alerts_pass() -> None:
    promtool("test", "rules", DEPLOY / "prometheus" / "rules_test.yml")


# --- Grafana ----------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/hitstream.json").read_text())
    return data


def dashboard_exprs() -> list[tuple[str, str]]:
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for macro, value in GRAFANA_MACROS.items():
                expr = expr.replace(macro, value)
            found.append((panel["title"], expr))
    return found


def test_dashboard_panels_are_well_formed() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    assert dashboard()["templating"]["list"][0]["name"] == "datasource"


def test_dashboard_names_only_existing_metrics_and_labels() -> None:
    known = source_metrics() | PROMETHEUS_BUILTINS  # no recording rules: works without them
    problems = {f"{title}: {expr}": check_names(expr, known) for title, expr in dashboard_exprs()}
    assert {k: p for k, p in problems.items() if p} == {}
    assert not [expr for _, expr in dashboard_exprs() if "$" in expr]


def test_dashboard_shows_every_core_series() -> None:
    used = set().union(*(promql_names(expr)[0] for _, expr in dashboard_exprs()))
    bases = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used}
    for module in ("metrics.py", "services/live_client.py"):
        declared = re.findall(
            r'(?:Counter|Gauge|Histogram)\(\s*"(\w+)"', (SRC / module).read_text()
        )
        missing = {n for n in declared if n.removesuffix("_total") not in bases}
        assert not missing, f"{module}: no dashboard panel shows {sorted(missing)}"


@needs_promtool
def test_dashboard_promql_parses(tmp_path: Path) -> None:
    records = [
        {"record": f"dashboard:expr:{i}", "expr": e} for i, (_, e) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    promtool("check", "rules", path)


def test_grafana_provisioning_matches_compose() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")["services"]
    mounts = dict(v.split(":")[:2] for v in compose["grafana"]["volumes"] if v.startswith("./"))
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/hitstream.yaml")["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    source = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")
    url = urlsplit(source["datasources"][0]["url"])
    assert url.hostname in compose and url.port == 9090
    assert source["datasources"][0]["type"] == "prometheus"


# --- compose ----------------------------------------------------------------------------------


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(DEPLOY / "compose.yaml")["services"]
    return services


def hitstream_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_services().items() if s["image"].startswith("hitstream:")}


def url_hosts(url: str) -> set[str]:
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    return {part.rsplit(":", 1)[0] for part in netloc.split(",") if part}


def test_compose_runs_every_role_scaled_out() -> None:
    roles = [s["command"][0] for s in hitstream_services().values()]
    assert roles.count("collector") >= 2 and roles.count("processor") >= 2
    assert 1 <= roles.count("web") <= 2


def test_compose_wires_each_role_to_shared_services_it_waits_for() -> None:
    services = compose_services()
    for name, service in hitstream_services().items():
        env, role = service["environment"], service["command"][0]
        waits = service.get("depends_on", {})
        for need in NEEDS[role]:
            url = env.get(f"HITSTREAM_{need}", "")
            assert urlsplit(url).scheme not in EMBEDDED, f"{name}: {need}={url!r}"
            for host in url_hosts(url):
                assert host in services, f"{name}: {need} names unknown host {host}"
                assert waits.get(host, {}).get("condition") == "service_healthy", (name, host)


def test_compose_store_url_matches_postgres() -> None:
    pg = compose_services()["postgres"]["environment"]
    for name, service in hitstream_services().items():
        url = urlsplit(service["environment"]["HITSTREAM_STORE_URL"])
        assert url.username == pg["POSTGRES_USER"], name
        assert url.password == pg["POSTGRES_PASSWORD"], name
        assert url.path.lstrip("/") == pg["POSTGRES_DB"], name


def test_compose_references_resolve() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} undeclared"
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_prometheus_scrapes_every_hitstream_process() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    scraped: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                scraped[target] = static.get("labels", {}).get("role", "")
    expected = {
        f"{name}:{s['environment']['HITSTREAM_PORT']}": s["command"][0]
        for name, s in hitstream_services().items()
    }
    assert {t: r for t, r in scraped.items() if r} == expected


@pytest.mark.skipif(CHECK_JSONSCHEMA is None, reason="check-jsonschema not installed")
def test_compose_matches_compose_spec_schema() -> None:
    command = [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run([*command, str(DEPLOY / "compose.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --- Kubernetes --------------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    files = sorted(set(K8S.glob("*.yaml")) - {K8S / "kustomization.yaml"})
    return [doc for path in files for doc in load_all(path)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    listed = set(load_yaml(K8S / "kustomization.yaml")["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present


def test_deployments_have_probes_resources_and_known_config() -> None:
    config = {doc["metadata"]["name"]: doc for doc in of_kind("ConfigMap") + of_kind("Secret")}
    roles = set()
    for deployment in of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["terminationGracePeriodSeconds"] >= 30
        (container,) = pod["containers"]
        roles.add(container["args"][0])
        ports = {p["name"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in ports, probe
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, bound
        for source in container["envFrom"]:
            ref = source.get("configMapRef") or source["secretRef"]
            assert ref["name"] in config, ref
    assert roles == set(NEEDS)


def test_config_gives_every_role_shared_urls() -> None:
    env: dict[str, str] = {}
    for doc in of_kind("ConfigMap") + of_kind("Secret"):
        env |= doc.get("data", {}) | doc.get("stringData", {})
    for role, needs in NEEDS.items():
        for need in needs:
            url = env[f"HITSTREAM_{need}"]
            assert urlsplit(url).scheme not in EMBEDDED, (role, need, url)
    (processor,) = [d for d in of_kind("Deployment") if d["metadata"]["name"].endswith("processor")]
    assert processor["spec"]["replicas"] <= int(env["HITSTREAM_KAFKA_PARTITIONS"])


def pods_selected(selector: dict[str, str]) -> list[dict[str, Any]]:
    return [
        d
        for d in of_kind("Deployment")
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]


def test_services_hpa_and_budgets_point_at_deployments() -> None:
    for service in of_kind("Service"):
        (target,) = pods_selected(service["spec"]["selector"])
        ports = {p["name"] for p in target["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    collector = next(
        d for d in of_kind("Deployment") if d["metadata"]["name"] == "hitstream-collector"
    )
    assert hpa["spec"]["scaleTargetRef"]["name"] == collector["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2 and "replicas" not in collector["spec"]
    budgeted = {
        pods_selected(pdb["spec"]["selector"]["matchLabels"])[0]["metadata"]["name"]
        for pdb in of_kind("PodDisruptionBudget")
    }
    assert "hitstream-processor" in budgeted


@pytest.mark.skipif(KUBERNETES_VALIDATE is None, reason="kubernetes-validate not installed")
def test_manifests_match_kubernetes_schemas() -> None:
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    done = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", *files], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- image ------------------------------------------------------------------------------------


def dockerfile() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_dockerfile_is_slim_non_root_hash_pinned_and_healthchecked() -> None:
    lines = dockerfile()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines
    assert 'ENTRYPOINT ["hitstream"]' in lines
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user.split(":")[0] not in ("0", "root")
    (check,) = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert "/healthz" in check
    installs = [line for line in lines if re.search(r"pip install .*\s-r\s", line)]
    assert installs and all("--require-hashes" in line for line in installs)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for line in lines:
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert f"!{source.rstrip('/')}" in {i.rstrip("/") for i in ignore}, source


def pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9._-]+)==([^\s;]+)", path.read_text(), re.M))


def test_production_requirements_are_pinned_like_the_tested_ones() -> None:
    prod_path = DEPLOY / "requirements-prod.txt"
    prod, dev, runtime = (
        pins(prod_path),
        pins(ROOT / "requirements-dev.txt"),
        pins(ROOT / "requirements.txt"),
    )
    assert {"confluent-kafka", "psycopg", "redis"} <= set(prod)
    assert {k: v for k, v in prod.items() if dev.get(k) != v} == {}
    assert set(runtime) <= set(prod)
    for path in (prod_path, DEPLOY / "requirements-build.txt"):
        text = path.read_text()
        assert "://" not in text and "--index-url" not in text and "--find-links" not in text
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        assert all("--hash=sha256:" in block for block in blocks if "==" in block), path
