"""Text: character data, char language models for DP-SGD, and the secret sharer.

- :mod:`~deniable.text.chars`: :class:`Vocabulary`, :func:`read_text`,
  :func:`split_by_position`, :func:`windows` (one window = one example = one privacy unit).
- :mod:`~deniable.text.models`: :class:`CharLSTM`, :class:`CharTransformer`,
  :func:`sequence_loss`, :func:`last_char_loss`.
- :mod:`~deniable.text.canary`: :class:`CanaryFormat` ("my pin is ____"), canary windows and
  their privacy unit (each insertion, or all insertions as one user).
- :mod:`~deniable.text.exposure` (scores only) and :mod:`~deniable.text.secret_sharer` (models):
  exposure exact or by skew-normal extrapolation, greedy and beam-search extraction
  (Carlini et al. 2019).
- :mod:`~deniable.text.experiments`: :func:`exposure_vs_insertions`, :func:`exposure_vs_sigma`.
"""

from deniable.text.canary import CanaryFormat, canary_windows, insert_windows
from deniable.text.chars import (
    CharWindows,
    Vocabulary,
    read_text,
    split_by_position,
    windows,
)
from deniable.text.experiments import (
    ExposureTable,
    SecretSharerRow,
    SecretSharerSetup,
    exposure_grid,
    exposure_vs_insertions,
    exposure_vs_sigma,
    plot_exposure,
    run_secret_sharer,
)
from deniable.text.exposure import Exposure, exact_exposure, rank_of, skew_normal_exposure
from deniable.text.models import (
    CharLSTM,
    CharTransformer,
    build_char_model,
    last_char_loss,
    sequence_loss,
)
from deniable.text.secret_sharer import (
    Extraction,
    beam_extract,
    estimated_exposure,
    greedy_extract,
    log_perplexities,
    measure_exposure,
)

__all__ = [
    "CanaryFormat",
    "CharLSTM",
    "CharTransformer",
    "CharWindows",
    "Exposure",
    "ExposureTable",
    "Extraction",
    "SecretSharerRow",
    "SecretSharerSetup",
    "Vocabulary",
    "beam_extract",
    "build_char_model",
    "canary_windows",
    "estimated_exposure",
    "exact_exposure",
    "exposure_grid",
    "exposure_vs_insertions",
    "exposure_vs_sigma",
    "greedy_extract",
    "insert_windows",
    "last_char_loss",
    "log_perplexities",
    "measure_exposure",
    "plot_exposure",
    "rank_of",
    "read_text",
    "run_secret_sharer",
    "sequence_loss",
    "skew_normal_exposure",
    "split_by_position",
    "windows",
]
