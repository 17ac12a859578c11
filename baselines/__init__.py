"""Comparison models, one file each; registered in mmkgbench/models/__init__.py."""
