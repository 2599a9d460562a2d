"""Bodypart lists: the one place a skeleton is defined.

A skeleton is data that travels with weights and keypoint files, not a
constant baked into code; `FACEMAP_BODYPARTS` is just the default one.
"""

from __future__ import annotations

# The original program's order, needed for file compatibility.
FACEMAP_BODYPARTS: tuple[str, ...] = (
    "eye(back)",
    "eye(bottom)",
    "eye(front)",
    "eye(top)",
    "lowerlip",
    "mouth",
    "nose(bottom)",
    "nose(r)",
    "nose(tip)",
    "nose(top)",
    "nosebridge",
    "paw",
    "whisker(I)",
    "whisker(III)",
    "whisker(II)",
)

# The 11 keypoints (22 coordinates) the paper's neural analyses use:
# 4 eye, 4 nose (not nosebridge), 3 whiskers.
ANALYSIS_BODYPARTS: tuple[str, ...] = (
    "eye(back)",
    "eye(bottom)",
    "eye(front)",
    "eye(top)",
    "nose(bottom)",
    "nose(r)",
    "nose(tip)",
    "nose(top)",
    "whisker(I)",
    "whisker(III)",
    "whisker(II)",
)


def bodypart_index(bodyparts: tuple[str, ...] | list[str], name: str) -> int:
    """Index of `name` in `bodyparts`, with an error that lists the valid names."""
    try:
        return list(bodyparts).index(name)
    except ValueError as err:
        raise ValueError(
            f"unknown bodypart {name!r}; this skeleton has: {', '.join(bodyparts)}"
        ) from err


def select_bodyparts(
    bodyparts: tuple[str, ...] | list[str], wanted: tuple[str, ...] | list[str]
) -> list[int]:
    """Indices of `wanted` within `bodyparts`, in the order of `wanted`."""
    return [bodypart_index(bodyparts, name) for name in wanted]
