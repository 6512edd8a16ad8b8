"""A tiny name -> factory store with a one-line description per entry.

Factories take keyword options only; their signature *is* the option list, so
`ablate losses` can print it and config validation can reject unknown keys
without a second source of truth.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str
    # Optional cheap check run before any training starts (same options as the
    # factory); raises with a message naming the missing file or bad option.
    preflight: Callable[..., None] | None = None
    # Optional: the pretrained files (names in ablate.weights.table.TABLE) the entry needs
    # with these options, as {name: path given by an option, or None}; the launcher fetches
    # and checks them for a whole grid before anything starts.
    needs: Callable[..., dict] | None = None

    def options(self) -> dict[str, Any]:
        """Option name -> default (inspect.Parameter.empty when required)."""
        sig = inspect.signature(self.factory)
        return {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, preflight: Callable[..., None] | None = None,
                 needs: Callable[..., dict] | None = None) -> Callable:
        def deco(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, factory, description, preflight, needs)
            return factory

        return deco

    def unknown(self, name: str) -> str:
        """The message for a name that is not registered: the closest match and every known name."""
        close = difflib.get_close_matches(name, self._entries, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._entries))}"

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def check_options(self, name: str, options: dict, where: str = "", also_valid=()) -> Entry:
        """The entry, once its options are known to it (or to `also_valid`, the options every
        entry takes); ValueError naming `where` (a config key path) otherwise."""
        entry = self.get(name)
        known = entry.options()
        unknown = sorted(set(options) - set(known) - set(also_valid))
        if unknown:
            raise ValueError(
                f"{where or name}: unknown option(s) {unknown} for {self.kind} {name!r}; "
                f"valid: {sorted([*also_valid, *known])}"
            )
        return entry

    def build(self, name: str, where: str = "", **options: Any) -> Any:
        """Build entry `name`; unknown options raise naming `where` (a config key path)."""
        return self.check_options(name, options, where).factory(**options)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))
