"""dashboards/grafana/*.json: Grafana structure in the style of Ray's generated dashboards, and
every metric a query uses exists: sslsep's own (parsed from the source that defines them, so
a rename fails here) under the names Ray exports them as, and Ray's (named in the installed
Ray's own dashboards)."""

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import ray.dashboard.modules.metrics.dashboards as ray_dashboards

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "dashboards" / "grafana").glob("*.json"))
# Labels Ray attaches to every custom metric (seen on a Ray 2.60 metrics endpoint), plus the
# ones Prometheus / KubeRay add at scrape time.
RAY_LABELS = {"Component", "NodeAddress", "SessionName", "Version", "WorkerId", "instance", "job",
              "ray_io_cluster"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__range_s"}
METRIC_CLASSES = {"Counter", "Gauge", "Histogram"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> list[dict]:
    """Every panel, rows included, and the panels nested in collapsed rows."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def sslsep_metrics() -> dict[str, tuple[str, set[str]]]:
    """{name: (Counter|Gauge|Histogram, tag keys)} for every ray.util.metrics metric that
    sslsep's source creates: literal names, and names taken from a module-level dict of
    `sslsep_*` keys (how sslsep.session declares its training gauges)."""
    found = {}
    for path in (ROOT / "sslsep").rglob("*.py"):
        tree = ast.parse(path.read_text())
        name_tables = [[k.value for k in node.value.keys]
                       for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                       and node.value.keys and all(isinstance(k, ast.Constant) and str(k.value).startswith("sslsep_")
                                                   for k in node.value.keys)]
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or not call.args:
                continue
            kind = getattr(call.func, "attr", getattr(call.func, "id", None))
            if kind not in METRIC_CLASSES:
                continue
            tags = set()
            for kw in call.keywords:
                if kw.arg == "tag_keys":
                    tags = {e.value for e in kw.value.elts}
            first = call.args[0]
            names = [first.value] if isinstance(first, ast.Constant) else [n for t in name_tables for n in t]
            for name in names:
                found[name] = (kind, tags)
    return found


def exported(name: str, kind: str) -> set[str]:
    """The Prometheus series Ray exports for a ray.util.metrics metric: prefix `ray_`; counters
    end in `_total` (not doubled); histograms as _bucket/_sum/_count."""
    base = f"ray_{name}"
    if kind == "Counter":
        return {base if base.endswith("_total") else base + "_total"}
    if kind == "Histogram":
        return {base + s for s in ("_bucket", "_sum", "_count")}
    return {base}


DEFINED = sslsep_metrics()
EXPORTED = {series: name for name, (kind, _) in DEFINED.items() for series in exported(name, kind)}


def test_sources_define_the_metrics_the_dashboards_are_about():
    """The parser finds the service's and the training loops' metrics (guards the parser itself)."""
    assert {"sslsep_views_total", "sslsep_clips_total", "sslsep_separator_latency_s",
            "sslsep_augmenter_idle_s"} <= DEFINED.keys()
    assert {"sslsep_train_steps_per_s", "sslsep_train_samples_per_s", "sslsep_train_data_wait_share",
            "sslsep_train_loss"} <= DEFINED.keys()
    assert "run" in DEFINED["sslsep_train_loss"][1]


def test_dashboards_exist_with_unique_uids():
    assert DASHBOARDS
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_structure(path):
    d = load(path)
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert variables["SessionName"]["type"] == "query"
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    graphs = [p for p in panels(d) if p["type"] != "row"]
    assert graphs
    for p in graphs:
        assert p["datasource"] == "${datasource}", p["title"]
        assert p["title"] and p["description"], p["id"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            # Ray's convention: every query is scoped to the selected session(s).
            assert 'SessionName=~"$SessionName"' in t["expr"], (p["title"], t["expr"])
    for expr in exprs(d):
        used = set(re.findall(r"\$(\w+)", expr)) - GRAFANA_BUILTINS
        assert used <= variables.keys(), f"{expr}: undefined variables {used - variables.keys()}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_sslsep_metrics_exist_under_their_exported_names(path):
    for expr in exprs(load(path)):
        for series in re.findall(r"\bray_sslsep_\w+", expr):
            assert series in EXPORTED, (f"{path.name}: {series} is not exported by any metric in sslsep/ "
                                        f"(known: {sorted(EXPORTED)})")
        assert not re.search(r"(?<!ray_)\bsslsep_\w+\{", expr), f"missing ray_ prefix: {expr}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_sslsep_queries_use_only_existing_labels(path):
    """Matchers and by(...) on sslsep metrics name labels the metric really has."""
    for expr in exprs(load(path)):
        series = set(re.findall(r"\bray_sslsep_\w+", expr))
        if not series:
            continue
        allowed = set(RAY_LABELS)
        for s in series:
            kind, tags = DEFINED[EXPORTED[s]]
            allowed |= tags | ({"le"} if kind == "Histogram" else set())
        labels = set(re.findall(r"(\w+)\s*=~?\s*\"", expr))
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            labels |= {g.strip() for g in group.split(",") if g.strip()}
        assert labels <= allowed, f"{expr}: unknown labels {labels - allowed}"


def test_every_sslsep_metric_has_a_panel():
    used = {EXPORTED[s] for p in DASHBOARDS for e in exprs(load(p)) for s in re.findall(r"\bray_sslsep_\w+", e)}
    assert used == set(DEFINED), f"metrics without a panel: {sorted(set(DEFINED) - used)}"


def test_ray_metrics_are_named_as_in_the_installed_rays_dashboards():
    """ray_data_* / ray_node_* names appear in the installed Ray's own panel definitions (or, for
    Ray Data's iterator gauges, in Ray Data's metric definitions): a Ray upgrade that renames
    one fails here."""
    ray_pkg = Path(ray_dashboards.__file__).parents[4]
    known = "".join(p.read_text() for p in Path(ray_dashboards.__file__).parent.glob("*_panels.py"))
    known += (ray_pkg / "data" / "_internal" / "stats.py").read_text().replace('"data_', '"ray_data_')
    names = {n for p in DASHBOARDS for e in exprs(load(p)) for n in re.findall(r"\bray_(?:data|node)_\w+", e)}
    assert names
    missing = {n for n in names if not re.search(rf"\b{n}\b", known)}
    assert not missing, f"not defined by the installed Ray: {sorted(missing)}"


def test_queries_are_balanced():
    for path in DASHBOARDS:
        for expr in exprs(load(path)):
            for open_, close in ("()", "{}", "[]"):
                assert expr.count(open_) == expr.count(close), expr
            assert expr.count('"') % 2 == 0, expr


def test_queries_parse_as_promql(tmp_path):
    """Prometheus' own parser (promtool) accepts every query once Grafana's variables are filled."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    rules = []
    for path in DASHBOARDS:
        for i, expr in enumerate(exprs(load(path))):
            filled = expr.replace("$__rate_interval", "1m")
            filled = re.sub(r"\$\w+", ".*", filled)
            rules.append({"record": f"check:{path.stem}:{i}", "expr": filled})
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))  # JSON is YAML
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
