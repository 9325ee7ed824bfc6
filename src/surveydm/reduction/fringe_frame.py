"""A night's fringe frame for one CCD from its dithered science exposures, with the sources
masked twice (seed 002, fringing correction of the reddest J-PLUS bands).

The first pass masks the sources of each flat-fielded exposure
(:func:`surveydm.reduction.fringe.fringe_source_mask`) and combines the stack
(:func:`surveydm.reduction.fringe.make_fringe_frame`); the second pass masks the sources again
once that frame's fringes are removed, down to the faint wings of stars that would otherwise
leak into the frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surveydm.reduction.fringe import fringe_source_mask, make_fringe_frame


def two_pass_fringe_frame(frames: Sequence[np.ndarray], no_data: np.ndarray) -> np.ndarray:
    """Fringe frame of one CCD.

    Args:
        frames: (ny, nx) float32 bias-subtracted, flat-fielded science exposures of one band,
            e- (two or more, dithered).
        no_data: (ny, nx) bool, True where the master flat has no data (left out).

    Returns:
        (ny, nx) float32 zero-mean fringe pattern in units of the sky level.

    Raises:
        ValueError: as :func:`surveydm.reduction.combine.combine` (no frames, shapes differ).
    """
    masks = [fringe_source_mask(img, mask=no_data) for img in frames]
    first = make_fringe_frame(list(frames), masks=masks)
    masks = [fringe_source_mask(img, fringe=first, mask=no_data) for img in frames]
    return make_fringe_frame(list(frames), masks=masks)
