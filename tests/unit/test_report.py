"""The HTML report is built from stored values that came over the network (names of
endpoints and features): none of them can break it or inject markup."""

import re

from modelmon_daemon.cli.report import build_report

EDGES = [-1e308, 0.0, 1.0, 2.0, 1e308]


def test_hostile_names_neither_break_the_report_nor_inject_markup():
    names = ["$$", "$\\frac{$", "<script>alert(1)</script>"]
    stats = {name: {"hist": [[1, 2, 3, 0], EDGES]} for name in names}
    record = {
        "uid": "u<1>",
        "name": "<b>n</b>",
        "project": "p&q",
        "feature_stats": stats,
        "current_stats": {names[0]: {"hist": [[0, 1, 1, 0], EDGES]}},
    }
    results = [
        {
            "application": "histogram-data-drift",
            "name": "general_drift",
            "type": "result",
            "value": 0.8,
            "status": 2,
            "start": "2026-11-30T10:00:00Z",
        }
    ]
    page = build_report(record, results)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>n</b>" not in page and "&lt;b&gt;n&lt;/b&gt;" in page
    assert len(re.findall(r'<img alt="feature:', page)) == len(names)
