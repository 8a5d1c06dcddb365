"""The ground the hostile-input strategies stand on: the test registry spelled out, hostile text, topics."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
REGISTRY_DIR = HERE.parent / "fixtures" / "registry"

# The test registry, spelled out (tests/test_fuzz.py checks these against the loaded registry).
SITES = ("lao_cai", "dc_laocai", "sa_pa", "ta_van")
DEVICES = {"tv-aq-1": ("air_quality", "ta_van"), "dc-srv-01": ("server", "dc_laocai")}
KINDS = ("air_quality", "server")
FIELDS = {
    "air_quality": ("pm25", "humidity", "samples", "heater_on"),
    "server": ("cpu_pct", "procs", "healthy"),
}

ARRIVED_NS = 1764230400_000_000_000  # 2025-11-27T08:00:00Z

# --- text -----------------------------------------------------------------------------------------

#: Characters that break naive parsers, escapers, terminals or log viewers.
HOSTILE_CHARS = (
    "\x00", "\n", "\r", "\t", "\x0b", "\x1b", "\x7f", ",", " ", "=", '"', "'", "\\", "#", "/", "+", "{", "}",
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u200d",  # ZERO WIDTH JOINER
    "\ufeff",  # BOM / zero width no-break space
    "\u0301",  # combining acute accent
    "\u00a0",  # no-break space
    "\u2028",  # line separator
    "😀", "👩‍👩‍👧", "ỉ", "Lào Cai", "²", "١",
)

hostile_chars = st.sampled_from(HOSTILE_CHARS)

#: Any Unicode text except lone surrogates (MQTT topics and UTF-8 payloads cannot hold them).
any_text = st.text(max_size=40)

#: Text made mostly of line-protocol metacharacters and odd Unicode, with some letters.
hostile_text = st.one_of(
    st.lists(st.one_of(hostile_chars, st.sampled_from("abc-_09")), min_size=1, max_size=12).map("".join),
    any_text,
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20),
)

ident = st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True)

#: Identifiers a device might put where an id belongs: registered ones, look-alikes, hostile text.
device_ids = st.one_of(
    st.sampled_from(sorted(DEVICES)),
    st.sampled_from(["tv-aq-1 ", "TV-AQ-1", "tv-aq-1\x00", "tv\u200f-aq-1", "dc-srv-01,evil=1", "dc-srv-01\n", "", "+", "#"]),
    ident,
    hostile_text,
)

# --- topics ---------------------------------------------------------------------------------------


@st.composite
def topics(draw) -> str:
    """Topics on the profile's shape ``laocai/{site}/{kind}/{device}``, with hostile levels now and then."""
    shape = draw(st.integers(0, 9))
    site = draw(st.one_of(st.sampled_from(SITES), hostile_text))
    kind = draw(st.one_of(st.sampled_from(KINDS), st.sampled_from(KINDS), ident, hostile_text))
    device = draw(device_ids)
    if shape <= 5:  # right shape, registered device at its own site most of the time
        dev = draw(st.sampled_from(sorted(DEVICES)))
        k, s = DEVICES[dev]
        return f"laocai/{s}/{k}/{dev}" if shape <= 3 else f"laocai/{site}/{k}/{device}"
    if shape <= 7:
        return f"laocai/{site}/{kind}/{device}"
    return draw(st.one_of(any_text, st.lists(hostile_text, max_size=6).map("/".join)))
