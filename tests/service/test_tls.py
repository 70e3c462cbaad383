"""Transport security (issue 11, item 3): TLS and mutual TLS on real servers, with certificates
made here; the auth matrix over TLS; `planner-server --health-check` and the CLI against TLS
servers; bad TLS settings stop the server with one line naming the setting."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clients import PlannerClient, PlannerClientError
from planner_api.v1 import planner_pb2 as pb
from planner_api.v1 import planner_pb2_grpc as rpc
from server.config import Settings, load_tls
from server.main import health_check as health_check_settings
from tests.service.server_process import ServerProcess
from tests.service.test_roles import EXPECTED_MATRIX, TOKENS, auth_matrix, tokens_file

BIN = Path(sys.executable).parent
# One fit process is enough here and warms faster.
FAST = {"PLANNER_FIT_PROCESSES": "1"}


@dataclass
class Issued:
    cert: Path
    key: Path


class Authority:
    """A CA that signs certificates into `folder`."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._build(self.name, self.key.public_key(), ca=True).sign(
            self.key, hashes.SHA256()
        )
        self.file = folder / f"{name}.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _build(
        self, subject: x509.Name, public: ec.EllipticCurvePublicKey, ca: bool
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )

    def issue(self, name: str, server: bool = False) -> Issued:
        """A leaf certificate; a server's names localhost and 127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = self._build(subject, key.public_key(), ca=False)
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.folder / f"{name}.pem", self.folder / f"{name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


@dataclass
class Pki:
    folder: Path
    server_ca: Authority
    server: Issued  # signed by server_ca
    client_ca: Authority
    client: Issued  # signed by client_ca
    mtls_server: Issued  # signed by client_ca: one internal CA for the mTLS server and clients
    other_ca: Authority
    stranger: Issued  # a client certificate signed by other_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, other_ca = (
        Authority(folder, name) for name in ("server-ca", "client-ca", "other-ca")
    )
    return Pki(
        folder,
        server_ca,
        server_ca.issue("server", server=True),
        client_ca,
        client_ca.issue("client"),
        client_ca.issue("mtls-server", server=True),
        other_ca,
        other_ca.issue("stranger"),
    )


def credentials(root: Path, client: Issued | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root.read_bytes())
    return grpc.ssl_channel_credentials(
        root.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[ServerProcess]:
    """TLS with bearer tokens (the roles of test_roles.py)."""
    env = {
        **FAST,
        "PLANNER_TLS_CERT": str(pki.server.cert),
        "PLANNER_TLS_KEY": str(pki.server.key),
        "PLANNER_TOKENS_FILE": str(tokens_file(pki.folder)),
    }
    database = pki.folder / "tls.db"
    with ServerProcess(database, env, credentials=credentials(pki.server_ca.file)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[ServerProcess]:
    """Mutual TLS: clients need a certificate from client-ca (no tokens)."""
    env = {
        **FAST,
        "PLANNER_TLS_CERT": str(pki.mtls_server.cert),
        "PLANNER_TLS_KEY": str(pki.mtls_server.key),
        "PLANNER_TLS_CLIENT_CA": str(pki.client_ca.file),
    }
    database = pki.folder / "mtls.db"
    polling = credentials(pki.client_ca.file, pki.client)
    with ServerProcess(database, env, credentials=polling) as server:
        yield server


def status(channel: grpc.Channel, token: str | None = None) -> str:
    """The status of a GetFamily call on `channel`."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    stub = rpc.PlannerServiceStub(channel)
    try:
        stub.GetFamily(
            pb.GetFamilyRequest(name="chinchilla-epoch-2024"), metadata=metadata, timeout=5
        )
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


def test_a_tls_server_answers_tls_clients_only(tls_server: ServerProcess, pki: Pki) -> None:
    token = TOKENS["reader"]
    with PlannerClient(tls_server.target, token, tls=True, ca_file=pki.server_ca.file) as client:
        assert client.get_family("chinchilla-epoch-2024").name == "chinchilla-epoch-2024"
    with grpc.insecure_channel(tls_server.target) as plaintext:
        assert status(plaintext, token) == "UNAVAILABLE"
    # A client that trusts another CA does not accept the server's certificate.
    with (
        PlannerClient(tls_server.target, token, ca_file=pki.other_ca.file) as doubting,
        pytest.raises(PlannerClientError) as caught,
    ):
        doubting.get_family("chinchilla-epoch-2024")
    assert caught.value.code == "UNAVAILABLE"


def test_the_auth_matrix_over_tls(tls_server: ServerProcess) -> None:
    with tls_server.channel() as channel:
        assert auth_matrix(rpc.PlannerServiceStub(channel)) == EXPECTED_MATRIX


def health_check(server: ServerProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "planner-server"), "--health-check", *args],
        env={**server.env, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_health_check_trusts_the_servers_own_certificate(tls_server: ServerProcess) -> None:
    assert health_check(tls_server).returncode == 0
    assert health_check(tls_server, "--service", "planner.v1.PlannerService").returncode == 0
    assert health_check(tls_server, PLANNER_TLS_HEALTH_SERVER_NAME="localhost").returncode == 0
    # The name it expects is checked: the certificate does not name this one.
    wrong = health_check(tls_server, PLANNER_TLS_HEALTH_SERVER_NAME="planner.example.org")
    assert wrong.returncode == 1 and wrong.stderr.startswith("unhealthy: 127.0.0.1:")


def planner(server: ServerProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    return subprocess.run(
        [str(BIN / "planner"), "--target", server.target, *args],
        env={**outside, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_over_tls_with_tokens_outside_argv(
    tls_server: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    tls = ["--tls", "--ca-file", str(pki.server_ca.file)]
    writer = TOKENS["writer"]
    made = planner(tls_server, *tls, "families", "create", "cli-tls-env", PLANNER_TOKEN=writer)
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""
    token_file = tmp_path / "token"
    token_file.write_text(writer + "\n")  # the trailing newline is not part of the token
    made = planner(tls_server, *tls, "--token-file", str(token_file), "families", "create", "t1")
    assert made.returncode == 0, made.stderr
    # The environment's file, TLS from the environment too.
    made = planner(
        tls_server,
        "families",
        "create",
        "cli-tls-file-env",
        PLANNER_TOKEN_FILE=str(token_file),
        PLANNER_TLS_CA=str(pki.server_ca.file),
    )
    assert made.returncode == 0, made.stderr
    # The old flag still works, with a warning that ps shows it.
    shown = planner(tls_server, *tls, "--token", writer, "families", "show", "t1")
    assert shown.returncode == 0, shown.stderr
    (warning,) = shown.stderr.splitlines()
    assert warning.startswith("planner: warning: --token") and "ps" in warning
    # Without TLS the server is not reached.
    plain = planner(tls_server, "families", "show", "t1", PLANNER_TOKEN=writer)
    assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr


def test_mutual_tls_wants_a_client_certificate_from_its_ca(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    root = pki.client_ca.file
    with grpc.secure_channel(mtls_server.target, credentials(root, pki.client)) as channel:
        assert status(channel) == "OK"
    with grpc.secure_channel(mtls_server.target, credentials(root)) as channel:
        assert status(channel) == "UNAVAILABLE"  # no client certificate
    with grpc.secure_channel(mtls_server.target, credentials(root, pki.stranger)) as channel:
        assert status(channel) == "UNAVAILABLE"  # signed by a CA the server does not trust
    client = ["--ca-file", str(root), "--cert-file", str(pki.client.cert)]
    shown = planner(
        mtls_server, *client, "--key-file", str(pki.client.key), "families", "show",
        "chinchilla-epoch-2024",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr


def test_the_health_check_under_mutual_tls(mtls_server: ServerProcess, pki: Pki) -> None:
    # By default it presents the server's own certificate, which client-ca signed.
    assert health_check(mtls_server).returncode == 0
    chosen = {
        "PLANNER_TLS_HEALTH_CLIENT_CERT": str(pki.client.cert),
        "PLANNER_TLS_HEALTH_CLIENT_KEY": str(pki.client.key),
    }
    assert health_check(mtls_server, **chosen).returncode == 0
    refused = {
        "PLANNER_TLS_HEALTH_CLIENT_CERT": str(pki.stranger.cert),
        "PLANNER_TLS_HEALTH_CLIENT_KEY": str(pki.stranger.key),
    }
    assert health_check(mtls_server, **refused).returncode == 1


def start_with(env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    database = {"PLANNER_DATABASE_URL": f"sqlite:///{folder / 'never.db'}"}
    return subprocess.run(
        [str(BIN / "planner-server")],
        env={**outside, **database, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "setting"),
    [
        ("half pair", "PLANNER_TLS_KEY"),
        ("unreadable", "PLANNER_TLS_CERT"),
        ("garbage", "PLANNER_TLS_CLIENT_CA"),
    ],
)
def test_bad_tls_settings_stop_the_server_with_one_line(
    case: str, setting: str, pki: Pki, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    env = {
        "half pair": {"PLANNER_TLS_CERT": str(pki.server.cert)},
        "unreadable": {
            "PLANNER_TLS_CERT": str(tmp_path / "missing.pem"),
            "PLANNER_TLS_KEY": str(pki.server.key),
        },
        "garbage": {
            "PLANNER_TLS_CERT": str(pki.server.cert),
            "PLANNER_TLS_KEY": str(pki.server.key),
            "PLANNER_TLS_CLIENT_CA": str(garbage),
        },
    }[case]
    done = start_with(env, tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"planner-server: {setting}")
    assert not (tmp_path / "never.db").exists()  # refused before any other start-up work


def settings(**values: Any) -> Settings:
    """Settings from these values alone (not the environment's)."""
    return Settings.model_construct(**values)


def test_tls_files_are_checked_one_by_one(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\xffnot pem")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cert, key = pki.server.cert, pki.server.key
    refused = [
        ({"tls_key": key}, "PLANNER_TLS_CERT is unset: .* go together"),
        ({"tls_client_ca": pki.client_ca.file}, "PLANNER_TLS_CLIENT_CA needs"),
        ({"tls_cert": tmp_path, "tls_key": key}, "PLANNER_TLS_CERT: cannot read"),
        ({"tls_cert": garbage, "tls_key": key}, "PLANNER_TLS_CERT: .* holds no PEM certificate"),
        ({"tls_cert": empty, "tls_key": key}, "PLANNER_TLS_CERT: .* is empty"),
        ({"tls_cert": cert, "tls_key": garbage}, "PLANNER_TLS_KEY: .* not an unencrypted PEM"),
        # A key that is not the certificate's.
        ({"tls_cert": cert, "tls_key": pki.client.key}, "PLANNER_TLS_KEY"),
        ({"tls_cert": cert, "tls_key": key, "tls_client_ca": empty}, "PLANNER_TLS_CLIENT_CA"),
    ]
    for values, says in refused:
        with pytest.raises(ValueError, match=says) as caught:
            load_tls(settings(**values))
        assert "\n" not in str(caught.value)
    assert load_tls(settings()) is None
    loaded = load_tls(settings(tls_cert=cert, tls_key=key, tls_client_ca=pki.client_ca.file))
    assert loaded is not None and loaded.client_ca == pki.client_ca.file.read_bytes()


def test_the_health_check_with_unusable_tls_settings_is_one_line(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    half = settings(listen="127.0.0.1:9", tls_cert=pki.server.cert)
    assert health_check_settings(half, 1.0) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("planner-server: PLANNER_TLS_KEY is unset")
