"""The dashboard's files are served with a strict content security policy; anything else
under /dashboard is a 404 in the OpenAI error shape. (The page itself is tested in a real
browser: tests/dashboard.)"""

from __future__ import annotations

import httpx

from tests.api.conftest import Server


async def test_the_dashboard_page_script_and_style_are_served(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = await client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script src="/dashboard/dashboard.js"' in page.text
        script = await client.get("/dashboard/dashboard.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert "textContent" in script.text
        assert "innerHTML" not in script.text  # values from the server are text, never markup
        style = await client.get("/dashboard/dashboard.css")
        assert style.headers["content-type"].startswith("text/css")
        root = await client.get("/", follow_redirects=False)
        assert (root.status_code, root.headers["location"]) == (307, "/dashboard")


async def test_unknown_dashboard_files_are_404_in_the_openai_error_shape(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in ["/dashboard/secrets.txt", "/dashboard/index.html", "/dashboard/..%2Fapp.py"]:
            r = await client.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "not_found"
