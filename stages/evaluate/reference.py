"""Published UAR / WAR (%) to print beside ours. Keys: our variant names, then our dataset names.

Source: FineCLIPER (ACM MM 2024) Table 1, read from the project page's table image (HaroldChen19/FineCLIPER-Page,
``image/Tab1.png``; SPEC §8.3), CLIP ViT-B/16. DFER-CLIP (BMVC 2023, CLIP ViT-B/32) as listed in the same table,
equal to DFER-CLIP's own paper (SPEC §1.7). DFEW and MAFW: mean of 5 folds; FERV39k: official split. All of them
select the checkpoint with the best test accuracy (best-on-test).
"""
from __future__ import annotations

PAPER_RESULTS: dict[str, dict[str, tuple[float, float]]] = {
    # variant: {dataset: (UAR, WAR)}
    "base": {"dfew": (62.81, 72.86), "ferv39k": (42.88, 52.01), "mafw": (42.19, 53.12)},  # FineCLIPER
    "star": {"dfew": (64.89, 75.05), "ferv39k": (44.15, 52.12), "mafw": (43.02, 54.69)},  # FineCLIPER*
    "dagger": {"dfew": (65.72, 75.01), "ferv39k": (43.86, 53.02), "mafw": (43.91, 54.11)},  # FineCLIPER†
    "star-dagger": {"dfew": (65.98, 76.21), "ferv39k": (45.22, 53.98), "mafw": (45.01, 56.91)},  # FineCLIPER*†
    "dfer-clip": {"dfew": (59.61, 71.25), "ferv39k": (41.27, 51.65), "mafw": (39.89, 52.55)},
}

# Folds behind the published DFEW / MAFW numbers; a mean over fewer folds is not directly comparable.
PAPER_FOLDS = {"dfew": 5, "ferv39k": 1, "mafw": 5}
