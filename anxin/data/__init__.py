"""Conversation data: one canonical record, a reader per source format, checks, registry, split.

A record is ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` plus
metadata keys that training ignores; see anxin.data.record.
"""

from anxin.data.readers import READERS, detect_format, read_records
from anxin.data.record import CheckReport, DataError, check_records, validate_record
from anxin.data.registry import load_dataset_info, load_datasets, register_dataset
from anxin.data.split import dataset_fingerprint, select_samples, split_validation

__all__ = [
    "READERS",
    "CheckReport",
    "DataError",
    "check_records",
    "dataset_fingerprint",
    "detect_format",
    "load_dataset_info",
    "load_datasets",
    "read_records",
    "register_dataset",
    "select_samples",
    "split_validation",
    "validate_record",
]
