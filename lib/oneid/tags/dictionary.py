"""The tag dictionary (``docs/tags.md``), generated from the tag registry so it cannot drift."""

from __future__ import annotations

from oneid.conf.tags import TagConf, TagsConf


def tag_dictionary(registry: TagsConf) -> str:
    """Markdown: one table per ``gold.tags_<group>``, a row per tag, in declaration order."""
    lines = [
        "# Tag dictionary",
        "",
        "Generated from `conf/tags.yaml` by `oneid tag-dictionary --out docs/tags.md`; do not",
        "edit by hand (a test checks it is current). Every table is partitioned by `dt`, the",
        f"as-of date; days are business days in {registry.time_zone}. A window of N days is the",
        "N days ending with `dt`; no window means all history up to `dt`.",
    ]
    groups: dict[str, list[TagConf]] = {}
    for tag in registry.definitions:
        groups.setdefault(tag.group, []).append(tag)
    for group, tags in groups.items():
        lines += [
            "",
            f"## gold.tags_{group}",
            "",
            "| tag | type | unit | window | how | description |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| `{t.name}` | {t.type} | {t.unit} | {_window(t)} | {_how(t)} "
            f"| {_cell(t.description)} |"
            for t in tags
        ]
    lines += [
        "",
        "## gold.tags_summary",
        "",
        "Per `dt`: `metric`, `key`, `count`, `share` — the number of OneIDs, value counts of "
        + ", ".join(f"`{t}`" for t in registry.summary.counts_by)
        + ", the shares "
        + ", ".join(f"`{name}`" for name in registry.summary.shares)
        + " and facts of records without a OneID (`unattributed_<facts>`).",
        "",
    ]
    return "\n".join(lines)


def _window(tag: TagConf) -> str:
    return f"{tag.window_days} d" if tag.window_days else "all"


def _how(tag: TagConf) -> str:
    if tag.aggregate:
        agg = tag.aggregate
        text = f"{agg.fn}({agg.value or '*'}) over {agg.facts}"
        return _cell(text + (f" where {agg.where}" if agg.where else ""))
    if tag.builder:
        params = ", ".join(f"{k}={v}" for k, v in tag.params.items())
        return _cell(f"builder {tag.builder}({params})")
    return _cell(f"`{' '.join((tag.expr or '').split())}`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
