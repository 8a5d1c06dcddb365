"""Typed dependencies, defined once: routes declare what they need by type, tests swap the boundaries.

``AppState`` holds the injected boundaries (registry, store, incident store, key
store, clock); it lives on ``app.state.fansipan``.  ``Viewer``, ``Operator`` and
``Admin`` are the caller's key, admitted only with that role or above.  ``ViewerScope`` and
``OperatorScope`` are what that key may see (api.scope.View); ``SnapshotDep`` is the live
status already cut to the viewer's scope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from analytics.incidents import IncidentStore
from device_profiles import Registry
from fansipan.config import Settings
from storage.base import Store

from .auth import require, status_page_access
from .keys import ApiKey, KeyStore
from .live import LiveStatus, Snapshot
from .scope import Scopes, View, restrict
from .settings import ApiSettings


@dataclass
class AppState:
    settings: Settings
    api: ApiSettings
    registry: Registry
    store: Store
    incidents: IncidentStore
    keys: KeyStore
    clock: Callable[[], int]
    live: LiveStatus
    owned: list = field(default_factory=list)  # what create_app opened itself, closed at shutdown
    scopes: Scopes | None = None  # what each key scope sees; built from the registry when not given

    def __post_init__(self) -> None:
        if self.scopes is None:
            self.scopes = Scopes(self.registry)


def _state(request: Request) -> AppState:
    return request.app.state.fansipan


StateDep = Annotated[AppState, Depends(_state)]


def _registry(state: StateDep) -> Registry:
    return state.registry


def _store(state: StateDep) -> Store:
    return state.store


def _incidents(state: StateDep) -> IncidentStore:
    return state.incidents


def _keys(state: StateDep) -> KeyStore:
    return state.keys


def _now(state: StateDep) -> int:
    return state.clock()


RegistryDep = Annotated[Registry, Depends(_registry)]
StoreDep = Annotated[Store, Depends(_store)]
IncidentsDep = Annotated[IncidentStore, Depends(_incidents)]
KeysDep = Annotated[KeyStore, Depends(_keys)]
NowDep = Annotated[int, Depends(_now)]  # epoch ns, from the injected clock (one reading per request)


Viewer = Annotated[ApiKey, Depends(require("viewer"))]
Operator = Annotated[ApiKey, Depends(require("operator"))]
Admin = Annotated[ApiKey, Depends(require("admin"))]
StatusReader = Annotated[ApiKey | None, Depends(status_page_access)]


def _viewer_scope(state: StateDep, key: Viewer) -> View:
    return state.scopes.view(key.scope)


def _operator_scope(state: StateDep, key: Operator) -> View:
    return state.scopes.view(key.scope)


def _status_scope(state: StateDep, key: StatusReader) -> View:
    return state.scopes.view(key.scope if key is not None else None)  # a public wall screen: the province


ViewerScope = Annotated[View, Depends(_viewer_scope)]
OperatorScope = Annotated[View, Depends(_operator_scope)]
StatusScope = Annotated[View, Depends(_status_scope)]


def _snapshot(state: StateDep, now: NowDep, view: ViewerScope) -> Snapshot:
    return restrict(view, state.live.snapshot(state.store, state.incidents, now))


def _status_snapshot(state: StateDep, now: NowDep, view: StatusScope) -> Snapshot:
    return restrict(view, state.live.snapshot(state.store, state.incidents, now))


SnapshotDep = Annotated[Snapshot, Depends(_snapshot)]  # live device/site status in the viewer's scope, once per request
StatusSnapshotDep = Annotated[Snapshot, Depends(_status_snapshot)]
