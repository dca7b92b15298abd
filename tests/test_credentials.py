"""Credentials never reach the config, params.json, an artifact key or a manifest (issue 28 item 8).

Each kind is recognised by what it is, wherever it sits: secret options (a service-account dict
given as gcsfs's `token`, an Authorization header, aiohttp's `auth`, AccountKey, api_key,
access_token), a user name and password in any URL, a secret in a URL's query, the key of a
connection string.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fdt.config import ConfigError, validate_config
from fdt.credentials import CredentialError, find_credentials, without_credentials
from fdt.keys import artifact_key, write_params
from fdt.replay.sources import (
    FsspecSource,
    GcsSource,
    HttpsSource,
    LocalSource,
    fetch_files,
    merge_manifest,
)

BASE = {"games": ["Breakout"], "runs": [1], "buffers": [0, 1],
        "dataset": {"num_buffers": 2, "buffers_end": 2, "capacity": 1000}}
S3 = "s3://mirror/dqn/{game}/{run}/replay_logs/{name}"
SECRET = "hunter2-s3cr3t"
SERVICE_ACCOUNT = {"type": "service_account", "project_id": "p", "private_key_id": "k1",
                   "private_key": f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n",
                   "client_email": "fetch@p.iam.gserviceaccount.com"}


def _fsspec(options: dict, url: str = S3) -> dict:
    return {"source": {"kind": "fsspec", "url": url, "storage_options": options}}


@pytest.mark.parametrize("change, place, what", [
    (_fsspec({"token": SERVICE_ACCOUNT}), "source.storage_options.token", "a secret option ('token')"),
    (_fsspec({"headers": {"Authorization": f"Bearer {SECRET}"}}),
     "source.storage_options.headers.Authorization", "a secret option ('Authorization')"),
    (_fsspec({"client_kwargs": {"auth": ["fetch", SECRET]}}),
     "source.storage_options.client_kwargs.auth", "a secret option ('auth')"),
    (_fsspec({"endpoint_url": f"https://fetch:{SECRET}@127.0.0.1:9000"}),
     "source.storage_options.endpoint_url", "a user name and password in a URL (user:password@)"),
    (_fsspec({}, f"s3://fetch:{SECRET}@mirror/dqn/{{game}}/{{run}}/replay_logs/{{name}}"),
     "source.url", "a user name and password in a URL (user:password@)"),
    ({"source": {"kind": "https", "url": f"https://fetch:{SECRET}@host/{{game}}/{{run}}/{{name}}"}},
     "source.url", "a user name and password in a URL (user:password@)"),
    ({"source": {"kind": "gcs", "endpoint": f"https://fetch:{SECRET}@127.0.0.1:4443"}},
     "source.endpoint", "a user name and password in a URL (user:password@)"),
    ({"models": ["fdt"], "oracle": {"kind": "dopamine", "source": {
        "kind": "https", "url": f"https://fetch:{SECRET}@host/{{game}}/{{run}}/{{name}}"}}},
     "oracle.source.url", "a user name and password in a URL (user:password@)"),
    (_fsspec({"AccountKey": SECRET}), "source.storage_options.AccountKey", "a secret option ('AccountKey')"),
    (_fsspec({"account_name": "a", "conn_str": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={SECRET}"}),
     "source.storage_options.conn_str", "a secret in a connection string (AccountKey=)"),
    (_fsspec({"api_key": SECRET}), "source.storage_options.api_key", "a secret option ('api_key')"),
    (_fsspec({"client_kwargs": {"access_token": SECRET}}),
     "source.storage_options.client_kwargs.access_token", "a secret option ('access_token')"),
    ({"source": {"kind": "https", "url": f"https://host/{{game}}/{{run}}/{{name}}?access_token={SECRET}"}},
     "source.url", "a secret in a URL's query (access_token=)"),
])
def test_the_config_refuses_each_credential_naming_where(change: dict, place: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({**BASE, **change}, origin="my.yaml")
    message = str(info.value)
    assert message.startswith(f"config error in my.yaml at {place}: credentials do not belong in "
                              f"the config ({what}; the config enters params.json")
    assert SECRET not in message


@pytest.mark.parametrize("token", ["anon", "google_default", "cloud", None])
def test_gcsfs_token_modes_are_no_credentials(token: str | None) -> None:
    config = validate_config({**BASE, **_fsspec({"token": token}, "gs://b/{game}/{run}/{name}")})
    assert config["source"]["storage_options"] == {"token": token}


def test_names_that_merely_contain_a_secret_word_are_kept() -> None:
    assert find_credentials({"warmup_tokens": 10, "dataset_key": "abc", "keys": [1],
                             "url": "https://host/{game}/{name}?page=2"}, "params") == []


@pytest.mark.parametrize("make", [
    lambda: FsspecSource(f"s3://fetch:{SECRET}@mirror/{{game}}/{{run}}/{{name}}"),
    lambda: HttpsSource(f"https://fetch:{SECRET}@host/{{game}}/{{run}}/{{name}}"),
    lambda: HttpsSource(f"https://host/{{game}}/{{run}}/{{name}}?X-Amz-Signature={SECRET}"),
    lambda: GcsSource(endpoint=f"http://fetch:{SECRET}@127.0.0.1:4443"),
])
def test_a_source_built_in_code_refuses_credentials_in_its_url(make) -> None:
    with pytest.raises(CredentialError, match=r"credentials do not belong in a source's URL") as info:
        make()
    assert SECRET not in str(info.value)


def test_a_source_built_in_code_leaves_its_secret_options_out_of_its_description() -> None:
    options = {"token": SERVICE_ACCOUNT, "headers": {"Authorization": "Bearer x", "User-Agent": "fdt"},
               "client_kwargs": {"auth": ("u", "p"), "region_name": "x"}, "api_key": "k",
               "endpoint_url": "http://127.0.0.1:9000"}
    assert FsspecSource(S3, options).describe()["storage_options"] == {
        "headers": {"User-Agent": "fdt"}, "client_kwargs": {"region_name": "x"},
        "endpoint_url": "http://127.0.0.1:9000"}
    assert without_credentials({"urls": ["https://a/x", f"https://u:{SECRET}@b/x"]}) == {"urls": ["https://a/x"]}


def test_params_json_and_keys_refuse_credentials(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match=r"^params\.source\.storage_options\.token holds a secret "
                                              r"option \('token'\); credentials do not belong in "
                                              r"params\.json and the artifact keys"):
        artifact_key({"source": {"storage_options": {"token": SERVICE_ACCOUNT}}})
    with pytest.raises(CredentialError, match=r"^details\.endpoint holds a user name and password"):
        write_params(tmp_path, "fetch", {"a": 1}, details={"endpoint": f"https://u:{SECRET}@h"})
    assert not (tmp_path / "params.json").exists()


class _LeakySource(LocalSource):
    """A source written in code whose description carries a credential."""

    def describe(self) -> dict:
        return {"kind": "custom", "headers": {"Authorization": f"Bearer {SECRET}"}}


def test_a_manifest_refuses_credentials(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match=r"^source\.headers\.Authorization holds a secret option"):
        fetch_files(_LeakySource(tmp_path / "src"), "Breakout", 1, ["a.gz"], tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest").exists()  # refused before anything was fetched
    record = {"game": "Breakout", "run": 1, "checkpoint": 0, "source": {"kind": "https", "url": "https://h/{name}"},
              "files": {"a.gz": {"location": f"https://u:{SECRET}@h/a.gz", "size": 1}}}
    with pytest.raises(CredentialError, match=r"^manifest\.files\.a\.gz\.location holds a user name and password"):
        merge_manifest([record])
