"""One source of truth: every flag the DAG passes to a stage equals that stage's own default (c2am.defaults).

A stage called directly (``python -m c2am.stages.<stage>``, as the README invites) must compute what the DAG
computes. The commands come from a dry run of the default config; each is parsed by the stage's own parser.
"""

import argparse
import importlib
import pkgutil

import pytest
import yaml

import c2am.stages
from c2am import defaults
from tests import configs
from tests.conftest import ROOT, stage_commands
from tests.test_workflow import snakemake

# Not settings of the computation: the rule's threads (a resource), and which inputs the job reads.
NOT_HYPERPARAMETERS = {"threads", "gt_labels", "labels_dir", "compare_dir", "variant", "train_log", "score_txt",
                       "pseudo_json", "val_json", "full_json", "cues_dir", "saliency_dir", "distractor_dir"}


def stage_parser(module) -> argparse.ArgumentParser:
    return module.build_parser()


STAGES = sorted(m.name for m in pkgutil.iter_modules(c2am.stages.__path__))


def test_the_stages_are_found():
    assert len(STAGES) >= 29 and {"train_c2am", "visualize", "gather_shards", "eval_wsol"} <= set(STAGES)


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_has_build_parser_and_its_help_shows_the_defaults(name, capsys):
    """Each stage's parser comes from its build_parser() (what main parses with: its --help is that parser's),
    and --help shows every option's default, the value the DAG passes."""
    module = importlib.import_module(f"c2am.stages.{name}")
    assert callable(getattr(module, "build_parser", None)), f"c2am.stages.{name} has no build_parser()"
    parser = module.build_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert shown == parser.format_help(), f"{name}: main does not parse with build_parser()"
    flat = " ".join(shown.split())
    with_default = [a for a in parser._actions
                    if a.option_strings and not a.required and a.default not in (None, [], argparse.SUPPRESS)]
    missing = [a.option_strings[0] for a in with_default if f"(default: {a.default})" not in flat]
    assert not missing, f"{name} --help shows no default for {missing}"


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    work = tmp_path_factory.mktemp("defaults")
    result = snakemake("-n", "-p", "all", "results/fully_supervised_miou.txt", "predict", cwd=work)
    assert result.returncode == 0, result.stderr
    return stage_commands(result.stdout + result.stderr)


def test_every_stage_rule_is_checked(commands):
    assert {name for name, _ in commands} >= {
        "prepare_dataset", "train_c2am", "infer_c2am", "cue_threshold", "extract_cues", "eval_c2am", "c2am_boxes",
        "train_classifier", "infer_cam", "train_saliency", "infer_saliency", "refine_cams",
        "crf_labels", "robust_labels", "train_affinity", "random_walk", "eval_pseudo", "train_deeplab",
        "infer_deeplab", "evaluate", "visualize", "predict"}


def test_what_the_dag_passes_is_each_stage_default(commands):
    drift = []
    for name, argv in commands:
        parser = stage_parser(importlib.import_module(f"c2am.stages.{name}"))
        passed = vars(parser.parse_args(argv))
        for action in parser._actions:
            if action.required or action.dest in NOT_HYPERPARAMETERS or action.default == argparse.SUPPRESS:
                continue
            if passed[action.dest] != action.default:
                drift.append(f"{name} --{action.dest}: rule {passed[action.dest]!r}, stage {action.default!r}")
    assert not drift, drift


# Keys a stage reads only in a mode the default config does not use, whose rule then passes them: the folder and
# COCO layouts of prepare_dataset, and refine_cams' constant background (rule refine_fixed_tau).
OTHER_MODE_KEYS = {"prepare_dataset": {"dataset.image_dir", "dataset.labels_csv", "dataset.split_dir",
                                       "dataset.label_dir"},
                   "refine_cams": {"refine.fixed_tau"}}


def keys_left_out(commands) -> list[str]:
    """The config keys a stage reads (flags whose default apply() set) that its command does not pass."""
    missing = []
    for name, argv in commands:
        parser = stage_parser(importlib.import_module(f"c2am.stages.{name}"))
        given = {arg.split("=")[0] for arg in argv if arg.startswith("--")}
        for action in parser._actions:
            key = getattr(action, "config_key", None)
            negated = {f"--no-{option[2:]}" for option in action.option_strings}
            if key and key not in OTHER_MODE_KEYS.get(name, ()) and not given & {*action.option_strings, *negated}:
                missing.append(f"{name}: {action.option_strings[0]} ({key})")
    return missing


def test_every_config_key_a_stage_reads_is_in_its_command(commands, wsol_commands):
    """A sweep shares a job between two runs when their commands are the same (c2am/sharing.py): so every key a
    stage reads must reach it as a flag of its command. A flag the rule leaves out would fall back to the default
    config's value, the same in every run whatever the run's config says."""
    assert not keys_left_out(commands)
    assert not keys_left_out(wsol_commands)


def test_a_config_key_without_a_flag_is_an_error():
    parser = argparse.ArgumentParser(prog="stage")
    parser.add_argument("--epochs", type=int)
    with pytest.raises(KeyError, match=r"c2am.train.batch_size has no flag --batch-size"):
        defaults.apply(parser, "c2am.train")


def test_defaults_take_the_flag_type():
    parser = argparse.ArgumentParser(prog="stage")
    parser.add_argument("--head-lr-mult", type=float)
    parser.add_argument("--scales", type=float, nargs="+")
    parser.add_argument("--batch-size", type=int)
    defaults.apply(parser, "c2am", exclude=("backbone", "weights", "infer", "cues", "boxes", "train"))
    defaults.apply(parser, "c2am.infer")
    args = parser.parse_args([])
    assert args.scales == [1.0, 2.0] and all(type(s) is float for s in args.scales)


def test_config_values_are_converted_by_the_flag_type(monkeypatch):
    """YAML gives ints, lists of ints, bools and nulls where a flag types floats; argparse converts only string
    defaults, so these must come out of defaults.apply with the flag's type, as if typed on the command line."""
    monkeypatch.setattr(defaults, "default_config", lambda: {
        "net": {"head_lr_mult": 10, "scales": [1, 2], "epochs": 3.0, "flip": True, "threshold": None, "name": "lite0"}})
    parser = argparse.ArgumentParser(prog="stage")
    parser.add_argument("--head-lr-mult", type=float)
    parser.add_argument("--scales", type=float, nargs="+")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction)
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--name")
    defaults.apply(parser, "net")
    args = parser.parse_args([])
    assert type(args.head_lr_mult) is float and args.head_lr_mult == 10.0
    assert args.scales == [1.0, 2.0] and [type(s) for s in args.scales] == [float, float]
    assert type(args.epochs) is int and args.epochs == 3
    assert args.flip is True and args.threshold is None and args.name == "lite0"


# ----------------------------------------------------------------------------- the WSOL DAG (config/wsol.yaml)

WSOL_CONFIG = ROOT / "config" / "wsol.yaml"
# Which files a WSOL job reads or writes, not settings: the split (infer_c2am runs on train, val and test),
# optional inputs, reports and the one-split GT files.
WSOL_INPUTS = {"split", "val_maps", "train_maps", "gt", "out_txt", "out_gt_train", "out_gt_val"}


@pytest.fixture(scope="module")
def wsol_commands(tmp_path_factory):
    """The stage commands of the WSOL DAG of config/wsol.yaml (a dry run of the `wsol` target)."""
    work = tmp_path_factory.mktemp("defaults_wsol")
    result = snakemake("-n", "-p", "--configfile", str(WSOL_CONFIG), "--", "wsol", cwd=work)
    assert result.returncode == 0, result.stderr
    return stage_commands(result.stdout + result.stderr)


def test_every_wsol_stage_rule_is_checked(wsol_commands):
    assert {name for name, _ in wsol_commands} == {
        "prepare_wsol", "train_c2am", "infer_c2am", "box_threshold", "map_boxes", "train_localizer", "infer_localizer",
        "train_classifier", "infer_classes", "eval_wsol", "wsol_figures"}


def test_what_the_wsol_dag_passes_is_each_stage_default(wsol_commands):
    """The WSOL stages default to the default config's `wsol` section, the reused ones (C2AM, classifier) to its
    `c2am` / `classifier` sections: config/wsol.yaml changes neither, so every flag is the stage's default."""
    drift = []
    for name, argv in wsol_commands:
        parser = stage_parser(importlib.import_module(f"c2am.stages.{name}"))
        passed = vars(parser.parse_args(argv))
        for action in parser._actions:
            if action.required or action.dest in NOT_HYPERPARAMETERS or action.default == argparse.SUPPRESS:
                continue
            if action.dest in WSOL_INPUTS or passed[action.dest] == action.default:
                continue
            drift.append(f"{name} --{action.dest}: rule {passed[action.dest]!r}, stage {action.default!r}")
    assert not drift, drift


def test_wsol_config_overrides_nothing_of_the_wsol_section():
    """The embedded WSOL run is the default config's wsol section: config/wsol.yaml names it and changes nothing."""
    wsol = yaml.safe_load(WSOL_CONFIG.read_text())
    assert wsol == {"wsol": {}}, "config/wsol.yaml should hold an empty wsol section (a place for overrides)"
    assert configs.merged("wsol.yaml") == defaults.default_config()
