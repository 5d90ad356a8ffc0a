"""``GET /healthz``: whether this process should get traffic, as JSON.

A load balancer or an orchestrator asks it every few seconds. The answer is
``200`` with ``{"status": "ok", ...}`` while the server serves, and ``503``
with ``"status": "shutting down"`` from the moment it starts to stop, so that
traffic goes elsewhere. The object also says how many WebSockets are open,
how long the server has been up, and what each *component* reports.

A component is a part of the server with a state of its own that an operator
wants to see, such as the link to Redis that shares a room between
processes: :meth:`Health.add_component` adds one, by name, with a function
that reports its state as a JSON object and, optionally, one that says
whether it is healthy. An unhealthy component makes the status
``"degraded"``, still with ``200``: the process keeps serving its own users,
and taking it out of rotation would only move them.

Rule: this module does no I/O; the request handler sends the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

from . import __version__

logger = logging.getLogger(__name__)

#: A component's report: a JSON object (made of dict, list, str, numbers, None).
Report = Callable[[], Mapping[str, object]]


@dataclass(frozen=True)
class _Component:
    report: Report
    healthy: Callable[[], bool] | None


class Health:
    """The answer to ``GET /healthz``."""

    def __init__(
        self,
        open_websockets: Callable[[], int],
        shutting_down: Callable[[], bool],
        started: float | None = None,
    ) -> None:
        self._open_websockets = open_websockets
        self._shutting_down = shutting_down
        #: When the server started (monotonic seconds).
        self.started = time.monotonic() if started is None else started
        self._components: dict[str, _Component] = {}

    def add_component(
        self,
        name: str,
        report: Report,
        *,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        """Show ``report()`` as member ``name``; when ``healthy()`` is False,
        the status is ``"degraded"``. Both are called at each request, from
        the request's thread, and should answer at once."""
        if name in ("status", "websockets", "uptime_seconds", "version"):
            raise ValueError(f"{name!r} is a member of the health object already")
        self._components[name] = _Component(report, healthy)

    def components_up(self) -> dict[str, bool]:
        """Whether each component that can tell is healthy (for the metrics)."""
        up = {}
        for name, component in self._components.items():
            if component.healthy is not None:
                try:
                    up[name] = bool(component.healthy())
                except Exception:
                    logger.exception("health component %s failed", name)
                    up[name] = False
        return up

    def check(self) -> tuple[HTTPStatus, dict[str, object]]:
        """The status code and the JSON object to answer with."""
        body: dict[str, object] = {
            "status": "ok",
            "websockets": self._open_websockets(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "version": __version__,
        }
        degraded = False
        for name, component in self._components.items():
            try:
                body[name] = dict(component.report())
                if component.healthy is not None and not component.healthy():
                    degraded = True
            except Exception as exc:
                logger.exception("health component %s failed", name)
                body[name] = {"error": f"{type(exc).__name__}: {exc}"}
                degraded = True
        if self._shutting_down():
            body["status"] = "shutting down"
            return HTTPStatus.SERVICE_UNAVAILABLE, body
        if degraded:
            body["status"] = "degraded"
        return HTTPStatus.OK, body
