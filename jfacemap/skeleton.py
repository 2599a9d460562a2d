"""Bodypart lists: the one place a skeleton is defined.

A skeleton is data that travels with weights and keypoint files, not a
constant baked into code; `FACEMAP_BODYPARTS` is just the default one.
"""

from __future__ import annotations

import re

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


# Left/right tokens in bodypart names: whole words in any case, and single
# letters set off from the rest of the name (`paw_L`, `pawLH`, `ear_r`;
# not the L of `obsLow` nor the r of `ear`).
_SIDE_TOKEN = re.compile(
    r"Left|Right|LEFT|RIGHT|(?<![a-z])left|(?<![a-z])right"
    r"|(?<![A-Z])[LR](?![a-z])|(?<![A-Za-z])[lr](?![A-Za-z])"
)
_SWAP = {"Left": "Right", "LEFT": "RIGHT", "left": "right", "L": "R", "l": "r"}
_SWAP |= {v: k for k, v in _SWAP.items()}


def _mirrored_name(name: str) -> str:
    return _SIDE_TOKEN.sub(lambda m: _SWAP[m.group(0)], name)


def mirror_permutation(bodyparts: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """(K,) index of each bodypart's left/right partner (itself if it has none).

    A horizontally mirrored image of an animal is an image of an animal
    with its sides swapped, so a flip augmentation must swap the labels of
    left/right pairs, or the network learns that the near paw is both the
    left and the right one. Partners are names equal after swapping
    left/right tokens, ignoring digits (DeepLabCut-style `paw1LH` pairs with
    `paw4RH`); a name with several candidate partners is left unpaired.
    Facemap's face keypoints have no pairs: the identity.
    """
    names = list(bodyparts)
    undigit = [re.sub(r"\d+", "", name) for name in names]
    perm = list(range(len(names)))
    for k, name in enumerate(names):
        target = re.sub(r"\d+", "", _mirrored_name(name))
        if target == undigit[k]:
            continue
        matches = [j for j, other in enumerate(undigit) if other == target]
        if len(matches) == 1:
            perm[k] = matches[0]
    # keep only mutual pairs, so the permutation is its own inverse
    return tuple(j if perm[j] == k else k for k, j in enumerate(perm))
