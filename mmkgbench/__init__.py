"""mmkgbench: a benchmark and robustness suite for multi-modal knowledge graph completion."""
__version__ = "0.1.0"
