"""registry: a system of record for semantic IDs.

Train versioned residual k-means codebooks over item embeddings, keep them and every
item -> ID assignment in SQL (SQLite or PostgreSQL), assign IDs to new items against a frozen
version, and look items up by ID or ID prefix.

    from registry import Registry
    reg = Registry("sqlite:///ids.db")
"""

from .api import Registry
from .errors import DatabaseError, InputError, NotFoundError, RegistryError, StateError
from .version import __version__

__all__ = ["DatabaseError", "InputError", "NotFoundError", "Registry", "RegistryError",
           "StateError", "__version__"]
