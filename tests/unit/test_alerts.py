import pytest

from modelmon_daemon.alerts.engine import evaluate, manual_reset, new_state
from modelmon_daemon.alerts.model import AlertEvent, events_from_results, parse_alert
from modelmon_daemon.alerts.templates import load_templates, render
from modelmon_daemon.core.errors import ApiError


def alert(**extra):
    body = {
        "name": "drift",
        "summary": "Drift!",
        "severity": "high",
        "entities": {"kind": "model-endpoint-result", "ids": ["*"]},
        "trigger": {"events": ["data-drift-detected"]},
        "criteria": {"count": 1, "period": "10m"},
        "reset_policy": "auto",
        "cooldown": "30m",
        "notifications": [{"kind": "webhook", "url": "http://127.0.0.1:1/hook", "secret": "s"}],
    }
    body.update(extra)
    return parse_alert(body, 0.0)


def event(
    kind="data-drift-detected",
    end=600.0,
    name="general_drift",
    application="histogram-data-drift",
    value=0.8,
    status=None,
):
    return AlertEvent(
        kind,
        f"ep.{application}.result.{name}",
        "ep",
        "proj",
        application,
        name,
        value,
        (2 if kind else 0) if status is None else status,
        end - 600.0,
        end,
    )


def test_results_become_mlrun_event_kinds():
    results = [
        {
            "type": "result",
            "kind": 0,
            "status": 2,
            "application": "a",
            "name": "x",
            "value": 1.0,
            "start": 0.0,
            "end": 1.0,
        },
        {
            "type": "result",
            "kind": 3,
            "status": 1,
            "application": "a",
            "name": "y",
            "value": 1.0,
            "start": 0.0,
            "end": 1.0,
        },
        {
            "type": "result",
            "kind": 1,
            "status": 0,
            "application": "a",
            "name": "z",
            "value": 0.0,
            "start": 0.0,
            "end": 1.0,
        },
        {
            "type": "result",
            "kind": 1,
            "status": -1,
            "application": "a",
            "name": "w",
            "value": 0.0,
            "start": 0.0,
            "end": 1.0,
        },
        {
            "type": "metric",
            "kind": None,
            "status": None,
            "application": "a",
            "name": "m",
            "value": 0.0,
            "start": 0.0,
            "end": 1.0,
        },
    ]
    failures = [{"application": "b", "message": "boom", "start": 0.0, "end": 1.0}]
    events = events_from_results("ep", "p", results, failures)
    assert [(e.kind, e.entity) for e in events] == [
        ("data-drift-detected", "ep.a.result.x"),
        ("system-performance-suspected", "ep.a.result.y"),
        (None, "ep.a.result.z"),
        ("mm-app-failed", "ep.b.result.failure"),
    ]


def test_entities_match_star_endpoint_and_exact_id():
    assert alert().matches_entity("any.app.result.x")
    only = alert(entities={"kind": "model-endpoint-result", "ids": ["ep"]})
    assert only.matches_entity("ep.app.result.x") and not only.matches_entity("ep2.app.result.x")
    exact = alert(entities={"kind": "model-endpoint-result", "ids": ["ep.app.result.x"]})
    assert exact.matches_entity("ep.app.result.x") and not exact.matches_entity("ep.app.result.y")


def test_fires_once_then_deduplicates_until_auto_reset():
    a = alert()
    d = evaluate(a, new_state(), [event(end=600)], now=1000.0)
    assert d.notify and d.state["active"]
    d = evaluate(a, d.state, [event(end=1200)], now=1100.0)
    assert not d.notify and d.history[0]["action"] == "deduplicated"
    d = evaluate(a, d.state, [event(kind=None, end=1800)], now=1200.0)
    assert not d.state["active"] and d.history[0]["action"] == "reset"
    d = evaluate(a, d.state, [event(end=2400)], now=1300.0)  # within the 30 m cooldown
    assert not d.notify and d.history[0]["action"] == "cooldown"
    d = evaluate(a, d.state, [event(end=3000)], now=1000.0 + 1801)
    assert d.notify


def test_count_within_period():
    a = alert(criteria={"count": 3, "period": "30m"})
    state = new_state()
    fired = []
    for i, end in enumerate([600, 1200, 4800, 5400, 6000]):  # a 1-hour gap in between
        d = evaluate(a, state, [event(end=end)], now=float(i))
        state = d.state
        fired.append(d.notify)
    assert fired == [False, False, False, False, True]


def test_the_count_keeps_only_the_times_that_can_decide():
    """In a long cooldown with a long period every window would add a time to the state
    (read and written every window); only the last `count` within the period decide."""
    a = alert(criteria={"count": 3, "period": "30d"}, cooldown="30d")
    state = evaluate(a, new_state(), [event(end=600 * k) for k in (1,)], now=1.0).state
    for k in (2, 3):
        state = evaluate(a, state, [event(end=600 * k)], now=float(k)).state
    assert state["active"] is True  # the third window activated it
    state, _ = manual_reset(state)
    for k in range(4, 200):  # counted again, then held by the cooldown: never notified
        d = evaluate(a, state, [event(end=600 * k)], now=float(k))
        assert not d.notify
        assert d.history[0]["action"] == ("counted" if k < 6 else "cooldown"), k
        state = d.state
    assert state["times"] == [600.0 * k for k in (197, 198, 199)]


def test_manual_reset_policy_ignores_clearing_events():
    a = alert(reset_policy="manual", cooldown="0s")
    d = evaluate(a, new_state(), [event()], now=1.0)
    d = evaluate(a, d.state, [event(kind=None)], now=2.0)
    assert d.state["active"]
    state, was = manual_reset(d.state)
    assert was and not state["active"]
    assert evaluate(a, state, [event(end=1200)], now=3.0).notify


def test_other_kinds_do_not_trigger():
    d = evaluate(alert(), new_state(), [event(kind="concept-drift-detected")], now=1.0)
    assert not d.notify and not d.history
    wild = alert(trigger={"events": ["concept-drift-*"]})
    assert evaluate(wild, new_state(), [event(kind="concept-drift-suspected")], now=1.0).notify


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"severity": "urgent"}, "severity"),
        ({"trigger": {"events": ["drift-happened"]}}, "trigger.events[0]"),
        ({"entities": {"kind": "model-endpoint-result", "ids": []}}, "entities.ids"),
        ({"criteria": {"count": 0}}, "criteria.count"),
        ({"criteria": {"count": 101}}, "criteria.count"),  # MLRun's max_criteria_count
        ({"reset_policy": "sometimes"}, "reset_policy"),
        ({"notifications": [{"kind": "pager"}]}, "notifications[0].kind"),
        (
            {
                "notifications": [
                    {"kind": "email", "smtp_host": "h", "smtp_port": 25, "from": "a@b"}
                ]
            },
            "notifications[0].to",
        ),
        ({"notifications": [{"kind": "webhook", "url": "ftp://x"}]}, "notifications[0].url"),
        ({"notifications": [{"kind": "command", "argv": []}]}, "notifications[0].argv"),
        ({"cooldown": "forever"}, "cooldown"),
        ({"cooldown": {"h": 1}}, "cooldown"),
        ({"criteria": {"period": ["10m"]}}, "criteria.period"),
        ({"criteria": {"period": 1e300}}, "criteria.period"),
        ({"notifications": [{"kind": ["webhook"]}]}, "notifications[0].kind"),
        ({"notifications": ["webhook"]}, "notifications[0]"),
        ({"notifications": [{"kind": "webhook", "url": 5}]}, "notifications[0].url"),
        (
            {"notifications": [{"kind": "webhook", "url": "http://h/", "headers": ["a"]}]},
            "notifications[0].headers",
        ),
        (
            {"notifications": [{"kind": "webhook", "url": "http://h/", "headers": {"a": "b\nc"}}]},
            "notifications[0].headers",
        ),
        (
            {
                "notifications": [
                    {
                        "kind": "email",
                        "smtp_host": "h",
                        "smtp_port": 25,
                        "from": "a@b",
                        "to": ["c@d"],
                        "ca_file": "/etc/passwd",
                    }
                ]
            },
            "notifications[0].ca_file",
        ),
    ],
)
def test_bad_alert_config_names_the_field(change, field):
    with pytest.raises(ApiError) as err:
        alert(**change)
    assert err.value.details["field"] == field


def test_templates_render_every_placeholder():
    templates = load_templates()
    out = render(alert(), [event()], "http://127.0.0.1:8470", templates)
    assert "Data drift detected on endpoint ep" in out["text"]
    assert "- histogram-data-drift.general_drift = 0.8 (detected)" in out["text"]
    assert (
        "http://127.0.0.1:8470/v1/endpoints/ep/results?application=histogram-data-drift"
        in out["text"]
    )
    assert out["subject"] == "[modelmon] high: drift - data-drift-detected on ep"
    assert "{" not in out["text"]
    assert out["payload"]["event"]["kind"] == "data-drift-detected"


def test_slack_text_escapes_the_values_and_only_for_slack():
    """A project named `<!channel>` (names come over the network) must not notify a
    whole Slack channel: Slack's text gets &, <, > escaped in the values; e-mail and
    webhooks get the text as it is."""
    fired = event()
    fired.project = "<!channel> & co"
    out = render(alert(), [fired], "http://127.0.0.1:8470", load_templates())
    assert "(project <!channel> & co)" in out["text"]
    assert "(project &lt;!channel&gt; &amp; co)" in out["slack_text"]
    assert "<" not in out["slack_text"] and "results?application=" in out["slack_text"]


def test_secret_is_not_shown_back():
    assert alert().to_api()["notifications"][0]["secret"] == "***"


def test_one_window_firing_several_results_makes_one_notification():
    a = alert(cooldown="1h")
    window = [
        event(end=600, value=0.85),
        event(end=600, name="drifted_features_share", application="drift-metrics"),
        event(end=600, name="out_of_range_rate_max", application="data-quality"),
        event(end=600, kind=None, name="error_rate", application="operational-health"),
    ]
    d = evaluate(a, new_state(), window, now=1000.0)
    assert d.notify
    # most severe first; among equals MLRun's general_drift heads it, then by entity
    assert [e.name for e in d.fired] == [
        "general_drift",
        "out_of_range_rate_max",
        "drifted_features_share",
    ]
    assert d.history[0]["value"] == window[0].value
    lesser = [event(end=600, status=1), window[1]]
    assert [e.name for e in evaluate(a, new_state(), lesser, now=1000.0).fired] == [
        "drifted_features_share",  # detected outranks a potential general_drift
        "general_drift",
    ]
    out = render(a, d.fired, "http://127.0.0.1:8470", load_templates())
    assert "3 result(s) fired" in out["text"]
    assert len(out["payload"]["results"]) == 3
    # the next window fires again: the (alert, endpoint) is active, nothing is sent
    d = evaluate(a, d.state, [event(end=1200)], now=1100.0)
    assert not d.notify and d.history[0]["action"] == "deduplicated"


def test_an_alert_as_mlrun_serializes_it():
    """MLRun's AlertConfig.to_dict(): notifications wrapped with cooldown_period, webhook
    params, Slack's URL among the secret params, entities with the project."""
    body = {
        "name": "mlrun-alert",
        "project": "shop",
        "summary": "drift",
        "severity": "high",
        "entities": {"kind": "model-endpoint-result", "project": "shop", "ids": ["*"]},
        "trigger": {"events": ["data-drift-detected"]},
        "criteria": {"count": 1, "period": "10m"},
        "reset_policy": "auto",
        "notifications": [
            {
                "notification": {
                    "kind": "webhook",
                    "name": "hook",
                    "params": {
                        "url": "http://127.0.0.1:9/hook",
                        "method": "POST",
                        "headers": {"X-Team": "ml"},
                        "override_body": {"text": "drift!"},
                        "verify_ssl": False,
                    },
                },
                "cooldown_period": "15m",
            },
            {
                "notification": {
                    "kind": "slack",
                    "name": "slack",
                    "secret_params": {"webhook": "https://hooks.slack.com/services/T/B/x"},
                }
            },
        ],
    }
    alert = parse_alert(body, 0.0)
    hook, slack = alert.notifications
    assert hook == {
        "kind": "webhook",
        "url": "http://127.0.0.1:9/hook",
        "headers": {"X-Team": "ml"},
        "override_body": {"text": "drift!"},
        "verify_ssl": False,
    }
    assert slack == {"kind": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/x"}
    assert alert.cooldown == 900.0
    with pytest.raises(ApiError) as err:
        parse_alert(
            {
                **body,
                "notifications": [
                    {
                        "notification": {
                            "kind": "webhook",
                            "params": {"url": "http://h/", "method": "GET"},
                        }
                    }
                ],
            },
            0.0,
        )
    assert err.value.details["field"] == "notifications[0].notification.params.method"
