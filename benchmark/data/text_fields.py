"""Text fields built from pair columns.

`mechanism` is the curated mechanism sentence alone. `text_rich` (the paper's enriched
text) joins mechanism, target name, action type and drug name. A template is a list of
segments; a segment whose fields are all empty for a row is left out, so a drug without a
name does not produce "Drug: ." noise.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from benchmark.core.errors import ConfigError

#: columns a template may reference
TEMPLATE_FIELDS = ("mechanism", "target_name", "action_type", "drug_name", "target_id", "molecule_id")

DEFAULT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "mechanism": ("{mechanism}",),
    "text_rich": ("{mechanism}.", "Target: {target_name}.", "Action: {action_type}.", "Drug: {drug_name}."),
    # the paper's ablation: text_rich without the drug's name
    "text_rich_no_drug": ("{mechanism}.", "Target: {target_name}.", "Action: {action_type}."),
}


def template_fields(segment: str) -> list[str]:
    fields = [name for _, name, _, _ in string.Formatter().parse(segment) if name is not None]
    unknown = sorted(set(fields) - set(TEMPLATE_FIELDS))
    if unknown:
        raise ConfigError(
            f"text template segment {segment!r} uses unknown field(s) {unknown}; "
            f"available fields: {', '.join(TEMPLATE_FIELDS)}"
        )
    if not fields:
        raise ConfigError(f"text template segment {segment!r} references no field such as {{mechanism}}")
    return fields


def parse_template(template: str | Sequence[str]) -> tuple[str, ...]:
    """Accepts a list of segments or one string with segments separated by '|'."""
    segments = [s.strip() for s in (template.split("|") if isinstance(template, str) else template)]
    segments = [s for s in segments if s]
    if not segments:
        raise ConfigError("empty text template: give at least one segment such as '{mechanism}'")
    for segment in segments:
        template_fields(segment)
    return tuple(segments)


def _clean_value(field: str, value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value).strip()
    return text.lower() if field == "action_type" else text


def render(template: Sequence[str], row: dict[str, object]) -> str:
    parts = []
    for segment in template:
        fields = template_fields(segment)
        values = {f: _clean_value(f, row.get(f)) for f in fields}
        if all(v == "" for v in values.values()):
            continue
        parts.append(segment.format(**values))
    # "Cyclooxygenase inhibitor." + ... ; avoid a doubled full stop when the mechanism ends with one
    return " ".join(parts).replace("..", ".").strip()
