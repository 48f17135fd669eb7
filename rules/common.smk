# Helpers shared by the rules: dataset descriptions, shard names, per-stage configs, code fingerprints.
import functools
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from stages.common.config import read_settings, stage_section
from stages.common.datasets import load_dataset_config
from stages.common.fingerprint import code_fingerprint as stage_code_fingerprint
from stages.common.outputs import final_outputs_message
from stages.common.shards import shard_names
from stages.train.config import with_model_recipe
from stages.weights import missing_weights_message, stage_weights


wildcard_constraints:
    ds="|".join(config["datasets"]),
    src="|".join(config["datasets"]),
    dst="|".join(config["datasets"]),
    shard=r"\d{3}-of-\d{3}",
    fold=r"fold\d+",
    model="base|star|dagger|star-dagger|dfer-clip",


def canonical(obj):
    """Sorted-key JSON: reordering keys in config.yaml must not rerun anything."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def dataset_entry(ds):
    return config["datasets"][ds]


def dataset_description_file(wildcards):
    return dataset_entry(wildcards.ds)["description"]


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


def index_overrides_json(wildcards):
    return canonical(dataset_overrides(wildcards.ds))


settings_file = functools.cache(read_settings)


def merged_stage_config(stage, ds):
    """Defaults of config.yaml, then the dataset's settings file (config/paper.yaml), then the dataset entry."""
    entry = dataset_entry(ds)
    return stage_section(config, stage, ds, settings_file(entry["settings"]) if "settings" in entry else {})


def stage_config(stage, drop=()):
    """Params function: the stage's config section merged with the dataset's overrides, as canonical JSON.

    ``drop`` removes keys that name input files: those rerun the rule through their content instead.
    """

    def for_dataset(wildcards):
        section = merged_stage_config(stage, wildcards.ds)
        return canonical({key: value for key, value in section.items() if key not in drop})

    return for_dataset


def captions_prompt(wildcards):
    return merged_stage_config("captions", wildcards.ds)["prompt"]


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
    """sha256 over the stage packages and the stages modules they import: a code change reruns that stage."""
    return stage_code_fingerprint(workflow.basedir, packages)


def shard_outputs(ds, stage):
    return [f"results/{ds}/{stage}/{shard}.parquet" for shard in dataset_shards(ds)]


def feature_shards(wildcards):
    return shard_outputs(wildcards.ds, "features")


def model_train_config(ds, model):
    """The dataset's train section for one model, its `recipes` entry merged in (stages.train.config)."""
    return with_model_recipe(merged_stage_config("train", ds), model)


def model_towers(model):
    """Names of the towers (config train.towers) a model reads."""
    return ("dfer_clip",) if model == "dfer-clip" else ("clip",) + (("long_clip",) if "dagger" in model else ())


def require_weights(ds, towers=(), captions=True):
    """Stop the plan with one message naming every missing weights file a job and the jobs before it need (towers,
    FaceXFormer, Video-LLaVA), with its format and where it is published; otherwise Snakemake would report one
    missing input per rule, one run at a time."""
    train = merged_stage_config("train", ds) if towers else None
    captions_section = merged_stage_config("captions", ds) if captions else None
    message = missing_weights_message(stage_weights(train, merged_stage_config("faces", ds), captions_section, towers))
    if message:
        raise WorkflowError(f"dataset {ds}: {message}")


def tower_weights(ds, model):
    """Local weight files of the towers a model uses (random-initialised towers have none)."""
    names = model_towers(model)
    require_weights(ds, names)
    towers = model_train_config(ds, model)["towers"]
    return [ancient(towers[n]["weights"]) for n in names if not towers[n].get("random_init") and towers[n].get("weights")]


def train_weights(wildcards):
    return tower_weights(wildcards.ds, wildcards.model)


def zeroshot_weights(wildcards):
    return tower_weights(wildcards.src, "dagger")


def faces_weights(wildcards):
    require_weights(wildcards.ds, captions=False)
    section = merged_stage_config("faces", wildcards.ds)
    return [ancient(section["checkpoint"])] if section["backend"] == "facexformer" else []


def faces_gpus(wildcards):
    return int(merged_stage_config("faces", wildcards.ds)["backend"] == "facexformer")


def captions_weights(wildcards):
    require_weights(wildcards.ds)
    section = merged_stage_config("captions", wildcards.ds)
    return [ancient(section["video_llava"]["model_dir"])] if section["backend"] == "video-llava" else []


def train_config(wildcards):
    """The dataset's train section for the model named by the path (results/{ds}/{fold}/{model}/...)."""
    return canonical(model_train_config(wildcards.ds, wildcards.model))


def zeroshot_train_config(wildcards):
    return canonical({**model_train_config(wildcards.src, "dagger"), "objective": "contrastive"})


def gpus_for(ds):
    section = merged_stage_config("train", ds)
    return 0 if section["device"] == "cpu" else section.get("gpus", 1)


def launcher_for(ds):
    """python, or torchrun with one process per GPU when a training job gets more than one."""
    gpus = gpus_for(ds)
    return f"torchrun --standalone --nproc_per_node={gpus}" if gpus > 1 else "python"


def train_launcher(wildcards):
    return launcher_for(wildcards.ds)


def zeroshot_launcher(wildcards):
    return launcher_for(wildcards.src)


def train_gpus(wildcards):
    return gpus_for(wildcards.ds)


def zeroshot_gpus(wildcards):
    return gpus_for(wildcards.src)


def dfer_clip_descriptors(wildcards):
    """DFER-CLIP's class descriptors are an input only of the model that reads them."""
    return ["config/prompts/dfer_clip_descriptors.yaml"] if wildcards.model == "dfer-clip" else []


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


def report_final_outputs(paths):
    """Say where the requested targets' results are (when this run made or kept them)."""
    message = final_outputs_message(paths)
    if message:
        print(message)
