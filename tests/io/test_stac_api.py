"""load_stac on a STAC API URL: the search goes through pystac-client.

The API is a minimal item-search server on 127.0.0.1 (landing page + ``/search``) that serves the
synthetic scene's items with absolute asset paths; it runs in a thread because only JSON goes
through it (pixels are read from the local COGs, GDAL never calls it).
"""

from __future__ import annotations

import http.server
import json
import threading

import numpy as np
import pystac
import pytest

from xterrafm.io import load_stac

CONFORMS = ["https://api.stacspec.org/v1.0.0/core",
            "https://api.stacspec.org/v1.0.0/item-search"]


@pytest.fixture
def stac_api(synthetic_scene):
    features = {}
    for key, cid in (("s1", "sentinel-1-rtc"), ("s2_l2a", "sentinel-2-l2a")):
        ic = synthetic_scene.item_collections[key]
        for it in pystac.ItemCollection.from_file(str(ic)):
            it.set_self_href(str(ic))
            it.make_asset_hrefs_absolute()
            it.clear_links()
            d = it.to_dict(transform_hrefs=False)
            d["collection"] = cid
            features.setdefault(cid, []).append(d)
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _json(self, doc):
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _search(self, params):
            seen.append(params)
            cols = params.get("collections") or list(features)
            if isinstance(cols, str):
                cols = cols.split(",")
            feats = [f for c in cols for f in features.get(c, [])]
            self._json({"type": "FeatureCollection", "features": feats, "links": []})

        def do_GET(self):  # noqa: N802
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.startswith("/search"):
                from urllib.parse import parse_qs, urlparse

                q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                self._search(q)
                return
            self._json({"type": "Catalog", "id": "test-api", "description": "test",
                        "stac_version": "1.0.0", "conformsTo": CONFORMS,
                        "links": [{"rel": "self", "href": base + "/"},
                                  {"rel": "root", "href": base + "/"},
                                  {"rel": "search", "href": base + "/search",
                                   "type": "application/geo+json", "method": "POST"},
                                  {"rel": "search", "href": base + "/search",
                                   "type": "application/geo+json", "method": "GET"}]})

        def do_POST(self):  # noqa: N802
            n = int(self.headers.get("Content-Length", 0))
            self._search(json.loads(self.rfile.read(n) or b"{}"))

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", seen
    srv.shutdown()
    srv.server_close()


def test_stac_api_search(synthetic_scene, stac_api):
    url, seen = stac_api
    cube = load_stac(url, modality="s1", collections=["sentinel-1-rtc"],
                     datetime="2024-05-01/2024-07-01")
    assert seen and seen[-1]["collections"] == ["sentinel-1-rtc"]  # the search got the filters
    assert "datetime" in seen[-1]
    assert cube.attrs["item_ids"] == synthetic_scene.item_ids["s1"]
    local = load_stac(synthetic_scene.item_collections["s1"], modality="s1")
    np.testing.assert_array_equal(cube.values, local.values)
