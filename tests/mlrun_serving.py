"""Runs under a Python with MLRun installed (MLRUN_PYTHON), never the daemon's: MLRun's own
serving code (a router with a V2ModelServer, model tracking on, the monitoring stream an
http URL) serves requests, and MLRun's model logger and HTTP output stream post the
monitoring events to the URL.

    python mlrun_serving.py URL ENDPOINT_ID REQUESTS SAMPLING_PERCENTAGE

A mock server gets no endpoint id from an MLRun API server, so the one MLRun's API would
have created is given, and the logger that the API's answer would enable is enabled.
MLRun 1.12's HTTPOutputStream.push takes no `partition_key`, which its model logger
passes: a two-line adapter drops it. Everything else (the event, its JSON, the POST
without a Content-Type, credentials from the URL) is MLRun's."""

from __future__ import annotations

import json
import random
import sys

import mlrun
from mlrun.serving import V2ModelServer
from mlrun.serving.v2_serving import _ModelLogPusher


class ChurnModel(V2ModelServer):
    def load(self) -> None:
        pass

    def predict(self, request: dict) -> list:
        if any(row[0] < 0 for row in request["inputs"]):
            raise ValueError("negative age")
        return [int(row[0] + row[1] > 1.0) for row in request["inputs"]]


class PartitionKeyAdapter:
    """Also counts what MLRun posted (its sampling picks rows at random)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.posted = {"events": 0, "rows": 0, "error_events": 0, "sampled_rows": 0}

    def push(self, data, partition_key=None) -> None:
        for event in data:
            rows = len(event["request"]["inputs"])
            self.posted["events"] += 1
            self.posted["rows"] += rows
            if "error" in event:
                self.posted["error_events"] += 1
            else:
                self.posted["sampled_rows"] += rows
        self.inner.push(data)


def main() -> None:
    url, endpoint_id, requests, percentage = sys.argv[1:5]
    fn = mlrun.new_function("serving", kind="serving", project="shop")
    fn.set_topology("router")
    fn.add_model("churn", class_name="ChurnModel", model_path=".")
    fn.set_tracking(stream_path=url)
    fn.spec.parameters["sampling_percentage"] = float(percentage)
    server = fn.to_mock_server(track_models=True, namespace=globals())
    model = server.graph.routes["churn"]._object
    model.model_endpoint_uid = endpoint_id
    stream = PartitionKeyAdapter(model.context.stream.output_stream)
    model._model_logger = _ModelLogPusher(model, model.context, output_stream=stream)
    model.initialized = True
    random.seed(7)  # MLRun's sampling draws from the random module
    rng = random.Random(7)
    sent = {"requests": 0, "rows": 0, "errors": 0}
    for i in range(int(requests)):
        rows = [[rng.random(), rng.random()] for _ in range(1 + i % 3)]
        if i % 10 == 9:
            rows[0][0] = -1.0  # the model raises: MLRun logs an error event
        try:
            server.test("/v2/models/churn/infer", {"id": f"r{i}", "inputs": rows})
        except RuntimeError:
            sent["errors"] += 1
        sent["requests"] += 1
        sent["rows"] += len(rows)
    print(json.dumps({"sent": sent, "posted": stream.posted}))


if __name__ == "__main__":
    main()
