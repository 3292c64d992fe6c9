"""Errors meant for the user: one line that names the file and the fix."""

from __future__ import annotations


class PathsslError(Exception):
    """An expected failure (bad input, missing metadata). The CLI prints it as one line."""


class SlideReadError(PathsslError):
    """The file is not a slide we can read, or a region of it cannot be decoded."""


class ResolutionError(PathsslError):
    """Microns per pixel is missing or implausible and no override was given."""


class TissueError(PathsslError):
    """No tissue (or no tile with enough tissue) was found."""


class ModelBundleError(PathsslError):
    """A model directory is missing, incomplete or does not match its config."""


class InputLayoutError(PathsslError):
    """A Grand-Challenge input layout (inputs.json, sockets) is malformed."""
