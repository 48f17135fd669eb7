"""CLI: train a model on one fold, or report trainable parameters per variant.

  python -m stages.train fit --features results/demo/features/*.parquet --fold fold1 --dataset demo \\
      --config-json '{...}' --out-dir results/demo/fold1/star-dagger \\
      [--captions results/demo/captions/approved.parquet] [--descriptors config/prompts/...yaml]
  python -m stages.train predict --model-dir results/zeroshot/demo --features ... --fold fold1 --dataset demo \
      --out-dir results/zeroshot/demo_to_demo [--class-mapping-json '{"joy": "happiness", ...}']
  python -m stages.train params [--arch ViT-B-16] [--out docs/params.md]
"""
from __future__ import annotations

import argparse

from stages.common.config import config_object
from stages.common.errors import run_cli
from stages.train.config import TrainConfig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="train one model on one fold (resumes from out-dir/checkpoints)")
    fit.add_argument("--features", nargs="+", required=True, help="features cache shards of the dataset")
    fit.add_argument("--captions", nargs="*", default=[], metavar="APPROVED",
                     help="captions/approved.parquet (models that read captions: dagger, star-dagger)")
    fit.add_argument("--fold", required=True)
    fit.add_argument("--dataset", required=True, help="dataset name (recorded in run_info.json)")
    fit.add_argument("--config-json", default="{}", help="the train section of config.yaml")
    fit.add_argument("--out-dir", required=True)
    fit.add_argument("--descriptors", help="DFER-CLIP class descriptors (YAML)")
    zero = commands.add_parser("predict", help="zero-shot: classify another dataset's test split with a contrastive model")
    zero.add_argument("--model-dir", required=True, help="folder with model.pt and run_info.json")
    zero.add_argument("--features", nargs="+", required=True, help="features cache shards of the target dataset")
    zero.add_argument("--fold", required=True)
    zero.add_argument("--dataset", required=True, help="target dataset name")
    zero.add_argument("--out-dir", required=True)
    zero.add_argument("--class-mapping-json", default="{}",
                      help="target class -> its source class or null (recorded in run_info.json and metrics.json)")
    params = commands.add_parser("params", help="trainable / total parameters per module for every variant")
    params.add_argument("--arch", default="ViT-B-16", help="open_clip architecture (random init, no weights needed)")
    params.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args(argv)

    if args.command == "fit":
        from stages.train.trainer import fit as run_fit

        config = TrainConfig.from_dict(config_object(args.config_json))
        if len(args.captions) > 1:
            parser.error("--captions takes one file (results/{ds}/captions/approved.parquet)")
        result = run_fit(args.features, args.fold, config, args.out_dir, args.dataset, args.descriptors,
                         captions=next(iter(args.captions), None))
        if "selected_epoch" in result:  # rank 0 under torchrun, or the only process
            print(f"trained {config.model} on {args.dataset}/{args.fold}: selected epoch {result['selected_epoch']} "
                  f"({config.selection}) -> {args.out_dir}")
    elif args.command == "predict":
        from stages.train.trainer import zero_shot_predict

        mapping = config_object(args.class_mapping_json, "--class-mapping-json")
        result = zero_shot_predict(args.model_dir, args.features, args.fold, args.out_dir, args.dataset, mapping)
        print(f"zero-shot {args.model_dir} -> {args.dataset}/{args.fold}: {result['clips']} clips -> {args.out_dir}")
    else:
        from stages.train.params import parameter_table

        table = parameter_table(args.arch)
        print(table)
        if args.out:
            from stages.common.io import write_text

            write_text(args.out, table + "\n")


if __name__ == "__main__":
    run_cli(main)
