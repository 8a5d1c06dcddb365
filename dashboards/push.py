"""Upload every board to a running Grafana through its HTTP API (``fansipan dashboards push``).

For a Grafana that does not provision the boards from files: one that does
refuses API saves of provisioned boards ("Cannot save provisioned dashboard"),
which is the point of provisioning.  The data sources are not created here
(secrets belong in provisioning or in Grafana's UI); the push only warns when
the two uids the boards use are missing.

``grafana-client`` is an optional extra (``pip install 'fansipan[grafana]'``):
it pulls in ``urllib3-future``, which replaces the ``urllib3`` module that
``influxdb-client`` relies on, so it must stay out of the collector's
environment.  It is imported inside :func:`push` for that reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .build import render_all
from .queries import API_UID, INFLUX_UID

log = logging.getLogger("fansipan.dashboards")

INSTALL_HINT = "pip install 'fansipan[grafana]'"


class PushError(RuntimeError):
    """Grafana could not be reached, refused the credentials, or refused a board; the message says which."""


@dataclass
class PushResult:
    urls: dict[str, str] = field(default_factory=dict)  # board uid -> URL of the board in Grafana
    missing_datasources: list[str] = field(default_factory=list)  # uids the boards use that Grafana lacks


def _credential(token_or_basic_auth: str | tuple[str, str]) -> str | tuple[str, str]:
    """A token (service-account ``glsa_...`` or legacy API key, neither has a colon), or ``user:password``."""
    if isinstance(token_or_basic_auth, tuple):
        if len(token_or_basic_auth) != 2:
            raise ValueError("basic auth must be (user, password)")
        return token_or_basic_auth
    if not token_or_basic_auth:
        raise ValueError("no Grafana credential: give a service-account token or user:password")
    if ":" in token_or_basic_auth:
        user, _, password = token_or_basic_auth.partition(":")
        return (user, password)
    return token_or_basic_auth


def push(grafana_url: str, token_or_basic_auth: str | tuple[str, str], folder: str = "Fansipan", *,
         folder_uid: str = "fansipan", message: str = "fansipan dashboards push",
         timeout_s: float = 30.0) -> PushResult:
    """Create ``folder`` if needed and save every board into it, overwriting earlier versions.

    ``grafana_url``: e.g. ``http://127.0.0.1:3000`` (a sub-path such as ``/grafana`` is kept).
    ``token_or_basic_auth``: a service-account token with the Editor role, or ``"user:password"``,
    or a ``(user, password)`` tuple.  Raises ImportError naming the extra to install when
    grafana-client is missing, PushError when Grafana refuses or cannot be reached.
    """
    try:
        from grafana_client import GrafanaApi
        from grafana_client.client import GrafanaClientError, GrafanaException
    except ImportError as exc:
        raise ImportError(f"pushing boards needs grafana-client: {INSTALL_HINT}") from exc
    import niquests  # grafana-client's HTTP library, installed with it

    where = f"Grafana at {grafana_url}"
    parts = urlsplit(grafana_url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # never echo credentials from the URL
    api = GrafanaApi.from_url(grafana_url, credential=_credential(token_or_basic_auth), timeout=timeout_s)
    try:
        _ensure_folder(api, folder, folder_uid, GrafanaClientError)
        result = PushResult(missing_datasources=_missing_datasources(api, GrafanaClientError))
        for uid, board in render_all().items():
            board = dict(board, id=None)  # Grafana matches by uid; an id from elsewhere would be refused
            answer = api.dashboard.update_dashboard(
                {"dashboard": board, "folderUid": folder_uid, "overwrite": True, "message": message})
            # Grafana's answer already holds any sub-path it is served from: join it to the origin only.
            result.urls[uid] = origin + str(answer.get("url", f"/d/{uid}"))
            log.info("pushed %s to %s", uid, result.urls[uid])
    except GrafanaException as exc:
        status = getattr(exc, "status_code", "?")
        hint = {401: "check the token or user:password", 403: "the credential needs the Editor role (or Admin)",
                412: "a board with this uid changed in Grafana meanwhile; push again"}.get(status, "")
        raise PushError(f"{where} refused the push (HTTP {status}): {exc.message}. {hint}".strip()) from exc
    except niquests.exceptions.RequestException as exc:
        raise PushError(f"{where} is unreachable: {exc}") from exc
    for uid in result.missing_datasources:
        log.warning("%s has no data source with uid %r: provision dashboards/provisioning/datasources/"
                    "fansipan.yaml, or the boards' panels will show 'data source not found'", where, uid)
    return result


def _ensure_folder(api, title: str, uid: str, not_found) -> None:
    try:
        api.folder.get_folder(uid)
    except not_found as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
        api.folder.create_folder(title, uid=uid)


def _missing_datasources(api, not_found) -> list[str]:
    missing = []
    for uid in (INFLUX_UID, API_UID):
        try:
            api.datasource.get_datasource_by_uid(uid)
        except not_found as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            missing.append(uid)
    return missing
