"""Data: ChEMBL download, snapshot and bring-your-own loaders, cleaning, text fields."""

from benchmark.data.cleaning import PairDataset, clean_pairs
from benchmark.data.loaders import ColumnMap, load_dataset, read_table

__all__ = ["PairDataset", "clean_pairs", "ColumnMap", "load_dataset", "read_table"]
