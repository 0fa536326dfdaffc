"""Imports every table module so that ``metadata`` knows the whole schema (for Alembic)."""

from mlgov.audit import models as _audit  # noqa: F401
from mlgov.db import Base
from mlgov.identity import models as _identity  # noqa: F401
from mlgov.lifecycle import models as _lifecycle  # noqa: F401
from mlgov.registry import models as _registry  # noqa: F401
from mlgov.tlog import models as _tlog  # noqa: F401
from mlgov.validation import models as _validation  # noqa: F401
from mlgov.webhooks import models as _webhooks  # noqa: F401

metadata = Base.metadata
