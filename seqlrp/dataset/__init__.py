"""Whole datasets: ``explain_dataset`` (sharded over torch.distributed ranks, resumable Parquet output)
and ``report_dataset`` (the dataset-level HTML report). See docs/datasets.md."""

from .report import report_dataset
from .run import IMAGE_SCHEMA, TEXT_SCHEMA, Summary, explain_dataset
from .sources import DatasetSource, ImageFolderSource, Source, TextFile
from .words import WORDS_SCHEMA

__all__ = [
    "IMAGE_SCHEMA",
    "TEXT_SCHEMA",
    "WORDS_SCHEMA",
    "DatasetSource",
    "ImageFolderSource",
    "Source",
    "Summary",
    "TextFile",
    "explain_dataset",
    "report_dataset",
]
