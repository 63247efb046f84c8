"""Endpoint records ahead of their windows: applications derive what they keep of a
reference when the record arrives (`prepare`), exactly what their first window then asks
for, and the application actor keeps a record it has in that version as it is."""

from typing import Any

import numpy as np
import pytest

from modelmon_daemon.actors.application import ApplicationActor
from modelmon_daemon.analytics.multivariate import fit_pca
from modelmon_daemon.analytics.stats import reference_feature_stats
from modelmon_daemon.applications import BUILTIN_APPLICATIONS
from modelmon_daemon.applications.base import MonitoringContext
from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE
from modelmon_daemon.config import Settings
from modelmon_daemon.core.records import EndpointSpec, WindowMeta, pack, unpack, unpack_outputs
from tests.helpers import make_batch

PREPARED = sorted(name for name, cls in BUILTIN_APPLICATIONS.items() if hasattr(cls, "prepare"))


def record(uid: str = "ep", seed: int = 0) -> dict[str, Any]:
    """An endpoint record as an application actor holds it (unpacked from its bytes):
    two features of 20 bins and one of 10 (two groups binned apart), a PCA model."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(2000, 3))
    stats = {
        **reference_feature_stats(reference[:, :2], ["x0", "x1"]),
        **reference_feature_stats(reference[:, 2:], ["x2"], bins=10),
    }
    spec = EndpointSpec(
        uid=uid,
        project="proj",
        name=uid,
        feature_names=["x0", "x1", "x2"],
        label_names=["output"],
        feature_stats=stats,
        multivariate=fit_pca(reference) or {},
    )
    return dict(unpack(pack(spec.to_dict())))


def window(name: str, endpoint: dict[str, Any]) -> MonitoringContext:
    rng = np.random.default_rng(7)
    batch = make_batch(np.arange(500.0) / 10.0, rng.normal(0.3, 1.0, size=(500, 3)))
    return MonitoringContext(name, endpoint, 0.0, 60.0, batch)


def derived_from(endpoint: dict[str, Any]) -> int:
    return REFERENCE_CACHE.discard(*endpoint.values())


def test_the_built_in_applications_with_reference_arrays_prepare_them():
    assert PREPARED == [
        "data-quality",
        "drift-metrics",
        "histogram-data-drift",
        "multivariate-drift",
    ]


@pytest.mark.parametrize("name", PREPARED)
def test_prepare_builds_exactly_what_the_first_window_asks_for(name):
    app = BUILTIN_APPLICATIONS[name]()
    cold, warm = record(), record()  # equal records, separate objects
    before = len(REFERENCE_CACHE)
    expected = app.do_tracking(window(name, cold))
    built_by_window = len(REFERENCE_CACHE) - before
    assert built_by_window > 0  # without prepare, the window derives them
    app.prepare(warm)
    prepared = len(REFERENCE_CACHE)
    assert prepared - before == 2 * built_by_window
    outputs = app.do_tracking(window(name, warm))
    assert len(REFERENCE_CACHE) == prepared  # nothing more built for the window
    assert [(o.name, o.value, o.extra_data) for o in outputs] == [
        (o.name, o.value, o.extra_data) for o in expected
    ]
    assert derived_from(cold) == derived_from(warm) == built_by_window


def test_the_actor_prepares_a_record_once_per_version_and_runs_its_window_on_it():
    actor = ApplicationActor(0, Settings().to_dict())
    first = pack(record("e0", seed=1))
    before = len(REFERENCE_CACHE)
    assert actor.prepare({"e0": ("v1", first)}) == 1
    held = actor.spec_cache["e0"][1]
    derived = len(REFERENCE_CACHE) - before
    assert derived >= 4  # bins (two groups), the measures' side, bounds, PCA arrays
    # the same version again (sent with a window, or delivered twice): kept as it is
    assert actor.prepare({"e0": ("v1", first)}) == 0
    assert actor.spec_cache["e0"][1] is held and len(REFERENCE_CACHE) - before == derived
    batch = window("any", held).batch
    jobs = [(0, "e0", "v1", WindowMeta("e0", 0.0, 60.0, [1], len(batch)))]
    packed, missing = actor.run_many([batch], jobs, {})
    out = unpack_outputs(packed)
    assert missing == [] and out[0] is not None
    assert not [failure for _, _, failure, _ in out[0] if failure]
    assert len(REFERENCE_CACHE) - before == derived  # the window derived nothing
    # a new version replaces the record and what came of it
    assert actor.prepare({"e0": ("v2", pack(record("e0", seed=2)))}) == 1
    assert REFERENCE_CACHE.discard(*held.values()) == 0
    assert len(REFERENCE_CACHE) - before == derived
    derived_from(actor.spec_cache["e0"][1])


def test_an_application_whose_prepare_fails_still_runs_at_the_window(caplog):
    actor = ApplicationActor(0, Settings().to_dict())

    class Broken:
        def prepare(self, endpoint: dict[str, Any]) -> None:
            raise RuntimeError("no reference for me")

        def do_tracking(self, context: MonitoringContext) -> list[Any]:
            return []

    actor.apps["broken"] = Broken()
    assert actor.prepare({"e1": ("v1", pack(record("e1")))}) == 1
    assert "no reference for me" in caplog.text
    held = actor.spec_cache["e1"][1]
    batch = window("any", held).batch
    packed, missing = actor.run_many(
        [batch], [(0, "e1", "v1", WindowMeta("e1", 0.0, 60.0, [1], len(batch)))], {}
    )
    out = unpack_outputs(packed)
    assert missing == [] and out[0] is not None and len(out[0]) == len(actor.apps)
    derived_from(held)
