"""Webhook notifications about finished runs (``--notify URL``).

A POST with a small JSON body on failure, timeout or cancel — and on success
when the job asks for it. Delivery is retried with backoff; a receiver that is
down never fails the run, and what happened is written to the run's log.
"""

from __future__ import annotations

import time
from typing import Any

from ..workspace import Workspace
from . import runs as R
from .definitions import Job

ATTEMPTS = 3


def run_payload(job: Job, run: R.Run) -> dict[str, Any]:
    """The JSON body sent for a finished run."""
    return {
        "event": "run.finished",
        "job": job.name,
        "job_version": job.version,
        "run_id": run.id,
        "status": run.status,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "duration": run.duration,
        "params": run.params,
        "resolved": run.resolved,
        "error": run.error,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def post_json(url: str, payload: dict[str, Any], attempts: int = ATTEMPTS) -> tuple[bool, str]:
    """POST ``payload``; retry on connection errors and 5xx. Returns ``(ok, detail)``."""
    import requests

    detail = ""
    for attempt in range(attempts):
        try:
            response = requests.post(url, json=payload, timeout=5)
        except requests.RequestException as exc:
            detail = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 500:
                ok = response.status_code < 300
                return ok, f"HTTP {response.status_code}"
            detail = f"HTTP {response.status_code}"
        if attempt < attempts - 1:
            time.sleep(0.5 * 2**attempt)
    return False, detail


def notify_run(ws: Workspace, job: Job, run: R.Run) -> bool | None:
    """Send the job's webhook for ``run`` if its settings ask for it."""
    url = job.settings.get("notify")
    if not url:
        return None
    if run.status == "succeeded" and not job.settings.get("notify_on_success"):
        return None
    ok, detail = post_json(str(url), run_payload(job, run))
    R.append_logs(
        ws,
        run.id,
        [("system", f"notification to {url}: {'sent' if ok else 'failed'} ({detail})\n")],
    )
    return ok
