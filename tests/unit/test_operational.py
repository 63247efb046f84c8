import numpy as np

from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.applications.base import MonitoringContext, Result
from modelmon_daemon.applications.operational_health import OperationalHealthApplication
from modelmon_daemon.config import Settings
from modelmon_daemon.core.enums import ResultStatus
from tests.helpers import make_batch, make_spec


def run(batch, **settings):
    ctx = MonitoringContext(
        "operational-health",
        {"uid": "e", "feature_names": ["x0", "x1"]},
        0.0,
        60.0,
        batch,
        settings,
    )
    return {o.name: o for o in OperationalHealthApplication().do_tracking(ctx)}


def test_error_rate_and_latency_against_thresholds():
    batch = make_batch(np.arange(10.0), np.zeros((10, 2)))
    batch.errors[:3] = "boom"
    batch.latency_us[:] = np.arange(10) * 1000.0
    out = run(
        batch,
        error_rate_potential=0.1,
        error_rate_detected=0.25,
        latency_potential_us=4000.0,
        latency_detected_us=9000.0,
    )
    assert out["error_rate"].value == 0.3 and out["error_rate"].status is ResultStatus.detected
    assert out["latency_avg"].value == 4500.0
    assert out["latency_avg"].status is ResultStatus.potential_detection
    assert out["predictions"].value == 10 and out["predictions_per_second"].value == 10 / 60
    assert isinstance(out["error_rate"], Result)


def test_thresholds_off_mean_irrelevant():
    out = run(make_batch([1.0], [[0, 0]]))
    assert out["latency_avg"].status is ResultStatus.irrelevant
    assert "no_traffic" not in out


def test_silence_gives_a_no_traffic_result_when_a_window_closes(tmp_path):
    s = Settings()
    s.daemon.data_dir = str(tmp_path)
    s.storage.lmdb_map_size = 64 * 1024**2
    s.windows.base_period = 60.0
    s.operational.no_traffic_after = 120.0
    writer = WriterActor(s.to_dict())
    spec = make_spec().to_dict()
    writer.store.put_endpoint(spec)
    writer.advance("ep1", 600.0, ["operational-health"], spec, silence=30.0)  # not silent long
    writer.advance("ep1", 660.0, ["operational-health"], spec, silence=130.0)
    rows = writer.parquet.read_results("ep1")
    assert [(r["name"], r["status"], r["start"]) for r in rows] == [
        ("no_traffic", 2, "1970-01-01T00:10:00Z")
    ]
    assert writer.store.get_state("ep1")["closed_through"] == 660.0
