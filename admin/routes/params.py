"""Path and query parameter types the routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from admin.models import Ident

PathId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
LimitQ = Annotated[int, Query(ge=1, le=10_000)]
OffsetQ = Annotated[int, Query(ge=0, le=10_000_000)]
IdFilter = Annotated[Ident | None, Query()]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
BigRowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
