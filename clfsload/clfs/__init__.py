"""The CLFS format model: constants, attributes, block maps, objects, decoding.

This package is pure Python. Its byte-level hot paths live in
:mod:`clfsload._native`, which picks the compiled or the pure twin.
"""
