"""Key material for the push adapters, made by the openssl CLI at test time (never checked in)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def private_key_pem(kind: str, directory: Path) -> str:
    """A fresh PKCS#8 PEM key: ``rsa`` (2048 bits, FCM service accounts) or ``ec`` (P-256, APNs .p8)."""
    path = directory / f"{kind}.pem"
    if kind == "rsa":
        args = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)]
    else:
        args = ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)]
    subprocess.run(args, check=True, capture_output=True)
    return path.read_text()


def service_account(directory: Path, project_id: str = "herald-test") -> str:
    """A Google service-account key file's text, as FCM's adapter takes it."""
    return json.dumps(
        {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": "k1",
            "private_key": private_key_pem("rsa", directory),
            "client_email": f"sender@{project_id}.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )
