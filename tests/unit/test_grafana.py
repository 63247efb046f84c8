"""The Grafana dashboards are valid and only query metrics the daemon exports."""

import json
import re
from pathlib import Path

import pytest
import yaml

from modelmon_daemon.server.prometheus import metric_names

GRAFANA = Path(__file__).resolve().parents[2] / "config" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b(modelmon_[a-z0-9_]+)")


def test_three_dashboards_and_provisioning_exist():
    assert {p.stem for p in DASHBOARDS} == {
        "fleet-overview",
        "endpoint-details",
        "operational-performance",
    }
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "modelmon.yaml").read_text()
    )
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "modelmon.yaml").read_text()
    )
    assert sources["datasources"][0]["type"] == "prometheus"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure_and_queries(path):
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    exported = metric_names()
    histogram_series = {f"{n}_{s}" for n in exported for s in ("bucket", "sum", "count")}
    variables = {v["name"] for v in board["templating"]["list"]}
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "stat", "table"}
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
            for var in re.findall(r"\$(\w+)", expr):
                assert var in variables, (panel["title"], var)
            names = METRIC.findall(expr)
            assert names, expr
            for name in names:
                assert name in exported or name in histogram_series, (panel["title"], name)
