"""The base of jobdock's pydantic models: each builds its validator on first
use, not when its module is imported, so a program pays only for the models
it uses (``jobdock ps`` validates a page of jobs and nothing else)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model whose schema is built when first needed."""

    model_config = ConfigDict(defer_build=True)
