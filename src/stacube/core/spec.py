"""The base of validated request parameters (compositing jobs, Zarr cubes, processes).

:class:`SpecModel` holds the fields requests share and checks them the same way wherever they
come from (CLI options, JSON bodies, Python keywords); :meth:`SpecModel.build` turns pydantic's
validation errors into one :class:`~stacube.errors.InvalidInput` line naming the parameter
(``bbox: min must be less than max ...``).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stacube.core.bbox import check_lonlat, parse_bbox
from stacube.core.crs import check_crs
from stacube.core.grids import check_grid_name
from stacube.core.indices import get_index
from stacube.core.methods import check_method
from stacube.core.period import check_period
from stacube.core.times import parse_datetime_range
from stacube.errors import InvalidInput


def validation_message(exc: ValidationError) -> str:
    """One line for the first error: ``<parameter>: <reason>`` (parameters spelled as CLI
    options: ``max-cloud``)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    error = (err.get("ctx") or {}).get("error")
    msg = str(error) if isinstance(error, InvalidInput) else err["msg"].removeprefix("Value error, ")
    return f"{loc.replace('_', '-')}: {msg}" if loc else msg


class SpecModel(BaseModel):
    """Parameters shared by the request models; subclasses add or narrow fields.

    Validation (any subclass that has the field): ``collections`` and ``bands`` lose
    duplicates; ``indices`` become spyndex names, once each; ``bbox`` is 4 finite numbers
    (min < max; inside longitude/latitude range when ``bbox_crs`` is EPSG:4326); ``datetime`` is
    a ``START/END`` interval; ``bbox_crs``/``crs`` are known CRS; ``period`` is ``P<n>D|W|M|Y``;
    ``method`` is a compositing method; ``grid`` a named grid.
    """

    model_config = ConfigDict(extra="forbid")

    collections: list[str] = Field(min_length=1, description="Collection ids; bands match by common name.")
    bbox_crs: str = Field("EPSG:4326", description="CRS of bbox.")
    bands: list[str] = Field(default_factory=list, description="Common names or asset keys.")
    indices: list[str] = Field(default_factory=list, description="Spectral indices (NDVI, EVI...).")
    period: str | None = Field(None, description="P<n>D, P<n>W, P<n>M or P<n>Y.")
    output: str | None = Field(None, description="Root URI of the outputs.")
    zarr_format: Literal[2, 3] = Field(2, description="Zarr format of the Zarr outputs: 2, or 3 "
                                                      "(zarr-python 3's default).")

    @field_validator("collections", "bands", check_fields=False)
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("indices", check_fields=False)
    @classmethod
    def _indices(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(get_index(v).name for v in value))

    @field_validator("bbox", mode="before", check_fields=False)
    @classmethod
    def _bbox(cls, value):
        return None if value is None else parse_bbox(value)

    @field_validator("datetime", check_fields=False)
    @classmethod
    def _datetime(cls, value: str) -> str:
        parse_datetime_range(value)
        return value

    @field_validator("bbox_crs", "crs", check_fields=False)
    @classmethod
    def _crs(cls, value):
        return None if value is None else check_crs(value)

    @field_validator("period", check_fields=False)
    @classmethod
    def _period(cls, value):
        return check_period(value)

    @field_validator("method", check_fields=False)
    @classmethod
    def _method(cls, value):
        return None if value is None else check_method(value)

    @field_validator("grid", check_fields=False)
    @classmethod
    def _grid(cls, value):
        return None if value is None else check_grid_name(value)

    @model_validator(mode="after")
    def _lonlat(self) -> Self:
        bbox = getattr(self, "bbox", None)
        if bbox is not None and self.bbox_crs == "EPSG:4326":
            check_lonlat(bbox)
        return self

    @property
    def time_range(self):
        """``(start, end)`` of ``datetime`` in UTC (either may be None)."""
        return parse_datetime_range(getattr(self, "datetime"))

    @classmethod
    def build(cls, **params: Any) -> Self:
        """Validate parameters (``None`` values take the defaults).

        Raises:
            InvalidInput: one line naming the first bad parameter.
        """
        params = {k: v for k, v in params.items() if v is not None}
        try:
            return cls(**params)
        except InvalidInput:
            raise
        except ValidationError as exc:
            raise InvalidInput(validation_message(exc)) from exc
