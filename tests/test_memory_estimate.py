"""The memory model against the measured peak of real training steps (fresh process per plan)."""
import numpy as np
import pytest

from synthunet.planning import plans_for_fingerprint
from synthunet.planning.measure import measure_training_step
from synthunet.planning.memory import estimate_training_memory
from synthunet.planning.timing import CpuSpeed

#: the model counts tensors; against the allocator-neutral peak RSS it was within -15 % .. +10 % for ten
#: plans of 0.17-1.3 GB (documentation/planning.md); the bound leaves room for other CPUs, oneDNN versions
#: (their own scratch memory is not modelled) and torch versions.
TOLERANCE = 0.25


def _fingerprint(shape):
    rng = np.random.default_rng(0)
    return {"dataset_name": "Dataset999_Test", "channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
            "label_values": [], "spacings": [[2.0, 2.0, 2.0]] * 10,
            "shapes_after_cropping": [[int(v * rng.uniform(0.95, 1.05)) for v in shape] for _ in range(10)]}


@pytest.mark.parametrize("configuration", ["3d_fullres", "2.5d"])
def test_memory_estimate_matches_measured_peak(configuration):
    plans = plans_for_fingerprint(_fingerprint([64, 72, 64]), device="cpu", configurations=[configuration],
                                  cpu_speed=CpuSpeed(60.0, 30.0), step_time_budget_s=1.5)
    block = plans["configurations"][configuration]
    in_channels = block["estimates"]["assumed_in_channels"]
    estimate = estimate_training_memory(block["architecture"], block["patch_size"], block["batch_size"], in_channels)
    measured = measure_training_step(block["architecture"], block["patch_size"], block["batch_size"], in_channels,
                                     steps=2)
    ratio = estimate.total / measured["peak_bytes"]
    print(f"{configuration}: patch {block['patch_size']} batch {block['batch_size']} estimate "
          f"{estimate.total / 2**20:.0f} MiB, measured {measured['peak_bytes'] / 2**20:.0f} MiB, ratio {ratio:.3f}")
    assert abs(ratio - 1) <= TOLERANCE


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("configuration", ["3d_fullres", "2.5d"])
def test_memory_estimate_matches_cuda_max_memory_allocated(configuration):
    """On a GPU: fp16 autocast as the trainer runs, ``torch.cuda.max_memory_allocated``. Not yet run on a
    GPU (none was available while the model was written), hence the wider bound; cuDNN workspaces are
    counted by the measurement but not by the model."""
    plans = plans_for_fingerprint(_fingerprint([64, 72, 64]), device="cuda", configurations=[configuration],
                                  gpu_memory_gb=2.0)
    block = plans["configurations"][configuration]
    in_channels = block["estimates"]["assumed_in_channels"]
    estimate = estimate_training_memory(block["architecture"], block["patch_size"], block["batch_size"], in_channels,
                                        mixed_precision=True)
    measured = measure_training_step(block["architecture"], block["patch_size"], block["batch_size"], in_channels,
                                     steps=2, device="cuda")
    ratio = estimate.total / measured["peak_bytes"]
    print(f"{configuration} (cuda): estimate {estimate.total / 2**20:.0f} MiB, measured "
          f"{measured['peak_bytes'] / 2**20:.0f} MiB, ratio {ratio:.3f}")
    assert abs(ratio - 1) <= 0.4
