"""/docs works on a network without internet: everything it loads comes from the server."""

from __future__ import annotations

import re

from tests.integration.conftest import Server

REFERENCE = re.compile(r"""(?:src|href)="([^"]*)"|url: '([^']*)'""")


def test_the_docs_page_loads_only_from_the_server(server: Server) -> None:
    with server.client() as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert "://" not in page.text  # no CDN, no validator badge
        assert '"validatorUrl": null' in page.text
        references = [a or b for a, b in REFERENCE.findall(page.text)]
        assert len(references) == 4  # stylesheet, icon, script, the OpenAPI document
        for reference in references:
            assert reference.startswith("/"), reference
            assert client.get(reference).status_code == 200, reference
        script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert "SwaggerUIBundle" in script.text
