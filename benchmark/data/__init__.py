"""Layer 1: the pairs. ChEMBL download, registered datasets and their cards, bring-your-own loaders, cleaning
(RDKit structure keys, the hostile-structure guard) and text fields."""

from benchmark.data.cleaning import PairDataset, clean_pairs
from benchmark.data.loaders import ColumnMap, load_dataset, read_table

__all__ = ["PairDataset", "clean_pairs", "ColumnMap", "load_dataset", "read_table"]
