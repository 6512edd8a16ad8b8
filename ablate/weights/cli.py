"""`ablate weights [fetch|verify]`: every pretrained file a grid may need, before the grid runs.

Registered in the main CLI as `app.add_typer(weights_app, name="weights")`. Only
the table module is imported at start; torch and huggingface_hub load when a
command needs them, so `ablate --help` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, invoke_without_command=True,
                  help="Pretrained networks: where each is looked for, whether it is present and verified; "
                       "`fetch` downloads, `verify` re-checks hashes.")


def _names(names: list[str] | None, default) -> list[str]:
    from ablate.weights.table import TABLE

    unknown = [n for n in names or [] if n not in TABLE]
    if unknown:
        typer.secho(f"error: unknown name(s) {', '.join(unknown)}; known: {', '.join(TABLE)}", fg="red", err=True)
        raise typer.Exit(2)
    return list(names) if names else [n for n, e in TABLE.items() if default(e)]


def _where(e) -> str:
    from ablate.weights.table import cache_description

    parts = [f"the {e.option}"] if e.option else []
    parts += [f"${e.env}"] if e.env else []
    return ", then ".join(parts + [cache_description(e)])


def _show(st, e) -> None:
    from ablate.weights.table import source_description

    typer.echo(f"{e.name:<16} {st.state.upper() if st.state == 'MISMATCH' else st.state:<17} {e.file}")
    typer.echo(f"    what      {e.what}")
    typer.echo(f"    source    {e.source}: {source_description(e)} ({e.licence})")
    typer.echo(f"    hash      {e.hash_kind}: {e.hash_note}")
    typer.echo(f"    looked in {_where(e)}")
    if st.path is not None:
        typer.echo(f"    path      {st.path}")
    if st.detail:
        typer.echo(f"    note      {st.detail}")
    typer.echo(f"    used by   {e.used_by}")


@app.callback()
def weights(ctx: typer.Context) -> None:
    """List every pretrained file: source, hash, where it is looked for, whether present and verified.
    Fast: a file is re-hashed only by `ablate weights verify` (or at first use)."""
    if ctx.invoked_subcommand is not None:
        return
    from ablate.weights.table import TABLE, status

    for e in TABLE.values():
        _show(status(e.name), e)
    typer.echo("Fetch the downloadable ones with `ablate weights fetch` (needs network; RETFound needs a Hugging "
               "Face login with the model's terms accepted); re-check every hash with `ablate weights verify`.")


@app.command()
def fetch(
    names: list[str] | None = typer.Argument(None, help="table names (default: every downloadable file)"),
    force: bool = typer.Option(False, "--force", help="download again even if a verified copy is cached"),
) -> None:
    """Download into the standard caches (torch hub, Hugging Face) and verify each file's sha256."""
    from ablate.weights import WeightsMissing
    from ablate.weights.fetch import fetch_file, format_report
    from ablate.weights.table import TABLE, given_path

    failures = {}
    for name in _names(names, lambda e: e.fetchable):
        try:
            path = fetch_file(name, force=force)
        except WeightsMissing as err:
            failures[name] = str(err)
            typer.secho(f"{name}: FAILED", fg="red")
            continue
        typer.echo(f"{name}: {path} (verified)")
        given = given_path(TABLE[name], None)
        if given:
            typer.echo(f"    note: {given[0]} is set and wins over this copy at use ({given[1]})")
    if failures:
        typer.secho(format_report(failures, {}), fg="red", err=True)
        raise typer.Exit(1)


@app.command()
def verify(names: list[str] | None = typer.Argument(None, help="table names (default: all)")) -> None:
    """Re-hash every file present and compare with the table (and pins). Exit 1 when any file differs
    from the table or its pin, any file named by an option or environment variable is missing, unreadable
    or differs from the table, any record is unreadable, or a file named here on the command line is not
    present. With no names, files not fetched yet are listed as missing and do not fail it."""
    from ablate.weights.table import TABLE, status

    bad = []
    for name in _names(names, lambda e: True):
        st = status(name, rehash=True)
        _show(st, TABLE[name])
        if st.problem:
            bad.append(f"{name}: {st.problem}")
        elif names and st.state == "missing":  # asked for by name: absent is not verified
            bad.append(f"{name}: not present ({st.detail})")
    for line in bad:
        typer.secho(f"verify failed: {line}", fg="red", err=True)
    if bad:
        raise typer.Exit(1)
