"""Kiln: a container-native package system and reproducible package build farm."""

__version__ = "0.1.0"
