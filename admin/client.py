"""The CLI's side of the admin API: requests with the key from IOTLM_API_KEY, answers or a clear exit."""

from __future__ import annotations

import json

import httpx
import typer


class ApiClient:
    def __init__(self, settings):
        if settings.api_key is None:
            typer.echo("set IOTLM_API_KEY to a key (`iotlm keys create --scope admin` makes one)", err=True)
            raise typer.Exit(2)
        self.url = settings.api_url
        self.http = httpx.Client(base_url=self.url, timeout=60,
                                 headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"})

    def __call__(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The response when it is 2xx; otherwise the API's reason on stderr and exit 1."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            typer.echo(f"cannot reach the admin API at {self.url} ({exc}); is `iotlm api` running?", err=True)
            raise typer.Exit(1) from None
        if response.is_error:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            typer.echo(f"{method} {path}: {response.status_code} {json.dumps(detail) if not isinstance(detail, str) else detail}",
                       err=True)
            raise typer.Exit(1)
        return response
