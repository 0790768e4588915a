"""One source of every default: the CLI, the Python API and recipes read the same typed settings."""

import inspect

import click
import pytest

import capdist
from capdist.cli.compress import compress_cmd
from capdist.cli.prune import prune_cmd
from capdist.methods import CompressConfig, PruneConfig
from capdist.methods.prune import UNUSED
from capdist.settings import UnknownSetting, configure, flat_fields, flatten


def _cli_defaults(command: click.Command) -> dict:
    return {p.name: p.default for p in command.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("command,config_type,skip", [(compress_cmd, CompressConfig, ()),
                                                      (prune_cmd, PruneConfig, UNUSED)])
def test_cli_defaults_equal_the_configs_field_by_field(command, config_type, skip):
    cli = _cli_defaults(command)
    for key, value in flatten(config_type()).items():
        field = flat_fields(config_type)[key][1]
        if key in skip or not field.metadata.get("cli"):
            continue
        assert key in cli, f"--{key.replace('_', '-')} is missing from capdist {command.name}"
        assert cli[key] == (tuple(value) if isinstance(value, list) else value), key


def test_data_training_and_run_options_read_their_defaults_from_the_configs():
    from capdist.cli.train import train_cmd
    from capdist.engine import TrainConfig
    from capdist.methods import RunOptions

    t = TrainConfig()
    for command in (compress_cmd, prune_cmd, train_cmd):
        cli = _cli_defaults(command)
        assert (cli["instances"], cli["pad"], cli["random_erasing"], cli["channels_last"]) == \
            (t.instances, t.pad, t.erase, t.channels_last)
        assert cli["device"] == RunOptions().device
    train = _cli_defaults(train_cmd)
    for key in ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "warmup_epochs", "seed",
                "checkpoint_every"):
        assert train[key] == getattr(t, key), key


def test_every_generated_option_has_help_text():
    from capdist.cli.train import train_cmd

    for command in (compress_cmd, prune_cmd, train_cmd):
        for p in command.params:
            if isinstance(p, click.Option):
                assert p.help, f"{command.name} {p.opts[0]} has no help text"


def test_the_api_uses_the_configs_defaults():
    params = inspect.signature(capdist.compress).parameters
    assert "lr" not in params and "epochs" not in params, "training settings come from CompressConfig"
    assert CompressConfig().train.lr == 0.01 and CompressConfig().compactors.scope == "all"


def test_flat_keys_are_unique_and_configure_names_the_closest():
    from dataclasses import dataclass

    from capdist.settings import setting

    @dataclass
    class Inner:
        seed: int = setting(0, "a seed")

    @dataclass
    class Outer:
        inner: Inner = None
        seed: int = setting(1, "another seed")

    with pytest.raises(ValueError, match="two settings are both called 'seed'"):
        flat_fields(Outer)
    from capdist.compactor import ScheduleConfig

    section = ScheduleConfig(kind="norm")
    assert CompressConfig.of(schedule=section).schedule == section, "a section object replaces the section"
    cfg = CompressConfig.of(target_flops=0.25, schedule="norm", rggr_k=3, lr=0.1)
    assert (cfg.target.flops, cfg.schedule.kind, cfg.schedule.k, cfg.train.lr) == (0.25, "norm", 3, 0.1)
    assert CompressConfig().target.flops == 0.35, "the defaults are not modified"
    with pytest.raises(UnknownSetting, match="did you mean target_flops"):
        configure(CompressConfig(), target_flop=0.3)
    with pytest.raises(AttributeError):
        CompressConfig().target.flop = 0.3  # a typo in an attribute is an error, not a new field


def test_the_paper_recipe_is_the_papers_objective():
    from pathlib import Path

    import yaml

    recipe = yaml.safe_load((Path(__file__).parents[2] / "recipes" / "cdd-paper.yaml").read_text())
    values = {k.replace("-", "_"): v for k, v in recipe.items() if k not in ("version", "command")}
    cfg = configure(CompressConfig(), **values)
    assert (cfg.compactors.scope, cfg.compactors.internal_compactor, cfg.schedule.kind, cfg.schedule.neighbours,
            cfg.schedule.k) == ("internal", "dense", "retrieval", "teacher", 2)
    assert (cfg.schedule.interval, cfg.schedule.bank_size, cfg.target.min_ratio) == (1, 24000, 0.0)
    assert (cfg.distill.feature_loss, cfg.distill.feature_weight, cfg.distill.kd_temperature) == ("block", 0.5, 2.0)
    assert cfg.distill.cross_nce == 0.0 and cfg.distill.extra == "" and cfg.compactors.penalty == 4e-3


@pytest.mark.parametrize("recipe, schedule, warmup, until, finetune, timing", [
    ("cdd-closed-set", "taylor", 0.1, 0.0, 0, (10, 10)),  # the target at the first update, after 0.1 epochs
    ("cdd-unseen-classes", "contribution", 1.0, 0.6, 1, (100, 120)),  # from epoch 1, the target by 60% of 2 epochs
])
def test_the_protocol_recipes_set_their_schedule_and_timing(recipe, schedule, warmup, until, finetune, timing):
    from pathlib import Path

    from capdist.io.recipe import read_recipe
    from capdist.methods.cdd import schedule_timing

    values = read_recipe(Path(__file__).parents[2] / "recipes" / f"{recipe}.yaml", "compress")
    cfg = configure(CompressConfig(), epochs=2, **{k.replace("-", "_"): v for k, v in values.items()})
    assert (cfg.schedule.kind, cfg.schedule.warmup, cfg.schedule.until) == (schedule, warmup, until)
    assert (cfg.compactors.internal_compactor, cfg.finetune_epochs) == ("dense", finetune)
    got = schedule_timing(cfg, steps_per_epoch=100)
    assert (got.warmup, got.deadline) == timing


def test_masks_asked_at_the_first_update_get_no_warning_and_a_missed_deadline_gets_one(caplog):
    from capdist.methods.cdd import schedule_timing

    at_first = configure(CompressConfig(), mask_warmup=0.5, mask_until=0.0)
    missed = configure(CompressConfig(), mask_warmup=0.5, mask_until=0.01)
    with caplog.at_level("WARNING", logger="capdist"):
        assert schedule_timing(at_first, steps_per_epoch=100).deadline == 50
        assert not caplog.records
        assert schedule_timing(missed, steps_per_epoch=100).deadline == 50
    assert "first update after the warm-up" in caplog.text
