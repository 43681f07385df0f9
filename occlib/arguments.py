"""Transition arguments as a controlled process receives them.

Each ConfigEntry becomes one key. As in OCClib, a key `__ptree__:json:NAME`
(or `ini`, `xml`) carries a document that is parsed into a tree under NAME; a
malformed one is dropped with a log line, never failing the transition.
"""
from __future__ import annotations

import configparser
import json
import logging
import xml.etree.ElementTree as ElementTree
from typing import Any, Iterable, Mapping

log = logging.getLogger("occlib")

PTREE_PREFIX = "__ptree__:"


def _ini_tree(text: str) -> dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    parser.read_string(text)
    tree: dict[str, Any] = dict(parser.defaults())
    for section in parser.sections():
        tree[section] = {k: v for k, v in parser.items(section) if k not in parser.defaults()}
    return tree


def _xml_tree(text: str) -> dict[str, Any]:
    def convert(element: ElementTree.Element) -> Any:
        children = list(element)
        if not children and not element.attrib:
            return element.text or ""
        node: dict[str, Any] = {f"<xmlattr>.{k}": v for k, v in element.attrib.items()}
        for child in children:
            node[child.tag] = convert(child)
        return node

    root = ElementTree.fromstring(text)
    return {root.tag: convert(root)}


_PARSERS = {"json": json.loads, "ini": _ini_tree, "xml": _xml_tree}


def parse_arguments(entries: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn key/value pairs into the configuration a handler receives."""
    arguments: dict[str, Any] = {}
    for key, value in entries:
        if not key.startswith(PTREE_PREFIX):
            arguments[key] = value
            continue
        kind, _, name = key[len(PTREE_PREFIX):].partition(":")
        parse = _PARSERS.get(kind)
        if parse is None or not name:
            log.warning("dropped argument %r: expected __ptree__:json|ini|xml:NAME", key)
            continue
        try:
            arguments[name] = parse(value)
        except (ValueError, configparser.Error, ElementTree.ParseError) as error:
            log.warning("dropped argument %r: malformed %s: %s", key, kind, error)
    return arguments


def run_number(arguments: Mapping[str, Any]) -> int:
    """`runNumber` as OCClib reads it on every transition; absent or unreadable means 0."""
    try:
        return int(arguments.get("runNumber", 0))
    except (TypeError, ValueError):
        return 0
