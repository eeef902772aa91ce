"""A Python client for the trainyard API: the same calls as the CLI, typed, with errors
raised as exceptions that carry the server's problem document."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests


class ApiError(Exception):
    """A 4xx/5xx answer; ``problem`` is its RFC 9457 document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status, self.problem = status, problem
        lines = [f"{problem.get('title', 'Error')} ({status}): {problem.get('detail', '')}".rstrip(": ")]
        lines += [f"  - {e.get('path') or 'body'}: {e.get('message')}" for e in problem.get("errors", [])]
        super().__init__("\n".join(lines))


class Client:
    """``Client(url, token)``; both default to TRAINYARD_URL and TRAINYARD_TOKEN."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("TRAINYARD_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.api = self.url + "/api/v1"
        self.timeout = timeout
        self.session = requests.Session()
        token = token or os.environ.get("TRAINYARD_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.session.request(method, self.api + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise ConnectionError(f"cannot reach the trainyard API at {self.url}; is it running "
                                  "(trainyard up), and is TRAINYARD_URL right?") from None
        if resp.status_code >= 400:
            try:
                problem = resp.json()
            except ValueError:
                problem = {"title": resp.reason, "detail": resp.text[:200]}
            raise ApiError(resp.status_code, problem)
        if resp.status_code == 204:
            return None
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    # jobs
    def submit(self, spec: dict[str, Any], priority: int = 0, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/jobs", json={"spec": spec, "priority": priority}, headers=headers)

    def jobs(self, status: str | None = None, limit: int = 50, page_token: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in {"status": status, "limit": limit, "page_token": page_token}.items() if v}
        return self._call("GET", "/jobs", params=params)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def delete(self, job_id: int) -> None:
        self._call("DELETE", f"/jobs/{job_id}")

    def metrics(self, job_id: int, name: str | None = None, limit: int = 1000,
                max_points: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if name:
            params["name"] = name
        if max_points:
            params = {"max_points": max_points, **({"name": name} if name else {})}
        items, token = [], None
        while True:
            page = self._call("GET", f"/jobs/{job_id}/metrics", params={**params, **({"page_token": token}
                                                                                      if token else {})})
            items += page["items"]
            token = page.get("next_page_token")
            if not token or max_points:
                return items

    def checkpoints(self, job_id: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/jobs/{job_id}/checkpoints")["items"]

    def download(self, job_id: int, epoch: int, path: str | Path) -> Path:
        data = self._call("GET", f"/jobs/{job_id}/checkpoints/{epoch}")
        path = Path(path)
        path.write_bytes(data)
        return path

    def predict(self, job_id: int, inputs: list[list[float]], checkpoint: str | int = "latest") -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/predict", json={"inputs": inputs, "checkpoint": checkpoint})

    # datasets
    def upload_dataset(self, path: str | Path, name: str | None = None, target: str | None = None) -> dict[str, Any]:
        path = Path(path)
        data = {k: v for k, v in {"name": name, "target": target}.items() if v}
        with open(path, "rb") as fh:
            return self._call("POST", "/datasets", files={"file": (path.name, fh)}, data=data)

    def datasets(self) -> dict[str, Any]:
        return self._call("GET", "/datasets")

    def health(self) -> dict[str, Any]:
        try:
            return self._call("GET", "/health")
        except ApiError as exc:
            return exc.problem
