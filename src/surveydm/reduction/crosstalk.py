"""Electronic crosstalk between the amplifiers of one CCD.

Model (instrument file): in readout order (raw amplifier coordinates, so pixel (i, j) of every
amplifier is read at the same time), ``victim_raw += coeff * source_raw`` on ADU above bias.
Written as a matrix over amplifiers, ``measured = (I + C) @ true`` per readout pixel, with
``C[victim, source] = coeff``; the correction applies ``(I + C)^-1`` exactly (not only the
first-order ``victim -= coeff * source``), which matters when an amplifier is both source and
victim.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from surveydm.instruments.model import Crosstalk


def crosstalk_matrix(
    crosstalk: Sequence[Crosstalk], amp_nums: Sequence[int]
) -> tuple[list[int], np.ndarray]:
    """The (n, n) matrix ``I + C`` over the amplifiers taking part in crosstalk.

    Returns:
        (amplifier numbers in matrix order, matrix float64).
    """
    involved = sorted({x.source for x in crosstalk} | {x.victim for x in crosstalk})
    involved = [n for n in involved if n in set(amp_nums)]
    index = {n: i for i, n in enumerate(involved)}
    m = np.eye(len(involved))
    for x in crosstalk:
        if x.source in index and x.victim in index and x.source != x.victim:
            m[index[x.victim], index[x.source]] += x.coeff
    return involved, m


def add_crosstalk(
    data: Mapping[int, np.ndarray], crosstalk: Sequence[Crosstalk]
) -> dict[int, np.ndarray]:
    """Forward model (simulation, tests): measured raw-oriented amplifier data from true data."""
    out = {k: np.asarray(v, dtype=np.float64).copy() for k, v in data.items()}
    for x in crosstalk:
        out[x.victim] += x.coeff * np.asarray(data[x.source], dtype=np.float64)
    return out


def correct_crosstalk(
    data: MutableMapping[int, np.ndarray], crosstalk: Sequence[Crosstalk]
) -> MutableMapping[int, np.ndarray]:
    """Remove crosstalk in place.

    Args:
        data: amplifier number -> overscan-subtracted DATASEC in raw (readout) orientation,
            float32 ADU. Amplifiers linked by crosstalk must have the same DATASEC shape.
        crosstalk: the CCD's crosstalk terms (``CCD.crosstalk``).

    Returns:
        ``data``, with the victims' arrays replaced by corrected float32 arrays.

    Raises:
        ValueError: linked amplifiers have different DATASEC shapes.
    """
    if not crosstalk:
        return data
    involved, m = crosstalk_matrix(crosstalk, list(data))
    if len(involved) < 2:
        return data
    shapes = {data[n].shape for n in involved}
    if len(shapes) != 1:
        raise ValueError(f"crosstalk between amplifiers of different data shapes: {shapes}")
    inv = np.linalg.inv(m)
    victims = {x.victim for x in crosstalk}
    corrected: dict[int, np.ndarray] = {}
    tmp = np.empty(next(iter(shapes)), np.float32)
    for i, v in enumerate(involved):
        if v not in victims:
            continue
        acc = np.multiply(data[v], np.float32(inv[i, i]), dtype=np.float32)
        for j, s in enumerate(involved):
            if j != i and inv[i, j] != 0.0:
                np.multiply(data[s], np.float32(inv[i, j]), out=tmp)
                acc += tmp
        corrected[v] = acc
    # a source that is no victim keeps its data: its row of (I + C) and of the inverse is e_i
    data.update(corrected)
    return data
