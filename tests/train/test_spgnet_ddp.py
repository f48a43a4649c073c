"""``torchrun`` with 2 CPU processes (gloo): one code path for single- and multi-process SPGNet training."""

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
    from fastpose.data import SyntheticConfig, load_sequences
    from fastpose.train import common
    from fastpose.train.spgnet import SPGNetTrainConfig, train_spgnet

    rt = common.init_runtime("cpu")
    syn = SyntheticConfig(seed=0, subjects=("S1",), actions=("Walking",), subactions=1, frames=40)
    seqs = load_sequences("synthetic", ("S1",), synthetic=syn)
    cfg = SPGNetTrainConfig(filter_widths=(3,), channels=16, epochs=2, batch_size=32, out_dir=sys.argv[1],
                            progress=False, device="cpu")
    res = train_spgnet(cfg, seqs, runtime=rt, log=lambda s: None)
    flat = torch.cat([p.detach().flatten() for p in res.model.parameters()])
    torch.save({"params": flat, "steps": len(res.step_losses), "world": rt.world_size,
                "history": res.history}, f"{sys.argv[1]}/rank{rt.rank}.pt")
    common.shutdown_runtime(rt)
""")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_torchrun_two_cpu_processes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # 4 cameras x 40 frames (x 0.75-1.25) windows, sharded in two, batches of 32: 2-4 steps per epoch
    assert r0["steps"] == r1["steps"] and 4 <= r0["steps"] <= 8
    torch.testing.assert_close(r0["params"], r1["params"], rtol=0, atol=0)  # gradients were all-reduced
    drop_time = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]
    assert drop_time(r0["history"]) == drop_time(r1["history"])  # epoch losses are all-reduced means
    assert (tmp_path / "checkpoint.pt").exists()  # written by rank 0 only
