"""Metrics: image quality against a reference (PSNR, SSIM, MS-SSIM, NMSE), distribution distances
between sample sets (Fréchet distance, KID, MMD, precision/recall/coverage, MS-SSIM diversity) over
pluggable feature extractors (FID Inception-v3 from a user file, a built-in net trained here),
segmentation (Dice, HD95), classification (accuracy, AUC), and the downstream-utility harness
(train on real / synthetic / mixed data, test on real)."""

from gensynth.metrics.anatomy import (
    betti0,
    cohens_d,
    regional_volumes,
    stripe_ratio,
    stripe_score,
)
from gensynth.metrics.classification import accuracy, roc_auc
from gensynth.metrics.distribution import (
    MS_SSIM_WEIGHTS,
    frechet_distance,
    frechet_distance_from_stats,
    kid,
    mmd,
    ms_ssim,
    ms_ssim_diversity,
    precision_recall_coverage,
)
from gensynth.metrics.downstream import (
    SmallClassifier,
    SmallSegmenter,
    format_utility_table,
    run_utility_study,
)
from gensynth.metrics.feature_net import (
    BuiltinFeatureNet,
    builtin_feature_extractor,
    load_builtin_extractor,
    save_builtin_extractor,
    train_builtin_extractor,
)
from gensynth.metrics.features import (
    FeatureExtractor,
    extract_features,
    feature_extractor_from_module,
)
from gensynth.metrics.image_quality import nmse, psnr, ssim
from gensynth.metrics.inception import (
    InceptionV3,
    fid_inception_extractor,
    load_fid_inception,
)
from gensynth.metrics.segmentation import (
    dice,
    distance_to_mask,
    hausdorff_distance,
    hd95,
)

__all__ = [
    "MS_SSIM_WEIGHTS",
    "BuiltinFeatureNet",
    "FeatureExtractor",
    "InceptionV3",
    "SmallClassifier",
    "SmallSegmenter",
    "accuracy",
    "betti0",
    "builtin_feature_extractor",
    "cohens_d",
    "dice",
    "distance_to_mask",
    "extract_features",
    "feature_extractor_from_module",
    "fid_inception_extractor",
    "format_utility_table",
    "frechet_distance",
    "frechet_distance_from_stats",
    "hausdorff_distance",
    "hd95",
    "kid",
    "load_builtin_extractor",
    "load_fid_inception",
    "mmd",
    "ms_ssim",
    "ms_ssim_diversity",
    "nmse",
    "precision_recall_coverage",
    "psnr",
    "regional_volumes",
    "roc_auc",
    "run_utility_study",
    "save_builtin_extractor",
    "ssim",
    "stripe_ratio",
    "stripe_score",
    "train_builtin_extractor",
]
