"""Every authenticated route of the HTTP API (the auth tests cover each; a unit test checks
this list against the application's router, so a new route cannot skip them)."""

V1_ROUTES = [
    ("POST", "/v1/endpoints"),
    ("GET", "/v1/endpoints"),
    ("GET", "/v1/endpoints/{uid}"),
    ("DELETE", "/v1/endpoints/{uid}"),
    ("POST", "/v1/events"),
    ("POST", "/v1/endpoints/{uid}/events"),
    ("POST", "/v1/endpoints/{uid}/labels"),
    ("GET", "/v1/endpoints/{uid}/results"),
    ("GET", "/v1/endpoints/{uid}/events"),
    ("GET", "/v1/status"),
    ("POST", "/v1/alerts"),
    ("GET", "/v1/alerts"),
    ("GET", "/v1/alerts/{name}"),
    ("DELETE", "/v1/alerts/{name}"),
    ("POST", "/v1/alerts/{name}/reset"),
    ("GET", "/v1/alerts/{name}/events"),
]
OPEN_ROUTES = [("GET", "/healthz"), ("GET", "/metrics")]
