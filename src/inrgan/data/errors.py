"""The one exception of the data layer."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset that cannot be read: a missing path, a corrupt image, zip or IDX file, no images.

    The message always names the offending file or folder and says what is wrong with it.
    """
