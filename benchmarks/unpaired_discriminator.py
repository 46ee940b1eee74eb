"""Can the unpaired recipe's discriminator tell real target slices from G's output at the start of training?

    python benchmarks/unpaired_discriminator.py -d 501 --source T2W --target T2F --steps 300 \\
        --variants spectral:1e-3 instance:2e-4 instance:1e-3 -o discriminator.md

``SynthTrainer_ANGAN`` is set up on the fold (``-p``, default ``synthUNetPlans_angan``, 2.5d) exactly as
``synth_train`` would, without training: G is then its fitted prior (histogram matching for the planned recipe).
``--steps`` + ``--held_out`` unpaired batches are drawn from the recipe's own training stream; for each, the
target slices ``b`` and G's translation of the other cases' sources ``G(a)`` (on the source's support) are kept.
Each ``--variants NORM:LR`` trains a fresh D_B (``PatchDiscriminator``, the recipe's 70x70 layout, seeded
identically) with the recipe's LSGAN loss on the first ``--steps`` batches only (G stays fixed) and reports, every
``--every`` steps, the mean score of D_B on the held-out batches' real and synthesised slices, their gap, and the
share of held-out slices it sorts right (mean score over 0.5 for real, under 0.5 for synthesised). A gap near 0
means D_B gives G no direction: the adversarial term is then a constant.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (benchmarks/ is not a package; its helpers are shared)


def parse_variant(text: str) -> tuple[str, float]:
    """``"instance:2e-4"`` -> ``("instance", 2e-4)``."""
    from synthunet.training.losses.adversarial import PATCHGAN_NORMS

    norm, _, rate = text.partition(":")
    try:
        lr = float(rate)
    except ValueError:
        lr = -1.0
    if norm not in PATCHGAN_NORMS or not lr > 0:
        raise quality.BenchmarkError(f"--variants takes NORM:LR with NORM in {', '.join(PATCHGAN_NORMS)} and LR > 0, "
                                     f"got {text!r}")
    return norm, lr


def draw_batches(args: argparse.Namespace, clock: quality.Clock) -> tuple[list, dict]:
    """``steps + held_out`` pairs ``(b, G(a))`` from the recipe's unpaired stream, and a description of the setup."""
    import torch
    from synthunet.training import Experiment, get_trainer_class

    experiment = Experiment.resolve(args.dataset, args.configuration, args.target, args.fold, "SynthTrainer_ANGAN",
                                    args.plans, [args.source])
    trainer = get_trainer_class("SynthTrainer_ANGAN")(experiment, device="cpu", num_workers=0,
                                                      final_validation=False)
    trainer.initialize()
    try:
        batches, pairs = trainer.training_batches(), []
        with torch.no_grad():
            for _ in range(args.steps + args.held_out):
                batch = trainer.next_training_batch(batches)
                pairs.append((batch["b"], trainer.masked(trainer.network(batch["a"]), batch["a"])))
        setup = {"dataset": experiment.dataset_name, "patch_size": list(trainer.config.patch_size),
                 "batch_size": trainer.batch_size, "prior": trainer.config.architecture.prior,
                 "generator": trainer.config.architecture.name}
    finally:
        trainer.close()
    clock.say(f"drew {len(pairs)} unpaired batches of {setup['batch_size']} slices {setup['patch_size']}")
    return pairs, setup


def train_discriminator(norm: str, lr: float, pairs: list, args: argparse.Namespace, clock: quality.Clock) -> list:
    """One fresh D_B trained on the first ``steps`` pairs; its held-out scores every ``every`` steps."""
    import torch
    from synthunet.training.losses import PatchDiscriminator, lsgan_discriminator_loss
    from synthunet.training.trainers.unpaired import SynthTrainer_ANGAN

    torch.manual_seed(args.seed)
    b0 = pairs[0][0]
    critic = PatchDiscriminator(b0.shape[1], b0.dim() - 2, tuple(b0.shape[2:]),
                                SynthTrainer_ANGAN.discriminator_features, tail_kernel=4, norm=norm)
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=SynthTrainer_ANGAN.discriminator_betas)
    train, held = pairs[:args.steps], pairs[args.steps:]
    rows, started = [], time.time()
    for step, (real, fake) in enumerate(train, start=1):
        loss = lsgan_discriminator_loss(*critic(torch.cat([real, fake])).chunk(2))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.every == 0 or step == len(train):
            with torch.no_grad():
                real_scores = torch.cat([critic(r).mean(dim=tuple(range(1, r.dim()))) for r, _ in held])
                fake_scores = torch.cat([critic(f).mean(dim=tuple(range(1, f.dim()))) for _, f in held])
            right = float(((real_scores > 0.5).float().mean() + (fake_scores < 0.5).float().mean()) / 2)
            rows.append({"norm": norm, "lr": lr, "step": step, "train_loss": float(loss.detach()),
                         "real": float(real_scores.mean()), "fake": float(fake_scores.mean()),
                         "gap": float(real_scores.mean() - fake_scores.mean()), "sorted_right": right})
            clock.say(f"{norm} {lr:g} step {step}: D(real) {rows[-1]['real']:.3f} D(G(a)) {rows[-1]['fake']:.3f} "
                      f"sorted right {right:.2f} ({time.time() - started:.0f} s)")
    return rows


def markdown(content: dict) -> str:
    h = content["header"]
    lines = ["# Can D_B tell real target slices from G's start?", "",
             f"- dataset: {h['dataset']}; {h['target']} from {h['source']}, {h['configuration']}, fold {h['fold']}, "
             f"plans {h['plans']} (generator {h['generator']}, prior {h['prior']}; patch {h['patch_size']}, batch "
             f"{h['batch_size']})",
             f"- date: {h['date']} ({h['wall_minutes']:.1f} min); machine: {quality.machine_line(h['machine'])}",
             f"- {h['steps']} training batches, {h['held_out']} held-out batches, seed {h['seed']}; G fixed at its "
             "start; LSGAN loss, Adam betas (0.5, 0.999)",
             f"- command: `{h['command']}`", "",
             "| D_B norm | lr | step | train loss | D(real) | D(G(a)) | gap | sorted right |",
             "|---|---|---|---|---|---|---|---|"]
    for r in content["rows"]:
        lines.append(f"| {r['norm']} | {r['lr']:g} | {r['step']} | {r['train_loss']:.4f} | {r['real']:.3f} | "
                     f"{r['fake']:.3f} | {r['gap']:+.3f} | {r['sorted_right']:.2f} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import torch

    variants = [parse_variant(v) for v in args.variants]
    if args.steps < 1 or args.held_out < 1 or args.every < 1:
        raise quality.BenchmarkError("--steps, --held_out and --every must be at least 1")
    clock = quality.Clock()
    started = datetime.datetime.now().astimezone()
    machine = quality.machine_info()
    torch.manual_seed(args.seed)
    quality.seed_everything(args.seed)
    pairs, setup = draw_batches(args, clock)
    rows = [row for norm, lr in variants for row in train_discriminator(norm, lr, pairs, args, clock)]
    header = {**setup, "source": args.source, "target": args.target, "configuration": args.configuration,
              "fold": args.fold, "plans": args.plans, "steps": args.steps, "held_out": args.held_out,
              "seed": args.seed, "date": started.strftime("%Y-%m-%d %H:%M %Z"),
              "wall_minutes": (time.time() - clock.started) / 60.0, "machine": machine,
              "command": "python benchmarks/unpaired_discriminator.py " + " ".join(argv)}
    content = {"header": header, "rows": rows}
    quality.write_report(args.output, markdown(content), content, clock)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--dataset", default="501", help="dataset id or name (default 501), planned with angan")
    parser.add_argument("--source", default="T2W", help="source sequence (default T2W)")
    parser.add_argument("--target", default="T2F", help="target sequence (default T2F)")
    parser.add_argument("-c", "--configuration", default="2.5d", help="configuration (default 2.5d)")
    parser.add_argument("-p", "--plans", default="synthUNetPlans_angan", help="plans (default synthUNetPlans_angan)")
    parser.add_argument("-f", "--fold", type=int, default=0, help="fold (default 0)")
    parser.add_argument("--variants", nargs="+", default=["spectral:1e-3", "instance:2e-4", "instance:1e-3"],
                        help="D_B settings NORM:LR (default: spectral:1e-3 instance:2e-4 instance:1e-3)")
    parser.add_argument("--steps", type=int, default=300, help="discriminator steps (default 300)")
    parser.add_argument("--held_out", type=int, default=20, help="held-out batches (default 20)")
    parser.add_argument("--every", type=int, default=50, help="report every N steps (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the batches and the discriminators (default 0)")
    parser.add_argument("-o", "--output", type=Path, default=Path("unpaired_discriminator.md"),
                        help="markdown table (a .json beside it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return quality.cli_main(argv, build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
