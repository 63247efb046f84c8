"""Alerts: configs (MLRun's model), the pure evaluation engine, templates, channels and
the delivery loop."""
