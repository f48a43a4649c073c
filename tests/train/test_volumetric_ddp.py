"""``torchrun`` data-parallel training of the volumetric model through fastpose.train.common."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from fastpose.train import common
    from fastpose.train.volumetric import VolumetricTrainConfig, train_volumetric
    from fastpose.data.images import SyntheticImageDataset, synthetic_poses

    rt = common.init_runtime("cpu")
    poses, actions = synthetic_poses(("S1",), frames=16, stride=2, actions=("Walking",))
    ds = SyntheticImageDataset(poses, actions, length=8, seed=0, size=64)
    cfg = VolumetricTrainConfig(size="tiny", epochs=1, batch_size=2, workers=0, device="cpu",
                                out_dir=sys.argv[1], progress=False)
    res = train_volumetric(cfg, ds, runtime=rt, log=lambda s: None)
    flat = torch.cat([p.detach().flatten() for p in res.model.parameters()])
    torch.save({"params": flat, "steps": len(res.step_losses), "world": rt.world_size},
               f"{sys.argv[1]}/rank{rt.rank}.pt")
    common.shutdown_runtime(rt)
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["steps"] == r1["steps"] == 2  # 8 samples / 2 ranks / batch 2
    torch.testing.assert_close(r0["params"], r1["params"], rtol=0, atol=0)  # gradients were all-reduced
    assert (tmp_path / "checkpoint.pt").exists()  # written by rank 0
