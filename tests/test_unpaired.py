"""Unpaired translation (seed 003, AN-GAN): the AN generator, the 70x70 PatchGAN, the planner's cycle model,
unpaired batches, SynthTrainer_ANGAN (steps, resume, CLI) and synth_predict with its generator."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from synthunet.architectures import build_network
from synthunet.architectures.angan import ANGANGenerator, AdaptiveNorm, HighFrequencyMask
from synthunet.errors import InputError
from synthunet.planning import plans_for_fingerprint
from synthunet.planning.layers import architecture_layers, cycle_spec, patchgan_layers, patchgan_spec
from synthunet.planning.memory import count_parameters, estimate_training_memory
from synthunet.planning.timing import CpuSpeed, forward_flops, training_step_flops
from synthunet.prediction.checkpoints import load_checkpoint
from synthunet.training import Experiment, get_trainer_class
from synthunet.training.data import (BatchAugmenter, CaseCache, PairedBatchError, PatchSampler, TrainingBatches,
                                     UnpairedTrainingBatches, unpaired_batch)
from synthunet.training.losses import PatchDiscriminator, patchgan_receptive_field
from synthetic_raw import make_tiny_raw_dataset
from test_training_fixtures import (DATASET, Interrupted, prepare, run_training, seed_everything,  # noqa: F401
                                    single_thread, tiny_plans)

pytestmark = pytest.mark.usefixtures("single_thread")

TINY_ANGAN = {"name": "angan", "kwargs": {"features": [4, 8, 8], "n_res_blocks": 1, "mask_hidden": 4}}
FINGERPRINT = {"dataset_name": "Dataset999_Test", "channel_names": {"0": "T1N", "1": "T1C", "2": "T2W", "3": "T2F"},
               "label_values": [], "spacings": [[2.0, 2.0, 2.0]] * 10,
               "shapes_after_cropping": [[60 + i % 3, 70, 62] for i in range(10)]}


def angan_plans() -> dict:
    """The fixture's tiny plans with a tiny AN generator in 2.5d and 32^2 patches (named synthUNetPlans_angan)."""
    plans = tiny_plans(patch_2d=(32, 32))
    plans["plans_name"] = "synthUNetPlans_angan"
    plans["configurations"]["2.5d"]["architecture"] = json.loads(json.dumps(TINY_ANGAN))
    return plans


def prepare_angan(tmp_path, monkeypatch) -> None:
    prepare(tmp_path, monkeypatch)
    folder = tmp_path / "preprocessed" / DATASET
    (folder / "synthUNetPlans_angan.json").write_text(json.dumps(angan_plans()))


def angan_trainer(num_epochs: int = 1, **options):
    experiment = Experiment.resolve(990, "2.5d", "T2W", 0, trainer_name="SynthTrainer_ANGAN",
                                    plans_name="synthUNetPlans_angan", inputs=["T2F"])
    return get_trainer_class("SynthTrainer_ANGAN")(experiment, device="cpu", num_epochs=num_epochs,
                                                   final_validation=False, **options)


# ---------------------------------------------------------------------------------------------------
# the adaptive normalisation and the generator


def _randomise(layer: AdaptiveNorm) -> None:
    for conv in (layer.gamma, layer.beta):
        torch.nn.init.normal_(conv.weight, std=0.3)
        torch.nn.init.normal_(conv.bias, std=0.3)


def test_adaptive_norm_modulates_with_the_mask_and_is_instance_norm_at_zero():
    torch.manual_seed(0)
    layer = AdaptiveNorm(2, channels=5, mask_channels=3, hidden=6)
    h, mask = torch.randn(2, 5, 12, 12), torch.randn(2, 3, 12, 12)
    plain = F.instance_norm(h, eps=1e-5)
    assert torch.allclose(layer(h, mask), plain, atol=1e-6)  # initial state: gamma = beta = 0
    _randomise(layer)
    out = layer(h, mask)
    assert not torch.allclose(out, plain, atol=1e-3)
    other = mask.clone()
    other[:, :, 3:6, 3:6] += 1.0  # a local change of the mask changes the output there, not far away
    changed = (layer(h, other) - out).abs().amax(dim=(0, 1))
    assert changed[3:6, 3:6].min() > 1e-3 and changed[10:, 10:].max() == 0
    with torch.no_grad():
        for conv in (layer.gamma, layer.beta):
            conv.weight.zero_()
            conv.bias.zero_()
    assert torch.allclose(layer(h, other), plain, atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        layer(h, mask[:, :, :6, :6])


def test_high_frequency_mask_is_source_minus_gaussian_blur():
    x = torch.rand(1, 2, 20, 18)
    expected = np.stack([c - gaussian_filter(c, 1.0, mode="constant", truncate=2.0) for c in x[0].numpy()])
    assert np.allclose(HighFrequencyMask(2, 2, sigma=1.0)(x)[0].numpy(), expected, atol=1e-5)
    assert torch.allclose(HighFrequencyMask(2, 1)(torch.full((1, 1, 9, 9), 0.7))[0, 0, 3:6, 3:6], torch.zeros(3, 3),
                          atol=1e-6)  # no high frequencies in a constant image (away from the zero padding)
    generator = ANGANGenerator(2, 2, 1, features=[4, 8, 8])
    masks = generator.masks(x[:, :, :16, :16])
    assert [tuple(m.shape[2:]) for m in masks] == [(16, 16), (8, 8)]
    assert torch.allclose(masks[1], generator.mask(F.avg_pool2d(x[:, :, :16, :16], 2)))


def test_generator_output_depends_on_the_mask_through_the_decoder():
    torch.manual_seed(1)
    generator = ANGANGenerator(2, 3, 1, features=[4, 8, 8], n_res_blocks=1)
    for layer in generator.modules():
        if isinstance(layer, AdaptiveNorm):
            _randomise(layer)
    x = torch.rand(1, 3, 16, 16)
    generator.mask.forward = lambda t: torch.zeros_like(t)  # the mask off: only the decoder's AN input changes
    without = generator(x)
    del generator.mask.forward
    assert not torch.allclose(generator(x), without, atol=1e-4)
    assert all(state.startswith(("stem", "down", "bottleneck", "decoder", "output"))
               for state in generator.state_dict())  # the fixed Gaussian taps are not stored


@pytest.mark.parametrize("kwargs,in_channels,out_channels,patch", [
    ({"features": [8, 16, 32, 32], "n_res_blocks": 2, "mask_hidden": 8}, 9, 1, (32, 32)),  # G: stack -> slice
    ({"features": [8, 16, 32, 32], "n_res_blocks": 2, "mask_hidden": 8}, 1, 9, (32, 32)),  # R: slice -> stack
    ({"features": [4, 8], "mask_sigma": 2.0, "n_res_blocks": 0}, 2, 1, (8, 12, 8))])        # 3D, sigma 2
def test_layer_model_counts_the_generator_exactly(kwargs, in_channels, out_channels, patch):
    architecture = {"name": "angan", "kwargs": kwargs}
    network = build_network(architecture, in_channels, out_channels, dimension=len(patch))
    x = torch.rand(2, in_channels, *patch)
    out = network(x)
    assert out.shape == (2, out_channels, *patch)
    out.abs().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())
    layers = architecture_layers(architecture, patch, in_channels, out_channels)
    assert count_parameters(layers) == sum(p.numel() for p in network.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(x[:1])
    assert forward_flops(layers) == counter.get_total_flops()
    with pytest.raises(ValueError, match="not divisible"):
        network(torch.rand(1, in_channels, *[p + 1 for p in patch]))


# ---------------------------------------------------------------------------------------------------
# the 70x70 PatchGAN


def test_patchgan_receptive_field_is_70_analytically_and_by_gradient():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(1, 2, (128, 128), base_features=8, tail_kernel=4)
    convs = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0]) for c in convs] == [(4, 2)] * 3 + [(4, 1)] * 2
    assert patchgan_receptive_field(discriminator) == 70
    # the default (seed 000) tail has 3x3 stride-1 layers: a smaller field
    assert patchgan_receptive_field(PatchDiscriminator(1, 2, (128, 128), base_features=8)) == 54
    x = torch.rand(1, 1, 128, 128, requires_grad=True)
    scores = discriminator(x)
    assert scores.shape == (1, 1, 14, 14)
    scores[0, 0, 7, 6].backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70
    assert len(rows) == 70 * 70  # the whole window, not just its bounding box
    # classic widths 64-128-256-512-1 as the planner counts them
    full = PatchDiscriminator(9, 2, (64, 64), tail_kernel=4)
    assert [c.out_channels for c in full.modules() if isinstance(c, torch.nn.Conv2d)] == [64, 128, 256, 512, 1]
    spec = patchgan_spec(9, (64, 64), tail_kernel=4, conditional=False)
    assert count_parameters(patchgan_layers(spec, (64, 64))) == sum(p.numel() for p in full.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        full(torch.rand(1, 9, 64, 64))
    assert forward_flops(patchgan_layers(spec, (64, 64))) == counter.get_total_flops()
    # small patches: fewer downsamplings (the map must keep >= 3 voxels for the two 4x4 stride-1 layers)
    small = PatchDiscriminator(1, 2, (16, 16), tail_kernel=4)
    assert small(torch.rand(1, 1, 16, 16)).shape == (1, 1, 2, 2) and patchgan_receptive_field(small) == 34


def test_the_instance_norm_patchgan_is_cyclegans_and_the_planner_counts_it():
    torch.manual_seed(0)
    spectral = PatchDiscriminator(9, 2, (64, 64), tail_kernel=4)
    instance = PatchDiscriminator(9, 2, (64, 64), tail_kernel=4, norm="instance")
    kinds = [type(m).__name__ for m in instance.model]
    # C64 (no norm) - C128-IN - C256-IN - C512-IN - score, LeakyReLU 0.2, no spectral norm
    assert kinds == ["Conv2d", "LeakyReLU"] + ["Conv2d", "InstanceNorm2d", "LeakyReLU"] * 3 + ["Conv2d"]
    assert not any("parametrizations" in name for name, _ in instance.named_parameters())
    assert sum("parametrizations" in name for name, _ in spectral.named_parameters()) == 5
    assert patchgan_receptive_field(instance) == 70
    # the spectral layout (and so the paired recipes' checkpoints) is unchanged by the option
    assert [name for name in spectral.state_dict() if not name.endswith("_u") and not name.endswith("_v")][:2] == [
        "model.0.bias", "model.0.parametrizations.weight.original"]
    spec = patchgan_spec(9, (64, 64), tail_kernel=4, conditional=False, norm="instance")
    layers = patchgan_layers(spec, (64, 64))
    assert [layer.kind for layer in layers if layer.kind in ("conv", "normalize")] == [
        "conv", "conv", "normalize", "conv", "normalize", "conv", "normalize", "conv"]
    assert count_parameters(layers) == sum(p.numel() for p in instance.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        instance(torch.rand(1, 9, 64, 64))
    assert forward_flops(layers) == counter.get_total_flops()
    with pytest.raises(ValueError, match="norm must be one of"):
        PatchDiscriminator(1, 2, (64, 64), norm="batch")


# ---------------------------------------------------------------------------------------------------
# planning


def test_planner_sizes_angan_with_reverse_generator_and_two_discriminators():
    for device in ("cpu", "cuda"):
        plans = plans_for_fingerprint(FINGERPRINT, device=device, configurations=["3d_fullres", "2.5d"],
                                      cpu_speed=CpuSpeed(60.0, 30.0), architecture="angan",
                                      plans_name="synthUNetPlans_angan")
        blocks = plans["configurations"]
        assert blocks["2.5d"]["architecture"]["name"] == "angan"
        assert blocks["3d_fullres"]["architecture"]["name"] == "unet"
        # unpaired plans start G from tissue matching fitted without pairs, on every device
        assert blocks["2.5d"]["architecture"]["prior"] == "tissue_matched_input"
        assert {b["data_identifier"] for b in blocks.values()} == {"synthUNetPlans_3d_fullres"}
        block = blocks["2.5d"]
        architecture, patch, batch = block["architecture"], block["patch_size"], block["batch_size"]
        in_channels = block["estimates"]["assumed_in_channels"]
        assert block["estimates"]["fits_budget"] and in_channels == 9
        assert all(p % 2 ** (len(architecture["kwargs"]["features"]) - 1) == 0 for p in patch)
        generator = build_network(architecture, in_channels, 1, dimension=2)
        reverse = build_network(architecture, 1, in_channels, dimension=2)
        assert block["estimates"]["parameters"] == sum(p.numel() for p in generator.parameters())
        if device == "cpu":
            assert block["estimates"]["step_time_s"] <= 1.0
        # the model counts R and both discriminators
        cycle = cycle_spec(architecture, in_channels, patch)
        assert [spec["norm"] for spec in cycle["discriminators"]] == ["instance", "instance"]
        discriminators = [PatchDiscriminator(c, 2, tuple(patch), tail_kernel=4, norm="instance")
                          for c in (1, in_channels)]
        mixed = device == "cuda"
        alone = estimate_training_memory(architecture, patch, batch, in_channels, mixed_precision=mixed)
        memory = estimate_training_memory(architecture, patch, batch, in_channels, mixed_precision=mixed, cycle=cycle)
        per_parameter = 16 + 2 * mixed
        assert memory.parameters_and_optimizer == per_parameter * sum(
            p.numel() for n in (generator, reverse) for p in n.parameters())
        assert memory.discriminator > per_parameter * sum(  # activations + weights (no spectral-norm copies)
            p.numel() for d in discriminators for p in d.parameters())
        assert memory.activations > 2 * alone.activations and memory.batch == 2 * alone.batch
        assert round(memory.total / 2 ** 30, 3) == block["estimates"]["peak_training_memory_gb"]
        d_flops = [forward_flops(patchgan_layers(spec, patch)) for spec in cycle["discriminators"]]
        for discriminator, flops in zip(discriminators, d_flops):
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                discriminator(torch.rand(1, discriminator.model[0].in_channels, *patch))
            assert flops == counter.get_total_flops()
        g_flops = forward_flops(architecture_layers(architecture, patch, in_channels, 1))
        r_flops = forward_flops(architecture_layers(architecture, patch, 1, in_channels))
        assert training_step_flops(architecture, patch, batch, in_channels, cycle=cycle) == \
            3 * batch * (2 * (g_flops + r_flops) + 3 * sum(d_flops))
        assert block["estimates"]["flops_per_step"] == 3 * batch * (2 * (g_flops + r_flops) + 3 * sum(d_flops))
    assert cycle_spec(blocks["3d_fullres"]["architecture"], 3, [16, 16, 16]) is None


# ---------------------------------------------------------------------------------------------------
# unpaired batches


def _streams(tmp_path, batch_size=3):
    experiment = Experiment.resolve(990, "2.5d", "T2W", 0, plans_name="synthUNetPlans_angan", inputs=["T2F"])
    train_cases, _ = experiment.fold_cases()
    common = dict(input_indices=experiment.input_indices, target_index=experiment.target_index,
                  patch_size=[32, 32], num_slices=3, slicing_axes=[0, 1, 2])
    streams = [TrainingBatches(PatchSampler(CaseCache(experiment.data_folder), train_cases, **common), batch_size)
               for _ in range(2)]
    return experiment, train_cases, streams


def test_unpaired_batches_never_share_case_ids(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    experiment, train_cases, (source, target) = _streams(tmp_path)
    stream = UnpairedTrainingBatches(source, target)
    np.random.seed(0)
    seen_a, seen_b = set(), set()
    augment = BatchAugmenter([32, 32])
    for _ in range(30):
        raw = stream.next_batch()
        batch = unpaired_batch(augment(raw["source"]), augment(raw["target"]))  # what the trainer does on its device
        assert not set(batch["a_case_ids"]) & set(batch["b_case_ids"])
        assert batch["a"].shape == (3, 3, 32, 32) and batch["b"].shape == (3, 1, 32, 32)
        assert "data" not in batch and "target" not in batch
        seen_a |= set(batch["a_case_ids"])
        seen_b |= set(batch["b_case_ids"])
    assert seen_a == seen_b == set(train_cases)  # shuffled independently: every case on both sides over time


def test_a_paired_batch_is_refused(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    _, _, (source, target) = _streams(tmp_path)
    np.random.seed(0)
    augment = BatchAugmenter([32, 32])
    paired = augment(source.next_batch())  # inputs and targets of the same patches
    others = augment(target.next_batch([c for c in target.sampler.case_ids if c not in paired["case_ids"]]))
    combined = unpaired_batch(paired, others)  # the source half's inputs, the target half's targets
    assert torch.equal(combined["a"], paired["data"]) and torch.equal(combined["b"], others["target"])
    assert combined["a_case_ids"] == paired["case_ids"] and combined["b_case_ids"] == others["case_ids"]
    with pytest.raises(PairedBatchError, match="appear in both the source and the target half"):
        unpaired_batch(paired, paired)
    other = dict(augment(target.next_batch()), case_ids=[paired["case_ids"][0], "case_999", "case_998"])
    with pytest.raises(PairedBatchError, match=paired["case_ids"][0]):
        unpaired_batch(paired, other)
    single = PatchSampler(source.sampler.cases, source.sampler.case_ids[:1], source.sampler.input_indices,
                          source.sampler.target_index, [32, 32], num_slices=3, slicing_axes=[0])
    with pytest.raises(ValueError, match="at least 2 training cases"):
        UnpairedTrainingBatches(TrainingBatches(single, 2), TrainingBatches(single, 2))


# ---------------------------------------------------------------------------------------------------
# the trainer


def test_the_discriminators_learn_at_their_own_rate_on_the_plans_schedule(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    trainer = angan_trainer()
    trainer.initialize()
    try:
        plans_lr = trainer.training.initial_lr
        assert plans_lr != pytest.approx(2e-4)
        for epoch in (0, 1):
            lr = trainer.schedule.step(epoch)
            assert lr == pytest.approx(trainer.schedule.lr_at(epoch))
            assert [o.param_groups[0]["lr"] for o in (trainer.optimizer, trainer.reverse_optimizer)] == [
                pytest.approx(lr)] * 2
            assert [o.param_groups[0]["lr"] for o in trainer.discriminator_optimizers] == [
                pytest.approx(2e-4 * lr / plans_lr)] * 2
    finally:
        trainer.close()


def test_an_optimiser_setting_reaches_all_four_networks(tmp_path, monkeypatch):
    from synthunet.training.trainers.unpaired import SynthTrainer_ANGAN

    prepare_angan(tmp_path, monkeypatch)
    monkeypatch.setattr(SynthTrainer_ANGAN, "optimiser", {"initial_lr": 2e-4, "betas": [0.5, 0.999]})
    monkeypatch.setattr(SynthTrainer_ANGAN, "discriminator_lr", None)
    trainer = angan_trainer()
    trainer.initialize()
    try:
        optimisers = [trainer.optimizer, trainer.reverse_optimizer, *trainer.discriminator_optimizers]
        for optimiser in optimisers:
            group = optimiser.param_groups[0]
            assert group["lr"] == pytest.approx(2e-4) and tuple(group["betas"]) == (0.5, 0.999)
    finally:
        trainer.close()


def test_trains_through_the_normal_trainer(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    seed_everything(0)
    trainer = angan_trainer()
    before, start_epoch = {}, trainer.on_epoch_start

    def snapshot(epoch):  # the initial weights of all four networks
        before.update({name: {k: v.clone() for k, v in module.state_dict().items()} for name, module in (
            ("g", trainer.network), ("r", trainer.reverse), ("da", trainer.discriminator_a),
            ("db", trainer.discriminator_b))})
        start_epoch(epoch)

    trainer.on_epoch_start = snapshot
    trainer.run_training()  # 1 epoch x 2 iterations
    for critic in (trainer.discriminator_a, trainer.discriminator_b):  # CycleGAN's instance-norm PatchGANs
        assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in critic.modules()) >= 1
    fold = trainer.experiment.output_folder
    checkpoint = load_checkpoint(fold / "checkpoint_final.pth")  # weights_only=True
    assert checkpoint["trainer"] == "SynthTrainer_ANGAN" and checkpoint["epoch"] == 1
    for key in ("reverse_weights", "reverse_optimizer_state", "discriminator_a_weights", "discriminator_b_weights",
                "discriminator_a_optimizer_state", "discriminator_b_optimizer_state"):
        assert key in checkpoint, key
    logged = checkpoint["logging"]
    for key in ("train_loss", "train_cycle", "train_adversarial_g", "train_adversarial_r", "train_discriminator_a",
                "train_discriminator_b", "val_ssim"):
        assert len(logged[key]) == 1 and np.isfinite(logged[key][0]), key
    assert "identity" not in " ".join(logged)
    for name, key in (("g", "network_weights"), ("r", "reverse_weights"), ("da", "discriminator_a_weights"),
                      ("db", "discriminator_b_weights")):
        assert any(not torch.equal(before[name][k], checkpoint[key][k]) for k in before[name]), name
    # the generator alone is the model: a plain build_network of the plans loads it
    plain = build_network(TINY_ANGAN, 3, 1, dimension=2)
    plain.load_state_dict(checkpoint["network_weights"])
    assert "unpaired" in (fold / "training_log.txt").read_text()

    # every term trains: a few steps on one fixed unpaired batch lower the cycle loss
    batch = trainer.augment(trainer.to_device(next(trainer.training_batches())))
    assert not set(batch["a_case_ids"]) & set(batch["b_case_ids"])
    cycles = [float(trainer.train_step(batch)["cycle"]) for _ in range(8)]
    assert cycles[-1] < cycles[0], cycles


def test_identity_loss_is_optional(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    seed_everything(0)
    trainer = angan_trainer()
    trainer.identity_weight = 0.5
    trainer.initialize()
    parts = trainer.train_step(trainer.augment(trainer.to_device(next(trainer.training_batches()))))
    assert "identity" in parts and float(parts["identity"]) > 0


def test_discriminators_see_synthesised_images_only_on_the_source_support(tmp_path, monkeypatch):
    """G(a) and R(b) reach the discriminators exactly 0 wherever their source is 0 in every channel (outside the
    brain, as synth_predict exports them) and non-zero inside: a critic cannot tell fakes by the background."""
    prepare_angan(tmp_path, monkeypatch)
    seed_everything(0)
    trainer = angan_trainer()
    trainer.initialize()
    seen = {}
    for name in ("discriminator_a", "discriminator_b"):
        critic = getattr(trainer, name)

        def capture(x, name=name, forward=critic.forward):
            seen.setdefault(name, x.detach().clone())  # the first call: the generators' pass
            return forward(x)

        critic.forward = capture
    batch = trainer.augment(trainer.to_device(next(trainer.training_batches())))
    trainer.train_step(batch)
    for name, source in (("discriminator_b", batch["a"]), ("discriminator_a", batch["b"])):
        fake, inside = seen[name], (source != 0).any(dim=1, keepdim=True).expand_as(seen[name])
        assert fake.shape[0] == source.shape[0] and inside.any() and not inside.all(), name
        assert torch.all(fake[~inside] == 0), name
        assert (fake[inside] != 0).float().mean() > 0.99, name


@pytest.mark.parametrize("prior", ["matched_input", "tissue_matched_input"])
def test_generator_starts_from_the_unpaired_closed_form(tmp_path, monkeypatch, prior):
    """With a matched_input or (as planned) tissue_matched_input prior, G = that map of the source's central slice
    + a network whose output starts at 0; the map is fitted from disjoint halves of the training cases."""
    from synthunet.architectures.baselines import QuantileMapping
    from synthunet.architectures.model_network import TISSUE_LEVELS, PriorResidual
    from test_unpaired_baseline import record_channel_reads

    prepare_angan(tmp_path, monkeypatch)
    folder = tmp_path / "preprocessed" / DATASET
    plans = angan_plans()
    plans["configurations"]["2.5d"]["architecture"]["prior"] = prior
    (folder / "synthUNetPlans_angan.json").write_text(json.dumps(plans))
    reads = record_channel_reads(monkeypatch)
    seed_everything(0)
    trainer = angan_trainer()
    trainer.initialize()
    experiment = trainer.experiment
    source, target = reads[experiment.input_indices[0]], reads[experiment.target_index]
    assert source and target and not set(source) & set(target)
    assert set(source) | set(target) == set(experiment.fold_cases()[0])
    assert isinstance(trainer.network, PriorResidual)
    matching = trainer.network.prior.slice_model
    assert isinstance(matching, QuantileMapping)
    if prior == "matched_input":  # histogram matching is increasing; tissue matching need not be
        assert torch.all(torch.diff(matching.target_levels) > 0)
    else:
        assert len(matching.source_levels) == TISSUE_LEVELS
    batch = trainer.augment(trainer.to_device(next(trainer.training_batches())))
    a = batch["a"]
    with torch.no_grad():
        centre = a[:, 1:2]  # one input, 3 slices: the central slice is channel 1
        expected = torch.from_numpy(np.interp(centre.numpy(), matching.source_levels.numpy(),
                                              matching.target_levels.numpy())).float()
        inside = ((centre > matching.source_levels[0]) & (centre < matching.source_levels[-1])
                  & (a != 0).any(dim=1, keepdim=True))  # outside the support G is 0 (on_support)
        generated = trainer.masked(trainer.network(a), a)
    assert inside.sum() >= 50, int(inside.sum())
    assert torch.allclose(generated[inside], expected[inside], atol=1e-5)


def test_unpaired_recipe_cannot_fit_a_prior_that_needs_pairs(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    plans = angan_plans()
    plans["configurations"]["2.5d"]["architecture"]["prior"] = "voxel_regression"
    (tmp_path / "preprocessed" / DATASET / "synthUNetPlans_angan.json").write_text(json.dumps(plans))
    with pytest.raises(InputError, match="tissue_matched_input"):
        angan_trainer().initialize()


def _run(tmp_path, monkeypatch, results: str, interrupt_at: int | None = None, resume: bool = False):
    monkeypatch.setenv("synthUNet_results", str(tmp_path / results))
    seed_everything(123)
    trainer = angan_trainer(num_epochs=3)
    run_training(trainer, interrupt_at, resume)
    return trainer.experiment.output_folder


def test_resume_restores_reverse_generator_and_discriminators(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    straight = _run(tmp_path, monkeypatch, "a")
    with pytest.raises(Interrupted):  # dies in epoch 1, after checkpoint_latest of epoch 0
        _run(tmp_path, monkeypatch, "b", interrupt_at=4)
    resumed = _run(tmp_path, monkeypatch, "b", resume=True)
    a, b = load_checkpoint(straight / "checkpoint_final.pth"), load_checkpoint(resumed / "checkpoint_final.pth")
    assert a["epoch"] == b["epoch"] == 3
    for key in ("network_weights", "reverse_weights", "discriminator_a_weights", "discriminator_b_weights"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for key in ("reverse_optimizer_state", "discriminator_a_optimizer_state", "discriminator_b_optimizer_state"):
        for index, state in a[key]["state"].items():
            assert torch.equal(state["exp_avg"], b[key]["state"][index]["exp_avg"]), key
    assert "resumed from checkpoint_latest.pth at epoch 1" in (resumed / "training_log.txt").read_text()
    # and a checkpoint without them is not silently accepted
    trainer = angan_trainer()
    trainer.initialize()
    incomplete = {k: v for k, v in a.items() if k != "reverse_weights"}
    with pytest.raises(KeyError, match="reverse_weights"):
        trainer.load_recipe_state(incomplete)


@pytest.mark.parametrize("arguments,message", [
    (["990", "2.5d", "T2W", "0", "--inputs", "T2F", "--unpaired"],
     "--unpaired needs an unpaired recipe (SynthTrainer_ANGAN, Baseline_HistogramMatching, Baseline_TissueMatching); "
     "SynthTrainer trains on paired patches"),
    (["990", "2.5d", "T2W", "0", "-tr", "SynthTrainer_GAN", "--unpaired"], "--unpaired needs an unpaired recipe"),
    (["990", "3d_fullres", "T2W", "0", "-tr", "SynthTrainer_ANGAN", "--unpaired"],
     "SynthTrainer_ANGAN trains 2.5d configurations"),
    (["990", "2.5d", "T2W", "0", "-tr", "SynthTrainer_ANGAN", "-p", "synthUNetPlans_angan", "--num_gpus", "2",
      "--device", "cpu"], "SynthTrainer_ANGAN runs in one process"),
])
def test_cli_errors(tmp_path, monkeypatch, capsys, arguments, message):
    from synthunet.training.cli import main

    prepare_angan(tmp_path, monkeypatch)
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_unpaired_false_is_refused_and_the_flag_is_implied(tmp_path, monkeypatch):
    prepare_angan(tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="unpaired batches only"):
        angan_trainer(unpaired=False)
    assert angan_trainer(unpaired=True).unpaired and angan_trainer().unpaired


# ---------------------------------------------------------------------------------------------------
# end to end: plan (--architecture angan), train (--unpaired), synth_predict with the trained G


def test_plan_train_and_synth_predict_end_to_end(tmp_path, monkeypatch):
    from synthunet.inference.cli import main as predict_main
    from synthunet.planning.plan_and_preprocess import main as plan_main
    from synthunet.training import load_trained_model
    from synthunet.training.cli import main as train_main
    from synthunet.dataset.image_io import read_image

    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    name = "Dataset993_Unpaired"
    raw = make_tiny_raw_dataset(tmp_path / "raw" / name, n_cases=5, shape=(20, 24, 22), seed=3)
    assert plan_main(["-d", "993", "--architecture", "angan", "-c", "2.5d", "-np", "1", "--cpu_gflops", "40",
                      "--cpu_training_minutes", "0.02", "--no_progress"]) == 0
    plans = json.loads((tmp_path / "preprocessed" / name / "synthUNetPlans_angan.json").read_text())
    assert plans["configurations"]["2.5d"]["architecture"]["name"] == "angan"
    assert train_main(["993", "2.5d", "T2W", "0", "-tr", "SynthTrainer_ANGAN", "-p", "synthUNetPlans_angan",
                       "--inputs", "T2F", "--unpaired", "--epochs", "1", "--device", "cpu",
                       "--skip_final_validation"]) == 0
    model = tmp_path / "results" / name / "SynthTrainer_ANGAN__synthUNetPlans_angan__2.5d__T2W"
    network, info, _ = load_trained_model(model, 0, "cpu")
    assert isinstance(network.network, ANGANGenerator) and info["inputs"] == ["T2F"]  # on the planned prior
    weights = load_checkpoint(model / "fold_0" / "checkpoint_final.pth")["network_weights"]
    assert all(torch.equal(v, weights[k]) for k, v in network.state_dict().items())

    case = json.loads((tmp_path / "preprocessed" / name / "splits_final.json").read_text())[0]["val"][0]
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    shutil.copy(raw / "imagesTr" / f"{case}_0003.nii.gz", held_out / f"{case}_0003.nii.gz")  # T2F only
    assert predict_main(["-i", str(held_out), "-o", str(tmp_path / "out"), "-d", "993", "-c", "2.5d",
                         "-tr", "SynthTrainer_ANGAN", "-p", "synthUNetPlans_angan", "-f", "0", "--target", "T2W",
                         "--disable_tta", "--orientations", "1", "-npp", "0", "-nps", "0", "--device", "cpu"]) == 0
    prediction, geometry = read_image(tmp_path / "out" / f"{case}_0002.nii.gz")
    source, source_geometry = read_image(held_out / f"{case}_0003.nii.gz")
    assert prediction.shape == source.shape and not geometry.differences(source_geometry, tolerance=1e-5)
    brain = source > 0
    assert np.isfinite(prediction).all() and np.all(prediction[~brain] == 0) and prediction[brain].std() > 0


# ---------------------------------------------------------------------------------------------------
# benchmarks/unpaired.py (smoke test on a tiny dataset; the real run is by hand)


def test_unpaired_benchmark_smoke(tmp_path, monkeypatch, capsys):
    import importlib.util
    import re
    import sys
    from pathlib import Path

    for key in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"synthUNet_{key}", str(tmp_path / key))
    monkeypatch.setenv("SYNTHUNET_NUM_WORKERS", "0")
    make_tiny_raw_dataset(tmp_path / "raw" / "Dataset992_UnpairedBench", n_cases=5, shape=(20, 24, 22), seed=4)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "unpaired.py"
    spec = importlib.util.spec_from_file_location("benchmark_unpaired", path)
    benchmark = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, benchmark)
    spec.loader.exec_module(benchmark)
    output = tmp_path / "out" / "unpaired.md"
    argv = ["-d", "992", "--minutes", "0.02", "--orientations", "1", "-o", str(output), "--work_dir",
            str(tmp_path / "work"), "-np", "1",
            "--plan_args", "--cpu_gflops 40 --cpu_training_minutes 0.02 --no_progress"]
    assert benchmark.main(argv) == 0  # plans both (default and angan), trains, predicts, evaluates
    text = output.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    cells = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in rows[1:]]
    assert [c["method"].split()[0] for c in cells] == ["SynthTrainer_ANGAN", "SynthTrainer",
                                                       "Baseline_HistogramMatching", "Baseline_TissueMatching"]
    assert [c["configuration"] for c in cells] == ["2.5d", "2.5d", "3d_fullres", "3d_fullres"]
    for cell in cells:
        assert cell["target"] == "T2W" and cell["n cases"] == "1"
        for region in ("brain", "tumour", "healthy"):
            for metric in ("PSNR", "SSIM"):
                assert re.fullmatch(r"-?\d+\.\d+ ± -?\d+\.\d+", cell[f"{region} {metric}"]), (cell, region)
        assert re.fullmatch(r"\d+\.\d+", cell["train min/fold"]) and re.fullmatch(r"\d+\.\d+", cell["infer s/case"])
    for word in ("T2W from T2F", "fold 0", "budget: 0.02 min", "synthUNetPlans_angan", "machine:"):
        assert word in text, word
    content = json.loads(output.with_suffix(".json").read_text())
    assert [r["plans"] for r in content["rows"]] == ["synthUNetPlans_angan", "synthUNetPlans", "synthUNetPlans",
                                                     "synthUNetPlans"]
    assert all(r["inputs"] == ["T2F"] for r in content["rows"])
    model = tmp_path / "results" / "Dataset992_UnpairedBench"
    assert (model / "SynthTrainer_ANGAN__synthUNetPlans_angan__2.5d__T2W" / "fold_0" / "checkpoint_final.pth").is_file()
    capsys.readouterr()
    assert benchmark.main(argv) == 0  # resumable: nothing is trained or predicted again
    printed = capsys.readouterr().out
    assert "synth_train" not in printed and "synth_predict" not in printed and printed.count("reusing") == 8
    assert benchmark.main([*argv, "--methods", "Baseline_HistogramMatching"]) == 0   # one row, reused
    assert "| Baseline_HistogramMatching" in output.read_text() and "| SynthTrainer " not in output.read_text()
    assert benchmark.main([*argv, "--methods", "Nope"]) == 2
    assert "Unknown method(s) Nope" in capsys.readouterr().err
    assert benchmark.main([*argv, "--source", "PD"]) == 2
    assert "choose from: T1N, T1C, T2W, T2F" in capsys.readouterr().err


def test_discriminator_probe_benchmark_smoke(tmp_path, monkeypatch, capsys):
    """benchmarks/unpaired_discriminator.py on the tiny angan dataset: one row per variant and report step, scores
    of held-out real and synthesised slices, the gap between them, and a clear error for a bad variant."""
    import sys
    from pathlib import Path

    prepare_angan(tmp_path, monkeypatch)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import unpaired_discriminator as benchmark
    finally:
        sys.path.pop(0)
    output = tmp_path / "d.md"
    argv = ["-d", "990", "--source", "T2F", "--target", "T2W", "--steps", "4", "--held_out", "2", "--every", "2",
            "--variants", "spectral:1e-3", "instance:2e-4", "-o", str(output)]
    assert benchmark.main(argv) == 0
    rows = json.loads(output.with_suffix(".json").read_text())["rows"]
    assert [(r["norm"], r["lr"], r["step"]) for r in rows] == [
        ("spectral", 1e-3, 2), ("spectral", 1e-3, 4), ("instance", 2e-4, 2), ("instance", 2e-4, 4)]
    for row in rows:
        assert row["gap"] == pytest.approx(row["real"] - row["fake"])
        assert 0.0 <= row["sorted_right"] <= 1.0 and np.isfinite(row["train_loss"])
    assert output.read_text().count("\n| instance | 0.0002 |") == 2
    capsys.readouterr()
    assert benchmark.main([*argv[:-4], "batch:1e-3", "-o", str(output)]) == 2
    assert "NORM:LR" in capsys.readouterr().err
