"""Training data: LLaVA-format datasets and their collator (``synth`` holds the generated benchmark)."""

from .collator import LlavaCollator
from .llava_format import BadRecords, LlavaDataset, encode_sample, parse_record, read_records, write_tiny_dataset

__all__ = ["LlavaDataset", "LlavaCollator", "BadRecords", "encode_sample", "parse_record", "read_records",
           "write_tiny_dataset"]
