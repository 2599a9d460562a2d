"""Write the DeepLabCut .h5 fixtures of tests/test_dlc_h5.py with real pandas.

pandas and tables are NOT jfacemap dependencies; run this with a scratch venv:

    python -m venv /tmp/dlc-venv && /tmp/dlc-venv/bin/pip install pandas tables numpy
    /tmp/dlc-venv/bin/python tests/data/dlc/make_fixtures.py

Each `<name>.h5` is written the way DeepLabCut writes it (`to_hdf(key=
"df_with_missing", mode="w")`, table or fixed format) and `<name>.csv` is
pandas' own `to_csv` of the same DataFrame: the independent reference the
tests compare jfacemap's h5 reader with. Table-format files are zlib-compressed
(h5py decompresses zlib natively) so that PyTables' 1170-row chunks stay a few
KB; that changes the storage, not the layout the reader parses.
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SCORER = "Jos\u00e9"  # non-ASCII: the files store text as UTF-8 bytes
BODYPARTS = ["eye(back)", "nose(tip)", "whisker(I)"]
IMAGES = [f"img{i:03d}.png" for i in (0, 7, 21, 42)]
TABLE = dict(format="table", complib="zlib", complevel=9)


def columns(coords, individuals=None):
    if individuals is None:
        return pd.MultiIndex.from_product([[SCORER], BODYPARTS, coords],
                                          names=["scorer", "bodyparts", "coords"])
    return pd.MultiIndex.from_product([[SCORER], individuals, BODYPARTS, coords],
                                      names=["scorer", "individuals", "bodyparts", "coords"])


def labels(rng):
    """(4, 3 bodyparts x (x, y)) pixel labels; NaN where a keypoint is not labelled."""
    values = np.round(rng.uniform(0, 64, size=(len(IMAGES), 2 * len(BODYPARTS))), 3)
    values[1, 2:4] = np.nan  # nose(tip) not labelled in img007
    values[3, 0:2] = np.nan  # eye(back) not labelled in img042
    return values


def save(df, name, **kwargs):
    df.to_hdf(HERE / f"{name}.h5", key="df_with_missing", mode="w", **kwargs)
    df.to_csv(HERE / f"{name}.csv")
    back = pd.read_hdf(HERE / f"{name}.h5", "df_with_missing")
    assert back.equals(df), name


def main():
    rng = np.random.default_rng(0)
    paths = [f"labeled-data/session1/{img}" for img in IMAGES]
    # Labels, index = image paths relative to the project folder (DLC < 2.2).
    df = pd.DataFrame(labels(rng), index=paths, columns=columns(["x", "y"]))
    save(df, "labels_table", **TABLE)  # with PyTables' index on the rows, as DLC leaves it
    save(df, "labels_fixed")
    # DLC >= 2.2: the index is a MultiIndex of path parts. pandas cannot write it in
    # table format under MultiIndex columns, so DLC's files (and this one) are fixed format.
    parts = pd.MultiIndex.from_tuples([tuple(p.split("/")) for p in paths])
    save(pd.DataFrame(labels(rng), index=parts, columns=columns(["x", "y"])), "labels_multiindex")
    # Predictions of a video: index = frame numbers, coords x, y, likelihood.
    n_frames = 6
    values = np.round(rng.uniform(0, 64, size=(n_frames, 3 * len(BODYPARTS))), 3)
    values[:, 2::3] = np.round(rng.uniform(0, 1, size=(n_frames, len(BODYPARTS))), 4)
    values[2, 3:6] = np.nan  # a whole keypoint missing (e.g. filtered out)
    values[4, 0] = np.nan
    predictions = pd.DataFrame(values, columns=columns(["x", "y", "likelihood"]))
    save(predictions, "predictions_table", index=False, **TABLE)
    save(predictions, "predictions_fixed")
    # Multi-animal (maDLC): an "individuals" column level.
    animals = ["mouse1", "mouse2"]
    values = np.round(rng.uniform(0, 64, size=(2, 2 * len(animals) * len(BODYPARTS))), 3)
    save(pd.DataFrame(values, index=paths[:2], columns=columns(["x", "y"], animals)),
         "multi_animal", index=False, **TABLE)


if __name__ == "__main__":
    main()
