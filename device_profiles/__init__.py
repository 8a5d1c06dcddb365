"""Device profiles and the site registry: the contract every other room reads.

>>> from device_profiles import load_registry
>>> reg = load_registry()
>>> sorted(reg.kinds)[:2]
['air_quality', 'camera']
"""

from .loader import DEFAULT_DIR, Agency, Device, ProfileError, Registry, Site, load_registry
from .models import IDENT_RE, FieldSpec, Profile

__all__ = ["DEFAULT_DIR", "IDENT_RE", "Agency", "Device", "FieldSpec", "Profile", "ProfileError", "Registry", "Site", "load_registry"]
