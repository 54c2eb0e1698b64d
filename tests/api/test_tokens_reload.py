"""The tokens file is read again when it changes: a token added by rewriting
the file works at once, a removed one stops, a rewrite that does not parse
keeps the tokens read before (pure logic over a real file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from podwire.api.auth import TokenFileAuth
from podwire.errors import NotAuthenticated


def _write(path: Path, text: str) -> None:
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    fresh.replace(path)  # as an operator should: no reader sees half a file


def test_added_token_works_and_removed_token_stops(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _write(path, json.dumps({"tok-a": {"project_id": "pa"}}))
    auth = TokenFileAuth.from_file(path)
    assert auth.authenticate("tok-a").project_id == "pa"
    with pytest.raises(NotAuthenticated):
        auth.authenticate("tok-b")

    _write(path, json.dumps({"tok-b": {"project_id": "pb", "roles": ["member", "service"]}}))
    ctx = auth.authenticate("tok-b")
    assert (ctx.project_id, ctx.roles) == ("pb", ("member", "service"))
    with pytest.raises(NotAuthenticated):
        auth.authenticate("tok-a")


def test_rewrite_that_does_not_parse_keeps_the_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _write(path, json.dumps({"tok-a": {"project_id": "pa"}}))
    auth = TokenFileAuth.from_file(path)
    _write(path, "{not json")
    assert auth.authenticate("tok-a").project_id == "pa"
    _write(path, json.dumps({"tok-a": {"project_id": "pa", "roles": ["emperor"]}}))
    assert auth.authenticate("tok-a").project_id == "pa"
    os.unlink(path)
    assert auth.authenticate("tok-a").project_id == "pa"
