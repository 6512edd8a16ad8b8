"""A search space's YAML, read so that no file can take a launch down or say two things.

PyYAML's safe_load still lets the last of two equal keys win (a duplicated combination
silently replaces the first) and expands aliases without limit (a "billion laughs" file
grows until MemoryError in whatever walks it next). Here the file is capped in size
before it is parsed, aliases may be used but their expansion is counted, a key may
appear once per mapping, and nesting deeper than Python's recursion limit is refused.
Every refusal is one `YamlRefused` line naming the file (and the line where there is one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ablate.errors import AblateError

MAX_BYTES = 1 << 20  # a search space is a few KiB; 1 MiB leaves room for generated ones
# Nodes after every alias is expanded: the shipped grids have a few hundred; a billion-laughs
# file has 10^9. Counting stops at the limit, so the check itself costs at most this much.
MAX_EXPANDED_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlRefused(AblateError, ValueError):
    """The file is not a YAML document ablate reads; the message names the file and the fix."""


def _duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode, source: str) -> None:
    """A key written twice in one mapping is refused (YAML keeps the last). Checked on the composed
    node, before merge keys (`<<: *base`) are flattened: keys that override a merged mapping are fine."""
    seen: dict = {}  # key -> the line it first appears on
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue  # a mapping or list as a key: SafeConstructor refuses it with its own message
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise YamlRefused(f"{source}: line {line}: duplicate key {key!r} (first at line {seen[key]}); "
                              "YAML would keep only the last one: rename or remove one of them")
        seen[key] = line


def _check_nodes(loader: yaml.SafeLoader, root: yaml.Node, source: str) -> int:
    """Every mapping free of duplicate keys, and the document's size with every alias expanded (a
    node reached twice counts twice), stopping at MAX_EXPANDED_NODES; a node that contains itself
    (a recursive alias) is refused. Returns the expanded size."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise YamlRefused(f"{source}: line {node.start_mark.line + 1}: an alias refers to a node that contains "
                              "it (a recursive structure); write the values out")
        on_path.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            _duplicate_keys(loader, node, source)
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                raise YamlRefused(f"{source}: its aliases expand to more than {MAX_EXPANDED_NODES:,} values (a "
                                  "'billion laughs' document?); a search space needs far fewer: write it out")
        on_path.discard(key)
        sizes[key] = total
        return total

    return size(root)


def load_yaml(path: Path) -> Any:
    """The one YAML document in `path`, checked as the module docstring says. FileNotFoundError
    passes through (the caller names what the file was for); every other refusal is YamlRefused."""
    try:
        n = path.stat().st_size
    except FileNotFoundError:
        raise
    except OSError as e:
        raise YamlRefused(f"{path}: cannot be read: {e.strerror or e}") from None
    if path.is_dir():
        raise YamlRefused(f"{path}: is a folder, not a YAML file")
    if n > MAX_BYTES:
        raise YamlRefused(f"{path}: {n:,} bytes, over the {MAX_BYTES:,}-byte limit for a search space "
                          "(is this the right file?)")
    try:
        with open(path, "rb") as f:  # read no further than the cap: the size said by stat can lie (a
            data = f.read(MAX_BYTES + 1)  # link to a device or a pipe, a file still being written)
        if len(data) > MAX_BYTES:
            raise YamlRefused(f"{path}: over the {MAX_BYTES:,}-byte limit for a search space (is this the right file?)")
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlRefused(f"{path}: not UTF-8 text (byte {e.start}): is this the right file?") from None
    except OSError as e:
        raise YamlRefused(f"{path}: cannot be read: {e.strerror or e}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(loader, node, str(path))
        return loader.construct_document(node)
    except RecursionError:
        raise YamlRefused(f"{path}: nested too deeply to read (thousands of levels); a search space needs a "
                          "few") from None
    except yaml.YAMLError as e:
        raise YamlRefused(f"{path}: malformed YAML: {' '.join(str(e).split())}") from None
    except YamlRefused:
        raise
    except ValueError as e:  # a scalar PyYAML cannot convert, e.g. an integer of more than 4300 digits
        raise YamlRefused(f"{path}: a value cannot be read: {e}") from None
    finally:
        loader.dispose()
