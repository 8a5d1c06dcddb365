"""The API's own settings, from ``FANSIPAN_API_*`` / ``FANSIPAN_STATUS_PUBLIC``.

Kept next to the shared :class:`fansipan.config.Settings` (store, incidents
database, profiles), which the API reads as every service does.  A bad value
stops the start with a message naming the variable, like the shared settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fansipan.config import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    # /status without a key: for a wall screen in the operations room. Off by default, because the page
    # names sites and incidents, which are not for everyone on the network.
    status_public: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ApiSettings:
        env = os.environ if environ is None else environ
        host = env.get("FANSIPAN_API_HOST", cls.host).strip()
        if not host:
            raise ConfigError("FANSIPAN_API_HOST: empty; give an address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
        raw_port = env.get("FANSIPAN_API_PORT", str(cls.port))
        try:
            port = int(raw_port)
        except ValueError:
            raise ConfigError(f"FANSIPAN_API_PORT={raw_port!r}: expected a whole number 1..65535") from None
        if not 1 <= port <= 65535:
            raise ConfigError(f"FANSIPAN_API_PORT={port}: expected 1..65535")
        raw_public = env.get("FANSIPAN_STATUS_PUBLIC", "0").strip().lower()
        if raw_public not in _TRUE + _FALSE:
            raise ConfigError(f"FANSIPAN_STATUS_PUBLIC={raw_public!r}: expected 1 or 0")
        return cls(host=host, port=port, status_public=raw_public in _TRUE)
