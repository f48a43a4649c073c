"""Build ``fastpose/data/cmu_motion.npz`` (the built-in real motion) from ``cmu_h36m17.npz``.

Run once by the maintainers, from the repository root, with the converted CMU source file (the
Human3.6M 17-joint conversion, one (T, 17, 3) millimetre array per sequence plus ``__meta__``; it is
not distributed with fastpose, whose packed copy is the result of this script)::

    python -m fastpose.data._pack_cmu PATH/TO/cmu_h36m17.npz fastpose/data/cmu_motion.npz

It keeps the sequences the source marks as included, stores them compactly
(:func:`fastpose.data.motion.save_motion`), keeps the source's licence and per-sequence
provenance records, and writes the train/held-out split of :mod:`fastpose.data.motion`
(``meta["split"]``) with the rule that made it (``meta["split_rule"]``).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from .motion import BUILTIN_TEST_SUBJECTS, load_motion, save_motion

ACKNOWLEDGEMENT = ("The data used in this project was obtained from mocap.cs.cmu.edu. "
                   "The database was created with funding from NSF EIA-0196217.")
LICENCE = ("CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu): 'This data is free for use in research "
           "projects. You may include this data in commercially-sold products, but you may not resell this data "
           "directly, even in converted form.'")
SPLIT_RULE = (
    "By CMU subject (first number of the trial id). Held out (test): subjects 1 (playground), 9 (running), "
    "10 (walk; his other CMU trials are soccer kicks), 14 (jump up to grab, reach, tiptoe), 131 (start/walk/stop, "
    "hop), chosen for variety. Motion-prediction-set takes (Li et al. 2018) without a trial id are grouped per "
    "action and go where that action's identified subjects go: walking (2, 5, 6, 7) and jumping (13) -> train, "
    "soccer (with 10) and running (with 9) -> test, basketball signals, directing traffic, window washing -> train."
)


def pack(src: str | Path, dst: str | Path) -> Path:
    """Read ``src`` (the CMU 17-joint npz), write the compact built-in file ``dst``; returns ``dst``."""
    src = Path(src)
    motion = load_motion(src)  # skips the records marked "excluded", converts to metres
    test = set(BUILTIN_TEST_SUBJECTS)
    unknown = sorted(k for k, g in motion.groups.items() if not g)
    if unknown:
        raise ValueError(f"{src}: sequences without a CMU subject or motion-prediction action: {unknown}")
    split = {k: ("test" if motion.groups[k] in test else "train") for k in motion.sequences}
    kept = set(motion.sequences)
    src_meta = motion.meta
    meta = {
        "description": "Built-in real motion of fastpose: " + str(src_meta.get("description", "")),
        "joint_names": src_meta.get("joint_names"),
        "parents": src_meta.get("parents"),
        "fps": motion.fps,
        "up_axis": "z",
        "licence": LICENCE,
        "acknowledgement": ACKNOWLEDGEMENT,
        "provenance": {
            "source_file": src.name,
            "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
            "built_by": "python -m fastpose.data._pack_cmu SRC DST",
            "notes": "only the sequences the source marks as included; per-sequence records below",
        },
        "sequences": [r for r in src_meta.get("sequences", []) if r.get("key") in kept],
        "split": split,
        "split_rule": SPLIT_RULE,
        "test_groups": list(BUILTIN_TEST_SUBJECTS),
        "total_frames": motion.num_frames,
        "n_sequences": len(kept),
    }
    meta.pop("cmu_license", None)
    return save_motion(motion.sequences, dst, meta=meta, compact=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m fastpose.data._pack_cmu SRC.npz DST.npz")
    out = pack(sys.argv[1], sys.argv[2])
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
