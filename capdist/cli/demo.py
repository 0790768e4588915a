"""``capdist demo``: compact a small CNN on real images and print what was gained."""

from __future__ import annotations

import os

import click

from ..data import load_digits_split, load_fmnist_split
from ..data.arrays import FMNIST_HINT, FMNIST_ROOT
from ..quickstart import compact_toy


@click.command("demo")
@click.option("--quick", is_flag=True, help="Fewer images and epochs (under a minute).")
@click.option("--target", default=0.35, show_default=True, help="FLOPs fraction to reach.")
def demo_cmd(quick: bool, target: float) -> None:
    """Train a tiny ResNet, compact it to TARGET of its FLOPs with compactors, cut it."""
    if os.path.isdir(FMNIST_ROOT):
        data = load_fmnist_split()
        n = 3000 if quick else 12000
        data.train_x, data.train_y = data.train_x[:n], data.train_y[:n]
        data.test_x, data.test_y = data.test_x[:2000], data.test_y[:2000]
        name = f"Fashion-MNIST ({n} training images)"
    else:
        click.echo(f"Fashion-MNIST not found: {FMNIST_HINT}. Using scikit-learn's digits.")
        data, name = load_digits_split(), "scikit-learn digits"
    epochs, compact = (2, 3) if quick else (4, 6)
    click.echo(f"capdist demo on {name}: {epochs} plain + {compact} compactor epochs, "
               f"target {target:.0%} of the FLOPs (expect {'~1' if quick else '~4'} min on 2 cores)")
    r = compact_toy(data, target=target, epochs=epochs, compact_epochs=compact)
    click.echo(f"  accuracy   before {r.accuracy_before:.4f}   masked {r.accuracy_masked:.4f}   "
               f"after surgery {r.accuracy_after:.4f}")
    click.echo(f"  FLOPs      before {r.flops_before / 1e6:.2f} M   after {r.flops_after / 1e6:.2f} M"
               f"   ({r.flops_after / r.flops_before:.1%} of the original)")
    click.echo(f"  surgery    max |pruned - masked| = {r.max_abs_diff:.2e} "
               f"(relative {r.rel_diff:.1e}); {r.seconds:.0f} s in all")
