"""STAC sources -> items: lists, ItemCollections, static catalogs, JSON files, STAC APIs.

:func:`resolve_items` turns anything :func:`xterrafm.io.load_stac` accepts into STAC items,
each with the href its relative asset hrefs resolve against, filtered by bbox, datetime and
collection. JSON documents fetched over HTTP are retried like raster reads
(:class:`~xterrafm.io.retry.RetryPolicy`), and a document that is not valid JSON is refused
naming its href.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from xterrafm._imports import import_gate
from xterrafm.errors import InputError, UsageError
from xterrafm.io.retry import RetryPolicy

with import_gate():
    import pystac
    from pystac.stac_io import DefaultStacIO

__all__ = ["RetryingStacIO", "parse_datetime_range", "parse_time", "resolve_items"]


class RetryingStacIO(DefaultStacIO):
    """pystac I/O whose HTTP reads are retried (5xx, 429, dropped connections), and whose JSON
    errors name the document.

    A document is one request, so it is tried as often as either layer of the
    :class:`RetryPolicy` would try a request: ``max(attempts, gdal_http_max_retry + 1)`` times.
    """

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or RetryPolicy()

    def read_text_from_href(self, href: str) -> str:
        if urlparse(href).scheme not in ("http", "https"):
            return super().read_text_from_href(href)
        tries = max(self.policy.attempts, self.policy.gdal_http_max_retry + 1)
        for attempt in range(tries):
            try:
                with urllib.request.urlopen(href, timeout=60) as resp:
                    return resp.read().decode("utf-8")
            except urllib.error.HTTPError as err:
                if err.code not in (429, 500, 502, 503, 504) or \
                        attempt + 1 == tries:
                    raise InputError(f"could not read the STAC document {href}: HTTP "
                                     f"{err.code} {err.reason}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                if attempt + 1 == tries:
                    raise InputError(f"could not read the STAC document {href}: {err}") from None
            time.sleep(self.policy.delay(attempt))
        raise AssertionError("unreachable")

    def json_loads(self, txt: str, *args: Any, **kwargs: Any) -> dict:
        try:
            return json.loads(txt)
        except json.JSONDecodeError as err:
            href = kwargs.get("href") or (args[0] if args else "a STAC document")
            raise InputError(f"{href} is not valid JSON (truncated or not STAC?): {err}") from None

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict:
        text = self.read_text(source, *args, **kwargs)
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{source} is not valid JSON (truncated or not STAC?): {err}") \
                from None




def parse_time(value: Any, *, end: bool) -> dt.datetime | None:
    if value is None or value in ("", ".."):
        return None
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, dt.date):
        t = dt.datetime.combine(value, dt.time.max if end else dt.time.min)
    else:
        s = str(value).strip()
        try:
            if len(s) in (4, 7):  # a year or a month: the whole of it
                year, month = int(s[:4]), int(s[5:7]) if len(s) == 7 else None
                if end:
                    last = dt.date(year + (month or 12) // 12, (month or 12) % 12 + 1, 1)
                    day = last - dt.timedelta(days=1)
                else:
                    day = dt.date(year, month or 1, 1)
                t = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
            elif len(s) == 10:  # a date: the whole day
                t = dt.datetime.combine(dt.date.fromisoformat(s),
                                        dt.time.max if end else dt.time.min)
            else:
                t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"datetime {s!r} is not a year (2024), month (2024-06), date "
                             "(2024-06-01) or ISO date-time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def parse_datetime_range(datetime: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``(start, end)`` of a STAC-API style datetime, both inclusive and in UTC.

    ``"a/b"`` ranges (``..`` open), a year (``"2024"``), a month (``"2024-06"``), a date or an
    ISO date-time; a ``datetime``/``date``; or a 2-tuple of those.

    Raises
    ------
    UsageError
        A value in none of these forms.
    """
    if datetime is None:
        return None, None
    if isinstance(datetime, (tuple, list)):
        if len(datetime) != 2:
            raise ValueError(f"datetime range must have 2 elements, got {datetime!r}")
        return parse_time(datetime[0], end=False), parse_time(datetime[1], end=True)
    if isinstance(datetime, str) and "/" in datetime:
        a, b = datetime.split("/", 1)
        return parse_time(a, end=False), parse_time(b, end=True)
    return parse_time(datetime, end=False), parse_time(datetime, end=True)


def _lon_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two longitude ranges overlap; a range whose west exceeds its east crosses the
    antimeridian (STAC bboxes of items there do, e.g. Sentinel-2 tiles of UTM zones 1 and 60)."""
    def parts(r: tuple[float, float]) -> list[tuple[float, float]]:
        return [(r[0], 180.0), (-180.0, r[1])] if r[0] > r[1] else [r]

    return any(p0 <= q1 and q0 <= p1 for p0, p1 in parts(a) for q0, q1 in parts(b))


def _filter_items(
    pairs: list[tuple[pystac.Item, str | None]],
    bbox: Sequence[float] | None,
    datetime: Any,
    collections: Sequence[str] | None,
) -> list[tuple[pystac.Item, str | None]]:
    """Apply bbox / datetime / collections to items from a static source."""
    start, end = parse_datetime_range(datetime)
    cols = {collections} if isinstance(collections, str) else set(collections or ())
    out = []
    for item, base in pairs:
        if cols and item.collection_id not in cols:
            continue
        t = item.datetime or parse_time(item.properties.get("start_datetime"), end=False)
        if t is not None and t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        if t is not None and ((start and t < start) or (end and t > end)):
            continue
        if bbox is not None and item.bbox is not None:
            b = item.bbox
            x0, y0, x1, y1 = (b[0], b[1], b[3], b[4]) if len(b) == 6 else b
            if y1 < bbox[1] or y0 > bbox[3] or not _lon_overlap((x0, x1), (bbox[0], bbox[2])):
                continue
        out.append((item, base))
    return out


def _read_json(href: str, stac_io: RetryingStacIO) -> dict:
    return stac_io.read_json(href)


def _is_stac_api(doc: Mapping[str, Any]) -> bool:
    conforms = " ".join(doc.get("conformsTo", []))
    if "item-search" in conforms:
        return True
    return any(link.get("rel") == "search" for link in doc.get("links", []))


def _search_api(url: str, bbox: Any, datetime: Any, collections: Any,
                search_kwargs: Mapping[str, Any] | None) -> list[pystac.Item]:
    with import_gate():
        import pystac_client

    client = pystac_client.Client.open(url)
    search = client.search(bbox=bbox, datetime=datetime, collections=collections,
                           **dict(search_kwargs or {}))
    return list(search.items())


def _items_from_href(href: str, bbox: Any, datetime: Any, collections: Any,
                     search_kwargs: Mapping[str, Any] | None, stac_io: RetryingStacIO
                     ) -> tuple[list[tuple[pystac.Item, str | None]], bool]:
    """Items (with the href their relative asset hrefs resolve against) from a path or URL.

    Returns the pairs and whether a STAC API already applied the filters.
    """
    is_url = urlparse(href).scheme in ("http", "https")
    if not is_url:
        href = os.path.abspath(href)
        if not os.path.exists(href):
            raise FileNotFoundError(f"STAC source {href!r} does not exist")
    doc = _read_json(href, stac_io)
    kind = doc.get("type")
    if kind == "FeatureCollection":
        pairs = []
        for feat in doc.get("features", []):
            item = pystac.Item.from_dict(feat, preserve_dict=False)
            pairs.append((item, item.get_self_href() or href))
        return pairs, False
    if kind == "Feature":
        item = pystac.Item.from_dict(doc)
        return [(item, item.get_self_href() or href)], False
    if kind in ("Catalog", "Collection"):
        if is_url and _is_stac_api(doc):
            items = _search_api(href, bbox, datetime, collections, search_kwargs)
            return [(it, it.get_self_href()) for it in items], True
        try:
            cat = pystac.read_file(href, stac_io=stac_io)
            if not isinstance(cat, pystac.Catalog):
                raise InputError(f"{href!r} is not a STAC catalog or collection")
            items = list(cat.get_items(recursive=True))
        except pystac.STACError as err:  # a child link that does not resolve
            if isinstance(err.__cause__, InputError):  # names the unreadable document
                raise InputError(f"{err.__cause__} (linked from the catalog {href})") from None
            raise InputError(f"catalog {href}: {err}") from None
        return [(it, it.get_self_href()) for it in items], False
    raise InputError(
        f"{href!r} is not a STAC Item, ItemCollection, Catalog or Collection (type={kind!r})"
    )


def resolve_items(
    source: Any,
    *,
    bbox: Sequence[float] | None = None,
    datetime: Any = None,
    collections: Sequence[str] | str | None = None,
    search_kwargs: Mapping[str, Any] | None = None,
    retry: RetryPolicy | None = None,
) -> list[tuple[pystac.Item, str | None]]:
    """STAC items from any supported source, filtered, each with its base href.

    Parameters
    ----------
    source : see :func:`load_stac`
    bbox, datetime, collections : optional
        Filters (lon/lat bbox, STAC-API datetime, collection ids); passed to the search for a
        STAC API, applied to the items of static sources.
    search_kwargs : mapping, optional
        Extra arguments for ``pystac_client.Client.search`` (``query=``, ``max_items=`` ...).
    retry : RetryPolicy, optional
        Retries of JSON documents read over HTTP (default :class:`RetryPolicy()`).

    Returns
    -------
    list of (pystac.Item, str or None)
        Items and the href their relative asset hrefs resolve against (their own location).
    """
    filtered = False
    if isinstance(source, pystac.ItemCollection):
        pairs = [(it, it.get_self_href()) for it in source]
    elif isinstance(source, pystac.Item):
        pairs = [(source, source.get_self_href())]
    elif isinstance(source, pystac.Catalog):
        pairs = [(it, it.get_self_href()) for it in source.get_items(recursive=True)]
    elif isinstance(source, (str, os.PathLike)):
        pairs, filtered = _items_from_href(os.fspath(source), bbox, datetime, collections,
                                           search_kwargs, RetryingStacIO(retry))
    elif hasattr(source, "search") and hasattr(source, "get_collections"):  # pystac_client
        items = list(source.search(bbox=bbox, datetime=datetime, collections=collections,
                                   **dict(search_kwargs or {})).items())
        pairs, filtered = [(it, it.get_self_href()) for it in items], True
    elif isinstance(source, Iterable):
        pairs = []
        for it in source:
            if isinstance(it, Mapping):
                it = pystac.Item.from_dict(dict(it))
            if not isinstance(it, pystac.Item):
                raise TypeError(f"expected pystac.Item in the source list, got {type(it)!r}")
            pairs.append((it, it.get_self_href()))
    else:
        raise TypeError(
            "source must be a list of pystac Items, an ItemCollection, a Catalog, a pystac_client "
            f"Client, or a path/URL of a STAC JSON document; got {type(source)!r}"
        )
    if not filtered:
        pairs = _filter_items(pairs, bbox, datetime, collections)
    if not pairs:
        raise InputError(
            f"no STAC items found in {source!r} for bbox={bbox}, datetime={datetime}, "
            f"collections={collections}"
        )
    return pairs


