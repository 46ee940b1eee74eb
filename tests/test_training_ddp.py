"""DistributedDataParallel: two CPU processes (gloo) train a few iterations and end with identical weights."""
from __future__ import annotations

import time

import torch

from synthunet.architectures.model_network import inner_network
from synthunet.training.cli import train_fold
from synthunet.training.distributed import launch
from test_training_fixtures import prepare


def _train_and_dump(device, rank, world_size, out_folder):
    """Runs in each spawned process: train, then save this rank's weights."""
    torch.set_num_threads(1)
    trainer = train_fold("990", "3d_fullres", "T1C", "0", epochs=1, device=device, rank=rank, world_size=world_size,
                         num_workers=0, final_validation=False)
    torch.save(inner_network(trainer.network).state_dict(), f"{out_folder}/rank{rank}.pth")
    torch.save({"batch": trainer.batch_size}, f"{out_folder}/info{rank}.pth")


def test_two_gloo_processes_end_with_identical_weights(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    started = time.time()
    launch(_train_and_dump, 2, "cpu", seed=0, out_folder=str(tmp_path))
    weights = [torch.load(tmp_path / f"rank{r}.pth", weights_only=True) for r in range(2)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    info = [torch.load(tmp_path / f"info{r}.pth", weights_only=True) for r in range(2)]
    assert info[0]["batch"] == info[1]["batch"] == 1  # the plans' batch of 2 split over 2 processes
    results = list((tmp_path / "results").rglob("checkpoint_final.pth"))
    assert len(results) == 1  # only rank 0 writes
    final = torch.load(results[0], weights_only=True)["network_weights"]
    assert all(torch.equal(final[k], weights[0][k]) for k in final)
    print(f"DDP test took {time.time() - started:.1f} s")
