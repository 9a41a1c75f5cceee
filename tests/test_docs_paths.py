"""The docs name only what the DAG has: every ``artifacts/...`` and ``results/...`` path and every rule named in
README.md and docs/method.md exists in the workflow, and every job rule of the default DAG is in README's pipeline
diagram or rule table.

Paths are matched against the outputs of dry runs (the default DAG with the fully supervised reference and
``predict``, the same with 2 shards, and the WSOL DAG of config/wsol.yaml), segment by segment. A doc path may be
an output, a folder that holds outputs, or a file inside a folder output (``artifacts/c2am/maps/<id>.npy``). The doc
notation: ``<name>`` is any one name, ``{a,b}`` each alternative, ``[x]`` with or without ``x`` (``[0-3]``: one
character of the range), ``*`` any characters of one segment. Outside the rule outputs, only the folders a rule
writes as a by-product and the config names (the generated VOC tree, COCO's rasterised masks) are accepted.

Rule names are taken where the text says they are rules or stages: the ``rule`` / ``stage`` column of a table, the
pipeline diagrams, a backticked name beside the word rule / stage / job / target, ``--forcerun NAME``,
``--set-threads NAME=``, ``set-resources: {NAME: ...}`` and ``python -m c2am.stages.NAME``. Rule names come from
``rule NAME:`` in the Snakefile and workflow/**/*.smk; where the text speaks of stages, a stage module
(c2am/stages/NAME.py) is accepted too.
"""

from __future__ import annotations

import itertools
import re

import pytest

from tests import configs
from tests.conftest import ROOT, snakemake

DOCS = [ROOT / "README.md", ROOT / "docs" / "method.md"]

PATH_RE = re.compile(r"(?<![\w./-])((?:artifacts|results)/(?:\{[^}\s]*\}|[^\s`'\"(),;|{}])*)")
NAME_RE = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
# `rule x:`, and `use rule y as x with:` (a rule derived from another, as the WSOL rules are).
RULE_RE = re.compile(r"^(?:(?:rule|checkpoint)\s+(\w+)\s*:|use rule \w+(?: from \w+)? as (\w+))", re.M)


def rule_names() -> set[str]:
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]
    return {name for f in files for pair in RULE_RE.findall(f.read_text()) for name in pair if name}


def stage_modules() -> set[str]:
    return {p.stem for p in (ROOT / "c2am" / "stages").glob("*.py") if p.stem != "__init__"}


# ----------------------------------------------------------------------------- the doc notation


def expand(path: str) -> list[str]:
    """``{a,b}`` and optional ``[x]`` expanded into every alternative (a ``[0-3]`` range stays for the regex)."""
    parts = re.split(r"(\{[^}]*\}|\[[^\]]*\])", path)
    options = []
    for part in parts:
        if part.startswith("{"):
            options.append(part[1:-1].split(","))
        elif part.startswith("[") and not re.fullmatch(r"\[\w-\w\]", part):
            options.append(["", part[1:-1]])
        else:
            options.append([part])
    return ["".join(choice) for choice in itertools.product(*options)]


def segment_regex(segment: str) -> re.Pattern:
    out = ""
    for token in re.split(r"(<[^>]+>|\[\w-\w\]|\*)", segment):
        if token.startswith("<"):
            out += r"[^/]+"
        elif re.fullmatch(r"\[\w-\w\]", token):
            out += token
        elif token == "*":
            out += r"[^/]*"
        else:
            out += re.escape(token)
    return re.compile(out)


def matches(doc_path: str, output: str) -> bool:
    """``doc_path`` (one expansion) is ``output``, a folder above it, or a file inside it (a folder output)."""
    doc = [segment_regex(s) for s in doc_path.rstrip("/").split("/")]
    out = output.rstrip("/").split("/")
    n = min(len(doc), len(out))
    return all(d.fullmatch(o) for d, o in zip(doc[:n], out[:n]))


def test_the_doc_notation():
    assert expand("results/pseudo_masks.{txt,json}") == ["results/pseudo_masks.txt", "results/pseudo_masks.json"]
    assert expand("a/cam_{cues,sal}[_robust]/x") == ["a/cam_cues/x", "a/cam_cues_robust/x", "a/cam_sal/x",
                                                     "a/cam_sal_robust/x"]
    assert matches("artifacts/c2am/maps/<id>.npy", "artifacts/c2am/maps")  # inside a folder output
    assert matches("artifacts/shards/", "artifacts/shards/c2am/maps/1-of-2")  # a folder above outputs
    assert matches("artifacts/deeplab/<labels>/model.pt", "artifacts/deeplab/gt/model.pt")
    assert matches("a/syn_50000[0-3].jpg", "a/syn_500002.jpg") and not matches("a/syn_50000[0-3].jpg", "a/syn_5.jpg")
    assert not matches("artifacts/pseudo/cam_cues_robust/<id>.png", "artifacts/pseudo/cam_cues")
    assert not matches("artifacts/deeplab/<labels>/model.pt", "artifacts/deeplab/gt/train_log.csv")


# ----------------------------------------------------------------------------- what the DAG has


def dry_run(work, *args) -> tuple[set[str], set[str]]:
    """(outputs, job rules) of a dry run in ``work``."""
    result = snakemake("-n", *args, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs, rules = set(), set()
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith("output:"):
            outputs.update(p.strip() for p in line.removeprefix("output:").split(","))
        elif m := re.fullmatch(r"(?:localrule|rule|checkpoint) (\w+):", line):
            rules.add(m[1])
    return outputs, rules


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    """The outputs of the three DAGs, and the job rules of the default one."""
    default = dry_run(tmp_path_factory.mktemp("docs_default"), "all", "results/fully_supervised_miou.txt", "predict")
    sharded = dry_run(tmp_path_factory.mktemp("docs_shards"), "--config", "shards=2", "--", "all")
    wsol = dry_run(tmp_path_factory.mktemp("docs_wsol"), "--configfile", str(ROOT / "config" / "wsol.yaml"), "--",
                   "wsol")
    return default[0] | sharded[0] | wsol[0], default[1]


def by_products() -> list[str]:
    """Folders a rule writes besides its declared outputs, where the configs put them, and the sweeps' tables."""
    default = configs.load("config.yaml")
    return [default["dataset"]["root"], default["wsol"]["dataset"]["root"],
            configs.merged("coco2014.yaml")["dataset"]["coco"]["label_dir"],
            "results/sweeps"]  # the sweep tables, written by python -m c2am.sweep outside the DAG


def doc_paths() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for path in PATH_RE.findall(doc.read_text()):
            found.append((doc.name, path.rstrip(".:")))
    return found


def test_the_docs_name_paths():
    names = {path for _, path in doc_paths()}
    assert len(names) > 20 and "results/voc_miou.txt" in names and "artifacts/c2am/maps/<id>.npy" in names


def test_every_path_in_the_docs_is_in_the_dag(dag):
    outputs, _ = dag
    known = outputs | set(by_products())
    missing = sorted({f"{doc}: {path} ({alt})" for doc, path in doc_paths() for alt in expand(path)
                      if not any(matches(alt, out) for out in known)})
    assert not missing, "paths that no rule writes:\n" + "\n".join(missing)


# ----------------------------------------------------------------------------- rule names


def table_names(text: str, header: str) -> set[str]:
    """The names in the ``header`` column of every markdown table of ``text``: the leading name of each
    comma-separated entry, what follows it and parentheses left out (``infer_deeplab (5 scales + flip)``); a
    ``total`` row is a sum, not a stage."""
    names, column = set(), None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = cells.index(header) if header in cells else -1
        elif column >= 0 and not set(cells[0]) <= set("-: ") and cells[column] != "total":
            for entry in re.sub(r"\([^)]*\)", "", cells[column]).split(","):
                if m := re.match(r"\s*`?(\w+)", entry):
                    names.add(m[1])
    return names


def diagram_names(text: str) -> set[str]:
    """Snake-case names in the fenced blocks that draw a DAG (box-drawing lines), paths left out."""
    names = set()
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
        if "──" in block or "─ " in block:
            names.update(re.findall(rf"(?<![\w./-]){NAME_RE}(?![\w./])", block))
    return names


def rule_references(text: str) -> tuple[set[str], set[str]]:
    """(names the text calls rules, names it calls stages)."""
    rules = table_names(text, "rule")
    rules |= set(re.findall(r"\brules? `(\w+)`", text)) | set(re.findall(r"`(\w+)` rules?\b", text))
    rules |= set(re.findall(r"--forcerun (\w+)", text)) | set(re.findall(r"--set-threads (\w+)=", text))
    rules |= set(re.findall(r"set-resources: \{(\w+):", text))
    stages = table_names(text, "stage") | diagram_names(text)
    stages |= set(re.findall(r"\b(?:stages?|jobs?|target) `(\w+)`", text))
    stages |= set(re.findall(r"`(\w+)` (?:stages?|jobs?|target)\b", text))
    stages |= set(re.findall(r"python -m c2am\.stages\.(\w+)", text)) - {"NAME"}
    return rules, stages


def test_the_docs_name_rules():
    rules, stages = rule_references((ROOT / "README.md").read_text())
    assert {"prepare_dataset", "robust_labels", "refine_cams", "train_c2am"} <= rules
    assert "map_boxes" in rule_references((ROOT / "docs" / "method.md").read_text())[1]


def test_every_rule_in_the_docs_exists():
    rules, stages = rule_names(), stage_modules()
    unknown = []
    for doc in DOCS:
        called_rules, called_stages = rule_references(doc.read_text())
        unknown += [f"{doc.name}: rule {n}" for n in sorted(called_rules - rules)]
        unknown += [f"{doc.name}: stage {n}" for n in sorted(called_stages - rules - stages)]
    assert not unknown, "names of no rule (Snakefile, workflow/**/*.smk) or stage (c2am/stages/):\n" + "\n".join(
        unknown)


def test_readme_pipeline_shows_every_rule_of_the_default_dag(dag):
    """README's "What the pipeline does" (its diagram and rule table) names every job rule of the default DAG."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## What the pipeline does", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\w+", section))
    _, job_rules = dag
    assert job_rules >= {"robust_labels", "cue_threshold", "train_deeplab"}
    assert not job_rules - {"all"} - named, sorted(job_rules - {"all"} - named)
