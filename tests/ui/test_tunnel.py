"""The printed ``ssh -L`` command, run as printed through a real sshd, and the URL from the
private file open the UI (Unix socket by default, and the exposed TCP form)."""

from __future__ import annotations

import re

import pytest

from tests.ui.conftest import QUERY, owner_job_names

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("which", ["socket_ui", "tcp_ui"])
def test_printed_tunnel_and_url_open_the_ui(which, request, private_sshd):
    import httpx

    ui = request.getfixturevalue(which)
    owner_job_names(ui)  # the code location has loaded
    url = ui.url_file.read_text().splitlines()[0]
    local_port = int(re.fullmatch(r"http://localhost:(\d+)/\?token=\S+", url)[1])
    tunnel = private_sshd.tunnel(ui.tunnel, local_port)
    try:
        with httpx.Client(timeout=30, follow_redirects=True) as browser:
            page = browser.get(url)  # as a browser does: redirect, cookie, the app's page
            assert page.status_code == 200 and ">Dagster</title>" in page.text, page.text[:300]
            assert "token=" not in str(page.url)
            jobs = browser.post(f"http://localhost:{local_port}/graphql", json={"query": QUERY}).json()
        names = [j["name"] for n in jobs["data"]["repositoriesOrError"]["nodes"] for j in n["jobs"]]
        assert "fetch_and_regrid" in names
        with httpx.Client(timeout=30) as stranger:  # the laptop's port is no way in either
            assert stranger.get(f"http://localhost:{local_port}/").status_code == 403
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=30)
