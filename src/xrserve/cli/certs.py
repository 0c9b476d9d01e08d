"""`xrserve certs dev`: HTTPS for a headset on the LAN without a public CA (security/certs.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from xrserve.settings import default_data_dir

certs_app = typer.Typer(help="Certificates for HTTPS and WSS.", no_args_is_help=True)
out = Console(soft_wrap=True)  # paths and commands stay whole, to be copied


@certs_app.command("dev")
def certs_dev(
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Another name or address the certificate must cover; repeatable."),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where the CA and the certificate go (the CA is reused if there).")
    ] = default_data_dir() / "certs",
) -> None:
    """Make a local CA (once) and a server certificate for localhost, this machine's LAN addresses and --host."""
    from xrserve.security.certs import make_dev_certificates

    made = make_dev_certificates(out_dir, host or [])
    out.print(f"{'new' if made.new_ca else 'existing'} CA: {made.ca}")
    out.print(f"server certificate for {', '.join(made.names)}:\n  {made.cert}\n  {made.key}")
    out.print(f"serve with: xrserve serve --host 0.0.0.0 --tls-cert {made.cert} --tls-key {made.key}")
    out.print(
        "trust the CA where the clients run (not the server certificate, which is remade each time):\n"
        f"  - a headset (Quest): `adb push {made.ca} /sdcard/Download/`, then Settings > Security > "
        "Credentials > Install from device storage (or open the file in the headset's browser)\n"
        "  - Chrome on this machine: Settings > Privacy and security > Security > Manage certificates > Authorities\n"
        f"  - Python clients: httpx.Client(verify=ssl.create_default_context(cafile='{made.ca}')), "
        f"or SSL_CERT_FILE={made.ca}"
    )
