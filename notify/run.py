"""``fansipan notify --rules FILE``: load rules and secrets, then a pass every few seconds until stopped."""

from __future__ import annotations

import logging
import threading

from device_profiles import load_registry

from .rules import load_rules, secrets
from .service import Notifier

log = logging.getLogger("fansipan.notify")


def run(args, stop: threading.Event) -> int:
    from fansipan.config import Settings

    settings = Settings.from_env(mqtt=False)
    rules = load_rules(args.rules)
    notifier = Notifier(rules, settings.incidents_path, secrets(rules), registry=load_registry(settings.profiles_path()))
    log.info("notify: %d rule(s), channels %s, incidents in %s, a pass every %g s", len(rules.rules),
             ", ".join(f"{n} ({c.type})" for n, c in rules.channels.items()), settings.incidents_path, args.every)
    try:
        notifier.run(args.every, stop)
    finally:
        notifier.close()
    return 0
