"""The demo shop's vocabularies: categories, colors, patterns, styles and shopper segments."""

from __future__ import annotations

GENERATOR_VERSION = "1"

# Category words are single CLIP tokens where possible so the tiny demo text encoder learns them fast.
CATEGORIES: tuple[str, ...] = ("shirt", "trousers", "skirt", "dress", "shoes", "bag", "hat")

# Outfit slots: one top+bottom pair or a dress, then accessories.
TOPS = ("shirt",)
BOTTOMS = ("trousers", "skirt")
ACCESSORIES = ("shoes", "bag", "hat")

# Named colors -> sRGB. Chosen to stay distinct after a 64x64 downscale.
COLORS: dict[str, tuple[int, int, int]] = {
    "navy": (24, 38, 110),
    "red": (205, 30, 40),
    "black": (28, 28, 30),
    "white": (242, 242, 238),
    "gray": (128, 128, 132),
    "beige": (222, 198, 156),
    "brown": (118, 70, 36),
    "green": (34, 139, 60),
    "yellow": (246, 204, 30),
    "pink": (244, 140, 186),
    "purple": (118, 48, 160),
    "orange": (242, 120, 24),
}

# Neutral colors combine with anything in an outfit; bold ones at most once per outfit.
NEUTRAL_COLORS = ("navy", "black", "white", "gray", "beige", "brown")
BOLD_COLORS = tuple(c for c in COLORS if c not in NEUTRAL_COLORS)

PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checked", "zigzag")

STYLES: tuple[str, ...] = ("casual", "formal", "sporty")

# Attribute kinds a taste is defined over, in a fixed order.
ATTRIBUTE_KINDS: tuple[str, ...] = ("color", "pattern", "category", "style")


def vocabulary(kind: str) -> tuple[str, ...]:
    """Values of one attribute kind, in their canonical order."""
    table = {"color": tuple(COLORS), "pattern": PATTERNS, "category": CATEGORIES, "style": STYLES}
    if kind not in table:
        raise KeyError(f"unknown attribute kind {kind!r}; expected one of {sorted(table)}")
    return table[kind]


# Shopper segments: the prior each user's taste is drawn around (favoured values per kind).
SEGMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "classic": {
        "color": ("navy", "white", "gray", "black"),
        "pattern": ("solid", "striped"),
        "category": ("shirt", "trousers", "shoes"),
        "style": ("formal",),
    },
    "athlete": {
        "color": ("black", "red", "white", "navy"),
        "pattern": ("solid", "striped", "zigzag"),
        "category": ("shoes", "shirt", "hat", "bag"),
        "style": ("sporty",),
    },
    "playful": {
        "color": ("pink", "yellow", "orange", "purple"),
        "pattern": ("dotted", "zigzag"),
        "category": ("dress", "skirt", "bag"),
        "style": ("casual",),
    },
    "earthy": {
        "color": ("beige", "brown", "green"),
        "pattern": ("checked", "solid"),
        "category": ("trousers", "shirt", "hat"),
        "style": ("casual",),
    },
    "elegant": {
        "color": ("black", "red", "purple", "white"),
        "pattern": ("solid", "dotted"),
        "category": ("dress", "skirt", "shoes", "bag"),
        "style": ("formal",),
    },
    "preppy": {
        "color": ("navy", "green", "red", "white"),
        "pattern": ("checked", "striped"),
        "category": ("shirt", "skirt", "trousers", "hat"),
        "style": ("casual", "formal"),
    },
}
