"""The dialogue makers behind build_datasets.py: one module per scenario, their phrasings in ../phrases/."""
