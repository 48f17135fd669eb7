# Helpers shared by the rules: dataset descriptions, shard names, per-stage configs, code fingerprints.
#
# What Snakemake tracks (params that are not derived): only what can change a stage's results, each as canonical
# JSON with one top-level key naming it ({"train": {...}}, {"code": {...}}, {"weights": {...}}, {"prompt": ...}),
# so `python -m stages.plan` can name the settings behind a rerun. Stages get their whole section through derived
# params (functions taking `input`), which Snakemake does not track: performance knobs never rerun anything.
import functools
from pathlib import Path

from snakemake.exceptions import WorkflowError

from stages.common.config import read_settings, stage_section
from stages.common.datasets import class_mapping, load_dataset_config
from stages.common.fingerprint import code_fingerprint as stage_code_fingerprint
from stages.common.outputs import final_outputs_message
from stages.common.provenance import canonical, content_fingerprint, result_settings, towers_used, weights_cache
from stages.common.shards import remove_stale_shards, shard_names
from stages.train.config import CAPTION_MODELS, with_model_recipe
from stages.weights import made_by_workflow, missing_weights_message, stage_weights


wildcard_constraints:
    ds="|".join(config["datasets"]),
    src="|".join(config["datasets"]),
    dst="|".join(config["datasets"]),
    shard=r"\d{3}-of-\d{3}",
    fold=r"fold\d+",
    model="base|star|dagger|star-dagger|dfer-clip",


def dataset_entry(ds):
    return config["datasets"][ds]


# Datasets that stages/demo generates (rules/demo.smk): their entry's `demo:` settings go over the `demo:` section.
GENERATED_DATASETS = [ds for ds, entry in config["datasets"].items() if "demo" in entry]


def demo_settings(wildcards):
    return canonical(merged_stage_config("demo", wildcards.ds))


def dataset_description_file(wildcards):
    """Ancient: the rule tracks what the stage reads from it (index_description), not its bytes."""
    return ancient(dataset_entry(wildcards.ds)["description"])


def index_description(wildcards):
    """The dataset description as the index stage reads it, without the shard count (which the index ignores)."""
    entry = dataset_entry(wildcards.ds)
    described = {**settings_file(entry["description"]), **dataset_overrides(wildcards.ds)}
    return canonical({"dataset": {key: value for key, value in described.items() if key != "shards"}})


def dataset_overrides(ds):
    """Top-level keys of the dataset description that config.yaml replaces (e.g. a local root)."""
    entry = dataset_entry(ds)
    return {key: entry[key] for key in ("root", "shards") if key in entry}


@functools.cache
def dataset(ds):
    return load_dataset_config(dataset_entry(ds)["description"], dataset_overrides(ds))


def dataset_shards(ds):
    return shard_names(dataset(ds).shards)


def index_list_files(wildcards):
    ds = dataset(wildcards.ds)
    if ds.kind != "lists":
        return []
    root = Path(ds.root)
    return sorted({str(root / f) for lists in ds.folds.values() for f in (lists.train, lists.test)})


def index_overrides_json(wildcards, input):
    """Derived (it takes ``input``), so Snakemake does not track it: index_description does."""
    return canonical(dataset_overrides(wildcards.ds))


settings_file = functools.cache(read_settings)


def merged_stage_config(stage, ds):
    """Defaults of config.yaml, then the dataset's settings file (config/paper.yaml), then the dataset entry."""
    entry = dataset_entry(ds)
    return stage_section(config, stage, ds, settings_file(entry["settings"]) if "settings" in entry else {})


def stage_settings(stage):
    """Params function, tracked: only the settings that can change the stage's results (stages/common/provenance.py).
    A rule with it passes the whole section through ``stage_run_config``."""

    def for_dataset(wildcards):
        return canonical({stage: result_settings(stage, merged_stage_config(stage, wildcards.ds))})

    return for_dataset


def stage_run_config(stage, drop=()):
    """Params function for the command line: the whole section, performance knobs included, minus ``drop`` (keys
    passed as input files). It takes ``input``, which makes it a derived param that Snakemake does not track
    (``stage_settings`` is tracked instead)."""

    def for_dataset(wildcards, input):
        section = merged_stage_config(stage, wildcards.ds)
        return canonical({key: value for key, value in section.items() if key not in drop})

    return for_dataset


def captions_prompt(wildcards):
    """Ancient: a prompt is tracked by what the stage reads from it (prompt_content), not by its bytes."""
    return ancient(merged_stage_config("captions", wildcards.ds)["prompt"])


def prompt_content(wildcards):
    return canonical({"prompt": content_fingerprint(merged_stage_config("captions", wildcards.ds)["prompt"])})


def captions_gpus(wildcards):
    return int(merged_stage_config("captions", wildcards.ds)["backend"] == "video-llava")


def lexicon_files(wildcards):
    return sorted(str(p) for p in Path(merged_stage_config("refine", wildcards.ds)["lexicons"]).glob("*.txt"))


def lexicon_dir(wildcards):
    return merged_stage_config("refine", wildcards.ds)["lexicons"]


def raw_caption_shards(wildcards):
    return shard_outputs(wildcards.ds, "captions/raw")


def review_mode(wildcards):
    return merged_stage_config("review", wildcards.ds)["mode"]


def human_review_sheet_path(ds):
    return str(Path(merged_stage_config("review", ds)["sheets"]) / f"{ds}.csv")


def human_review_sheet_target(wildcards):
    """Where the human sheet is expected, whether or not it exists yet (named in the stage's messages)."""
    return human_review_sheet_path(wildcards.ds)


def human_review_sheet(wildcards):
    """The human-owned sheet when it exists. While it does not, the stage says how to create it."""
    path = human_review_sheet_path(wildcards.ds)
    return [path] if Path(path).exists() else []


def earlier_review_decisions(wildcards):
    """For the generated sheet the human sheet only supplies earlier decisions: ancient, so an edit of
    the human sheet reruns apply_review (which reads it) but not the export."""
    return [ancient(path) for path in human_review_sheet(wildcards)]


@functools.cache
def code_fingerprint(*packages):
    """sha256 over the syntax of the stage packages and the stages modules they import: a code change reruns
    that stage; comments, docstrings and formatting do not."""
    return canonical({"code": {"+".join(packages): stage_code_fingerprint(workflow.basedir, packages)}})


def shard_outputs(ds, stage):
    return [f"results/{ds}/{stage}/{shard}.parquet" for shard in dataset_shards(ds)]


def frame_shards(wildcards):
    return shard_outputs(wildcards.ds, "frames")


def feature_shards(wildcards):
    return shard_outputs(wildcards.ds, "features")


def model_train_config(ds, model):
    """The dataset's train section for one model, its `recipes` entry merged in (stages.train.config)."""
    return with_model_recipe(merged_stage_config("train", ds), model)


def require_weights(ds, towers=(), captions=True):
    """Stop the plan with one message naming every missing weights file a job and the jobs before it need (towers,
    FaceXFormer, Video-LLaVA), with its format and where it is published; otherwise Snakemake would report one
    missing input per rule, one run at a time."""
    train = merged_stage_config("train", ds) if towers else None
    captions_section = merged_stage_config("captions", ds) if captions else None
    message = missing_weights_message(stage_weights(train, merged_stage_config("faces", ds), captions_section, towers))
    if message:
        raise WorkflowError(f"dataset {ds}: {message}")


def pretrain_settings(wildcards):
    """The `pretrain` section: tracked, and the stage's --config-json."""
    return canonical(config["pretrain"])


def pretrained_demo_tower(wildcards):
    """The architecture that pretrain_demo_towers trains (the demo's clip tower; long_clip and dfer_clip share it)."""
    tower = merged_stage_config("train", "demo")["towers"]["clip"]
    return canonical({key: tower[key] for key in ("arch", "arch_config", "quick_gelu") if key in tower})


def tower_weight_files(ds, model):
    """{tower: local weights file} of the towers a model uses (random-initialised towers have none)."""
    towers = model_train_config(ds, model)["towers"]
    return {
        n: towers[n]["weights"]
        for n in towers_used(model)
        if n in towers and not towers[n].get("random_init") and towers[n].get("weights")
    }


def faces_weight_files(ds):
    section = merged_stage_config("faces", ds)
    return {"facexformer": section["checkpoint"]} if section["backend"] == "facexformer" else {}


def captions_weight_files(ds):
    section = merged_stage_config("captions", ds)
    return {"video_llava": section["video_llava"]["model_dir"]} if section["backend"] == "video-llava" else {}


def weight_inputs(files):
    """Weights are ancient inputs: moving or touching them reruns nothing; their content is tracked by
    weight_fingerprints. Files made by a rule of this workflow (under results/, e.g. the demo's pre-trained towers)
    stay ordinary inputs, which is how the plan orders that rule first and reruns what reads a new file."""
    return [path if made_by_workflow(path) else ancient(path) for path in files.values()]


def weight_fingerprints(files):
    """Tracked param: sha256 of each weights file or folder, cached by size and mtime (results/.cache). Files made
    by the workflow are left out: they may not exist yet when the plan is made, and their rule's reruns already
    rerun what reads them."""
    cache = weights_cache()
    return canonical(
        {"weights": {name: cache.fingerprint(path) for name, path in files.items() if not made_by_workflow(path)}}
    )


def train_weights(wildcards):
    require_weights(wildcards.ds, towers_used(wildcards.model))
    return weight_inputs(tower_weight_files(wildcards.ds, wildcards.model))


def train_weights_sha(wildcards):
    return weight_fingerprints(tower_weight_files(wildcards.ds, wildcards.model))


def zeroshot_weights(wildcards):
    require_weights(wildcards.src, towers_used("dagger"))
    return weight_inputs(tower_weight_files(wildcards.src, "dagger"))


def zeroshot_weights_sha(wildcards):
    return weight_fingerprints(tower_weight_files(wildcards.src, "dagger"))


def faces_weights(wildcards):
    require_weights(wildcards.ds, captions=False)
    return weight_inputs(faces_weight_files(wildcards.ds))


def faces_weights_sha(wildcards):
    return weight_fingerprints(faces_weight_files(wildcards.ds))


def faces_gpus(wildcards):
    return int(merged_stage_config("faces", wildcards.ds)["backend"] == "facexformer")


def captions_weights(wildcards):
    require_weights(wildcards.ds)
    return weight_inputs(captions_weight_files(wildcards.ds))


def captions_weights_sha(wildcards):
    return weight_fingerprints(captions_weight_files(wildcards.ds))


def train_section(ds, model, **fixed):
    return {**model_train_config(ds, model), **fixed}


def train_config(wildcards, input):
    """Derived (takes ``input``), untracked: the whole train section for the command line, with the model named
    by the path (results/{ds}/{fold}/{model}/...). train_settings is what Snakemake compares."""
    return canonical(train_section(wildcards.ds, wildcards.model))


def train_settings(wildcards):
    return canonical({"train": result_settings("train", train_section(wildcards.ds, wildcards.model))})


def zeroshot_train_config(wildcards, input):
    return canonical(train_section(wildcards.src, "dagger", objective="contrastive"))


def zeroshot_train_settings(wildcards):
    section = train_section(wildcards.src, "dagger", objective="contrastive")
    return canonical({"train": result_settings("train", section)})


def gpus_for(ds):
    section = merged_stage_config("train", ds)
    return 0 if section["device"] == "cpu" else section.get("gpus", 1)


def launcher_for(ds):
    """python, or torchrun with one process per GPU when a training job gets more than one."""
    gpus = gpus_for(ds)
    return f"torchrun --standalone --nproc_per_node={gpus}" if gpus > 1 else "python"


def train_threads(wildcards):
    """The cores a training job asks for: the torch threads it will use (train.threads), whatever it gets."""
    return merged_stage_config("train", wildcards.ds)["threads"]


def zeroshot_threads(wildcards):
    return merged_stage_config("train", wildcards.src)["threads"]


def train_launcher(wildcards):
    return launcher_for(wildcards.ds)


def zeroshot_launcher(wildcards):
    return launcher_for(wildcards.src)


def train_gpus(wildcards):
    return gpus_for(wildcards.ds)


def zeroshot_gpus(wildcards):
    return gpus_for(wildcards.src)


def model_captions(wildcards):
    """Approved captions are an input only of the models that read them (not base, star or dfer-clip)."""
    reads = wildcards.model in CAPTION_MODELS
    return [f"results/{wildcards.ds}/captions/approved.parquet"] if reads else []


DFER_CLIP_DESCRIPTORS = "config/prompts/dfer_clip_descriptors.yaml"


def dfer_clip_descriptors(wildcards):
    """DFER-CLIP's class descriptors are an input only of the model that reads them; ancient, as the rule tracks
    their parsed content (descriptors_content)."""
    return [ancient(DFER_CLIP_DESCRIPTORS)] if wildcards.model == "dfer-clip" else []


def descriptors_content(wildcards):
    used = wildcards.model == "dfer-clip"
    return canonical({"descriptors": content_fingerprint(DFER_CLIP_DESCRIPTORS) if used else None})


def selected_model_metrics(wildcards):
    model = merged_stage_config("train", wildcards.ds)["model"]
    folder = f"results/{wildcards.ds}/{wildcards.fold}/{model}"
    return {"metrics": f"{folder}/metrics.json", "confusion": f"{folder}/confusion.png"}


def dataset_folds(ds):
    return list(dataset(ds).folds)


def fold_metrics(wildcards):
    return [f"results/{wildcards.ds}/{fold}/metrics.json" for fold in dataset_folds(wildcards.ds)]


def compared_model_metrics(wildcards):
    return [f"results/{wildcards.ds}/{wildcards.fold}/{model}/metrics.json" for model in config["compare"]]


def zeroshot_source_fold(wildcards):
    return config["zeroshot"]["train_fold"]


def zeroshot_eval_fold(wildcards):
    return config["zeroshot"]["eval_fold"]


def transfer_class_mapping(src, dst):
    """Each class of ``dst`` and its counterpart among the classes of ``src`` (dst's `same_as`, then equal names)."""
    return class_mapping(dataset(dst), dataset(src).classes, dataset_entry(dst)["description"])


def zeroshot_class_mapping(wildcards):
    """The mapping as JSON: a tracked param, and the command line's --class-mapping-json."""
    return canonical(transfer_class_mapping(wildcards.src, wildcards.dst))


def zeroshot_target_features(wildcards):
    return shard_outputs(wildcards.dst, "features")


def zeroshot_source_features(wildcards):
    return shard_outputs(wildcards.src, "features")


def demo_final_outputs():
    return ["results/demo/fold1/metrics.json"]


def requested_targets():
    """The files this run was asked for: the command line's targets, or the inputs of a target rule such as `all`."""
    dag = workflow.dag
    files = dag.derived_targetfiles or {f for job in dag.targetjobs for f in job.output}  # a rule named as target
    return sorted(str(f) for f in files)


def remove_stale_shard_files():
    """After a successful run: shard files of an earlier shard count are deleted (and named), not left unseen."""
    removed = remove_stale_shards({ds: dataset(ds).shards for ds in config["datasets"]})
    if removed:
        print(f"\nRemoved {len(removed)} shard files of an earlier shard count (nothing reads them):")
        for path in removed:
            print(f"  {path}")


def report_final_outputs(paths):
    """Say where the requested targets' results are (when this run made or kept them)."""
    message = final_outputs_message(paths)
    if message:
        print(message)
